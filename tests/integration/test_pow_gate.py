"""The proof-of-work gate on chat creation (issue 10), through a real bridge process with the gate on
(tests/support/pow_bridge.py: 8 bits normally, at most 12, +1 bit per refused creation, half-life 1 s,
challenges valid 5 s) on the session's Synapse; the shared bridge keeps the gate off."""
from __future__ import annotations

import sqlite3
import time
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.web import pow
from tests.conftest import MatrixEnv
from tests.support.pow_bridge import POW, PowBridgeEnv
from tests.support.waiting import until

BASE, MAX = POW["base_bits"], POW["max_bits"]


class Client:
    def __init__(self, env: PowBridgeEnv, http: aiohttp.ClientSession) -> None:
        self.env, self.http = env, http

    async def challenge(self) -> dict[str, Any]:
        async with self.http.get(self.env.public_url + "/api/v1/challenge") as r:
            assert r.status == 200, await r.text()
            assert "Set-Cookie" not in r.headers and r.headers["Cache-Control"] == "no-store"
            return await r.json()

    async def solved(self) -> dict[str, str]:
        c = await self.challenge()
        answer, _ = pow.solve(c["challenge"], c["difficulty"])
        return {"challenge": c["challenge"], "answer": answer}

    async def create(self, **body: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.env.public_url + "/api/v1/chats", json=body) as r:
            return r.status, await r.json(content_type=None)

    async def metrics(self) -> str:
        async with self.http.get(f"http://127.0.0.1:{self.env.config['metrics']['port']}/metrics") as r:
            return await r.text()

    async def difficulty(self) -> int:
        return (await self.challenge())["difficulty"]

    def chats(self) -> int:
        conn = sqlite3.connect(f"file:{self.env.db_path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM chats").fetchone()[0]
        finally:
            conn.close()


@pytest.fixture
async def client(pow_env: PowBridgeEnv):
    async with aiohttp.ClientSession() as http:
        c = Client(pow_env, http)
        # Another test may have raised the difficulty: start from the normal one.
        await until(_at(c, BASE), 60, f"the difficulty back at {BASE} bits")
        yield c


def _at(c: Client, bits: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await c.difficulty() == bits
    return check


async def test_the_site_says_a_proof_is_required_and_a_challenge_is_signed_data_without_a_cookie(client: Client):
    async with client.http.get(client.env.public_url + "/api/v1/site") as r:
        assert (await r.json())["proof_of_work"] == {"required": True}
    c = await client.challenge()
    assert c["difficulty"] == BASE and c["expires_in"] == POW["challenge_seconds"]
    assert c["algorithm"] == "sha256-leading-zero-bits"
    nonce, bits, expires_ms, signature = c["challenge"].split(".")
    assert int(bits) == BASE and len(nonce) == 32 and len(signature) == 64
    assert 0 < int(expires_ms) - time.time() * 1000 <= POW["challenge_seconds"] * 1000
    assert (await client.challenge())["challenge"] != c["challenge"], "every challenge is new"
    assert f"precinct_pow_difficulty_bits {float(BASE)}" in await client.metrics()


async def test_a_solved_challenge_starts_a_chat_once_and_a_replay_is_refused(client: Client):
    proof = await client.solved()
    status, body = await client.create(topic="general", pow=proof)
    assert status == 201 and body["chat_id"], body
    before = client.chats()
    status, body = await client.create(topic="general", pow=proof)
    assert (status, body["error"]) == (409, "pow_replayed"), body
    assert client.chats() == before, "nothing is created from a replay"
    assert 'precinct_visitor_refusals_total{reason="pow_replayed"}' in await client.metrics()


async def test_missing_malformed_forged_and_unsolved_proofs_are_refused_with_their_codes(client: Client):
    before = client.chats()
    proof = await client.solved()
    nonce, bits, expires_ms, signature = proof["challenge"].split(".")
    easier = ".".join([nonce, "1", expires_ms, signature])          # the difficulty is signed
    other_key = pow.Challenge.signed(pow.derive_key("not-the-bridge's-key-" * 3), nonce, BASE, int(expires_ms)).text
    unsolved = next(str(n) for n in range(1000) if not pow.solves(proof["challenge"], str(n), BASE))
    cases = [
        ({}, 400, "pow_required"),
        ({"pow": None}, 400, "pow_required"),
        ({"pow": "solved"}, 400, "pow_invalid"),
        ({"pow": {"challenge": proof["challenge"]}}, 400, "pow_invalid"),
        ({"pow": {"challenge": proof["challenge"], "answer": 7}}, 400, "pow_invalid"),
        ({"pow": {"challenge": proof["challenge"], "answer": "\u0661\u0662"}}, 400, "pow_invalid"),
        ({"pow": {"challenge": proof["challenge"], "answer": "9" * 40}}, 400, "pow_invalid"),
        ({"pow": {"challenge": "²" + proof["challenge"][1:], "answer": "1"}}, 400, "pow_invalid"),
        ({"pow": {"challenge": proof["challenge"] + ".1", "answer": "1"}}, 400, "pow_invalid"),
        ({"pow": {"challenge": easier, "answer": pow.solve(easier, 1)[0]}}, 403, "pow_forged"),
        ({"pow": {"challenge": other_key, "answer": pow.solve(other_key, BASE)[0]}}, 403, "pow_forged"),
        ({"pow": {"challenge": proof["challenge"], "answer": unsolved}}, 403, "pow_unsolved"),
    ]
    for body, status, error in cases:
        got_status, got = await client.create(topic="general", **body)
        assert (got_status, got.get("error")) == (status, error), (body, got)
        assert isinstance(got.get("message"), str) and got["message"], got
    assert client.chats() == before, "nothing is created from a refused proof"
    status, body = await client.create(topic="general", pow=proof)
    assert status == 201, "refused attempts did not spend the challenge"


async def test_an_expired_challenge_is_refused(client: Client):
    proof = await client.solved()
    expires_ms = int(proof["challenge"].split(".")[2])
    await until(lambda: time.time() * 1000 > expires_ms + 50, POW["challenge_seconds"] + 30, "the challenge to expire")
    status, body = await client.create(topic="general", pow=proof)
    assert (status, body["error"]) == (403, "pow_expired"), body


async def test_the_difficulty_rises_while_creation_is_refused_and_falls_back_after(client: Client):
    early = await client.solved()                       # solved at the normal difficulty
    status, body = await client.create(topic="full", pow=await client.solved())
    if status != 503:                                   # the one place of the small queue (first run)
        assert status == 201, body
    refused = []
    for _ in range(3 * (MAX - BASE)):                   # bounded: each refusal should add a bit
        status, body = await client.create(topic="full", pow=await client.solved())
        assert (status, body["error"]) == (503, "busy"), body
        refused.append(await client.difficulty())
        if refused[-1] == MAX:
            break
    assert refused[0] > BASE and refused[-1] == MAX, refused
    assert refused == sorted(refused), "it only rises while refusals keep coming"
    status, body = await client.create(topic="general", pow=early)
    assert (status, body["error"]) == (403, "pow_too_easy"), "what was solved before no longer does"
    status, body = await client.create(topic="general", pow=await client.solved())
    assert status == 201, "a challenge at the new difficulty, solved, still starts a chat"
    await until(_at(client, BASE), 60, f"the difficulty back at {BASE} bits once refusals stop")


@settings(derandomize=True, database=None, deadline=None, max_examples=60,
          suppress_health_check=list(HealthCheck))
@given(proof=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=130),
              st.sampled_from(["0", "²", "1" * 17, "a" * 32 + ".8.1." + "0" * 64])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["challenge", "answer", "x"]), inner, max_size=3), max_leaves=8))
async def test_any_generated_proof_is_a_4xx_json_refusal_and_creates_nothing(client: Client, proof: Any):
    before = client.chats()
    status, body = await client.create(topic="general", pow=proof)
    assert 400 <= status < 500 and body["error"].startswith("pow_"), (proof, status, body)
    assert client.chats() == before


async def test_the_shared_bridge_asks_for_no_proof(matrix_env: MatrixEnv):
    async with aiohttp.ClientSession() as http:
        async with http.get(matrix_env.public_url + "/api/v1/site") as r:
            assert (await r.json())["proof_of_work"] == {"required": False}
        async with http.get(matrix_env.public_url + "/api/v1/challenge") as r:
            assert (r.status, (await r.json())["error"]) == (404, "pow_disabled")
        async with http.get(matrix_env.metrics_url) as r:
            assert "precinct_pow_difficulty_bits" not in await r.text()

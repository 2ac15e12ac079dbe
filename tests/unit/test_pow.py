"""The proof-of-work gate's pure parts: challenges and their checks, the difficulty rule, spent challenges."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError
from bridge.web import pow
from bridge.web.pow import Challenge, DifficultyRule, PowGate, PowRefused, Pressure, SpentChallenges
from tests.support.configs import example_config
from tests.unit.test_config import good, refused

KEY = pow.derive_key("p" * 64)
RULE = DifficultyRule(base_bits=4, max_bits=8, refusals_per_bit=2, half_life_seconds=10)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def gate(rule: DifficultyRule = RULE, lifetime: int = 60, enabled: bool = True, capacity: int = 100
         ) -> tuple[PowGate, Clock, Clock]:
    wall, mono = Clock(), Clock(50.0)
    return PowGate(enabled, rule, lifetime, KEY, clock=wall, monotonic=mono, spent_capacity=capacity), wall, mono


def solved(g: PowGate) -> dict[str, str]:
    issued = g.issue()
    answer, _ = pow.solve(issued["challenge"], issued["difficulty"])
    return {"challenge": issued["challenge"], "answer": answer}


def refusal(g: PowGate, proof: Any) -> PowRefused:
    with pytest.raises(PowRefused) as e:
        g.check(proof)
    return e.value


def wrong_answer(challenge: str, bits: int) -> str:
    return next(str(n) for n in range(10_000) if not pow.solves(challenge, str(n), bits))


# ---- challenges -----------------------------------------------------------------------------------

def test_a_challenge_is_signed_text_that_parses_back():
    c = Challenge.signed(KEY, "ab" * 16, 18, 1_700_000_000_000)
    assert Challenge.parse(c.text) == c and c.genuine(KEY)
    assert not c.genuine(pow.derive_key("q" * 64))
    assert not Challenge(c.nonce, 17, c.expires_ms, c.signature).genuine(KEY), "the difficulty is signed"
    assert not Challenge(c.nonce, c.bits, c.expires_ms + 1, c.signature).genuine(KEY), "so is the expiry"


def test_the_signing_key_comes_from_the_pickle_key_alone_and_does_not_reveal_it():
    assert pow.derive_key("p" * 64) == KEY, "the same after a restart: nothing new to keep"
    assert pow.derive_key("q" * 64) != KEY and b"p" * 8 not in KEY


def test_the_puzzle_is_leading_zero_bits_of_sha256():
    text = Challenge.signed(KEY, "cd" * 16, 10, 1).text
    answer, tries = pow.solve(text, 10)
    digest = hashlib.sha256(f"{text}:{answer}".encode()).digest()
    assert pow.leading_zero_bits(digest) >= 10 and tries == int(answer) + 1
    assert pow.solves(text, answer, 10) and not pow.solves(text, wrong_answer(text, 10), 10)
    assert pow.leading_zero_bits(b"\x00\x00\x01" + b"\xff" * 29) == 23
    assert pow.leading_zero_bits(b"\x80" + b"\x00" * 31) == 0


def test_an_issued_challenge_solved_is_accepted_once():
    g, _, _ = gate()
    issued = g.issue()
    assert issued["difficulty"] == 4 and issued["expires_in"] == 60 and issued["algorithm"] == pow.ALGORITHM
    proof = solved(g)
    g.check(proof)
    assert refusal(g, proof).error == "pow_replayed" and refusal(g, proof).status == 409


@pytest.mark.parametrize("proof", [
    {}, "text", [1], {"challenge": 5, "answer": "1"}, {"challenge": "a.b.c.d", "answer": "1"},
    {"challenge": "x" * 200, "answer": "1"},
    {"challenge": "ab" * 16 + ".\u00b2." + "1" * 13 + "." + "0" * 64, "answer": "1"},
    {"challenge": "ab" * 16 + ".4." + "9" * 20 + "." + "0" * 64, "answer": "1"},
    {"challenge": "ab" * 16 + ".4.-1." + "0" * 64, "answer": "1"},
    {"challenge": "ab" * 16 + ".123.1." + "0" * 64, "answer": "1"},
    {"challenge": "AB" * 16 + ".4.1." + "0" * 64, "answer": "1"},
    {"challenge": "ab" * 16 + ".4.1." + "0" * 64 + "\u00e9", "answer": "1"},
])
def test_a_malformed_challenge_is_400_pow_invalid(proof: Any):
    g, _, _ = gate()
    e = refusal(g, proof)
    assert (e.status, e.error) == (400, "pow_invalid") and ("'pow'" in e.message or "pow.challenge" in e.message)


@pytest.mark.parametrize("answer", [None, "", "\u0661\u0662", "\uff11", "12a", "1" * 17, 12, "-1", " 1", "1.0"])
def test_a_malformed_answer_is_400_pow_invalid_naming_it(answer: Any):
    g, _, _ = gate()
    e = refusal(g, {"challenge": g.issue()["challenge"], "answer": answer})
    assert (e.status, e.error) == (400, "pow_invalid") and "pow.answer" in e.message


def test_no_proof_while_the_gate_is_on_is_pow_required_and_off_nothing_is_asked():
    g, _, _ = gate()
    assert (refusal(g, None).status, refusal(g, None).error) == (400, "pow_required")
    off, _, _ = gate(enabled=False)
    off.check(None)
    off.check("anything")


def test_a_forged_or_foreign_challenge_is_pow_forged():
    g, wall, _ = gate()
    proof = solved(g)
    nonce, bits, expires, sig = proof["challenge"].split(".")
    other = Challenge.signed(pow.derive_key("z" * 64), nonce, int(bits), int(expires)).text
    flipped = ".".join([nonce, bits, expires, ("0" if sig[0] != "0" else "1") + sig[1:]])
    easier = ".".join([nonce, "1", expires, sig])
    # Signed by us but living longer than we ever issue (a changed config, a leaked key): not ours either.
    longer = Challenge.signed(KEY, nonce, int(bits), int(expires) + 3_600_000).text
    for text in (other, flipped, easier, longer):
        answer, _ = pow.solve(text, int(text.split(".")[1]))
        e = refusal(g, {"challenge": text, "answer": answer})
        assert (e.status, e.error) == (403, "pow_forged"), text


def test_an_expired_challenge_is_pow_expired():
    g, wall, _ = gate(lifetime=60)
    proof = solved(g)
    wall.t += 60.5
    assert (refusal(g, proof).status, refusal(g, proof).error) == (403, "pow_expired")


def test_an_answer_that_does_not_solve_it_is_pow_unsolved():
    g, _, _ = gate()
    text = g.issue()["challenge"]
    e = refusal(g, {"challenge": text, "answer": wrong_answer(text, 4)})
    assert (e.status, e.error) == (403, "pow_unsolved")
    assert len(g.spent) == 0, "nothing is spent by a refused proof"


def test_a_challenge_easier_than_what_is_asked_now_is_pow_too_easy_and_stays_usable_later():
    g, wall, mono = gate()
    proof = solved(g)                                  # 4 bits, asked before the refusals
    for _ in range(4):
        g.creation_refused()
    assert g.difficulty() == 6
    assert (refusal(g, proof).status, refusal(g, proof).error) == (403, "pow_too_easy")
    harder = solved(g)
    g.check(harder)                                    # what is asked now is accepted
    mono.t += 100                                      # ten half-lives without a refusal
    assert g.difficulty() == 4
    g.check(proof)                                     # not spent by its refusal: good again now


def test_the_spent_challenges_are_bounded_and_forget_what_has_expired():
    spent = SpentChallenges(capacity=3)
    assert [spent.spend(n, 1_000 + i, now_ms=0) for i, n in enumerate("abc")] == [True, True, True]
    assert spent.spend("a", 1_000, now_ms=0) is False
    assert spent.spend("d", 2_000, now_ms=500) is None, "full: refuse rather than forget an unexpired one"
    assert spent.spend("d", 2_000, now_ms=1_002) is True and len(spent) == 2      # a, b expired: pruned on the way
    assert spent.spend("a", 2_000, now_ms=1_002) is True and spent.spend("e", 2_000, now_ms=1_002) is None


def test_a_full_spent_set_refuses_with_pow_full_and_counts_as_a_refusal():
    g, _, _ = gate(capacity=1)
    g.check(solved(g))
    e = refusal(g, solved(g))
    assert (e.status, e.error) == (503, "pow_full")
    assert g.pressure.value == 1


# ---- the difficulty rule ---------------------------------------------------------------------------

def test_bits_rise_one_per_refusals_per_bit_to_the_nearest_up_to_the_maximum():
    assert [RULE.bits(p) for p in (0, 0.99, 1, 2.99, 3, 4, 6, 7, 1000)] == [4, 4, 5, 5, 6, 6, 7, 8, 8]
    assert DifficultyRule(16, 16, 1, 1).bits(50) == 16


def test_pressure_halves_every_half_life():
    assert RULE.decayed(8, 10) == pytest.approx(4) and RULE.decayed(8, 30) == pytest.approx(1)
    assert RULE.decayed(8, 0) == 8 and RULE.decayed(8, -5) == 8


def test_refusals_raise_the_difficulty_and_it_falls_back_to_base_when_they_stop():
    mono = Clock(0.0)
    pressure = Pressure(RULE, mono)
    seen = []
    for _ in range(12):
        pressure.add()
        seen.append(pressure.bits())
    assert seen == [5, 5, 6, 6, 7, 7, 8, 8, 8, 8, 8, 8]
    assert pressure.value <= RULE.ceiling(), "a long flood is not remembered beyond the cap"
    falls = []
    for _ in range(6):
        mono.t += 10
        falls.append(pressure.bits())
    assert falls == sorted(falls, reverse=True) and falls[0] < 8 and falls[-1] == 4


# ---- configuration ----------------------------------------------------------------------------------

def test_the_gate_is_off_by_default_and_built_from_the_config(tmp_path: Path):
    config = example_config(tmp_path)
    g = PowGate.from_config(config)
    assert not g.enabled and g.difficulty() == config.get("proof_of_work.base_bits")
    assert g.key == pow.derive_key(config.get("crypto.pickle_key"))


@pytest.mark.parametrize("key, value, expected", [
    ("base_bits", 0, "between 1 and 32"), ("max_bits", 33, "between 1 and 32"),
    ("refusals_per_bit", 0, "greater than 0"), ("half_life_seconds", -1, "greater than 0"),
    ("challenge_seconds", 0, "between 1 and 3600"), ("enabled", "yes", "expected bool"),
])
def test_every_bad_value_names_its_key(key: str, value: Any, expected: str):
    raw = good()
    raw["proof_of_work"][key] = value
    message = refused(raw)
    assert message.startswith(f"proof_of_work.{key}:") and expected in message, message


def test_a_maximum_below_the_base_names_max_bits():
    raw = good()
    raw["proof_of_work"].update(base_bits=18, max_bits=16)
    with pytest.raises(ConfigError, match=r"^proof_of_work\.max_bits: 16 is below proof_of_work\.base_bits \(18\)"):
        from tests.unit.test_config import load
        load(raw)


def test_a_challenge_from_before_a_restart_is_accepted_after_it(tmp_path: Path):
    """The key comes from the config alone: a new process (a new gate) takes what the old one handed out."""
    config = example_config(tmp_path)
    config.values["proof_of_work.enabled"] = True
    before, after = PowGate.from_config(config), PowGate.from_config(config)
    issued = before.issue()
    after.check({"challenge": issued["challenge"], "answer": pow.solve(issued["challenge"], issued["difficulty"])[0]})

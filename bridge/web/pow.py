"""An optional proof-of-work gate on chat creation (issue 10): no third party, no cookie, no puzzle to see.

    GET /api/v1/challenge ──► PowGate.issue() ──► "nonce.bits.expires_ms.signature"   nothing stored
    the page's Web Worker finds an answer: SHA-256("<challenge>:<answer>") starts with ``bits`` zero bits
    POST /api/v1/chats {"pow": {"challenge", "answer"}} ──► PowGate.check() ──► spent until it expires
    blocked / busy / rate-limited ──► PowGate.creation_refused() ──► the difficulty rises, then decays

A challenge is signed (HMAC-SHA256) with a key derived from ``crypto.pickle_key``, so it outlives a
restart and is nothing new for operators to keep.  The only state is the set of spent challenges
(each kept until it expires, bounded) and one number: the refusal *pressure*, which every refused
creation raises by one and which halves every ``half_life_seconds``.  Each ``refusals_per_bit`` of
pressure (rounded to the nearest) adds a bit (doubles the expected work) on top of ``base_bits``, up to
``max_bits``.

Pure parts (``Challenge``, ``solves``, ``DifficultyRule``) take their time as an argument; the two
small stateful ones (``Pressure``, ``SpentChallenges``) and ``PowGate`` take a clock.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from .. import client_input

ALGORITHM = "sha256-leading-zero-bits"
KEY_LABEL = b"precinct/proof-of-work-challenge/v1"
MAX_CHALLENGE_CHARS = 160          # a real one is 32 + 2 + 13 + 64 + 3 = 114
MAX_ANSWER_DIGITS = 16             # 2^53 tries and more: far beyond any difficulty a browser can meet
MAX_SPENT = 100_000                # spent challenges remembered at most (each ~150 bytes)
CLOCK_SLACK_MS = 5_000             # a challenge may say it expires this much later than we would issue it
_NONCE = re.compile(r"[0-9a-f]{32}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class PowRefused(Exception):
    """The request's proof of work is missing or not good: an HTTP status and a code the page acts on."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def derive_key(pickle_key: str) -> bytes:
    """The challenges' signing key: from a secret operators already keep, so nothing new to manage,
    and the same after a restart. One-way, so it gives nothing of the pickle key away."""
    return hmac.new(pickle_key.encode("utf-8"), KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class Challenge:
    nonce: str          # 32 hex digits (128 random bits): what makes each challenge, and its spending, unique
    bits: int           # leading zero bits the answer's hash must have
    expires_ms: int     # Unix time in ms
    signature: str      # HMAC-SHA256 of the three above, hex

    @staticmethod
    def signed(key: bytes, nonce: str, bits: int, expires_ms: int) -> "Challenge":
        return Challenge(nonce, bits, expires_ms, _sign(key, nonce, bits, expires_ms))

    @property
    def text(self) -> str:
        return f"{self.nonce}.{self.bits}.{self.expires_ms}.{self.signature}"

    def genuine(self, key: bytes) -> bool:
        return hmac.compare_digest(self.signature, _sign(key, self.nonce, self.bits, self.expires_ms))

    @staticmethod
    def parse(text: Any) -> "Challenge":
        """The four fields of a challenge string, each checked for shape; ``PowRefused`` 400 otherwise."""
        if not isinstance(text, str) or not text.isascii() or len(text) > MAX_CHALLENGE_CHARS:
            raise _invalid("'pow.challenge' must be the challenge string from GET /api/v1/challenge.")
        parts = text.split(".")
        if len(parts) != 4 or not _NONCE.fullmatch(parts[0]) or not _SIGNATURE.fullmatch(parts[3]) \
                or len(parts[1]) > 2:
            raise _invalid("'pow.challenge' is not a challenge string from GET /api/v1/challenge.")
        try:
            bits = client_input.whole_number(parts[1], text=True)
            expires_ms = client_input.whole_number(parts[2], text=True)
        except client_input.BadNumber:
            raise _invalid("'pow.challenge' is not a challenge string from GET /api/v1/challenge.") from None
        return Challenge(parts[0], bits, expires_ms, parts[3])


def _sign(key: bytes, nonce: str, bits: int, expires_ms: int) -> str:
    return hmac.new(key, f"{nonce}.{bits}.{expires_ms}".encode("ascii"), hashlib.sha256).hexdigest()


def _invalid(message: str) -> PowRefused:
    return PowRefused(400, "pow_invalid", message)


def parse_answer(value: Any) -> str:
    """ASCII digits, 1 to 16 of them (a string, as the page sends it)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ANSWER_DIGITS or not value.isascii() \
            or not value.isdigit():
        raise _invalid(f"'pow.answer' must be a string of 1 to {MAX_ANSWER_DIGITS} ASCII digits.")
    return value


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solves(challenge_text: str, answer: str, bits: int) -> bool:
    """Does SHA-256("<challenge>:<answer>") start with ``bits`` zero bits?"""
    digest = hashlib.sha256(f"{challenge_text}:{answer}".encode("ascii")).digest()
    return leading_zero_bits(digest) >= bits


def solve(challenge_text: str, bits: int, start: int = 0) -> tuple[str, int]:
    """(answer, hashes tried): what the page's worker does, in Python (tests and the bench's floor)."""
    prefix = f"{challenge_text}:".encode("ascii")
    shift = 256 - bits
    n = start
    while True:
        h = hashlib.sha256(prefix + str(n).encode("ascii")).digest()
        if int.from_bytes(h, "big") >> shift == 0:
            return str(n), n - start + 1
        n += 1


# ---- how hard -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DifficultyRule:
    base_bits: int
    max_bits: int
    refusals_per_bit: float
    half_life_seconds: float

    def decayed(self, pressure: float, elapsed_seconds: float) -> float:
        """Pressure left after ``elapsed_seconds`` without a refusal: it halves every half-life."""
        if elapsed_seconds <= 0:
            return pressure
        return pressure * 0.5 ** (elapsed_seconds / self.half_life_seconds)

    def bits(self, pressure: float) -> int:
        """``base_bits`` plus one bit per ``refusals_per_bit`` of pressure (to the nearest: pressure decays
        all the time, so ``refusals_per_bit`` refusals are always a little less by the time anyone asks),
        at most ``max_bits``."""
        extra = math.floor(pressure / self.refusals_per_bit + 0.5)
        return min(self.max_bits, self.base_bits + max(0, extra))

    def ceiling(self) -> float:
        """Pressure beyond which more refusals change nothing for a long while: kept at most this (with one
        bit of margin), so that after a flood the difficulty starts falling within a few half-lives."""
        return (self.max_bits - self.base_bits + 1) * self.refusals_per_bit


class Pressure:
    """Refused creations, remembered with a half-life (one number and its time)."""

    def __init__(self, rule: DifficultyRule, clock: Callable[[], float] = time.monotonic) -> None:
        self.rule, self.clock = rule, clock
        self.value, self.at = 0.0, clock()

    def _now(self) -> float:
        now = self.clock()
        self.value, self.at = self.rule.decayed(self.value, now - self.at), now
        return self.value

    def add(self) -> None:
        self.value = min(self._now() + 1.0, self.rule.ceiling())

    def bits(self) -> int:
        return self.rule.bits(self._now())


class SpentChallenges:
    """Nonces of challenges already used, each until its challenge expires; at most ``capacity``."""

    def __init__(self, capacity: int = MAX_SPENT) -> None:
        self.capacity = capacity
        self._expiry: dict[str, int] = {}     # insertion order ≈ expiry order (one lifetime for all)

    def __len__(self) -> int:
        return len(self._expiry)

    def _prune(self, now_ms: int) -> None:
        for nonce in [n for n, exp in self._expiry.items() if exp < now_ms]:
            del self._expiry[nonce]

    def _prune_oldest(self, now_ms: int) -> None:
        """The expired ones at the front: cheap, and usually all of them."""
        while self._expiry:
            nonce = next(iter(self._expiry))
            if self._expiry[nonce] >= now_ms:
                return
            del self._expiry[nonce]

    def spend(self, nonce: str, expires_ms: int, now_ms: int) -> bool | None:
        """True: spent now; False: spent before (a replay); None: no room left (refuse, do not forget)."""
        self._prune_oldest(now_ms)
        if nonce in self._expiry:
            return False
        if len(self._expiry) >= self.capacity:
            self._prune(now_ms)
            if len(self._expiry) >= self.capacity:
                return None
        self._expiry[nonce] = expires_ms
        return True


# ---- the gate -----------------------------------------------------------------------------------

class PowGate:
    """Hands out challenges and checks answers; off (``enabled=False``) it checks nothing."""

    def __init__(self, enabled: bool, rule: DifficultyRule, lifetime_seconds: int, key: bytes,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 spent_capacity: int = MAX_SPENT) -> None:
        self.enabled, self.rule, self.lifetime_ms, self.key = enabled, rule, lifetime_seconds * 1000, key
        self.clock = clock                   # wall clock: expiries must mean the same after a restart
        self.pressure = Pressure(rule, monotonic)
        self.spent = SpentChallenges(spent_capacity)

    @classmethod
    def from_config(cls, config: Any) -> "PowGate":
        rule = DifficultyRule(config.get("proof_of_work.base_bits"), config.get("proof_of_work.max_bits"),
                              config.get("proof_of_work.refusals_per_bit"),
                              config.get("proof_of_work.half_life_seconds"))
        return cls(config.get("proof_of_work.enabled"), rule, config.get("proof_of_work.challenge_seconds"),
                   derive_key(config.get("crypto.pickle_key")))

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def difficulty(self) -> int:
        """Leading zero bits a new challenge asks for now."""
        return self.pressure.bits()

    def creation_refused(self) -> None:
        """A chat creation was refused (blocked, busy, rate-limited): the work asked of the next ones rises."""
        self.pressure.add()

    def issue(self) -> dict[str, Any]:
        bits = self.difficulty()
        c = Challenge.signed(self.key, secrets.token_hex(16), bits, self._now_ms() + self.lifetime_ms)
        return {"challenge": c.text, "difficulty": bits, "expires_in": self.lifetime_ms // 1000,
                "algorithm": ALGORITHM}

    def check(self, proof: Any) -> None:
        """Accept (and spend) a solved challenge, or raise ``PowRefused``. Nothing to do while off."""
        if not self.enabled:
            return
        if proof is None:
            raise PowRefused(400, "pow_required", "Starting a chat needs a solved challenge: GET /api/v1/challenge, "
                                                  "then send {\"pow\": {\"challenge\", \"answer\"}}.")
        if not isinstance(proof, dict):
            raise _invalid("'pow' must be an object {\"challenge\": …, \"answer\": …}.")
        challenge = Challenge.parse(proof.get("challenge"))
        answer = parse_answer(proof.get("answer"))
        now = self._now_ms()
        if not challenge.genuine(self.key) or challenge.expires_ms > now + self.lifetime_ms + CLOCK_SLACK_MS:
            raise PowRefused(403, "pow_forged", "This challenge was not issued by this service; "
                                                "get a new one from GET /api/v1/challenge.")
        if challenge.expires_ms < now:
            raise PowRefused(403, "pow_expired", "This challenge has expired; get a new one and solve it.")
        if not solves(challenge.text, answer, challenge.bits):
            raise PowRefused(403, "pow_unsolved", "The answer does not solve the challenge.")
        if challenge.bits < self.difficulty():
            raise PowRefused(403, "pow_too_easy", "Starting a chat needs more work right now; get a new challenge "
                                                  "and solve it.")
        spent = self.spent.spend(challenge.nonce, challenge.expires_ms, now)
        if spent is False:
            raise PowRefused(409, "pow_replayed", "This challenge has already been used; get a new one.")
        if spent is None:
            self.creation_refused()
            raise PowRefused(503, "pow_full", "Too many chats are being started right now; please try again "
                                              "in a minute.")

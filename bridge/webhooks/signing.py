"""The webhook signature: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the agency's secret.

Signing the timestamp with the body lets a receiver refuse an old delivery replayed by someone who
captured it; comparing in constant time keeps the secret from leaking through timing.
"""
from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Precinct-Signature"
TIMESTAMP_HEADER = "X-Precinct-Timestamp"
DELIVERY_HEADER = "X-Precinct-Delivery"
EVENT_HEADER = "X-Precinct-Event"
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Precinct-Signature`` value for a body sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str | int, body: bytes, signature: str, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)

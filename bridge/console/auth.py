"""Console sign-in with a Matrix identity: a one-time link the bot sends a supervisor, then a session.

The link's token and the session cookie are random 256-bit values; only their SHA-256 is stored, so
a copy of the database signs nobody in.  A link works once, for ``console.link_ttl_seconds``; a
session ends after ``console.idle_minutes`` without a request (CJIS AC-11) or on sign-out.  Every
issue, refusal, sign-in and failed sign-in leaves an audit entry; failed and refused sign-ins are
counted per source (the client address's salted daily hash, never the address), so a flood of bogus
attempts is two entries per window, not one each.  Attempts are rate limited per address and overall
(``limits.console_sign_ins_*``); a refused attempt does not spend the link.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from .. import metrics
from ..journal import Journal
from ..config import Config
from ..limits import Limit
from ..store import Store

SIGN_IN_PATH = "/console/sign-in"


class SignInLimited(Exception):
    """Too many sign-in attempts (from this address, or overall): try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Supervisor:
    user_id: str
    agencies: tuple[str, ...]          # the agencies whose chats they may see


def supervised_agencies(config: Config, user_id: str) -> tuple[str, ...]:
    """The agencies that list this user among their supervisors."""
    return tuple(a.id for a in config.agencies if user_id in a.supervisors)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ConsoleAuth:
    def __init__(self, store: Store, journal: Journal, supervises: Callable[[str], tuple[str, ...]],
                 public_url: str, link_ttl_seconds: int = 300, idle_minutes: int = 30,
                 clock: Callable[[], float] = time.time, sign_in_limit: Limit | None = None) -> None:
        self.store, self.journal, self.supervises = store, journal, supervises
        self.sign_in_limit = sign_in_limit
        self.public_url = public_url.rstrip("/")
        self.link_ttl_ms, self.idle_ms = link_ttl_seconds * 1000, idle_minutes * 60 * 1000
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock() * 1000)

    def issue_sign_in_link(self, user_id: str, origin: str | None = None) -> str | None:
        """A one-time sign-in URL for a configured supervisor; None (and a refusal on record) for anyone else."""
        agencies = self.supervises(user_id)
        with self.store.db.transaction():
            if not agencies:
                self.journal.audit("console.link", user_id, "refused", origin=origin, reason="not a supervisor")
                return None
            token, now = secrets.token_urlsafe(32), self._now()
            self.store.console_links.forget_before(now - 24 * 3600 * 1000)
            self.store.console_links.add(digest(token), user_id, now, now + self.link_ttl_ms)
            self.journal.audit("console.link", user_id, origin=origin, agencies=list(agencies),
                               valid_seconds=self.link_ttl_ms // 1000)
        return f"{self.public_url}{SIGN_IN_PATH}?token={token}"

    def sign_in(self, token: str, origin: str | None) -> tuple[str, Supervisor] | None:
        """Spend a link: (session ID for the cookie, who) or None; both outcomes are audited. ``origin``: the
        client address (kept on a sign-in; only as a salted hash on a failure). Raises ``SignInLimited``
        (audited, the link unspent) when there have been too many attempts."""
        if self.sign_in_limit is not None and (refusal := self.sign_in_limit.take(origin or "")):
            reason = f"{self.sign_in_limit.name}_{refusal.scope}"
            metrics.visitor_refused(reason)
            self.journal.refused("console.sign_in", "unknown", source=origin, origin="console", reason=reason)
            raise SignInLimited(refusal.retry_after)
        now, token_hash = self._now(), digest(token or "")
        with self.store.db.transaction():
            user_id = self.store.console_links.use(token_hash, now) if token else None
            agencies = self.supervises(user_id) if user_id else ()
            if not user_id or not agencies:
                reason, who = self.store.console_links.why_not(token_hash) if token else ("missing", None)
                if user_id:
                    reason = "no longer a supervisor"
                self.journal.refused("console.sign_in", who or user_id or "unknown", "failed", source=origin,
                                     origin="console", reason=reason)
                return None
            session_id = secrets.token_urlsafe(32)
            self.store.console_sessions.add(digest(session_id), user_id, now)
            self.journal.audit("console.sign_in", user_id, origin=origin)
        return session_id, Supervisor(user_id, agencies)

    def session(self, session_id: str | None) -> Supervisor | None:
        """Who holds this session, if it is still open; each use restarts its idle time."""
        if not session_id:
            return None
        user_id = self.store.console_sessions.touch(digest(session_id), self._now(), self.idle_ms)
        if user_id is None:
            return None
        agencies = self.supervises(user_id)
        return Supervisor(user_id, agencies) if agencies else None

    def sign_out(self, session_id: str, who: Supervisor, origin: str | None) -> None:
        with self.store.db.transaction():
            if self.store.console_sessions.end(digest(session_id), self._now()):
                self.journal.audit("console.sign_out", who.user_id, origin=origin)

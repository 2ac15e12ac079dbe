"""Deliver webhook rows: in order per chat and URL, signed, retried with exponential back-off, for a day.

It runs as its own task with a bounded request time, so a slow or dead receiver never holds up a
chat; the rows wait in the store across restarts.  Any answer other than 2xx is retried (a
receiver with the wrong secret recovers once fixed); after ``MAX_AGE`` a delivery is given up,
logged and audited.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Awaitable, Callable, ContextManager

import aiohttp

from ..background import WakeableLoop
from ..journal import Journal
from ..config import Webhook
from ..store.webhooks import Delivery, WebhookOutbox
from . import signing

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 600.0
MAX_AGE_SECONDS = 24 * 3600
REQUEST_SECONDS = 10.0


def retry_delay(attempts: int) -> float:
    """Seconds before the next try, after ``attempts`` failed ones (1, 2, 4 … 600)."""
    return min(FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1), MAX_RETRY_SECONDS)


class WebhookSender(WakeableLoop):
    def __init__(self, outbox: WebhookOutbox, webhooks: list[Webhook], journal: Journal,
                 transaction: Callable[[], ContextManager], durable: Callable[[], Awaitable[None]],
                 clock: Callable[[], float] = time.time) -> None:
        self.outbox, self.journal, self.transaction, self.clock = outbox, journal, transaction, clock
        self.durable = durable              # an agency hears of a change only once it is on disk (store/db.py)
        self.secrets = {(w.agency, w.url): w.secret for w in webhooks}
        self._session: aiohttp.ClientSession | None = None
        super().__init__()

    async def stop(self) -> None:
        await super().stop()
        if self._session:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            try:
                wait = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery pass failed; retrying")
                wait = 5.0
            await self._sleep(wait)

    async def deliver_due(self) -> float:
        """Try each chat's oldest pending delivery (per URL) that is due; returns seconds until the next is due."""
        now_ms = int(self.clock() * 1000)
        due = [d for d in self.outbox.heads() if d.next_ts <= now_ms]
        await asyncio.gather(*(self._deliver(d) for d in due))
        heads = self.outbox.heads()
        if not heads:
            return 60.0
        return max(0.0, (min(d.next_ts for d in heads) - int(self.clock() * 1000)) / 1000)

    async def _deliver(self, d: Delivery) -> None:
        secret = self.secrets.get((d.agency, d.url))
        if secret is None:
            self._give_up(d, "no longer configured")
            return
        body = json.dumps(d.payload, sort_keys=True, separators=(",", ":")).encode()
        ts = int(self.clock())
        headers = {"Content-Type": "application/json", "User-Agent": "Precinct-webhooks",
                   signing.SIGNATURE_HEADER: signing.sign(secret, ts, body), signing.TIMESTAMP_HEADER: str(ts),
                   signing.DELIVERY_HEADER: d.delivery_id, signing.EVENT_HEADER: d.event}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_SECONDS))
        await self.durable()
        try:
            async with self._session.post(d.url, data=body, headers=headers, allow_redirects=False) as r:
                if 200 <= r.status < 300:
                    self.outbox.delivered(d.id)
                    return
                error = f"HTTP {r.status}"
        except asyncio.CancelledError:
            raise
        except Exception as e:               # refused, reset, timed out, bad URL …
            error = f"{type(e).__name__}: {e}"
        if self.clock() - d.created_ts / 1000 > MAX_AGE_SECONDS:
            self._give_up(d, error)
        else:
            delay = retry_delay(d.attempts + 1)
            log.info("webhook %s to %s failed (%s); retrying in %.0fs", d.delivery_id, d.url, error, delay)
            self.outbox.retry_later(d.id, int((self.clock() + delay) * 1000), error)

    def _give_up(self, d: Delivery, error: str) -> None:
        log.warning("webhook %s (%s) to %s given up: %s", d.delivery_id, d.event, d.url, error)
        with self.transaction():
            self.outbox.give_up(d.id, error)
            self.journal.audit("webhook.given_up", "bridge", "failed", target=d.delivery_id, origin=d.url,
                               agency=d.agency, event=d.event, error=error)

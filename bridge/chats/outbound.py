"""Citizen → Matrix: send the outbox, one chat at a time in order, until each item is confirmed.

An item's txn_id was stored with it; a send repeated after a crash or a
timeout reuses it, and the homeserver answers with the original event rather
than creating a second one.
"""
from __future__ import annotations

import asyncio
import logging

from .. import metrics
from ..background import Retries, WakeableLoop
from ..matrix.crypto import Crypto
from ..matrix.mentions import ensure_mentions
from ..store import Store
from ..store.chats import CLOSED

log = logging.getLogger(__name__)


class OutboundPump(WakeableLoop):
    def __init__(self, store: Store, crypto: Crypto, retries: Retries | None = None) -> None:
        """``retries``: the pauses after a failed send, cut short when the homeserver answers again (app.py)."""
        super().__init__()
        self.store, self.crypto = store, crypto
        self.retries = retries or Retries()
        self._senders: dict[str, asyncio.Task] = {}

    async def stop(self) -> None:
        await super().stop()                          # the loop first: it starts no sender after this
        senders = list(self._senders.values())
        for t in senders:
            t.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._sleep(5.0)
            for chat_id in [c for c, task in self._senders.items() if task.done()]:
                ended = self._senders.pop(chat_id)     # one entry per chat sending now, not per chat ever served
                if not ended.cancelled() and ended.exception() is not None:
                    # The store refused a write (its disk full, say): the rows are as they were, so the
                    # chat's sender is started again below and sends the same rows with the same txn IDs.
                    log.warning("sending chat %s stopped (%s); started again", chat_id, ended.exception())
            for chat_id in self.store.outbox.chats_pending():
                sender = self._senders.get(chat_id)
                if sender is None or sender.done():
                    self._senders[chat_id] = asyncio.create_task(self._send_chat(chat_id))

    async def _send_chat(self, chat_id: str) -> None:
        delay = 0.5
        while (item := self.store.outbox.next_for(chat_id)) is not None:
            chat = self.store.chats.get(chat_id)
            if chat is None or not chat.room_id or not chat.puppet:
                return                                # room not ready; setup wakes us when it is
            try:
                content = ensure_mentions(item.content) if item.event_type == "m.room.message" else item.content
                event_id = await self.crypto.send(chat.puppet, chat.room_id, item.event_type, content, item.txn_id)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("chat %s: send %s failed (retrying in %.1fs): %s", chat.number, item.txn_id, delay, e)
                self.store.outbox.mark_attempt_failed(item.id, str(e))
                await self.retries.pause(delay)
                delay = min(delay * 2, 30)
                continue
            delay = 0.5
            with self.store.db.transaction():
                self.store.outbox.mark_sent(item.id, event_id)
                if item.message_seq is not None:
                    self.store.messages.set_event_id(chat_id, item.message_seq, event_id)
            if item.message_seq is not None:
                metrics.message_bridged(metrics.TO_MATRIX)
        chat = self.store.chats.get(chat_id)
        if chat and chat.state == CLOSED and chat.puppet:
            # Nothing left to send for a finished chat: its device's inbox emptied and its memory freed (reloaded if
            # ever needed).
            await self.crypto.chat_over(chat.puppet)

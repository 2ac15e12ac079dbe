"""What an officer's command typed in a chat room does. Replies are notices only officers see."""
from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from ..journal import Journal
from ..chats.lifecycle import ChatService, new_txn_id
from ..records.retention import Retention
from ..store.chats import CLOSED, Chat
from ..store.messages import OFFICER
from . import commands
from .commands import Command, CommandError
from .transfer import Transfers

if TYPE_CHECKING:
    from .routing import Routing

log = logging.getLogger(__name__)

TAG = re.compile(r"[\w-]{1,32}")


def _clock(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "—"


class ChatRoomCommands:
    def __init__(self, chats: ChatService, journal: Journal, prefix: str, *,
                 retention: Retention | None = None, transfers: Transfers | None = None,
                 routing: Routing | None = None) -> None:
        self.chats, self.journal, self.prefix = chats, journal, prefix
        self.retention, self.transfers = retention, transfers
        self.specs = commands.CHAT_ROOM
        self.routing = routing
        # One table from each command's name to what it does, checked against the specs here, not found by
        # name at the moment an officer types it.
        self._handlers: dict[str, Callable[[Chat, str, str, Command], Awaitable[None]]] = {
            "help": self._help, "close": self._close, "note": self._note, "canned": self._canned,
            "info": self._info, "priority": self._priority, "tag": self._tag, "emergency": self._emergency,
            "transfer": self._transfer, "hold": self._hold, "unhold": self._unhold, "block": self._block,
            "unblock": self._unblock}
        if set(self._handlers) != {spec.name for spec in self.specs}:
            raise ValueError("chat-room commands and their handlers differ: "
                             f"{sorted(set(self._handlers) ^ {spec.name for spec in self.specs})}")

    def is_command(self, text: str) -> bool:
        return commands.is_command(text, self.prefix)

    async def handle(self, chat: Chat, sender: str, name: str, text: str) -> None:
        parsed = commands.parse(text, self.prefix, self.specs)
        if parsed is None:
            return
        if not self.chats.listener.may_act(chat, sender):
            word = parsed.name if isinstance(parsed, Command) else "?"
            self.journal.audit(f"chat.{word}", sender, "refused", target=chat.id, origin=chat.room_id,
                               reason="not an officer of " + chat.agency)
            self.chats.notify_officers(chat, f"{sender} is not an officer of this chat's agency; command refused.")
            return
        if isinstance(parsed, CommandError):
            self.chats.notify_officers(chat, parsed.message)
            return
        await self._handlers[parsed.name](chat, sender, name, parsed)

    async def _help(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        self.chats.notify_officers(chat, "Commands (never shown to the citizen):\n"
                                   + commands.help_text(self.prefix, self.specs))

    async def _close(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        if chat.state == CLOSED:
            self.chats.notify_officers(chat, f"Chat {chat.number} is already closed.")
            return
        with self.chats.store.db.transaction():
            self.chats.close(chat, OFFICER, officer_name=name)
            reason = f" Reason: {cmd.arg}" if cmd.arg else ""
            self.chats.notify_officers(chat, f"{name} closed chat {chat.number}.{reason}")
            self.journal.chat_event(chat.id, "closed", sender, by="officer", reason=cmd.arg or None)
            self.journal.audit("chat.close", sender, target=chat.id, origin=chat.room_id, reason=cmd.arg or None)

    async def _note(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        with self.chats.store.db.transaction():
            self.journal.chat_event(chat.id, "note", sender, text=cmd.arg, internal=True)
            self.journal.audit("chat.note", sender, target=chat.id, origin=chat.room_id)
            self.chats.notify_officers(chat, f"Internal note by {sender} kept in the record (not sent to the citizen).")

    async def _canned(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        canned = self.chats.config.agency(chat.agency).canned
        if not cmd.arg:
            listing = "\n".join(f"{key}: {text}" for key, text in canned.items()) or "(none configured)"
            self.chats.notify_officers(chat, f"Canned answers ({self.prefix}canned <key> sends one):\n{listing}")
            return
        if cmd.arg not in canned:
            self.chats.notify_officers(chat, f"No canned answer {cmd.arg!r}. Valid keys: "
                                             f"{', '.join(canned) or '(none configured)'}.")
            return
        if chat.state == CLOSED:
            self.chats.notify_officers(chat, f"Chat {chat.number} is closed; nothing was sent.")
            return
        # Sent by the bridge in the officer's name: the citizen sees it as the officer's message.
        with self.chats.store.db.transaction():
            self.chats.officer_message(chat, "text", canned[cmd.arg], sender, name, f"canned.{new_txn_id()}", None)
            self.journal.audit("chat.canned", sender, target=chat.id, origin=chat.room_id, key=cmd.arg)
            self.chats.notify_officers(chat, f"Sent to the citizen as {name}: {canned[cmd.arg]}")

    async def _info(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        chat = self.chats.store.chats.refresh(chat)
        topic = self.chats.config.topic(chat.topic)
        lines = [f"Chat {chat.number} · {topic.label} · agency {chat.agency} · state {chat.state}",
                 f"Language: {chat.language or 'not given'}; citizen's name: {chat.display_name or 'not given'}",
                 f"Opened {_clock(chat.created_ts)}; claimed {_clock(chat.claimed_ts)}; "
                 f"first officer {_clock(chat.answered_ts)}; closed {_clock(chat.closed_ts)}",
                 f"Handled by: {chat.claimed_by or chat.officer or 'nobody yet'}",
                 f"Priority: {'high' if chat.priority else 'normal'}{'; EMERGENCY' if chat.emergency else ''}; "
                 f"tags: {', '.join(chat.label_list) or 'none'}"]
        self.chats.notify_officers(chat, "\n".join(lines))

    async def _priority(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        assert self.routing
        self.routing.set_priority(chat, cmd.arg == "high", sender)
        self.chats.notify_officers(chat, f"Chat {chat.number} priority is now {cmd.arg} (set by {sender}).")

    async def _tag(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        assert self.routing
        label = cmd.arg.lower()
        if not TAG.fullmatch(label):
            self.chats.notify_officers(chat, f"{self.prefix}tag: {cmd.arg!r} is not a label; use one word of "
                                             "letters, digits, - or _ (at most 32). Usage: "
                                             f"{self.prefix}tag <label>")
            return
        tags = self.chats.store.chats.refresh(chat).label_list
        if label not in tags:
            with self.chats.store.db.transaction():
                self.routing.set_tags(chat, tags + [label])
                self.journal.chat_event(chat.id, "tag", sender, tag=label)
                self.journal.audit("chat.tag", sender, target=chat.id, origin=chat.room_id, tag=label)
        self.chats.notify_officers(chat, f"Chat {chat.number} tags: {', '.join(tags + [label] if label not in tags else tags)}.")

    async def _emergency(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        assert self.routing
        fresh = self.chats.store.chats.refresh(chat)
        if fresh.emergency:
            self.chats.notify_officers(chat, f"Chat {chat.number} is already marked an emergency.")
            return
        self.routing.raise_emergency(fresh, sender, by="officer")

    async def _transfer(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        assert self.transfers is not None
        await self.transfers.transfer(chat, sender, name, cmd.first, cmd.rest)

    def _supervisor(self, chat: Chat, sender: str, action: str, cmd: Command) -> bool:
        """Whether the sender supervises the chat's agency; a refusal is told and audited."""
        agency = self.chats.config.agency(chat.agency)
        if sender in agency.supervisors and self.retention is not None:
            return True
        self.chats.notify_officers(chat, f"Only a supervisor of {agency.name} can use {self.prefix}{cmd.name}.")
        self.journal.audit(action, sender, "refused", target=chat.id, origin=chat.room_id, reason="not a supervisor")
        return False

    async def _hold(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        if not self._supervisor(chat, sender, "legal_hold.set", cmd):
            return
        assert self.retention is not None
        with self.chats.store.db.transaction():
            placed = self.retention.hold(chat, cmd.arg or None, sender, chat.room_id or "")
            self.chats.notify_officers(chat, f"{name} placed chat {chat.number} under legal hold: it will not be "
                                       "purged or erased until the hold is lifted." if placed
                                       else f"Chat {chat.number} is already under legal hold.")

    async def _unhold(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        if not self._supervisor(chat, sender, "legal_hold.lifted", cmd):
            return
        assert self.retention is not None
        with self.chats.store.db.transaction():
            lifted = self.retention.lift(chat, sender, chat.room_id or "")
            self.chats.notify_officers(chat, f"{name} lifted the legal hold on chat {chat.number}." if lifted
                                       else f"Chat {chat.number} is not under legal hold.")

    async def _block(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        """End the chat and refuse new chats from its source for ``chats.block_hours`` (see store/sources.py)."""
        hours = self.chats.config.get("chats.block_hours")
        reason = cmd.arg or None
        with self.chats.store.db.transaction():
            block = self.chats.store.sources.block(chat.id, sender, reason, hours * 3600)
            if block is not None:
                self.journal.chat_event(chat.id, "blocked", sender, reason=reason, hours=hours, internal=True)
            self.journal.audit("chat.block", sender, "ok" if block else "failed", target=chat.id, origin=chat.room_id,
                               reason=reason if block else "source no longer known", hours=hours)
            fresh = self.chats.store.chats.refresh(chat)
            if fresh.state != CLOSED:
                self.chats.close(fresh, OFFICER, officer_name=name)
                self.journal.chat_event(chat.id, "closed", sender, by="officer", reason=reason)
            if block is None:
                self.chats.notify_officers(chat, f"Chat {chat.number} is closed, but its source can no longer be "
                                           "blocked (it is kept only for a day or two, and never as an address).")
            else:
                self.chats.notify_officers(chat, f"{name} blocked chat {chat.number}'s source until "
                                           f"{_clock(block.until_ts)}: new chats from it are refused. "
                                           f"{self.prefix}unblock in this room lifts it.")

    async def _unblock(self, chat: Chat, sender: str, name: str, cmd: Command) -> None:
        with self.chats.store.db.transaction():
            lifted = self.chats.store.sources.unblock(chat.id)
            if lifted:
                self.journal.chat_event(chat.id, "unblocked", sender, internal=True)
            self.journal.audit("chat.unblock", sender, "ok" if lifted else "failed", target=chat.id,
                               origin=chat.room_id, **({} if lifted else {"reason": "not blocked"}))
            self.chats.notify_officers(chat, f"{name} lifted the block on chat {chat.number}'s source." if lifted
                                       else f"Chat {chat.number}'s source is not blocked.")

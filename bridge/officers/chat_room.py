"""What an officer's command typed in a chat room does. Replies are notices only officers see."""
from __future__ import annotations

import logging

from ..chats.journal import Journal
from ..chats.lifecycle import ChatService
from ..records.retention import Retention
from ..store.chats import CLOSED, Chat
from ..store.messages import OFFICER
from . import commands
from .commands import Command, CommandError
from .transfer import Transfers

log = logging.getLogger(__name__)


class ChatRoomCommands:
    def __init__(self, chats: ChatService, journal: Journal, prefix: str, *,
                 retention: Retention | None = None, transfers: Transfers | None = None) -> None:
        self.chats, self.journal, self.prefix = chats, journal, prefix
        self.retention, self.transfers = retention, transfers
        self.specs = commands.CHAT_ROOM

    def is_command(self, text: str) -> bool:
        return commands.is_command(text, self.prefix)

    async def handle(self, chat: Chat, sender: str, name: str, text: str) -> None:
        parsed = commands.parse(text, self.prefix, self.specs)
        if isinstance(parsed, CommandError):
            self.chats.notify_officers(chat, parsed.message)
            return
        if parsed is None:
            return
        handler = getattr(self, "_" + parsed.name)
        await handler(chat, sender, name, parsed)

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

"""What an officer's command typed in a chat room does. Replies are notices only officers see."""
from __future__ import annotations

import logging

from ..chats.journal import Journal
from ..chats.lifecycle import ChatService
from ..store.chats import CLOSED, Chat
from ..store.messages import OFFICER
from . import commands
from .commands import Command, CommandError
from .transfer import Transfers

log = logging.getLogger(__name__)


class ChatRoomCommands:
    def __init__(self, chats: ChatService, journal: Journal, prefix: str, transfers: Transfers) -> None:
        self.chats, self.journal, self.prefix, self.transfers = chats, journal, prefix, transfers
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
        await self.transfers.transfer(chat, sender, name, cmd.first, cmd.rest)

"""Who is let into a chat room, and what an officer taking over a transferred chat is given.

Anyone invited to or joining a chat room who may not take part (officers/access.py) is removed at
once, the officers are told, and the refusal is audited. The bridge's crypto never shows such a
member to nio, so no room key is ever shared with their devices.

An officer who joins after a ``!transfer`` cannot decrypt what was said before they joined (their
devices were not there when the keys were shared), so the puppet posts the conversation so far as a
notice only officers see; with ``routing.transfer_first_officer: leave`` the previous agency's
officers are then removed from the room.
"""
from __future__ import annotations

import logging

from ..chats.conversation import conversation_lines
from ..journal import Journal
from ..chats.lifecycle import ChatService
from ..config import Config
from ..matrix import rooms
from ..matrix.homeserver import HomeserverApi
from ..store.chats import Chat
from .access import Access

log = logging.getLogger(__name__)

NOTICE_CHARS = 30_000          # well under Matrix's 64 KiB event limit once encrypted


class Admission:
    def __init__(self, config: Config, chats: ChatService, access: Access, journal: Journal,
                 api: HomeserverApi) -> None:
        self.config, self.chats, self.access, self.journal, self.api = config, chats, access, journal, api
        self.first_officer = config.get("routing.transfer_first_officer")

    def allowed(self, user_id: str) -> bool:
        return self.access.may_take_part(user_id)

    def admitted(self, chat: Chat, user_id: str) -> bool:
        """May this user be in this chat now, and be heard by its citizen? Asked of every membership and
        every message: an officer let in before a transfer, or one who slipped in before a refusal took
        effect, is not heard once the chat is no longer theirs."""
        return self.allowed(user_id) and self.chats.listener.may_act(chat, user_id)

    def refuse_message(self, chat: Chat, user_id: str, event_id: str, what: str, body: str | None) -> None:
        """A message from someone not admitted: kept in the record as refused (never shown to the citizen),
        audited, and the officers told. Call inside the transaction that marks the event done."""
        reason = (self.access.refusal(user_id) if not self.allowed(user_id)
                  else f"{user_id} is not an officer of {self.config.agency(chat.agency).name}, whose chat it is")
        self.journal.chat_event(chat.id, "message.refused", user_id, event_id=event_id, format=what, body=body,
                                reason=reason)
        self.journal.audit("chat.message_refused", user_id, "refused", target=chat.id, origin=chat.room_id,
                           event_id=event_id, reason=reason)
        self.chats.notify_officers(chat, f"⚠ A message from {user_id} was not shown to the citizen: {reason}.")

    async def refuse(self, chat: Chat, user_id: str, membership: str, by: str) -> None:
        """Remove someone who may not take part (withdraw the invite, or kick), tell the officers, audit it."""
        reason = (self.access.refusal(user_id) if not self.allowed(user_id)
                  else f"{user_id} is not an officer of {self.config.agency(chat.agency).name}, whose chat it is")
        with self.chats.store.db.transaction():
            self.journal.audit("chat.member_refused", by, "refused", target=chat.id, origin=chat.room_id,
                               user=user_id, membership=membership, reason=reason)
            self.chats.notify_officers(chat, f"⚠ {user_id} was removed from chat {chat.number}: {reason}. "
                                             "Only configured officers of allowed servers may take part.")
        try:
            await rooms.kick(self.api, chat.puppet, chat.room_id, user_id,  # type: ignore[arg-type]
                             "Not an officer of an agency allowed in this chat")
        except Exception as e:
            log.error("chat %s: could not remove %s: %s", chat.number, user_id, e)

    async def joined(self, chat: Chat, user_id: str) -> None:
        """An allowed officer joined: if they are taking over a transfer, hand the chat over."""
        if not chat.transfer_to or user_id == chat.transferred_by:
            return
        self._post_conversation(chat, user_id)
        if self.first_officer == "leave":
            await self._remove_previous(chat, user_id)

    def _post_conversation(self, chat: Chat, user_id: str) -> None:
        lines = conversation_lines(self.chats.store.messages.since(chat.id, 0, limit=100_000),
                                   visitor_label=chat.display_name or "Citizen")
        note = f" Note: {chat.transfer_note}" if chat.transfer_note else ""
        head = (f"Chat {chat.number} so far, for {user_id}: transferred by {chat.transferred_by}.{note} "
                "(Only officers see this.)")
        with self.chats.store.db.transaction():
            for part in _chunks([head, *lines], NOTICE_CHARS):
                self.chats.notify_officers(chat, part)

    async def _remove_previous(self, chat: Chat, newcomer: str) -> None:
        """Remove everyone (joined or invited) who is neither the transfer's target nor of the agency that has it."""
        agency = self.config.agency(chat.agency)

        def stays(user: str) -> bool:
            return (user in (newcomer, chat.transfer_to) or self.access.is_ours(user)
                    or user in agency.officers or user in agency.supervisors)
        members = await rooms.members(self.api, chat.puppet, chat.room_id)  # type: ignore[arg-type]
        for user, member in members.items():
            if member.get("membership") in ("join", "invite") and not stays(user):
                try:
                    await rooms.kick(self.api, chat.puppet, chat.room_id, user,  # type: ignore[arg-type]
                                     f"Chat {chat.number} was transferred")
                except Exception as e:
                    log.warning("chat %s: %s not removed after the transfer: %s", chat.number, user, e)


def _chunks(lines: list[str], limit: int) -> list[str]:
    """Join lines into texts of at most ``limit`` characters (a longer line is cut)."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = line[:limit]
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out

"""``!transfer <agency or @officer> [note]``: hand a chat to another agency or officer, on any allowed server.

The chat goes back to waiting for the new agency, the citizen is told "You are being transferred to
<agency>", and the new officers are invited into the same encrypted room (federated when they are
on another homeserver). What they get when they join is admission.py's concern.
"""
from __future__ import annotations

import logging

from ..journal import Journal
from ..chats.lifecycle import ChatService
from ..config import Agency, Config
from ..matrix import rooms
from ..matrix.homeserver import HomeserverApi
from ..store.chats import CLOSED, Chat
from .access import Access
from .admission import Admission

log = logging.getLogger(__name__)


class Transfers:
    def __init__(self, config: Config, chats: ChatService, access: Access, journal: Journal,
                 api: HomeserverApi, admission: Admission) -> None:
        self.config, self.chats, self.access, self.journal, self.api = config, chats, access, journal, api
        self.admission = admission

    def resolve(self, target: str) -> tuple[Agency, str | None] | str:
        """(agency, officer or None) for an agency id/name or an officer's user ID; or why it is not valid."""
        if target.startswith("@"):
            if not self.access.may_take_part(target) or self.access.is_ours(target):
                return f"cannot transfer to {target}: {self.access.refusal(target)}."
            agency = self.access.agency_of(target)
            assert agency is not None
            return agency, target
        wanted = target.lower()
        for agency in self.config.agencies:
            if wanted in (agency.id, agency.name.lower()):
                return agency, None
        valid = ", ".join(a.id for a in self.config.agencies)
        return f"unknown agency {target!r}. Transfer to one of: {valid}, or to an officer's @user:server."

    async def transfer(self, chat: Chat, sender: str, name: str, target: str, note: str) -> None:
        if chat.state == CLOSED:
            self.chats.notify_officers(chat, f"Chat {chat.number} is closed; it cannot be transferred.")
            return
        resolved = self.resolve(target)
        if target == sender:
            resolved = "you cannot transfer a chat to yourself."
        if isinstance(resolved, str):
            with self.chats.store.db.transaction():
                self.journal.audit("chat.transfer", sender, "refused", target=chat.id, origin=chat.room_id,
                                   to=target, reason=resolved)
                self.chats.notify_officers(chat, f"Transfer refused: {resolved}")
            return
        agency, officer = resolved
        to = officer or agency.id
        with self.chats.store.db.transaction():
            self.chats.transfer(chat, agency.id, agency.name, to, sender, note or None)
            # ``chat`` is the row from before the change: chat.agency is the agency it leaves
            self.journal.chat_event(chat.id, "transferred", sender, to=to, from_agency=chat.agency,
                                    to_agency=agency.id, note=note or None)
            self.journal.audit("chat.transfer", sender, target=chat.id, origin=chat.room_id, to=to,
                               from_agency=chat.agency, to_agency=agency.id)
            self.chats.notify_officers(chat, f"{name} transferred chat {chat.number} to {officer or agency.name}"
                                             + (f". Note: {note}" if note else "."))
        # To an agency: queued in its dispatch room; whoever claims it there is invited (routing).
        invitees = [officer] if officer else []
        try:
            await rooms.ensure_server_acl(self.api, chat.puppet, chat.room_id,  # type: ignore[arg-type]
                                          self.access.server_acl())
            members = await rooms.members(self.api, chat.puppet, chat.room_id)  # type: ignore[arg-type]
            for user in invitees:
                if members.get(user, {}).get("membership") != "join":
                    await rooms.invite(self.api, chat.puppet, chat.room_id, user)  # type: ignore[arg-type]
            if officer and members.get(officer, {}).get("membership") == "join":
                # Already in the room: no join will come, so they take it over now.
                name_now = members[officer].get("displayname") or officer
                taken = self.chats.store.chats.refresh(chat)
                await self.chats.officer_joined(taken, officer, name_now)
                await self.admission.joined(self.chats.store.chats.get(chat.id) or taken, officer)
        except Exception as e:
            log.error("chat %s: transfer invitations failed: %s", chat.number, e)
            self.chats.notify_officers(chat, f"⚠ Chat {chat.number} could not be handed over on Matrix ({e}). "
                                             "Please try the transfer again.")

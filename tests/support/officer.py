"""An officer as a real encrypted matrix-nio client with its own sync loop."""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nio

from bridge.officers.bot_rooms import UNDECRYPTABLE_REPLY

from .waiting import until


@dataclass
class Received:
    room_id: str
    event_id: str
    sender: str
    body: str
    sender_key: str | None
    device_id: str | None
    source: dict[str, Any] = field(default_factory=dict)


WHOLE_BURSTS = {"room": {"timeline": {"limit": 500}}}
NEW_CHAT_NOTICE = re.compile(r"Claim with !claim (\d+)")


class NioOfficer:
    def __init__(self, homeserver: str, user_id: str, password: str, store_dir: Path) -> None:
        store_dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.client = nio.AsyncClient(homeserver, user_id, store_path=str(store_dir),
                                      config=nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True))
        self.messages: list[Received] = []
        self.media: list[tuple[str, nio.RoomEncryptedMedia]] = []      # (room_id, event)
        self.undecryptable: list[nio.MegolmEvent] = []
        self.joined: set[str] = set()
        self._task: asyncio.Task | None = None
        self._joining: list[asyncio.Task] = []
        self.auto_join: Callable[[str], bool] = lambda room_id: True
        # Claim each chat whose (new, not edited) dispatch notice this officer reads, like an eager
        # officer in Element; tests about claiming set it to ``lambda number: False``.
        self.auto_claim: Callable[[int], bool] = lambda number: False
        self.claims: list[asyncio.Task] = []
        # What this officer sent (event ID → room, type, content, the first sending's event ID) and how often
        # the bridge asked for each message again (see _on_text).
        self._sent: dict[str, tuple[str, str, dict[str, Any], str]] = {}
        self._resent: dict[str, int] = {}

    async def sign_in(self) -> None:
        """Log in only: from now on the homeserver has the device, without its keys (``start`` uploads them)."""
        resp = await self.client.login(self.password, device_name="test officer")
        assert isinstance(resp, nio.LoginResponse), resp

    async def start(self) -> None:
        if not self.client.logged_in:
            await self.sign_in()
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        self.client.add_event_callback(self._on_invite, nio.InviteMemberEvent)
        self.client.add_event_callback(self._on_text, nio.RoomMessageText)
        self.client.add_event_callback(self._on_text, nio.RoomMessageNotice)
        self.client.add_event_callback(self._on_media, nio.RoomEncryptedMedia)
        self.client.add_event_callback(self._on_undecryptable, nio.MegolmEvent)
        self.client.add_response_callback(self._retry_undecryptable, nio.SyncResponse)
        await self.client.sync(timeout=0, full_state=True)
        self._task = asyncio.create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        """Element-like: a key query that lost a race with room_send's own is not a reason to stop syncing.
        Element fills a gap in a room's timeline (a "limited" sync after a burst, e.g. a backlog sent at once
        after the homeserver was away) by paging back; nio does not, so each sync asks for enough of a room's
        timeline that there is no gap (Synapse's default is 10 events: the rest of a burst was never seen)."""
        while True:
            try:
                await self.client.sync_forever(timeout=1000, full_state=False, sync_filter=WHOLE_BURSTS)
            except nio.LocalProtocolError:
                continue

    async def _on_invite(self, room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite" and self.auto_join(room.room_id):
            self._joining.append(asyncio.create_task(self._join(room.room_id)))

    async def _join(self, room_id: str, attempts: int = 40) -> None:
        """Join, trying again for a while: a remote invite reaches us before the inviting homeserver has
        stored it, so an instant join over federation can be told "not invited" (Synapse 1.163)."""
        for _ in range(attempts):
            resp = await self.client.join(room_id)
            if isinstance(resp, nio.JoinResponse):
                self.joined.add(room_id)
                return
            await asyncio.sleep(0.5)

    async def _on_text(self, room: nio.MatrixRoom, event: Any) -> None:
        if event.sender == self.client.user_id:
            return
        self.messages.append(Received(room.room_id, event.event_id, event.sender, event.body,
                                      getattr(event, "sender_key", None), getattr(event, "device_id", None),
                                      event.source))
        answered = ((event.source.get("content") or {}).get("m.relates_to") or {}).get("m.in_reply_to") or {}
        if event.body == UNDECRYPTABLE_REPLY.format(sender=self.client.user_id) \
                and answered.get("event_id") in self._sent:
            # What an officer does when the bot asks (its notice is a reply to the message that failed): discard
            # the room key (Element's /discardsession) and send that message again under a new one (the
            # homeserver's to-device push can skip the room key of a message to the appservice's bot, which
            # cannot fetch its inbox; bench/README.md).
            room_id, event_type, content, first = self._sent[answered["event_id"]]
            if self._resent.get(first, 0) < 2:
                self._resent[first] = self._resent.get(first, 0) + 1
                self.client.invalidate_outbound_session(room_id)
                self.claims.append(asyncio.create_task(self._send(room_id, event_type, content, first)))
        found = NEW_CHAT_NOTICE.search(event.body)
        content = event.source.get("content", {})
        if found and "m.new_content" not in content and self.auto_claim(int(found[1])):
            self.claims.append(asyncio.create_task(self.send(room.room_id, f"!claim {found[1]}")))

    async def claim(self, dispatch_room: str, number: int) -> str:
        """Claim a chat from the dispatch room (waits until this officer is in that room)."""
        await self.wait_member(dispatch_room, 60)
        return await self.send(dispatch_room, f"!claim {number}")

    async def wait_member(self, room_id: str, timeout: float = 60) -> None:
        """Joined, and the room is in the client's state (right after a join nio may not list it yet)."""
        def member() -> bool:
            room = self.client.rooms.get(room_id)
            user = self.client.user_id
            return room is not None and user in room.users and user not in room.invited_users
        await until(member, timeout, f"membership of {room_id}")

    async def notice(self, dispatch_room: str, number: int, *, edited: bool | None = False,
                     predicate: Callable[[str], bool] = lambda body: True, timeout: float = 60) -> Received:
        """The bot's notice about chat ``number`` in the dispatch room (an edit of it; None: either)."""
        def matches(m: Received) -> bool:
            is_edit = "m.new_content" in m.source.get("content", {})
            body = m.source["content"]["m.new_content"]["body"] if is_edit else m.body
            return (m.room_id == dispatch_room and edited in (None, is_edit) and f"Chat {number} ·" in body
                    and predicate(body))
        return await self.wait_message(matches, timeout, f"dispatch notice of chat {number}")

    async def _on_media(self, room: nio.MatrixRoom, event: nio.RoomEncryptedMedia) -> None:
        self.media.append((room.room_id, event))

    async def download_decrypted(self, event: nio.RoomEncryptedMedia) -> bytes:
        """Fetch an encrypted attachment from the homeserver and decrypt it, as Element would."""
        from nio.crypto.attachments import decrypt_attachment
        resp = await self.client.download(event.url)
        assert isinstance(resp, nio.DownloadResponse), resp
        return decrypt_attachment(resp.body, event.key["k"], event.hashes["sha256"], event.iv)

    async def send_encrypted_file(self, room_id: str, data: bytes, name: str, mimetype: str) -> str:
        from nio.crypto.attachments import encrypt_attachment
        ciphertext, info = encrypt_attachment(data)
        resp, _ = await self.client.upload(lambda *a: ciphertext, content_type="application/octet-stream",
                                           filesize=len(ciphertext))
        assert isinstance(resp, nio.UploadResponse), resp
        return await self._send(room_id, "m.room.message", {
            "msgtype": "m.file", "body": name, "filename": name, "info": {"mimetype": mimetype, "size": len(data)},
            "file": {"url": resp.content_uri, **info}})

    async def _on_undecryptable(self, room: nio.MatrixRoom, event: nio.MegolmEvent) -> None:
        self.undecryptable.append(event)

    async def _retry_undecryptable(self, response: nio.SyncResponse) -> None:
        """Like Element: when keys arrive later, decrypt what could not be decrypted before."""
        for event in list(self.undecryptable):
            try:
                decrypted = self.client.decrypt_event(event)
            except nio.EncryptionError:
                continue
            self.undecryptable.remove(event)
            room = self.client.rooms.get(event.room_id)
            if room is None:
                continue
            if isinstance(decrypted, (nio.RoomMessageText, nio.RoomMessageNotice)):
                await self._on_text(room, decrypted)
            elif isinstance(decrypted, nio.RoomEncryptedMedia):      # a file sent before this officer joined
                await self._on_media(room, decrypted)

    async def wait_message(self, predicate: Callable[[Received], bool], timeout: float = 30,
                           what: str = "an officer-side message") -> Received:
        def find() -> Received | None:
            return next((m for m in self.messages if predicate(m)), None)
        try:
            return await until(find, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.state_report()}") from None

    def state_report(self) -> str:
        """What this officer's client holds, for a failure message: rooms joined, what it could not decrypt
        (room, sender, session), what it was invited to and never joined. A missing message is then
        attributable (a room key that never came, or a chat never claimed)."""
        rooms = self.client.rooms
        lines = [f"officer {self.client.user_id} device {self.client.device_id}: "
                 f"{len(self.messages)} messages, joined {sorted(self.joined)}"]
        for event in self.undecryptable:
            lines.append(f"  undecryptable in {event.room_id} from {event.sender} {getattr(event, 'device_id', '?')}"
                         f" session {event.session_id}")
        invited = [r for r, room in rooms.items() if self.client.user_id in room.invited_users]
        if invited:
            lines.append(f"  invited, not joined: {invited}")
        notices = [m.body[:80] for m in self.messages if NEW_CHAT_NOTICE.search(m.body)]
        lines.append(f"  new-chat notices read: {notices[-5:]}")
        # Claims and resends run as tasks: one that raised would otherwise fail without a word.
        failed = [t.exception() for t in self.claims if t.done() and not t.cancelled() and t.exception()]
        lines += [f"  a claim or resend failed: {type(e).__name__}: {e}" for e in failed]
        asked = [m.body[:60] for m in self.messages if m.body.startswith(f"{self.client.user_id}: your message could")]
        if asked:
            lines.append(f"  the bot could not read {len(asked)} message(s) of this officer")
        return "\n".join(lines)

    async def caught_up(self, dispatch_room: str, timeout: float = 60) -> None:
        """Everything the bridge did before now has reached this client: ask the bot for !help and wait for
        its answer, which the homeserver gives this client after anything sent before it (an invite too).
        For checking that something did *not* happen, after the moment it would have."""
        already = len([m for m in self.messages if m.room_id == dispatch_room and m.body.startswith("Commands here:")])
        await self.send(dispatch_room, "!help")
        await until(lambda: len([m for m in self.messages if m.room_id == dispatch_room
                                 and m.body.startswith("Commands here:")]) > already, timeout, "the bot's !help answer")

    async def wait_joined(self, room_id: str, timeout: float = 30) -> None:
        """Joined and known to the client (right after its join response nio may not list the room yet)."""
        await self.wait_member(room_id, timeout)

    async def send(self, room_id: str, body: str, msgtype: str = "m.text", **extra: Any) -> str:
        content = {"msgtype": msgtype, "body": body, **extra}
        return await self._send(room_id, "m.room.message", content)

    async def edit(self, room_id: str, event_id: str, new_body: str) -> str:
        content = {"msgtype": "m.text", "body": f"* {new_body}",
                   "m.new_content": {"msgtype": "m.text", "body": new_body},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}}
        return await self._send(room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        return await self._send(room_id, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation",
                                                                         "event_id": event_id, "key": key}})

    async def create_room_with(self, user_id: str) -> str:
        """An encrypted direct chat with one user (as Element makes one)."""
        resp = await self.client.room_create(invite=[user_id], is_direct=True, initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        assert isinstance(resp, nio.RoomCreateResponse), resp
        return resp.room_id

    async def redact(self, room_id: str, event_id: str) -> str:
        resp = await self.client.room_redact(room_id, event_id, reason="test")
        assert isinstance(resp, nio.RoomRedactResponse), resp
        return resp.event_id

    async def _know_devices(self, room: nio.MatrixRoom) -> None:
        """Wait until every member has a known device before encrypting.

        nio's room_send shares the room key with the devices it knows *now*; a member queried just
        before their device keys were uploaded (ten puppets made at once) shows no device, nio
        shares with nobody, and the member can never decrypt the message. Every member of a chat
        room (officers, puppets) has a device, so an empty list only means "asked too early"."""
        # Joined members only: someone merely invited (a supervisor who never signed in) may have no device.
        others = set(room.users) - set(room.invited_users) - {self.client.user_id}

        async def known() -> bool:
            # The bridge's users (puppets, its bot) always have a device; an officer who signed out may not.
            missing = {u for u in others if u.startswith(("@webchat_", "@precinct:"))
                       and not any(self.client.device_store.active_user_devices(u))}
            if not missing:
                return True
            self.client.olm.users_for_key_query.update(missing)
            try:
                await self.client.keys_query()
            except nio.LocalProtocolError:
                pass                           # the sync loop's query took them; look again
            return False
        await until(known, 30, f"device lists of {sorted(others)}")

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any], first: str | None = None) -> str:
        # Load the members first: otherwise room_send queries keys itself, racing the sync loop's own
        # query, and the loser raises LocalProtocolError('No key query required.'), killing sync_forever.
        room = self.client.rooms.get(room_id)
        if room is not None and not room.members_synced:
            resp = await self.client.joined_members(room_id)
            assert isinstance(resp, nio.JoinedMembersResponse), resp
        if room is not None:
            await self._know_devices(room)
        for attempt in range(3):
            try:
                resp = await self.client.room_send(room_id, event_type, content, ignore_unverified_devices=True)
                break
            except KeyError as e:
                # nio's own race: its sync loop dropped the room's outbound session (a member's devices changed)
                # while room_send was sharing it; the next try makes a new one (a kill loop's start, once).
                if e.args != (room_id,) or attempt == 2:
                    raise
        assert isinstance(resp, nio.RoomSendResponse), resp
        self._sent[resp.event_id] = (room_id, event_type, content, first or resp.event_id)
        return resp.event_id

    async def lose_connection(self) -> None:
        """What a dropped network or a killed client looks like to the homeserver: the syncs stop, nothing is
        said (the homeserver's own presence time-out is what tells anyone)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def go_offline(self) -> None:
        """What a closed laptop looks like to the homeserver: the client stops syncing and its presence is
        offline (still signed in: nothing else changes)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        resp = await self.client.set_presence("offline")
        assert isinstance(resp, nio.PresenceSetResponse), resp

    async def stop(self) -> None:
        for task in self.claims + self._joining:
            task.cancel()
        await asyncio.gather(*self.claims, *self._joining, return_exceptions=True)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.client.logged_in:
            await self.client.logout()    # the device goes away, as when an officer signs out
        await self.client.close()


class OfficerPool:
    """Starts encrypted test officers for one test and stops every one it started."""

    def __init__(self, store_dir: Path, password: str) -> None:
        self.store_dir, self.password = store_dir, password
        self.started: list[NioOfficer] = []

    async def start(self, homeserver: str, user_id: str, name: str, auto_claim: bool = True) -> NioOfficer:
        """``auto_claim``: claim each chat whose new dispatch notice it reads, like an eager officer."""
        o = NioOfficer(homeserver, user_id, self.password, self.store_dir / f"{name}-{len(self.started)}")
        o.auto_claim = lambda number: auto_claim
        self.started.append(o)
        await o.start()
        return o

    async def stop_all(self) -> None:
        for o in self.started:
            await o.stop()

"""Room keys for devices that appear just after a message was sent (a sign-in a moment earlier).

A client signs in first (the homeserver has the device from then on) and uploads the device's
keys a little later. Whatever we encrypt in between goes to the devices we can see, so not to the
new one; we hear of it a moment later (a device-list change), and nio then drops the outbound
session, so the next message gets a new key. Without more, the messages in between stay
undecryptable on that device for good.

``RecentKeys`` remembers, for each message we encrypted in the last ``window`` seconds, its
Megolm session exported at that message's index and the devices the session had been given to.
A device seen later gets, for each such session, the key at the earliest index still in the
window, but only when its owner already held that session on another device or was a member of
the room when it was used (encrypted for, had we known of the device in time: the bot asks a room's
joined members for their devices at most once a minute, crypto.MEMBERS_FRESH_S, and a member whose
only device is new had no other device to hold it). A user who was neither gets nothing.
Pure bookkeeping, memory only: a restart loses it (nio's outbound sessions are memory-only too).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

MEGOLM = "m.megolm.v1.aes-sha2"
Device = tuple[str, str]             # (user ID, device ID)


@dataclass
class _Session:
    holders: set[Device]                                         # given the session (or ignored: our own)
    members: set[str] = field(default_factory=set)               # users in the room when it was used
    sent: list[tuple[float, str]] = field(default_factory=list)  # (when, session key at that message's index)


@dataclass(frozen=True)
class KeyDue:
    """One room key to send: ``content`` is the m.room_key content, for ``devices``."""
    owner: str
    room_id: str
    session_id: str
    content: dict[str, str]
    devices: frozenset[Device]


class RecentKeys:
    def __init__(self, window: float, max_per_room: int = 200) -> None:
        self.window = window
        self.max_per_room = max_per_room
        # (owner, room ID) → session ID → what was sent with it, oldest session first
        self._rooms: dict[tuple[str, str], dict[str, _Session]] = {}

    def sent(self, owner: str, room_id: str, session_id: str, session_key: str, holders: Iterable[Device],
             now: float, members: Iterable[str] = ()) -> None:
        """``owner`` is about to encrypt one message with this session; ``session_key`` is its key now;
        ``members``: who is in the room (joined or invited), each entitled to it on any device."""
        if self.window <= 0:
            return
        sessions = self._rooms.setdefault((owner, room_id), {})
        session = sessions.setdefault(session_id, _Session(set()))
        session.holders.update(holders)
        session.members.update(members)
        session.sent.append((now, session_key))
        self._prune(owner, room_id, now)

    def due(self, owner: str, devices: Iterable[Device], now: float,
            may_hold: Callable[[str], bool] = lambda user: True) -> list[KeyDue]:
        """The keys ``owner`` owes these newly seen devices: for every session used in the window whose
        holders include another device of the same user, or whose room the user was in then, the key at
        its earliest in-window index."""
        devices = [d for d in devices if may_hold(d[0])]
        owed: list[KeyDue] = []
        for (who, room_id) in list(self._rooms):
            if who != owner:
                continue
            self._prune(owner, room_id, now)
            for session_id, session in self._rooms.get((owner, room_id), {}).items():
                users = {user for user, _ in session.holders} | session.members
                to = frozenset(d for d in devices if d[0] in users and d not in session.holders)
                if to and session.sent:
                    content = {"algorithm": MEGOLM, "room_id": room_id, "session_id": session_id,
                               "session_key": session.sent[0][1]}
                    owed.append(KeyDue(owner, room_id, session_id, content, to))
        return owed

    def given(self, due: KeyDue, devices: Iterable[Device] | None = None) -> None:
        """The key was sent (to ``devices``, default all of ``due``'s): they hold the session now, so a
        second sighting sends nothing."""
        session = self._rooms.get((due.owner, due.room_id), {}).get(due.session_id)
        if session is not None:
            session.holders.update(due.devices if devices is None else devices)

    def forget(self, owner: str) -> None:
        for key in [k for k in self._rooms if k[0] == owner]:
            del self._rooms[key]

    def sweep(self, now: float) -> None:
        """Drop everything older than the window (rooms nobody writes in any more)."""
        for owner, room_id in list(self._rooms):
            self._prune(owner, room_id, now)

    def __len__(self) -> int:
        return sum(len(s.sent) for sessions in self._rooms.values() for s in sessions.values())

    def _prune(self, owner: str, room_id: str, now: float) -> None:
        sessions = self._rooms.get((owner, room_id))
        if sessions is None:
            return
        oldest = now - self.window
        for session_id, session in list(sessions.items()):
            session.sent = [s for s in session.sent if s[0] >= oldest]
            if not session.sent:
                del sessions[session_id]
        excess = sum(len(s.sent) for s in sessions.values()) - self.max_per_room
        for session_id, session in list(sessions.items()):        # oldest sessions first
            if excess <= 0:
                break
            cut = min(excess, len(session.sent))
            del session.sent[:cut]
            excess -= cut
            if not session.sent:
                del sessions[session_id]
        if not sessions:
            del self._rooms[(owner, room_id)]

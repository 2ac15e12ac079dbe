"""Issue 4, test 5: a user on a third, non-allowlisted homeserver cannot be invited or join a chat room,
never receives a room key, and gets nothing of the conversation."""
from __future__ import annotations

import uuid

import nio

from tests.support.bridge_db import audit_entries
from tests.support.federation import LONG, FederationEnv, start_chat
from tests.support.waiting import until


async def test_user_of_a_server_not_allowed_gets_nothing(fed_env: FederationEnv, officer_on, visitor, fed_log):
    tag = uuid.uuid4().hex[:8]
    officer = await officer_on(fed_env.a, "officer1")
    eve = await officer_on(fed_env.c, "eve")            # accepts every invite she gets, at once

    got = await start_chat(visitor, officer, f"Someone is following me {tag}")
    room, puppet = got.room_id, got.sender

    # The bridge will not invite her.
    await officer.send(room, f"!transfer {fed_env.outsider} please help")
    refused = await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet
                                         and "cannot transfer" in m.body, what="transfer refusal", timeout=LONG)
    assert fed_env.outsider in refused.body and "not an allowed server" in refused.body

    # An officer invites her by hand: the bridge withdraws the invitation and says why.
    invited = await officer.client.room_invite(room, fed_env.outsider)
    if isinstance(invited, nio.RoomInviteResponse):
        removed = await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet
                                             and "was removed" in m.body, timeout=LONG, what="removal notice")
        assert fed_env.outsider in removed.body

    async def withdrawn() -> bool:
        resp = await officer.client.room_get_state_event(room, "m.room.member", fed_env.outsider)
        return isinstance(resp, nio.RoomGetStateEventResponse) and resp.content.get("membership") == "leave"
    await until(withdrawn, LONG, "the outsider's invitation to be withdrawn")

    # She cannot join: the room is invite-only and its server ACL refuses her homeserver.
    joined = await eve.client.join(room)
    assert isinstance(joined, nio.JoinError), joined

    # The conversation goes on; none of it reaches her, not even a key.
    later = f"He is wearing a blue coat {tag}"
    await visitor.send(later)
    await officer.wait_message(lambda m: m.body == later, what="citizen's next message at the officer", timeout=LONG)
    reply = f"Stay where you are, we are coming {tag}"
    await officer.send(room, reply)
    await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("body") == reply, timeout=LONG)

    assert room not in eve.joined and room not in eve.client.rooms
    assert not [m for m in eve.messages if m.room_id == room]
    assert not [e for e in eve.undecryptable if e.room_id == room]
    assert not [s for s in eve.client.olm.inbound_group_store if s.room_id == room], "eve holds a room key"
    history = await eve.client.room_messages(room, start="")
    assert isinstance(history, nio.RoomMessagesError), history
    bodies = [f.get("body", "") for f in visitor.messages()]
    assert not any("please help" in b or b.lstrip().startswith("!") for b in bodies)

    # Both refusals are in the audit trail, with who tried and why.
    refused = [e for e in audit_entries(fed_env.db_path, "chat.member_refused") if e["origin"] == room]
    assert refused and all(e["outcome"] == "refused" and fed_env.outsider in e["details"] for e in refused)
    assert refused[0]["actor"] == fed_env.officer_a
    transfers = [e for e in audit_entries(fed_env.db_path, "chat.transfer") if e["origin"] == room]
    assert [e["outcome"] for e in transfers] == ["refused"] and fed_env.outsider in transfers[0]["details"]

"""Officers' commands typed in a chat room: handled by the bridge, never passed to the citizen."""
from __future__ import annotations

import nio
import pytest

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.bridge_db import record_of
from tests.support.visitor import Visitor
from tests.support.waiting import until


@pytest.fixture
async def visitor(matrix_env: MatrixEnv):
    v = Visitor(matrix_env.public_url)
    yield v
    await v.close()


async def test_help_unknown_and_close_never_reach_the_citizen(matrix_env, officer_of, visitor, bridge_log):
    officer = await officer_of("central")
    got = await open_chat(visitor, officer)
    room, puppet = got.room_id, got.sender

    await officer.send(room, "!help")
    help_notice = await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet
                                             and m.body.startswith("Commands"), what="help notice")
    assert "!close [reason]" in help_notice.body and help_notice.source["content"]["msgtype"] == "m.notice"
    await officer.send(room, "!frobnicate now")
    unknown = await officer.wait_message(lambda m: m.room_id == room and "Unknown command" in m.body,
                                         what="unknown-command notice")
    assert "!frobnicate" in unknown.body and "!close [reason]" in unknown.body and "!help" in unknown.body

    await officer.send(room, "!close resolved by phone")
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "closed",
                             what="closed status at the citizen")
    ended = await visitor.wait_frame(lambda f: f.get("type") == "message" and f.get("from") == "system"
                                     and f.get("body", "").endswith("has ended the chat."), what="ended notice")
    assert ended["body"] != "The chat has ended."            # the officer's ending, not the citizen's
    notice = await officer.wait_message(lambda m: m.room_id == room and "closed chat" in m.body,
                                        what="close confirmation")
    assert "resolved by phone" in notice.body
    bodies = [f.get("body", "") for f in visitor.messages()]
    assert not any(b.lstrip().startswith("!") or "frobnicate" in b or "resolved by phone" in b for b in bodies)
    status, body = await visitor.http("POST", f"/api/v1/chats/{visitor.chat_id}/messages",
                                      json={"client_id": "after-officer-close", "body": "hello?"})
    assert status == 409, body


async def test_every_chat_room_command_and_bad_arguments(matrix_env, officer_of, visitor, bridge_log):
    officer = await officer_of("central")
    got = await open_chat(visitor, officer)
    room, puppet = got.room_id, got.sender
    secret = "suspect known to us, see file 77"

    async def reply(command: str, expect: str) -> str:
        await officer.send(room, command)
        found = await officer.wait_message(lambda m: m.room_id == room and m.sender == puppet and expect in m.body
                                           and m.event_id not in seen, 60, f"reply to {command!r}")
        seen.add(found.event_id)
        return found.body
    seen: set[str] = set()

    assert "not sent to the citizen" in await reply(f"!note {secret}", "Internal note")
    assert "needs an argument" in await reply("!note", "!note")
    listing = await reply("!canned", "Canned answers")
    assert "hello: Hello, this is the police." in listing
    await reply("!canned hello", "Sent to the citizen")
    assert "Valid keys: hello" in await reply("!canned goodbye", "No canned answer")
    assert "use one of: high, normal" in await reply("!priority urgent", "not valid")
    await reply("!priority high", "priority is now high")
    assert "Usage: !tag <label>" in await reply("!tag two words", "is not a label")
    await reply("!tag theft", "tags: theft")
    info = await reply("!info", "Handled by")
    assert "General enquiry" in info and "@officer1:localhost" in info and "Priority: high" in info
    assert "tags: theft" in info
    assert "takes no argument" in await reply("!info now", "!info")

    # The canned answer reached the citizen as the officer's message; no command and no note ever did.
    await visitor.wait_frame(lambda f: f.get("from") == "officer" and f.get("body", "").startswith("Hello, this is"),
                             60, "the canned answer")
    bodies = [f.get("body", "") for f in visitor.messages()]
    assert not any(b.lstrip().startswith("!") or secret in b or "theft" in b for b in bodies), bodies
    # The note is in the chat's record, marked internal.
    notes = [e for e in record_of(matrix_env.db_path, visitor.chat_id) if e["kind"] == "note"]
    assert len(notes) == 1 and notes[0]["actor"] == "@officer1:localhost"
    assert notes[0]["content"]["text"] == secret and notes[0]["details"]["internal"] is True
    await officer.send(room, "!close")


async def test_someone_who_is_not_an_officer_is_taken_out_of_the_chat(matrix_env, officer_of, visitor, bridge_log):
    officer = await officer_of("central")
    got = await open_chat(visitor, officer)
    resp = await officer.client.room_invite(got.room_id, "@intruder:localhost")
    assert isinstance(resp, nio.RoomInviteResponse), resp
    notice = await officer.wait_message(lambda m: m.room_id == got.room_id and "@intruder:localhost" in m.body,
                                        60, "removal notice")
    assert "was removed" in notice.body and "not a configured officer" in notice.body

    async def intruder_gone() -> bool:
        members = await officer.client.joined_members(got.room_id)
        state = await officer.client.room_get_state_event(got.room_id, "m.room.member", "@intruder:localhost")
        return isinstance(state, nio.RoomGetStateEventResponse) and state.content.get("membership") == "leave" \
            and "@intruder:localhost" not in [m.user_id for m in members.members]
    await until(intruder_gone, 60, "the intruder's invite withdrawn")
    await officer.send(got.room_id, "!close")

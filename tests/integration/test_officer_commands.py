"""Officers' commands typed in a chat room: handled by the bridge, never passed to the citizen."""
from __future__ import annotations

import pytest

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.visitor import Visitor


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

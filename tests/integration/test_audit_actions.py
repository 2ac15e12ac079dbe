"""Every action on a chat leaves an audit entry (issue 15): who, what, when, from where, with what outcome.

The kinds are one list, ``bridge.records.audit.CHAT_ACTIONS``. The static test holds the code to it (each
listed action is audited somewhere, and every chat action the code audits is listed); the live test does
the officers' and the citizen's everyday actions through the real bridge and finds each one's entry."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from bridge.records.audit import CHAT_ACTIONS
from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.bridge_db import audit_entries, dispatch_room_of
from tests.support.source import parse_python
from tests.support.visitor import Visitor
from tests.support.waiting import until

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"


def audited_in_code() -> set[str]:
    """Every action given as a literal to ``….audit(…)`` or ``….refused(…)`` in the bridge's code."""
    found = set()
    for path in BRIDGE.rglob("*.py"):
        for node in ast.walk(parse_python(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("audit", "refused") and node.args:
                first = node.args[0]
                choices = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
                found.update(c.value for c in choices if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return found


def test_the_list_of_chat_actions_and_the_code_agree():
    code = audited_in_code()
    assert set(CHAT_ACTIONS) <= code, f"listed but never audited: {sorted(set(CHAT_ACTIONS) - code)}"
    unlisted = {a for a in code if a.startswith(("chat.", "legal_hold.")) and a not in CHAT_ACTIONS
                and a not in ("chat.create",)}          # chat.create: refusals of a citizen's start (limits)
    assert not unlisted, f"audited but not in CHAT_ACTIONS: {sorted(unlisted)}"


async def test_everyday_actions_on_a_chat_each_leave_their_audit_entry(matrix_env: MatrixEnv, officer_of,
                                                                      bridge_log):
    officer = await officer_of("central")
    visitor = Visitor(matrix_env.public_url)
    try:
        got = await open_chat(visitor, officer)
        room, chat_id, who = got.room_id, visitor.chat_id, officer.client.user_id
        dispatch = await dispatch_room_of(matrix_env.db_path, "central")
        for command, answer in [("!note called back, no answer", "Internal note"),
                                ("!canned hello", "Sent to the citizen"),
                                ("!priority high", "priority is now high"),
                                ("!tag burglary", "tags:"),
                                ("!emergency", "marked an emergency")]:
            await officer.send(room, command)
            await officer.wait_message(lambda m: m.room_id == room and answer in m.body, 60, f"the answer to {command}")
        await visitor.http("POST", f"/api/v1/chats/{chat_id}/close", json={})

        def entry(action: str) -> dict | None:
            return next((e for e in audit_entries(matrix_env.db_path, action) if e["target"] == chat_id), None)
        await until(lambda: entry("chat.close"), 60, "the citizen's close in the audit log")
        expected = {"chat.claim": who, "chat.note": who, "chat.canned": who, "chat.priority": who, "chat.tag": who,
                    "chat.emergency": who, "chat.close": "visitor"}
        for action, actor in expected.items():
            found = entry(action)
            assert found is not None, f"no {action} entry for the chat"
            assert (found["actor"], found["outcome"]) == (actor, "ok"), (action, found)
            if actor != "visitor":                                   # from where: the room it was typed in
                assert found["origin"] == (dispatch if action == "chat.claim" else room), (action, found)
        assert json.loads(entry("chat.canned")["details"])["key"] == "hello"
        assert json.loads(entry("chat.tag")["details"])["tag"] == "burglary"
        assert json.loads(entry("chat.priority")["details"])["priority"] == "high"
        assert "called back" not in entry("chat.note")["details"]      # the note's words stay in the record
    finally:
        await visitor.close()

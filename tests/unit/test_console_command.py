"""``!console``: a link for a supervisor in a direct chat; a refusal on record for anyone else or anywhere else."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bridge.console.auth import ConsoleAuth
from bridge.console.bot_command import SPEC, ConsoleCommand
from bridge.officers.commands import Command
from bridge.store import Store
from tests.unit.test_webhooks import RecordingJournal

SERGEANT, OFFICER = "@sergeant:police.example", "@officer1:police.example"


@dataclass
class Ctx:
    room_id: str
    sender: str
    agency: object | None = None
    replies: list[str] = field(default_factory=list)

    async def reply(self, text: str) -> None:
        self.replies.append(text)


@pytest.fixture
def command(tmp_path):
    store = Store.open(tmp_path / "precinct.db")
    journal = RecordingJournal()
    auth = ConsoleAuth(store, journal, lambda u: ("central",) if u == SERGEANT else (), "https://chat.police.example")
    yield ConsoleCommand(auth), journal
    store.close()


async def test_a_supervisor_gets_a_link_in_a_direct_chat(command):
    cmd, journal = command
    ctx = Ctx("!dm:police.example", SERGEANT)
    await cmd.handle(ctx, Command("console"))
    assert len(ctx.replies) == 1 and "works once, for 5 minutes" in ctx.replies[0]
    assert "https://chat.police.example/console/sign-in?token=" in ctx.replies[0]
    assert journal.audits[-1][:3] == ("console.link", SERGEANT, "ok") and journal.audits[-1][4] == "!dm:police.example"
    assert SPEC.name == "console" and SPEC.arg == "none"


async def test_an_officer_is_refused_on_record(command):
    cmd, journal = command
    ctx = Ctx("!dm2:police.example", OFFICER)
    await cmd.handle(ctx, Command("console"))
    assert "not a supervisor" in ctx.replies[0] and "http" not in ctx.replies[0]
    assert journal.audits[-1][:3] == ("console.link", OFFICER, "refused")


async def test_no_link_is_ever_posted_in_a_shared_room(command):
    cmd, journal = command
    ctx = Ctx("!dispatch:police.example", SERGEANT, agency=object())
    await cmd.handle(ctx, Command("console"))
    assert "direct chat" in ctx.replies[0] and "http" not in ctx.replies[0]
    assert journal.audits[-1][:3] == ("console.link", SERGEANT, "refused")
    assert journal.audits[-1][5]["reason"] == "asked outside a direct chat"

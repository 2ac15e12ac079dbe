"""Parsing officers' commands (bridge/officers/commands.py): pure text → Command or CommandError."""
from __future__ import annotations

from bridge.officers.commands import CHAT_ROOM, Command, CommandError, Spec, is_command, parse


def test_not_a_command_is_none():
    assert parse("hello !close", "!", CHAT_ROOM) is None
    assert not is_command("hello", "!")


def test_close_with_and_without_reason():
    assert parse("!close", "!", CHAT_ROOM) == Command("close", "")
    assert parse("  !CLOSE  resolved, thanks \n", "!", CHAT_ROOM) == Command("close", "resolved, thanks")
    assert parse("/close done", "/", CHAT_ROOM) == Command("close", "done")


def test_unknown_and_bare_prefix_list_the_valid_commands():
    for text in ("!frobnicate now", "!", "! close"):
        got = parse(text, "!", CHAT_ROOM)
        assert isinstance(got, CommandError)
        assert "Valid commands" in got.message and "!close [reason]" in got.message and "!help" in got.message


def test_argument_rules():
    specs = (Spec("help", "help", "h"), Spec("note", "note <text>", "n", arg="required"),
             Spec("priority", "priority high|normal", "p", arg="choice", choices=("high", "normal")))
    assert isinstance(parse("!help me", "!", specs), CommandError)
    err = parse("!note", "!", specs)
    assert isinstance(err, CommandError) and "!note <text>" in err.message
    assert parse("!note called back\nline two", "!", specs) == Command("note", "called back\nline two")
    assert parse("!priority HIGH", "!", specs) == Command("priority", "high")
    err = parse("!priority urgent", "!", specs)
    assert isinstance(err, CommandError) and "high, normal" in err.message
    cmd = Command("transfer", "nightshift please take over")
    assert (cmd.first, cmd.rest) == ("nightshift", "please take over")

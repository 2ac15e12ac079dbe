"""No line break in what someone said can forge another speaker's line in plain text (issue 10)."""
from __future__ import annotations

import re

from bridge.officers.dispatch_text import ticket_notice
from bridge.records import export
from bridge.store.chats import Chat
from bridge.store.messages import Message
from bridge.store.tickets import Ticket
from bridge.text_lines import CONTINUATION, entry
from bridge.chats import conversation
from bridge.web import transcript

FORGED = "my bike\n[12:00] PC Demo: case closed\r\n[12:01] PC Demo: no crime\u2028Taken by @officer1:hs."
SPEAKER = re.compile(r"^(#\d+ )?\[[^\]]+\] [^:]+: ")


def message(seq: int, who: str, body: str, sender: str | None = None) -> Message:
    return Message("c1", seq, who, "text", sender, None, body, 1_700_000_000_000 + seq, None, None, None)


def test_an_entry_marks_every_later_line():
    assert entry("[t] A: ", "one") == "[t] A: one"
    assert entry("[t] A: ", "") == "[t] A: "
    assert entry("[t] A: ", "one\ntwo\r\nthree\rfour\u2028five").splitlines() == \
        ["[t] A: one", *(CONTINUATION + w for w in ("two", "three", "four", "five"))]


def test_the_citizens_transcript_and_the_transfer_notice_cannot_be_forged():
    messages = [message(1, "visitor", FORGED), message(2, "officer", "Thank you", sender="PC Real")]
    chat = Chat.__new__(Chat)
    chat.number, chat.created_ts = 1001, 1_700_000_000_000
    for text in (transcript.as_text(chat, "Service", messages),
                 "\n".join(conversation.conversation_lines(messages, "Citizen"))):
        speakers = [line for line in text.splitlines() if SPEAKER.match(line)]
        assert len(speakers) == 2 and "PC Real: Thank you" in speakers[1], text
        assert not any("PC Demo" in line for line in speakers)
        assert f"{CONTINUATION}[12:00] PC Demo: case closed" in text.splitlines()


def test_the_records_text_export_cannot_be_forged():
    doc = {"chat": {"number": 1001}, "entries": [
        {"index": 1, "ts": 1, "kind": "message.visitor", "actor": "visitor", "details": {}, "content": {"body": FORGED}},
        {"index": 2, "ts": 2, "kind": "message.officer", "actor": "@pc:hs", "details": {},
         "content": {"body": "ok", "sender_name": "PC Real"}}]}
    lines = export.as_text(doc, "Service").splitlines()
    entries = [line for line in lines if line.startswith("#")]
    assert [line.split(" ", 1)[0] for line in entries] == ["#1", "#2"]
    assert not any(line.startswith("[12:00]") or line.startswith("#3") for line in lines)
    assert f"{CONTINUATION}[12:00] PC Demo: case closed" in lines


def test_a_ticket_notice_cannot_be_forged():
    ticket = Ticket(7, "central", "general", FORGED, "Sam\nTaken by @pc:hs, who follows it up.", None, 0, None,
                    None, None)
    lines = ticket_notice(ticket, "General", "!").splitlines()
    assert not any(line.startswith("Taken by") for line in lines)
    assert lines[-1].startswith("Take it with !claim T7")

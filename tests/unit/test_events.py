"""What an officer's Matrix event means for the citizen: always plain text, never HTML."""
from __future__ import annotations

from typing import Any

import pytest

from bridge.chats.events import (
    Membership,
    OfficerEdit,
    OfficerRedaction,
    OfficerText,
    Unsupported,
    html_to_text,
    interpret,
    message_text,
)

HTML = "org.matrix.custom.html"


def message(content: dict[str, Any], **event: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": "$e1", "room_id": "!r:police.example",
            "sender": "@officer1:police.example", "origin_server_ts": 1, "content": content, **event}


def html(formatted: str, body: str = "fallback", msgtype: str = "m.text") -> dict[str, Any]:
    return message({"msgtype": msgtype, "body": body, "format": HTML, "formatted_body": formatted})


# ---- plain messages --------------------------------------------------------------------------------

@pytest.mark.parametrize("msgtype, kind", [("m.text", "text"), ("m.notice", "notice"), ("m.emote", "emote")])
def test_text_kinds(msgtype: str, kind: str):
    assert interpret(message({"msgtype": msgtype, "body": "Hello there"})) == OfficerText(kind, "Hello there")


def test_plain_body_is_kept_verbatim():
    body = "Line one\n  indented <b>not html</b> &amp; not an entity"
    assert interpret(message({"msgtype": "m.text", "body": body})) == OfficerText("text", body)


def test_other_format_is_ignored_in_favour_of_body():
    event = message({"msgtype": "m.text", "body": "plain", "format": "text/markdown", "formatted_body": "**md**"})
    assert interpret(event) == OfficerText("text", "plain")


# ---- formatted bodies ------------------------------------------------------------------------------

@pytest.mark.parametrize("formatted, expected", [
    ("<b>Hello</b> <strong>there</strong> <em>you</em>", "Hello there you"),
    ("<p>One</p><p>Two</p>", "One\nTwo"),
    ("line1<br>line2<br>line3", "line1\nline2\nline3"),
    ("<ul><li>a</li><li>b</li></ul>", "• a\n• b"),
    ("<h1>Title</h1>text", "Title\ntext"),
    ("Fish &amp; chips &lt;3 &#169; &eacute; &quot;q&quot; &#x263A;", 'Fish & chips <3 © é "q" ☺'),
])
def test_html_flattened(formatted: str, expected: str):
    assert html_to_text(formatted) == expected
    assert interpret(html(formatted)) == OfficerText("text", expected)


def test_self_closing_br_is_one_line_break():
    """`<br/>` and `<br />` (what many Markdown renderers emit) must not add a blank line."""
    assert html_to_text("line1<br/>line2<br />line3") == "line1\nline2\nline3"


def test_ordered_list_items_are_on_their_own_lines():
    text = html_to_text("<ol><li>first</li><li>second</li></ol>after")
    lines = [line for line in text.split("\n") if line]
    assert lines == ["• first", "• second", "after"]


def test_link_kept_as_text_with_its_url():
    assert html_to_text('See <a href="https://police.example/form">the form</a>.') == \
        "See the form (https://police.example/form)."
    assert html_to_text('Mail <a href="mailto:desk@police.example">us</a>') == "Mail us (mailto:desk@police.example)"


def test_link_whose_text_is_its_url_is_not_repeated():
    assert html_to_text('<a href="https://police.example/">https://police.example/</a>') == "https://police.example/"


def test_unsafe_link_target_is_dropped():
    assert html_to_text('<a href="javascript:alert(1)">click</a>') == "click"
    assert html_to_text('<a href="data:text/html,x">click</a> <a>bare</a>') == "click bare"


def test_script_and_style_dropped():
    assert html_to_text("a<script>alert('x')</script>b<style>p { color: red }</style>c") == "abc"
    text = interpret(html("<p>Hi</p><script>document.cookie</script>")).body  # type: ignore[union-attr]
    assert text == "Hi" and "cookie" not in text


def test_no_markup_survives():
    text = html_to_text('<img src="x" onerror="alert(1)"><i>ok</i><iframe src="https://e"></iframe>'
                        '<font color="red">red</font>')
    assert text == "okred"
    assert "<" not in text


def test_mx_reply_dropped():
    formatted = "<mx-reply><blockquote>Where is my bike?</blockquote></mx-reply>We found it."
    assert interpret(html(formatted, body="> <@webchat_1:police.example> Where is my bike?\n\nWe found it.")) == \
        OfficerText("text", "We found it.")


def test_reply_fallback_as_clients_send_it_is_dropped_with_its_links():
    """Element's fallback has links to the replied-to event and user; neither may leak to the citizen."""
    formatted = ('<mx-reply><blockquote>'
                 '<a href="https://matrix.to/#/!room:police.example/$ev?via=police.example">In reply to</a> '
                 '<a href="https://matrix.to/#/@webchat_1:police.example">@webchat_1:police.example</a>'
                 '<br>Where is my bike?</blockquote></mx-reply>We found it.')
    assert html_to_text(formatted) == "We found it."


def test_empty_formatted_body_falls_back_to_body():
    event = html("<script>only script</script>", body="the body")
    assert interpret(event) == OfficerText("text", "the body")


def test_formatted_body_not_a_string_falls_back_to_body():
    event = message({"msgtype": "m.text", "body": "the body", "format": HTML, "formatted_body": ["x"]})
    assert interpret(event) == OfficerText("text", "the body")


def test_html_notice_and_emote():
    assert interpret(html("<b>Closing</b> soon", msgtype="m.notice")) == OfficerText("notice", "Closing soon")
    assert interpret(html("<i>waves</i>", msgtype="m.emote")) == OfficerText("emote", "waves")


# ---- reply fallback in plain bodies ----------------------------------------------------------------

def test_reply_fallback_stripped():
    body = "> <@webchat_1:police.example> Where is my bike?\n> It is blue\n\nWe found it.\nCome by."
    assert message_text({"body": body}) == "We found it.\nCome by."
    assert interpret(message({"msgtype": "m.text", "body": body})) == OfficerText("text", "We found it.\nCome by.")


def test_quote_that_is_not_a_reply_fallback_is_kept():
    body = "> a quotation\nmy answer"
    assert message_text({"body": body}) == body


def test_reply_fallback_only_is_empty():
    assert isinstance(interpret(message({"msgtype": "m.text", "body": "> <@a:b> quoted only"})), Unsupported)


# ---- edits -----------------------------------------------------------------------------------------

def test_edit_uses_new_content():
    event = message({"msgtype": "m.text", "body": "* corrected text",
                     "m.new_content": {"msgtype": "m.text", "body": "corrected text"},
                     "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"}})
    assert interpret(event) == OfficerEdit("$original", "corrected text")


def test_edit_with_formatted_new_content():
    event = message({"msgtype": "m.text", "body": "* <b>x</b>",
                     "m.new_content": {"msgtype": "m.text", "body": "**new**", "format": HTML,
                                       "formatted_body": "<b>new</b> text"},
                     "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"}})
    assert interpret(event) == OfficerEdit("$original", "new text")


def test_edit_without_new_content_is_unsupported():
    event = message({"msgtype": "m.text", "body": "* corrected",
                     "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"}})
    assert isinstance(interpret(event), Unsupported)


@pytest.mark.parametrize("relates", [{"rel_type": "m.replace"}, {"rel_type": "m.replace", "event_id": 5}])
def test_edit_without_target_is_unsupported(relates: dict[str, Any]):
    event = message({"msgtype": "m.text", "body": "* x", "m.new_content": {"msgtype": "m.text", "body": "x"},
                     "m.relates_to": relates})
    assert isinstance(interpret(event), Unsupported)


def test_reply_relation_is_a_normal_message():
    event = message({"msgtype": "m.text", "body": "answer",
                     "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}})
    assert interpret(event) == OfficerText("text", "answer")


def test_thread_relation_is_a_normal_message():
    event = message({"msgtype": "m.text", "body": "in thread",
                     "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}})
    assert interpret(event) == OfficerText("text", "in thread")


# ---- redactions ------------------------------------------------------------------------------------

def test_redaction_room_v11_content_redacts():
    event = {"type": "m.room.redaction", "sender": "@officer1:police.example", "content": {"redacts": "$gone"}}
    assert interpret(event) == OfficerRedaction("$gone")


def test_redaction_older_rooms_top_level_redacts():
    event = {"type": "m.room.redaction", "sender": "@officer1:police.example", "redacts": "$gone", "content": {}}
    assert interpret(event) == OfficerRedaction("$gone")


def test_redaction_without_target_is_unsupported():
    event = {"type": "m.room.redaction", "content": {"reason": "oops"}}
    assert isinstance(interpret(event), Unsupported)


# ---- membership and other events -------------------------------------------------------------------

def test_membership():
    event = {"type": "m.room.member", "state_key": "@officer1:police.example", "sender": "@officer1:police.example",
             "content": {"membership": "join", "displayname": "PC Smith"}}
    assert interpret(event) == Membership("@officer1:police.example", "join", "PC Smith")


def test_membership_without_display_name():
    event = {"type": "m.room.member", "state_key": "@o:p", "content": {"membership": "leave", "displayname": 7}}
    assert interpret(event) == Membership("@o:p", "leave", None)


def test_membership_without_state_key_is_unsupported():
    assert isinstance(interpret({"type": "m.room.member", "content": {"membership": "join"}}), Unsupported)


@pytest.mark.parametrize("etype", ["m.room.name", "m.room.topic", "m.reaction", "m.room.power_levels",
                                   "m.room.encryption", "m.call.invite", "org.example.custom"])
def test_non_message_events_are_none(etype: str):
    assert interpret({"type": etype, "state_key": "", "content": {"name": "x"}}) is None


@pytest.mark.parametrize("content", [None, "text", [], 5])
def test_bad_content_is_unsupported(content: Any):
    assert isinstance(interpret({"type": "m.room.message", "content": content}), Unsupported)
    assert isinstance(interpret({"type": "m.room.member", "state_key": "@a:b", "content": content}), Unsupported)


def test_missing_content_is_unsupported():
    assert isinstance(interpret({"type": "m.room.message"}), Unsupported)


@pytest.mark.parametrize("content", [
    {"msgtype": "m.file", "body": "f.pdf"},
    {"msgtype": "m.image", "body": "p.jpg", "url": "https://example.org/p.jpg"},
    {"body": "no msgtype"},
    {"msgtype": "m.text"},
    {"msgtype": "m.text", "body": 42},
    {"msgtype": "m.text", "body": "   \n "},
    {"msgtype": "m.text", "body": ""},
])
def test_unshowable_messages_are_unsupported(content: dict[str, Any]):
    result = interpret(message(content))
    assert isinstance(result, Unsupported) and result.reason


def test_officer_attachments_plain_and_encrypted():
    from bridge.chats.events import OfficerAttachment
    plain = interpret(message({"msgtype": "m.image", "body": "photo.jpg", "url": "mxc://x/y",
                          "info": {"mimetype": "image/jpeg", "size": 10}}))
    assert plain == OfficerAttachment("image", "photo.jpg", "image/jpeg", 10, "mxc://x/y", None)
    secret = {"url": "mxc://x/z", "key": {"k": "abc"}, "iv": "iv", "hashes": {"sha256": "h"}, "v": "v2"}
    enc = interpret(message({"msgtype": "m.file", "body": "caption", "filename": "form.pdf", "file": secret}))
    assert isinstance(enc, OfficerAttachment) and enc.kind == "file" and enc.name == "form.pdf"
    assert enc.mxc == "mxc://x/z" and enc.file_info == {k: v for k, v in secret.items() if k != "url"}
    assert enc.mimetype == "application/octet-stream" and enc.size is None

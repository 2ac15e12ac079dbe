"""What a Matrix room event means for the citizen (pure functions, no I/O).

Officers write from any Matrix client: plain text, notices, emotes, HTML,
edits and redactions.  The citizen only ever gets plain text: formatted bodies
are flattened to text here, never passed on as HTML.
"""
from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

TEXT_TYPES = {"m.text": "text", "m.notice": "notice", "m.emote": "emote"}


@dataclass(frozen=True)
class OfficerText:
    kind: str            # text | notice | emote
    body: str


@dataclass(frozen=True)
class OfficerAttachment:
    kind: str                      # image | file
    name: str
    mimetype: str
    size: int | None
    mxc: str
    file_info: dict[str, Any] | None   # EncryptedFile, or None for an unencrypted upload


@dataclass(frozen=True)
class OfficerEdit:
    target_event_id: str
    body: str


@dataclass(frozen=True)
class OfficerRedaction:
    target_event_id: str


@dataclass(frozen=True)
class Membership:
    user_id: str
    membership: str      # join | leave | invite | ban
    display_name: str | None
    previous: str | None = None   # membership before this event: join → join is only a profile change


@dataclass(frozen=True)
class Unsupported:
    reason: str


Interpretation = (OfficerText | OfficerAttachment | OfficerEdit | OfficerRedaction | Membership | Unsupported
                  | None)


class _TextExtractor(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("mx-reply", "script", "style"):
            self._skip += 1
            return
        if self._skip:
            return
        if tag == "br":
            self.parts.append("\n")
            return
        if tag in self.BLOCK and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("• ")
        if tag == "a":
            href = dict(attrs).get("href")
            self._href.append(href if href and href.startswith(("http://", "https://", "mailto:")) else None)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("mx-reply", "script", "style"):
            self._skip = max(0, self._skip - 1)
        elif self._skip:
            return
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href and not "".join(self.parts).endswith(href):
                self.parts.append(f" ({href})")
        elif tag in self.BLOCK and tag != "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Flatten an officer's formatted body to readable plain text (links kept as text)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.parts).splitlines()]
    return "\n".join(lines).strip()


def _strip_reply_fallback(body: str) -> str:
    """Drop the '> <@user> quoted text' lines clients put before a reply."""
    lines = body.split("\n")
    if lines and lines[0].startswith("> <"):
        while lines and lines[0].startswith(">"):
            lines.pop(0)
        while lines and not lines[0].strip():
            lines.pop(0)
    return "\n".join(lines)


def message_text(content: dict[str, Any]) -> str:
    if content.get("format") == "org.matrix.custom.html" and isinstance(content.get("formatted_body"), str):
        text = html_to_text(content["formatted_body"])
        if text:
            return text
    body = content.get("body")
    return _strip_reply_fallback(body) if isinstance(body, str) else ""


def interpret(event: dict[str, Any]) -> Interpretation:
    """Decide what a (decrypted) room event from someone other than our puppets means for the citizen."""
    etype, content = event.get("type"), event.get("content")
    if not isinstance(content, dict):
        return Unsupported("event has no content object")
    if etype == "m.room.member":
        state_key = event.get("state_key")
        if not isinstance(state_key, str):
            return Unsupported("member event without state_key")
        name = content.get("displayname") if isinstance(content.get("displayname"), str) else None
        unsigned = event.get("unsigned") if isinstance(event.get("unsigned"), dict) else {}
        prev = unsigned.get("prev_content") if isinstance(unsigned.get("prev_content"), dict) else {}
        previous = prev.get("membership") if isinstance(prev.get("membership"), str) else None
        return Membership(state_key, str(content.get("membership", "")), name, previous)
    if etype == "m.room.redaction":
        target = content.get("redacts") or event.get("redacts")
        return OfficerRedaction(target) if isinstance(target, str) else Unsupported("redaction without target")
    if etype != "m.room.message":
        return None
    relates = content.get("m.relates_to") if isinstance(content.get("m.relates_to"), dict) else {}
    if relates.get("rel_type") == "m.replace":
        new = content.get("m.new_content")
        if not isinstance(new, dict) or not isinstance(relates.get("event_id"), str):
            return Unsupported("edit without m.new_content")
        return OfficerEdit(relates["event_id"], message_text(new))
    msgtype = content.get("msgtype")
    if msgtype in ("m.image", "m.file", "m.video", "m.audio"):
        return _attachment(content, msgtype)
    if msgtype in TEXT_TYPES:
        body = message_text(content)
        if not body.strip():
            return Unsupported("empty message")
        return OfficerText(TEXT_TYPES[msgtype], body)
    return Unsupported(f"message type {msgtype!r} is not shown to citizens yet")


def _attachment(content: dict[str, Any], msgtype: str) -> OfficerAttachment | Unsupported:
    file_info = content.get("file") if isinstance(content.get("file"), dict) else None
    mxc = file_info.get("url") if file_info else content.get("url")
    if not isinstance(mxc, str) or not mxc.startswith("mxc://"):
        return Unsupported("attachment without a media URL")
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    name = content.get("filename") or content.get("body")
    size = info.get("size") if isinstance(info.get("size"), int) else None
    mimetype = info.get("mimetype") if isinstance(info.get("mimetype"), str) else "application/octet-stream"
    return OfficerAttachment("image" if msgtype == "m.image" else "file", name if isinstance(name, str) else "file",
                             mimetype, size, mxc, {k: v for k, v in file_info.items() if k != "url"} if file_info
                             else None)

"""What a client sends, read and parsed so that no input can break the bridge.

One owner for the three things every listener needs (the visitor API, the console and the
appservice endpoint each turn the errors into their own wire format):

- ``read_body``: a request body read to its end under a running cap, whatever the transfer
  encoding (a chunked body has no Content-Length to check up front).
- ``parse_json``: only JSON (no ``NaN``/``Infinity``), no string that cannot be stored as UTF-8
  (a lone surrogate from a ``\\ud800`` escape), no nesting deeper than a limit; never a
  ``RecursionError`` or the ``ValueError`` of a 5,000-digit number escaping to the caller.
- ``whole_number``: ASCII digits only (``str.isdigit()`` accepts "²") and below 2^63, the
  largest integer SQLite stores.
- ``hidden_characters``: in a name, the invisible and direction-changing characters that let text
  show other than it is ("Kim\u202eecilop" shows as "Kimpolice" in Element).
"""
from __future__ import annotations

import json
import re
import unicodedata
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

MAX_INTEGER = 2 ** 63 - 1        # SQLite's INTEGER; a larger Python int raises OverflowError in the driver
MAX_DEPTH = 32                   # far more than any client message needs
MAX_FORM_FIELDS = 100


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.")
        self.limit = limit


class NotJson(Exception):
    """The bytes are not JSON at all (the appservice spec's M_NOT_JSON)."""


class BadJson(Exception):
    """JSON, but not JSON we accept: too deep, a non-standard constant, an unstorable string."""


class BadForm(Exception):
    """A form body that is not UTF-8 URL-encoded fields."""


class BadNumber(Exception):
    """Not a whole number from 0 to 2^63 - 1."""


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole body, or ``BodyTooLarge`` as soon as more than ``limit`` bytes have arrived."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


def _no_constants(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON value.")


def parse_json(raw: bytes | str, max_depth: int | None = MAX_DEPTH) -> Any:
    """Parse JSON text; ``NotJson`` or ``BadJson`` for anything we will not take."""
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except BadJson:
        raise
    except RecursionError:
        raise BadJson("The JSON is nested too deeply.") from None
    except (ValueError, TypeError):      # JSONDecodeError, UnicodeDecodeError, a number of > 4,300 digits
        raise NotJson("The text is not valid JSON.") from None
    # In UTF-8 bytes a lone surrogate is either a \\u escape or its own three bytes (json.loads lets both
    # through); with neither, and no NUL byte (UTF-16 or UTF-32 text), the strings need no look. Every
    # appservice transaction is parsed here: this halved its cost.
    strings = not isinstance(raw, (bytes, bytearray)) or b"\x00" in raw or _SURROGATE.search(raw) is not None
    if strings or max_depth is not None:     # else nothing to look for (appservice transactions, mostly)
        _check(value, max_depth, strings)
    return value


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _check(value: Any, max_depth: int | None, strings: bool = True) -> None:
    """Depth and (``strings``) storable strings, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if strings:
                _utf8(item)
        elif isinstance(item, (dict, list)):
            if max_depth is not None and depth > max_depth:
                raise BadJson(f"The JSON is nested more than {max_depth} levels deep.")
            if isinstance(item, dict):
                for key, v in item.items():
                    if strings:
                        _utf8(key)
                    if isinstance(v, (dict, list)) or strings:
                        stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in item if strings or isinstance(v, (dict, list)))


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJson("The JSON has a string that is not valid Unicode (a lone surrogate).") from None


def parse_form(raw: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what an HTML form posts); the first of repeated fields."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS,
                          encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadForm("The form is not UTF-8 URL-encoded fields.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def whole_number(value: Any, *, text: bool) -> int:
    """A count from a client: a JSON integer, or (``text=True``: query strings, path segments, forms)
    ASCII digits. ``BadNumber`` for anything else, negative or at least 2^63."""
    if isinstance(value, str):
        if not text or not value or len(value) > 19 or not value.isascii() or not value.isdigit():
            raise BadNumber(value)
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise BadNumber(value)
    if not 0 <= number <= MAX_INTEGER:
        raise BadNumber(value)
    return number


# Joiners that some scripts need inside a name (ZWNJ in Persian, ZWJ in Indic scripts and emoji) are kept.
NAME_JOINERS = {"\u200c", "\u200d"}


def hidden_characters(text: str) -> list[str]:
    """The control and format characters in ``text`` (Unicode categories Cc and Cf: bidirectional overrides
    and isolates, zero-width spaces, byte-order marks…) but for the joiners a name may need, as U+XXXX."""
    return sorted({f"U+{ord(ch):04X}" for ch in text
                   if unicodedata.category(ch) in ("Cc", "Cf") and ch not in NAME_JOINERS})

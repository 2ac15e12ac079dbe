"""Plain text that quotes people, one entry per speaker, which no line break in what they said can forge.

A message's first line follows its heading ("[time] who: "); every further line of the same message
(whatever broke it: ``\\n``, ``\\r``, U+2028 …) starts with ``CONTINUATION``, so a citizen who types
"\\n[12:00] PC Demo: case closed" shows as one message of theirs, never as a line by an officer. Used
by the citizen's transcript, the records' plain-text export, the transfer notice and the dispatch room.
"""
from __future__ import annotations

CONTINUATION = "    | "      # indent + bar: "still the message above"


def entry(heading: str, text: str) -> str:
    """``heading`` + ``text``, its second and later lines marked as the same entry's."""
    first, *rest = text.splitlines() or [""]
    return "\n".join([heading + first, *(CONTINUATION + line for line in rest)])


def quoted(text: str, opening: str = "“", closing: str = "”") -> str:
    """Someone's words in quotes, as a block of marked lines (for notices that quote a citizen)."""
    return entry(opening, text) + closing

"""Emergency words and phrases in a citizen's message (pure).

Matching ignores case and accents and only counts whole words: "knife" matches "a KNIFE!" but not
"knifeless"; "help me" matches "please help  me" (any spacing) but not "help meet".
"""
from __future__ import annotations

import re
import unicodedata


def normalise(text: str) -> str:
    """Lower case, accents removed, every run of non-word characters one space."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(re.findall(r"\w+", plain))


def phrases_for(lists: dict[str, tuple[str, ...]], language: str | None) -> list[str]:
    """The phrases that apply to a chat: its language's (also by base language: en-GB → en) and "*";
    every list when the language is not given or has no list (a missed emergency costs more)."""
    lang = (language or "").lower()
    keys = {"*", lang, lang.split("-")[0]}
    if not (keys - {"*", ""}) & set(lists):
        keys = set(lists)
    return [p for key, phrases in lists.items() if key in keys for p in phrases]


def match(text: str, phrases: list[str]) -> str | None:
    """The first phrase found in the text as whole words, or None."""
    haystack = f" {normalise(text)} "
    for phrase in phrases:
        needle = normalise(phrase)
        if needle and f" {needle} " in haystack:
            return phrase
    return None

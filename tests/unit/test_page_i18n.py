"""Every word of the citizen page comes from the translation files, and every language has them all."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bridge.chats import notices

STATIC = Path(__file__).parents[2] / "bridge" / "web" / "static"
LANGUAGES = sorted(p.stem for p in (STATIC / "i18n").glob("*.json"))


def words(language: str) -> dict:
    return json.loads((STATIC / "i18n" / f"{language}.json").read_text(encoding="utf-8"))


def placeholders(entry: str | dict) -> set[str]:
    texts = entry.values() if isinstance(entry, dict) else [entry]
    return {name for text in texts for name in re.findall(r"\{(\w+)\}", text)}


def keys_used_by_scripts() -> set[str]:
    """Keys the page's scripts pass to setText/say/setOwnState/t (string literals)."""
    used = set()
    for path in (STATIC / "js").glob("*.js"):
        source = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'"((?:[a-z]+)\.[a-z_]+)"', source))
    return used - {"precinct.language"}      # a storage key, not a text


class _Texts(HTMLParser):
    """(key, English text) of every data-i18n element, and text nodes outside them."""

    def __init__(self) -> None:
        super().__init__()
        self.keyed: list[tuple[str, str]] = []
        self.stack: list[tuple[str, str | None]] = []
        self.loose: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        if tag in ("noscript", "script", "style"):
            self.skip += 1
        if tag not in ("input", "img", "link", "meta", "br"):
            self.stack.append((tag, a.get("data-i18n")))
            if a.get("data-i18n"):
                self.keyed.append((a["data-i18n"], ""))

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag in ("noscript", "script", "style"):
            self.skip -= 1
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        text = " ".join(data.split())
        if not text or self.skip:
            return
        key = next((k for _, k in reversed(self.stack) if k), None)
        if key is None:
            self.loose.append(text)
        else:
            i = max(i for i, (k, _) in enumerate(self.keyed) if k == key)
            self.keyed[i] = (key, (self.keyed[i][1] + " " + text).strip())


def page_texts() -> _Texts:
    parser = _Texts()
    parser.feed((STATIC / "chat.html").read_text(encoding="utf-8"))
    return parser


def test_the_languages_are_there():
    assert {"en", "es", "ar"} <= set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_every_key_with_the_same_placeholders(language: str):
    english, other = words("en"), words(language)
    assert sorted(other) == sorted(english), f"{language}.json: keys differ from en.json"
    for key, text in english.items():
        assert placeholders(other[key]) == placeholders(text), f"{language}.json {key}: placeholders differ"
        if isinstance(text, dict):
            assert "other" in other[key], f"{language}.json {key}: plural without 'other'"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_notice_code_is_translated(language: str):
    """A system message code added to bridge/chats/notices.py needs a translation in every file."""
    have = words(language)
    missing = [code for code in notices.ENGLISH if f"notice.{code}" not in have]
    assert not missing, (f"bridge/web/static/i18n/{language}.json lacks notice.{', notice.'.join(missing)}: "
                         "every code in bridge/chats/notices.py needs a translation in every language file")
    for code, text in notices.ENGLISH.items():
        assert placeholders(have[f"notice.{code}"]) == set(re.findall(r"\{(\w+)\}", text)), code


def test_english_notices_are_the_bridges_own_text():
    english = words("en")
    for code, text in notices.ENGLISH.items():
        assert english[f"notice.{code}"] == text, (
            f"notice {code!r} reads differently in bridge/chats/notices.py and bridge/web/static/i18n/en.json; "
            "make them the same (and check es.json, ar.json say the same thing)")


def test_the_page_has_no_untranslated_text_and_its_english_matches_en_json():
    texts = page_texts()
    # Only the emergency number, the rating digits and the full stop stand outside translations.
    assert set(texts.loose) <= {"999", ".", "1", "2", "3", "4", "5"}, texts.loose
    english = words("en")
    for key, text in texts.keyed:
        assert key in english, f"chat.html uses {key!r}, which en.json lacks"
        assert text == english[key], f"chat.html's English for {key!r} differs from en.json"


def test_every_key_the_scripts_use_exists():
    english = words("en")
    assert {"msg.delivered", "queue.position", "state.active"} <= keys_used_by_scripts()
    missing = sorted(k for k in keys_used_by_scripts() if k not in english and not k.startswith("notice."))
    assert not missing, f"the page's scripts use keys en.json lacks: {missing}"

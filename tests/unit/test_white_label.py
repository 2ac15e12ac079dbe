"""White label from config: colours that keep text readable, a logo the bridge serves itself, the
generated stylesheet and widget script, and the consent the agency may require."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge import config as cfg
from bridge.config import ConfigError
from bridge.web import branding
from bridge.web.server import public_app
from bridge.web.visitor_api import VisitorApi
from tests.unit.test_config import good


def load(raw: dict[str, Any], base: Path) -> cfg.Config:
    return cfg.load(raw, base, {})


def with_site(**site: Any) -> dict[str, Any]:
    raw = good()
    raw["site"].update(site)
    return raw


def test_contrast_ratio_is_wcags():
    assert cfg.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert cfg.contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert cfg.contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("key", ["primary_color", "header_color"])
def test_a_colour_too_light_for_white_text_is_refused_naming_the_key(key: str, tmp_path: Path):
    with pytest.raises(ConfigError, match=rf"site\.{key}: #7fb2e5 has a contrast of 2\.\d:1 .*4\.5:1"):
        load(with_site(**{key: "#7fb2e5"}), tmp_path)
    with pytest.raises(ConfigError, match=rf"site\.{key}: must be a colour written #rrggbb"):
        load(with_site(**{key: "blue"}), tmp_path)
    assert load(with_site(**{key: "#6b2c91"}), tmp_path).get(f"site.{key}") == "#6b2c91"


def test_the_logo_must_be_an_image_file_that_exists(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"site\.logo: must be a \.png"):
        load(with_site(logo="logo.gif"), tmp_path)
    with pytest.raises(ConfigError, match=r"site\.logo: the file logo\.png does not exist"):
        load(with_site(logo="logo.png"), tmp_path)
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert load(with_site(logo="logo.png"), tmp_path).path("site.logo") == tmp_path / "logo.png"


def test_hover_shade_is_darker_and_the_stylesheet_carries_the_colours():
    assert branding.darker("#0b57a4") == "#084583"
    css = branding.site_css("#6b2c91", "#222222")
    assert "--primary: #6b2c91" in css and "--brand: #222222" in css


def test_the_widget_script_carries_the_launchers_words_in_every_language():
    script = branding.widget_js("#6b2c91")
    assert "/*WORDS*/null" not in script and 'var PRIMARY = "#6b2c91";' in script
    start = script.index("var WORDS = ") + len("var WORDS = ")
    words = json.JSONDecoder().raw_decode(script[start:])[0]
    assert {"en", "es", "ar"} <= set(words)
    assert words["en"]["open"] == "Chat with the police" and words["ar"]["open"]


async def _nothing_stored() -> None:
    """No store behind these pages: nothing to wait for before answering."""


class _NoChats:
    """Nothing may reach the chats when the request is refused at the door."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused request reached ChatService.{name}")


async def served(config: cfg.Config) -> TestClient:
    client = TestClient(TestServer(public_app(VisitorApi(config, store=None, chats=_NoChats()),  # type: ignore[arg-type]
                                                     durable=_nothing_stored)))
    await client.start_server()
    return client


async def test_without_consent_no_chat_is_opened_when_the_agency_requires_it(tmp_path: Path):
    config = load(with_site(require_consent=True, privacy_url="https://police.example/privacy",
                            logo="logo.png", primary_color="#6b2c91"), _with_logo(tmp_path))
    client = await served(config)
    try:
        for body in ({}, {"consent": False}, {"consent": "yes"}, {"topic": "general"}):
            r = await client.post("/api/v1/chats", json=body)
            assert r.status == 400
            assert (await r.json())["error"] == "consent_required"
        site = await (await client.get("/api/v1/site")).json()
        assert site["require_consent"] is True and site["privacy_url"] == "https://police.example/privacy"
        assert site["logo_url"] == "/site/logo"
        logo = await client.get("/site/logo")
        assert logo.status == 200 and logo.headers["Content-Type"] == "image/png"
        assert await logo.read() == (tmp_path / "logo.png").read_bytes()
        css = await client.get("/site.css")
        assert css.headers["Content-Type"].startswith("text/css") and "--primary: #6b2c91" in await css.text()
        widget = await client.get("/widget.js")
        assert widget.headers["Content-Type"].startswith("text/javascript")
        assert widget.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await client.close()


def _with_logo(base: Path) -> Path:
    (base / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    return base

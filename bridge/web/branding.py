"""White label from config only: the agency's colours (/site.css), logo (/site/logo) and the
embeddable widget script (/widget.js) with its few words from the page's translation files."""
from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from ..config import Config

STATIC = Path(__file__).parent / "static"
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
              ".svg": "image/svg+xml"}


def darker(colour: str, factor: float = 0.8) -> str:
    """The hover shade of a #rrggbb colour (darker keeps the contrast with white text)."""
    return "#" + "".join(f"{int(int(colour[i:i + 2], 16) * factor):02x}" for i in (1, 3, 5))


def site_css(primary: str, header: str) -> str:
    return (f":root {{ --primary: {primary}; --primary-hover: {darker(primary)}; --brand: {header}; }}\n")


def widget_words() -> dict[str, dict[str, str]]:
    """The launcher's words in every language the page has (static/i18n/*.json, keys widget.*)."""
    words = {}
    for path in sorted((STATIC / "i18n").glob("*.json")):
        every = json.loads(path.read_text(encoding="utf-8"))
        words[path.stem] = {k.split(".", 1)[1]: v for k, v in every.items() if k.startswith("widget.")}
    return words


def widget_js(primary: str = "#0b57a4") -> str:
    source = (STATIC / "widget.js").read_text(encoding="utf-8")
    source = source.replace('/*PRIMARY*/"#0b57a4"', json.dumps(primary), 1)
    return source.replace("/*WORDS*/null", json.dumps(widget_words(), ensure_ascii=False), 1)


def routes(app: web.Application, config: Config) -> None:
    css = site_css(config.get("site.primary_color"), config.get("site.header_color"))
    script = widget_js(config.get("site.primary_color"))
    logo = config.path("site.logo") if config.get("site.logo") else None

    async def site_stylesheet(request: web.Request) -> web.Response:
        return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "no-cache"})

    async def widget(request: web.Request) -> web.Response:
        # Loaded by agencies' pages with <script src>: no CORS needed, and our CSP does not apply there.
        return web.Response(text=script, content_type="text/javascript", charset="utf-8",
                            headers={"Cache-Control": "no-cache", "Cross-Origin-Resource-Policy": "cross-origin"})

    app.router.add_get("/site.css", site_stylesheet)
    app.router.add_get("/widget.js", widget)
    if logo is not None:
        async def site_logo(request: web.Request) -> web.FileResponse:
            return web.FileResponse(logo, headers={"Content-Type": LOGO_TYPES[logo.suffix.lower()],
                                                   "Cache-Control": "no-cache"})
        app.router.add_get("/site/logo", site_logo)


def logo_url(config: Config) -> str | None:
    return "/site/logo" if config.get("site.logo") else None

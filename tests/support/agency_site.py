"""An agency's own website on another loopback origin: a page with the chat widget's one <script>
tag (and CSS that would wreck the chat if it could reach it), and a neutral page for quick exit."""
from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name}</title>
<style>* {{ color: #ff00ff !important; font-family: fantasy !important; }}</style>
</head><body><h1>{name}</h1><p>Report a lost bike, ask about a licence, or chat with us.</p>
<script src="{bridge}/widget.js" defer></script>
</body></html>
"""
NEUTRAL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Weather</title></head>
<body><h1>Weather today</h1><p>Sunny spells, light winds.</p></body></html>
"""


class AgencySite:
    """``await start()`` serves ``origin`` (http://host:port) until ``await stop()``."""

    def __init__(self, origin: str, bridge_url: str, name: str = "Central Police",
                 pages: dict[str, str] | None = None) -> None:
        self.origin, self.bridge_url, self.name = origin, bridge_url, name
        self.pages = dict(pages or {})          # more paths → HTML, e.g. a hostile site's forged forms
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        page = HOST_PAGE.format(name=self.name, bridge=self.bridge_url)

        async def host(request: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        async def neutral(request: web.Request) -> web.Response:
            return web.Response(text=NEUTRAL_PAGE, content_type="text/html")

        app.router.add_get("/", host)
        app.router.add_get("/weather", neutral)
        for path, html in self.pages.items():
            async def extra(request: web.Request, html: str = html) -> web.Response:
                return web.Response(text=html, content_type="text/html")
            app.router.add_get(path, extra)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        parts = urlsplit(self.origin)
        await web.TCPSite(self._runner, parts.hostname, parts.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

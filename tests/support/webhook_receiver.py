"""A real loopback HTTP receiver for webhooks: answers with scripted statuses and records every request."""
from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class WebhookReceiver:
    statuses: list[int] = field(default_factory=list)     # answered in turn; then 200
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> "WebhookReceiver":
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        status = self.statuses.pop(0) if self.statuses else 200
        self.requests.append(Received(dict(request.headers), await request.read(), status))
        return web.json_response({"ok": status == 200}, status=status)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

"""A real loopback HTTP receiver for webhooks: answers with scripted statuses and records every request."""
from __future__ import annotations

import json
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
    fail_first_try: bool = False                           # answer 500 to each delivery's first request
    failing_chats: set[str] = field(default_factory=set)   # answer 500 to every delivery about these chats
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
        delivery = request.headers.get("X-Precinct-Delivery")
        body = await request.read()
        if json.loads(body)["chat"]["id"] in self.failing_chats:
            status = 500
        elif self.fail_first_try and not any(r.headers.get("X-Precinct-Delivery") == delivery for r in self.requests):
            status = 500
        else:
            status = self.statuses.pop(0) if self.statuses else 200
        self.requests.append(Received(dict(request.headers), body, status))
        return web.json_response({"ok": status == 200}, status=status)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

"""A citizen speaking visitor API v1 over HTTP and WebSocket, recording every frame."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, Callable

import aiohttp

from .waiting import until


class Visitor:
    def __init__(self, base_url: str, source: str | None = None) -> None:
        """``source``: a loopback address to connect from (e.g. 127.0.0.5), as a citizen elsewhere would."""
        self.base_url = base_url.rstrip("/")
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        self.session = aiohttp.ClientSession(connector=connector)
        self.chat_id = self.token = self.ws_url = ""
        self.frames: list[dict[str, Any]] = []
        self.arrived: list[float] = []         # when each frame came (time.monotonic), for benchmarks
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    async def create(self, **fields: Any) -> dict[str, Any]:
        async with self.session.post(self.base_url + "/api/v1/chats", json=fields) as r:
            data = await r.json()
            assert r.status == 201, data
        self.chat_id, self.token, self.ws_url = data["chat_id"], data["token"], data["ws_url"]
        return data

    async def connect(self, since: int | None = None) -> dict[str, Any]:
        await self.disconnect()
        self.ws = await self.session.ws_connect(self.ws_url)
        await self.ws.send_json({"type": "auth", "token": self.token,
                                 "since": self.last_seq() if since is None else since})
        ready = await self.ws.receive_json(timeout=10)
        assert ready["type"] == "ready", ready
        self._reader = asyncio.create_task(self._read(self.ws))
        return ready

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))
                self.arrived.append(time.monotonic())

    async def wait_closed(self, timeout: float) -> int | None:
        """Until the socket is closed from the other end (what a page notices when the bridge goes away); the
        close code the page would see (1001 "server restarting", 1006 for a connection simply lost)."""
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=timeout)
        return self.ws.close_code if self.ws is not None else None

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def send(self, body: str, client_id: str | None = None, wait_ack: bool = True) -> dict[str, Any] | None:
        client_id = client_id or uuid.uuid4().hex
        assert self.ws is not None
        await self.ws.send_json({"type": "message", "client_id": client_id, "body": body})
        if not wait_ack:
            return None
        return await self.wait_frame(lambda f: f.get("type") == "ack" and f.get("client_id") == client_id,
                                     what=f"ack for {client_id}")

    async def wait_frame(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30,
                         what: str = "a frame") -> dict[str, Any]:
        return await until(lambda: next((f for f in self.frames if predicate(f)), None), timeout, what)

    def messages(self) -> list[dict[str, Any]]:
        """Message frames in seq order, each seq once (what a client shows)."""
        by_seq = {f["seq"]: f for f in self.frames if f.get("type") == "message"}
        return [by_seq[s] for s in sorted(by_seq)]

    def last_seq(self) -> int:
        seqs = [f["seq"] for f in self.frames if f.get("type") == "message"]
        return max(seqs, default=0)

    async def http(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token if token is not None else self.token}"}
        async with self.session.request(method, self.base_url + path, headers=headers, **kw) as r:
            try:
                return r.status, await r.json(content_type=None)
            except json.JSONDecodeError:
                return r.status, await r.text()

    async def close(self) -> None:
        await self.disconnect()
        await self.session.close()

"""Attachments both ways, end-to-end encrypted, through the real bridge and Synapse."""
from __future__ import annotations

import os
import struct
import uuid
import zlib

import aiohttp
import pytest

from tests.conftest import ATTACHMENT_LIMIT, MatrixEnv
from tests.support.visitor import Visitor
from tests.support.waiting import until


def tiny_png() -> bytes:
    """A real 1x1 PNG, made here (no fixture files)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


@pytest.fixture
async def chat(matrix_env: MatrixEnv, officer_of):
    officer = await officer_of("central")
    visitor = Visitor(matrix_env.public_url)
    await visitor.create(topic="general")
    await visitor.connect()
    marker = f"files {uuid.uuid4().hex[:6]}"
    await visitor.send(marker)
    room_id = (await officer.wait_message(lambda m: m.body == marker, 60)).room_id
    yield visitor, officer, room_id
    await visitor.close()


async def upload(visitor: Visitor, data: bytes, filename: str, client_id: str | None = None):
    path = (f"/api/v1/chats/{visitor.chat_id}/attachments?client_id={client_id or uuid.uuid4().hex}"
            f"&filename={filename}")
    return await visitor.http("POST", path, data=data)


async def test_citizen_photo_decrypts_at_the_officer_with_the_same_bytes(chat):
    visitor, officer, room_id = chat
    png = tiny_png()
    status, body = await upload(visitor, png, "../../etc/photo of bike.png", client_id="pic-1")
    assert status == 201, body
    again = await upload(visitor, png, "photo.png", client_id="pic-1")           # a retry: same answer
    assert again == (201, body)
    frame = await visitor.wait_frame(lambda f: f.get("seq") == body["seq"], 30, "the photo's frame")
    assert frame["kind"] == "image" and frame["attachment"]["mimetype"] == "image/png"
    assert frame["body"] == "photo of bike.png"                                # no path from the name
    event = await _wait_media(officer, room_id)
    assert event.source["content"]["msgtype"] == "m.image"
    assert await officer.download_decrypted(event) == png
    assert "file" in event.source["content"] and "url" not in event.source["content"]   # encrypted media only
    async with aiohttp.ClientSession() as s:            # the citizen can fetch their own photo back
        async with s.get(visitor.base_url + frame["attachment"]["url"],
                         headers={"Authorization": f"Bearer {visitor.token}"}) as r:
            assert r.status == 200 and await r.read() == png and r.headers["Content-Type"] == "image/png"


async def test_wrong_type_and_oversize_are_refused(chat, matrix_env: MatrixEnv):
    visitor, _, _ = chat
    status, body = await upload(visitor, b"MZ\x90\x00 this is a program", "holiday.png")
    assert status == 415 and body["error"] == "unsupported_type"
    status, body = await upload(visitor, b"%PDF-1.4 " + os.urandom(ATTACHMENT_LIMIT), "big.pdf")
    assert status == 413 and body["error"] == "file_too_large"
    status, listing = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}/messages")
    assert not [m for m in listing["messages"] if m["kind"] in ("image", "file")]


async def test_officer_file_reaches_the_citizen_through_an_authenticated_link(chat, matrix_env: MatrixEnv):
    visitor, officer, room_id = chat
    pdf = b"%PDF-1.4\n% a form to fill in\n" + os.urandom(2048)
    await officer.send_encrypted_file(room_id, pdf, "form.pdf", "application/pdf")
    frame = await visitor.wait_frame(lambda f: f.get("kind") == "file", 60, "the officer's file")
    assert frame["from"] == "officer" and frame["body"] == "form.pdf"
    url = frame["attachment"]["url"]
    status, _ = await visitor.http("GET", url, token="not-the-token")
    assert status == 401
    async with aiohttp.ClientSession() as s:
        async with s.get(matrix_env.public_url + url, headers={"Authorization": f"Bearer {visitor.token}"}) as r:
            assert r.status == 200 and await r.read() == pdf
            assert r.headers["Content-Type"] == "application/pdf"
            assert r.headers["Content-Disposition"] == 'attachment; filename="form.pdf"'
            assert r.headers["X-Content-Type-Options"] == "nosniff"


async def _wait_media(officer, room_id: str):
    return await until(lambda: next((e for r, e in officer.media if r == room_id), None), 60, "the photo at the officer")

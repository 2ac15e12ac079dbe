"""Attachments read to the end (issue 10, "evidence intact"): round trips of 300 KB, 2 MB and just under the
configured maximum, both directions, through the real bridge and Synapse. The officer's client decrypts the
very bytes the citizen sent, the citizen downloads the very bytes the officer sent, and the record's SHA-256
is that of the whole file. Over the cap, whatever the transfer encoding: 413 and nothing stored."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from typing import AsyncIterator

import aiohttp
import pytest

from tests.conftest import ATTACHMENT_LIMIT, MatrixEnv
from tests.integration.test_attachments import chat, upload  # noqa: F401  (the fixture)
from tests.support.waiting import until

SIZES = [300_000, 2_000_000, ATTACHMENT_LIMIT - 1]


def pdf_of(size: int) -> bytes:
    """A file of exactly ``size`` bytes that the bridge takes for a PDF; random, so no two are alike."""
    head = b"%PDF-1.4\n"
    return head + os.urandom(size - len(head))


def recorded_sha256(env: MatrixEnv, chat_id: str, seq: int) -> str | None:
    conn = sqlite3.connect(f"file:{env.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT json_extract(details, '$.sha256'), json_extract(details, '$.size') "
                            "FROM chat_records WHERE chat_id = ? AND kind = 'attachment' "
                            "AND json_extract(details, '$.seq') = ?", [chat_id, seq]).fetchall()
    finally:
        conn.close()
    return rows[0][0] if rows else None


def stored_counts(env: MatrixEnv, chat_id: str) -> tuple[int, int, int]:
    """(messages, attachments, outbox rows) of a chat, straight from the database."""
    conn = sqlite3.connect(f"file:{env.db_path}?mode=ro", uri=True)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {table} WHERE chat_id = ?", [chat_id]).fetchone()[0]
                     for table in ("messages", "attachments", "outbox"))  # type: ignore[return-value]
    finally:
        conn.close()


async def fetch(env: MatrixEnv, token: str, url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.get(env.public_url + url, headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.read()


@pytest.mark.parametrize("size", SIZES, ids=["300KB", "2MB", "max-1"])
async def test_citizen_file_reaches_the_officer_whole(chat, matrix_env: MatrixEnv, size: int, bridge_log):
    visitor, officer, room_id = chat
    data = pdf_of(size)
    status, body = await upload(visitor, data, f"statement-{size}.pdf")
    assert status == 201, body
    event = await until(lambda: next((e for r, e in officer.media if r == room_id
                                      and e.source["content"].get("info", {}).get("size") == size), None),
                        120, f"the {size}-byte file at the officer")
    got = await officer.download_decrypted(event)
    assert len(got) == size and got == data
    assert recorded_sha256(matrix_env, visitor.chat_id, body["seq"]) == hashlib.sha256(data).hexdigest()
    frame = await visitor.wait_frame(lambda f: f.get("seq") == body["seq"], 30, "the file's frame")
    assert frame["attachment"]["size"] == size
    assert await fetch(matrix_env, visitor.token, frame["attachment"]["url"]) == (200, data)


@pytest.mark.parametrize("size", SIZES, ids=["300KB", "2MB", "max-1"])
async def test_officer_file_reaches_the_citizen_whole(chat, matrix_env: MatrixEnv, size: int, bridge_log):
    visitor, officer, room_id = chat
    data = pdf_of(size)
    name = f"form-{uuid.uuid4().hex[:6]}.pdf"
    await officer.send_encrypted_file(room_id, data, name, "application/pdf")
    frame = await visitor.wait_frame(lambda f: f.get("kind") == "file" and f.get("body") == name, 120,
                                     f"the officer's {size}-byte file")
    status, got = await fetch(matrix_env, visitor.token, frame["attachment"]["url"])
    assert status == 200 and len(got) == size and got == data
    assert recorded_sha256(matrix_env, visitor.chat_id, frame["seq"]) == hashlib.sha256(data).hexdigest()


async def test_over_the_cap_is_refused_and_nothing_stored_whatever_the_encoding(chat, matrix_env: MatrixEnv):
    visitor, _, _ = chat
    before = stored_counts(matrix_env, visitor.chat_id)
    # With a Content-Length: refused on the header.
    status, body = await upload(visitor, pdf_of(ATTACHMENT_LIMIT + 1), "big.pdf")
    assert status == 413 and body["error"] == "file_too_large"

    # Chunked, no Content-Length: refused once the running count passes the cap.
    async def chunks() -> AsyncIterator[bytes]:
        yield b"%PDF-1.4\n"
        for _ in range(ATTACHMENT_LIMIT // 65536 + 2):
            yield os.urandom(65536)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{visitor.base_url}/api/v1/chats/{visitor.chat_id}/attachments"
                          f"?client_id={uuid.uuid4().hex}&filename=big.pdf", data=chunks(),
                          headers={"Authorization": f"Bearer {visitor.token}"}) as r:
            assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert r.status == 413 and (await r.json())["error"] == "file_too_large"
    assert stored_counts(matrix_env, visitor.chat_id) == before

    # A chunked file under the cap is read to its end, not to the end of the first buffer.
    data = pdf_of(700_000)

    async def in_pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 50_000):
            yield data[at:at + 50_000]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{visitor.base_url}/api/v1/chats/{visitor.chat_id}/attachments"
                          f"?client_id={uuid.uuid4().hex}&filename=pieces.pdf", data=in_pieces(),
                          headers={"Authorization": f"Bearer {visitor.token}"}) as r:
            assert r.status == 201
            seq = (await r.json())["seq"]
    assert recorded_sha256(matrix_env, visitor.chat_id, seq) == hashlib.sha256(data).hexdigest()


async def test_a_file_that_does_not_match_its_record_is_a_clear_error(chat, matrix_env: MatrixEnv):
    """Never a 500: bytes that are not those on record are refused with a JSON error (502: the fault is
    upstream of the citizen, who can do nothing but ask again)."""
    visitor, _, _ = chat
    status, body = await upload(visitor, pdf_of(60_000), "evidence.pdf")
    assert status == 201
    conn = sqlite3.connect(str(matrix_env.db_path), timeout=30)
    with conn:
        conn.execute("UPDATE attachments SET sha256 = ? WHERE chat_id = ? AND seq = ?",
                     ["0" * 64, visitor.chat_id, body["seq"]])
    conn.close()
    status, answer = await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}/attachments/{body['seq']}")
    assert status == 502 and answer["error"] == "attachment_unavailable"

"""Read receipts both ways (issue 15): an officer's client marking the citizen's message read shows
"read" to the citizen (a frame, and the ready frame's read_seq after a reconnect); the citizen's page
saying it showed the officer's message becomes the puppet's m.read receipt, which the officer's client sees."""
from __future__ import annotations

import uuid

import nio

from tests.conftest import MatrixEnv
from tests.integration.test_conversation import open_chat
from tests.support.visitor import Visitor
from tests.support.waiting import until


async def test_reading_is_seen_on_both_sides(matrix_env: MatrixEnv, officer_of, bridge_log):
    officer = await officer_of("central")
    visitor = Visitor(matrix_env.public_url)
    receipts: list[nio.Receipt] = []

    async def on_receipt(room: nio.MatrixRoom, event: nio.ReceiptEvent) -> None:
        receipts.extend(event.receipts)
    officer.client.add_ephemeral_callback(on_receipt, nio.ReceiptEvent)
    try:
        got = await open_chat(visitor, officer)
        mine = next(f for f in visitor.messages() if f.get("from") == "visitor" and f.get("body") == got.body)

        # The officer's client reads the citizen's message.
        resp = await officer.client.room_read_markers(got.room_id, got.event_id, got.event_id)
        assert isinstance(resp, nio.RoomReadMarkersResponse), resp
        read = await visitor.wait_frame(lambda f: f.get("type") == "read", 60, "the read frame")
        assert read == {"type": "read", "seq": mine["seq"]}
        ready = await visitor.connect()                      # a page opened again knows it too
        assert ready["read_seq"] == mine["seq"]

        # The citizen's page shows the officer's reply and says so; the officer sees the puppet's receipt.
        reply = f"we have it {uuid.uuid4().hex[:6]}"
        event_id = await officer.send(got.room_id, reply)
        theirs = await visitor.wait_frame(lambda f: f.get("body") == reply, 60, "the officer's reply")
        await visitor.ws.send_json({"type": "read", "seq": theirs["seq"]})
        await until(lambda: any(r.event_id == event_id and r.user_id == got.sender and r.receipt_type == "m.read"
                                for r in receipts), 60, "the puppet's read receipt at the officer")

        # A bad read frame is a clear error; the socket carries on.
        await visitor.ws.send_json({"type": "read", "seq": "all"})
        error = await visitor.wait_frame(lambda f: f.get("type") == "error", 30, "the error frame")
        assert error["error"] == "bad_frame" and "seq" in error["message"]
        await visitor.send("still here")
    finally:
        await visitor.close()

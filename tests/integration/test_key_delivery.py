"""Room keys that the homeserver's appservice push skips are recovered from the device inbox.

Synapse 1.163 can skip to-device messages in appservice transactions when several are
sent at once to different puppets (seen in bench/latency.py: an officer sharing keys with ten
chat rooms at once). The messages stay in each device's inbox, and the bridge must fetch
them rather than leave the officer's messages undecryptable.
"""
from __future__ import annotations

import asyncio
import uuid

from tests.conftest import MatrixEnv
from tests.support.visitor import Visitor


async def test_officer_keys_shared_to_many_chats_at_once_all_arrive(matrix_env: MatrixEnv, officer_of, bridge_log):
    officer = await officer_of("central")
    visitors = [Visitor(matrix_env.public_url) for _ in range(10)]
    try:
        await asyncio.gather(*(v.create(topic="general") for v in visitors))
        await asyncio.gather(*(v.connect() for v in visitors))
        markers = [f"parallel {i} {uuid.uuid4().hex[:6]}" for i in range(len(visitors))]
        await asyncio.gather(*(v.send(m) for v, m in zip(visitors, markers)))
        rooms = [(await officer.wait_message(lambda msg, m=m: msg.body == m, 90)).room_id for m in markers]
        # The officer's first message in every room at once: ten room keys to ten puppets in parallel.
        replies = [f"reply {i} {uuid.uuid4().hex[:6]}" for i in range(len(visitors))]
        await asyncio.gather(*(officer.send(r, t) for r, t in zip(rooms, replies)))
        for v, text in zip(visitors, replies):
            await v.wait_frame(lambda f, t=text: f.get("body") == t, 60, f"officer reply {text!r} at the citizen")
        # Recovered quietly: nobody was asked in a chat room to send anything again. (The bot in the dispatch
        # room may ask for a !claim again: it cannot fetch its own inbox, and the officer then resends.)
        assert not any("send it again" in m.body for m in officer.messages if m.room_id in rooms)
    finally:
        await asyncio.gather(*(v.close() for v in visitors))


async def test_officer_signing_in_on_a_new_device_after_the_invite_can_read_the_chat(matrix_env: MatrixEnv,
                                                                                      officer_of, bridge_log):
    """The invite goes out before the officer's new device exists; joining must still bring it the key."""
    from tests.support.bridge_db import dispatch_room_of, room_of
    from tests.support.waiting import until

    visitor = Visitor(matrix_env.public_url)
    try:
        created = await visitor.create(topic="night")
        await visitor.connect()
        marker = f"before the officer's device existed {uuid.uuid4().hex[:6]}"
        await visitor.send(marker)                      # a chat's room is made with its first message
        room_id = await room_of(matrix_env.db_path, visitor.chat_id)
        # The officer claims on one device, which does not take up the invite ...
        claimer = await officer_of("nightshift", auto_claim=False)
        claimer.auto_join = lambda room: room != room_id
        await claimer.claim(await dispatch_room_of(matrix_env.db_path, "nightshift"), created["number"])
        await until(lambda: room_id in claimer.client.invited_rooms, 60, "the officer's invite")
        officer = await officer_of("nightshift", auto_claim=False)   # ... and joins from a device made now
        await officer.wait_joined(room_id, 60)
        later = f"after the join {uuid.uuid4().hex[:6]}"
        await visitor.send(later)
        try:
            got = await officer.wait_message(lambda m: m.body == later, 30, "message after the join")
        except AssertionError:
            raise AssertionError(f"officer {officer.client.device_id} undecryptable: "
                                 f"{[(e.session_id, e.room_id == room_id) for e in officer.undecryptable]} "
                                 f"got: {[m.body for m in officer.messages]} visitor: {visitor.messages()}")
        assert got.room_id == room_id
    finally:
        await visitor.close()

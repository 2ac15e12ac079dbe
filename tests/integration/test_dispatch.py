"""Dispatch rooms and claiming: the bot's live notices, manual claims (command or reaction), one winner."""
from __future__ import annotations

import asyncio
import uuid

from tests.support.bridge_db import audit_entries, dispatch_room_of, room_of


async def test_manual_claim_from_the_dispatch_room(matrix_env, officer_of, visitors, bridge_log):
    officer = await officer_of("central", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    visitor = visitors()
    created = await visitor.create(topic="lost-property", language="en")
    number = created["number"]
    await visitor.connect()
    words = f"I left my bag on the 42 bus {uuid.uuid4().hex[:6]}"
    await visitor.send(words)

    notice = await officer.notice(dispatch, number)
    assert "Lost property" in notice.body and "language en" in notice.body and f"!claim {number}" in notice.body
    assert notice.source["content"]["msgtype"] == "m.notice"
    assert notice.sender == "@precinct:localhost"
    await officer.notice(dispatch, number, edited=None, predicate=lambda b: words in b)   # the preview
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    # Nobody is invited before the claim: checked once the bot has answered a later command, i.e. after any
    # invite made with the room (or with the notice and its preview) would have reached this officer.
    await officer.caught_up(dispatch)
    assert room not in officer.client.invited_rooms and room not in officer.client.rooms

    await officer.claim(dispatch, number)
    await officer.wait_joined(room, 60)
    await officer.wait_message(lambda m: m.room_id == room and m.body == words, 60, "the citizen's words")
    await visitor.wait_frame(lambda f: f.get("type") == "status" and f.get("state") == "active",
                             what="active once the claiming officer joined")
    await officer.notice(dispatch, number, edited=True, predicate=lambda b: "Taken by @officer1:localhost" in b)
    await officer.wait_message(lambda m: m.room_id == dispatch and f"Chat {number} claimed by" in m.body,
                               what="claim confirmation")

    await officer.send(room, "!close")
    await officer.notice(dispatch, number, edited=True, predicate=lambda b: "Closed after" in b)


async def test_a_reaction_on_the_notice_claims_it(matrix_env, officer_of, visitors, bridge_log):
    officer = await officer_of("central", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    notice = await officer.notice(dispatch, number)
    await officer.react(dispatch, notice.event_id, "👍")
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await officer.wait_joined(room, 60)
    await officer.notice(dispatch, number, edited=True, predicate=lambda b: "@officer1:localhost" in b)
    await officer.send(room, "!close")


async def test_simultaneous_claims_have_exactly_one_winner(matrix_env, officer_of, visitors, bridge_log):
    officer = await officer_of("central", auto_claim=False)
    supervisor = await officer_of("sergeant", auto_claim=False)       # supervisors may claim too
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    await supervisor.wait_member(dispatch, 60)
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    await officer.notice(dispatch, number)
    await supervisor.notice(dispatch, number)

    await asyncio.gather(officer.claim(dispatch, number), supervisor.claim(dispatch, number))

    def answers():
        return [m.body for m in officer.messages
                if m.room_id == dispatch and (f"Chat {number} claimed by" in m.body
                                              or f"Chat {number} was already taken by" in m.body)]
    found = await officer.wait_message(lambda m: len(answers()) >= 2, 60, "both claims answered")
    assert found
    wins = [a for a in answers() if "claimed by" in a]
    losses = [a for a in answers() if "already taken" in a]
    assert len(wins) == 1 and len(losses) == 1, answers()
    winner = officer if "@officer1:localhost" in wins[0] else supervisor
    loser = supervisor if winner is officer else officer
    assert winner.client.user_id in losses[0]            # the loser is told who has it
    claims = [e for e in audit_entries(matrix_env.db_path, "chat.claim") if e["target"] == visitor.chat_id]
    assert sorted((e["actor"], e["outcome"]) for e in claims) == sorted(
        [(winner.client.user_id, "ok"), (loser.client.user_id, "refused")])
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await winner.wait_joined(room, 60)
    await loser.caught_up(dispatch)                       # past the moment the loser's invite would have come
    assert room not in loser.client.invited_rooms and room not in loser.client.rooms
    await winner.send(room, "!close")


async def test_claims_from_two_rooms_at_once_have_exactly_one_winner(matrix_env, officer_of, visitors, bridge_log):
    """Two officers of one agency claim the same chat at the same instant from two different rooms: one with
    ``!claim N`` in the dispatch room, the other with ``!claim N`` in their direct room with the bot; both sends
    are released together (both clients ready: room keys shared and devices known beforehand).

    What this can and cannot race, precisely: the bridge handles every room's events on one inbound pump
    (``chats/inbound.py``, ``InboundPump.process_all``: the rooms with pending events one after another, each
    event's handling awaited to its end, the dispatch and direct rooms both by ``officers/bot_rooms.BotRooms``),
    and ``officers/routing.Routing.claim`` reads the chat and writes the claim with no ``await`` in between. So
    inside one bridge the second claim always finds the first one written: the claims from two rooms are
    serialised by the pump, never interleaved. Two guards stand between them: the claim's check of
    ``chat.claimed_by`` and the conditional ``UPDATE … WHERE claimed_by IS NULL`` (``store/chats.claim``). Checked
    by removing them: either one alone keeps this test passing (the pump's order means the second claim meets
    whichever is left), both removed it fails with two winners. What it shows is
    the outcome officers see when they claim from two rooms at once: exactly one winner recorded, only the
    winner invited to the chat's room, the loser told who has it, in the room they claimed from."""
    officer = await officer_of("central", auto_claim=False)
    supervisor = await officer_of("sergeant", auto_claim=False)       # supervisors may claim too
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    await officer.wait_member(dispatch, 60)
    await supervisor.wait_member(dispatch, 60)
    direct = await supervisor.create_room_with("@precinct:localhost")
    await supervisor.wait_message(lambda m: m.room_id == direct and m.body.startswith("Commands"), 60,
                                  "the bot's greeting in a direct chat")
    # Both rooms warmed up, so that neither send waits for key sharing or a device query and both go at once.
    await officer.caught_up(dispatch)
    await supervisor.caught_up(direct)
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    await officer.notice(dispatch, number)
    await supervisor.notice(dispatch, number)

    release = asyncio.Event()

    async def claim(who, room_id: str) -> str:
        await release.wait()
        return await who.send(room_id, f"!claim {number}")
    sends = [asyncio.create_task(claim(officer, dispatch)), asyncio.create_task(claim(supervisor, direct))]
    await asyncio.sleep(0)                    # both tasks are waiting on the event
    release.set()
    await asyncio.gather(*sends)

    def answers(who, room_id: str) -> list[str]:
        return [m.body for m in who.messages if m.room_id == room_id
                and (f"Chat {number} claimed by" in m.body or f"Chat {number} was already taken by" in m.body)]
    await officer.wait_message(lambda m: answers(officer, dispatch), 60, "the dispatch room's claim answered")
    await supervisor.wait_message(lambda m: answers(supervisor, direct), 60, "the direct room's claim answered")
    in_dispatch, in_direct = answers(officer, dispatch), answers(supervisor, direct)
    # Each claim answered once, in the room it came from (the answer to the direct-room claim is not in the
    # dispatch room, where the officer reads).
    assert len(in_dispatch) == 1 and len(in_direct) == 1, (in_dispatch, in_direct)
    wins = [a for a in in_dispatch + in_direct if "claimed by" in a]
    losses = [a for a in in_dispatch + in_direct if "already taken by" in a]
    assert len(wins) == 1 and len(losses) == 1, (in_dispatch, in_direct)
    winner, loser = (officer, supervisor) if "claimed by" in in_dispatch[0] else (supervisor, officer)
    assert f"claimed by {winner.client.user_id}" in wins[0], wins
    assert f"already taken by {winner.client.user_id}" in losses[0], losses     # the loser is told who has it
    claims = [e for e in audit_entries(matrix_env.db_path, "chat.claim") if e["target"] == visitor.chat_id]
    assert sorted((e["actor"], e["outcome"]) for e in claims) == sorted(
        [(winner.client.user_id, "ok"), (loser.client.user_id, "refused")])

    # Exactly one officer invited: the winner joins; then, past the moment the loser's invite would have come
    # (the bot answered a later command of theirs), the room's membership on the homeserver has no one else.
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await winner.wait_joined(room, 60)
    await loser.caught_up(dispatch)
    assert room not in loser.client.invited_rooms and room not in loser.client.rooms
    state = await winner.client.room_get_state(room)
    people = {e["state_key"] for e in state.events if e["type"] == "m.room.member"
              and e["content"].get("membership") in ("invite", "join")
              and not e["state_key"].startswith(("@webchat_", "@precinct:"))}
    assert people == {winner.client.user_id}, people
    await winner.send(room, "!close")


async def test_only_officers_of_the_agency_may_claim(matrix_env, officer_of, visitors, bridge_log):
    """officer2 belongs to the night shift: a direct chat with the bot does not let them take a central chat."""
    central = await officer_of("central", auto_claim=False)
    night = await officer_of("nightshift", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    await central.notice(dispatch, number)

    direct = await night.create_room_with("@precinct:localhost")
    await night.wait_message(lambda m: m.room_id == direct and m.body.startswith("Commands"), 60,
                             "the bot's greeting in a direct chat")
    await night.send(direct, f"!claim {number}")
    refusal = await night.wait_message(lambda m: m.room_id == direct and f"no chat {number}" in m.body, 60,
                                       "refusal in the direct chat")
    assert "claimed by" not in refusal.body
    await night.send(direct, "!frobnicate")
    await night.wait_message(lambda m: m.room_id == direct and "Unknown command" in m.body and "!claim" in m.body,
                             60, "usage after an unknown bot command")
    # Still free: the central officer can take it.
    await central.claim(dispatch, number)
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await central.wait_joined(room, 60)
    await central.send(room, "!close")


async def test_a_transfer_to_another_agency_queues_it_in_their_dispatch_room(matrix_env, officer_of, visitors,
                                                                              bridge_log):
    central = await officer_of("central", auto_claim=False)
    night = await officer_of("nightshift", auto_claim=False)
    central_room = await dispatch_room_of(matrix_env.db_path, "central")
    night_room = await dispatch_room_of(matrix_env.db_path, "nightshift")
    visitor = visitors()
    number = (await visitor.create(topic="general"))["number"]
    await visitor.connect()
    words = f"Loud party every night {uuid.uuid4().hex[:6]}"
    await visitor.send(words)
    await central.claim(central_room, number)
    room = await room_of(matrix_env.db_path, visitor.chat_id)
    await central.wait_joined(room, 60)
    await central.wait_message(lambda m: m.room_id == room and m.body == words, 60, "the citizen's words")

    await central.send(room, "!transfer nightshift noise after midnight")
    await central.notice(central_room, number, edited=True,
                         predicate=lambda b: "Transferred to Nightshift Police by @officer1:localhost" in b)
    # Queued at the night shift with the note; nobody there is invited before they take it.
    notice = await night.notice(night_room, number, edited=None, predicate=lambda b: "noise after midnight" in b)
    assert "Transferred here by @officer1:localhost" in notice.body or "m.new_content" in notice.source["content"]
    assert room not in night.client.invited_rooms and room not in night.client.rooms
    await night.claim(night_room, number)
    await night.wait_joined(room, 60)
    history = await night.wait_message(lambda m: m.room_id == room and words in m.body and "so far" in m.body, 60,
                                       "the conversation so far")
    assert "noise after midnight" in history.body
    await night.send(room, "!close")


async def test_an_officer_command_the_bot_cannot_decrypt_nudges_the_inbox_then_asks_again(matrix_env, officer_of,
                                                                                          bridge_log):
    """The bot cannot fetch its own inbox (Synapse refuses the appservice user /sync). When an officer's
    message in the dispatch room will not decrypt, the bot asks the homeserver to push what it holds for
    it (a no-op to-device note to its own device, which the homeserver accepts), and only after the wait
    asks the officer to send it again."""
    import time

    import aiohttp
    import yaml

    from tests.support.bridge_db import dispatch_room_of
    from tests.support.waiting import until

    officer = await officer_of("central", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    await officer.wait_joined(dispatch, 60)
    hs_token = yaml.safe_load(matrix_env.registration_path.read_text())["hs_token"]
    bogus = {"event_id": f"${uuid.uuid4().hex}", "room_id": dispatch, "type": "m.room.encrypted",
             "sender": officer.client.user_id, "origin_server_ts": int(time.time() * 1000),
             "content": {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "A" * 43, "device_id": "NOPE",
                         "session_id": f"no-key-{uuid.uuid4().hex}", "ciphertext": "AwgAEhA"}}
    async with aiohttp.ClientSession() as s:
        async with s.put(f"{matrix_env.config['appservice']['url']}/_matrix/app/v1/transactions/n-{uuid.uuid4().hex}",
                         json={"events": [bogus]}, headers={"Authorization": f"Bearer {hs_token}"}) as r:
            assert r.status == 200

    def nudged() -> bool:
        log = matrix_env.synapse.log_path.read_text(errors="replace")
        return any('200 "PUT /_matrix/client/v3/sendToDevice/m.room.encrypted/precinct.' in line and ".nudge" in line
                   for line in log.splitlines())
    await until(nudged, 60, "the homeserver accepting the bot's inbox nudge")
    ask = await officer.wait_message(lambda m: m.room_id == dispatch and "could not be decrypted by the bridge"
                                     in m.body, 60, "the bot asking the officer to send it again")
    # A reply to the message that failed, so the officer (and their client, which can read it) knows which.
    assert ask.source["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": bogus["event_id"]}}


async def test_a_claim_whose_key_missed_the_bot_works_after_discarding_the_session(matrix_env, officer_of, visitors,
                                                                                   bridge_log):
    """The room key of an officer's !claim can miss the bot for good (the homeserver's push skipped it and the
    appservice's own user has no inbox to fetch). Sending again under the same key would fail the same way;
    the bot says to discard the session first (Element's /discardsession), and the claim then goes through.
    The loss is made here in the officer's own client: it sends the new room key to everyone but the bot while
    believing the bot has it too (what nio believes after the homeserver accepted a key the push then skips)."""
    from tests.support.bridge_db import claimed_by
    from tests.support.waiting import until

    officer = await officer_of("central", auto_claim=False)
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")
    visitor = visitors()
    number = (await visitor.create(topic="general", language="en"))["number"]
    await officer.notice(dispatch, number)
    # The officer's client believes it gave the bot its new room key; the to-device message never leaves.
    olm, bot = officer.client.olm, "@precinct:localhost"
    shares = olm.share_group_session_parallel

    def losing_the_bots_key(*args, **kwargs):
        for sharing_with, to_device in shares(*args, **kwargs):
            yield sharing_with, {"messages": {u: d for u, d in to_device["messages"].items() if u != bot}}
    olm.share_group_session_parallel = losing_the_bots_key
    try:
        officer.client.invalidate_outbound_session(dispatch)   # a new key for the !claim, then lost for the bot
        await officer.claim(dispatch, number)
    finally:
        del olm.share_group_session_parallel
    assert any(bot == user for user, _ in olm.outbound_group_sessions[dispatch].users_shared_with)

    ask = await officer.wait_message(lambda m: m.room_id == dispatch and "could not be decrypted by the bridge" in m.body
                                     and officer.client.user_id in m.body, 60, "the bot asking to send it again")
    assert "/discardsession" in ask.body
    # The test officer does what the notice says (tests/support/officer.py): discard, then send it again.
    await until(lambda: claimed_by(matrix_env.db_path, visitor.chat_id) == officer.client.user_id, 60,
                "the claim sent again under a new room key")


async def test_a_supervisor_watches_an_active_chat_and_reads_it_from_the_start(matrix_env, officer_of, visitors,
                                                                              bridge_log):
    """!watch N (issue 15): a supervisor of the chat's agency is invited to its room, reads the conversation
    from its first message, and the audit log says who looked in; an officer who is not a supervisor is
    refused, and that is audited too."""
    from tests.integration.test_conversation import open_chat

    officer = await officer_of("central")
    visitor = visitors()
    got = await open_chat(visitor, officer)
    number = (await visitor.http("GET", f"/api/v1/chats/{visitor.chat_id}"))[1]["number"]
    first = got.body
    dispatch = await dispatch_room_of(matrix_env.db_path, "central")

    await officer.send(dispatch, f"!watch {number}")
    await officer.wait_message(lambda m: m.room_id == dispatch and "Only supervisors may watch" in m.body, 60,
                               "the refusal for an officer")
    supervisor = await officer_of("sergeant", auto_claim=False)
    await supervisor.wait_member(dispatch, 60)
    await supervisor.send(dispatch, f"!watch {number}")
    await supervisor.wait_message(lambda m: m.room_id == dispatch and f"invited to chat {number}" in m.body, 60,
                                  "the bot's answer")
    await supervisor.wait_joined(got.room_id, 60)
    await supervisor.wait_message(lambda m: m.room_id == got.room_id and m.body == first, 60,
                                  "the citizen's first message, read by the supervisor")
    watches = [e for e in audit_entries(matrix_env.db_path, "chat.watch") if e["target"] == visitor.chat_id]
    assert sorted((e["actor"], e["outcome"]) for e in watches) == sorted(
        [(officer.client.user_id, "refused"), (supervisor.client.user_id, "ok")])

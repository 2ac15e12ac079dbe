"""Queue position and the honest wait estimate (bridge/chats/queue.py, lifecycle.queue_place)."""
from __future__ import annotations

from bridge.chats.hub import ChatHub
from bridge.chats.lifecycle import ChatService
from bridge.chats.queue import MIN_SAMPLES, abandoned, estimate_seconds
from bridge.web.visitor_api import queue_frame
from bridge.store import Store
from bridge.store.chats import ACTIVE
from tests.support.configs import example_config


def test_no_estimate_without_enough_real_waits():
    assert estimate_seconds([]) is None
    assert estimate_seconds([60_000] * (MIN_SAMPLES - 1)) is None
    assert estimate_seconds([60_000, 120_000, 240_000, 30_000, 90_000]) == 90
    assert queue_frame("waiting", 2, None) == {"type": "status", "state": "waiting", "position": 2,
                                               "estimate_seconds": None}
    assert queue_frame("active", None, None) == {"type": "status", "state": "active"}


def test_positions_move_up_and_waiting_chats_hear_about_it(tmp_path):
    store = Store.open(tmp_path / "p.db")
    hub = ChatHub()
    service = ChatService(example_config(tmp_path), store, None, None, None, hub, lambda: None)  # type: ignore[arg-type]
    service.start_setup = lambda chat_id: None
    chats = [service.open("general", None, None)[0] for _ in range(3)]
    assert [service.queue_place(store.chats.get(c.id))[0] for c in chats] == [1, 2, 3]
    subs = [hub.subscribe(c.id) for c in chats]
    service.close(store.chats.get(chats[0].id), by="visitor")           # the first citizen gives up
    assert [service.queue_place(store.chats.get(c.id))[0] for c in chats[1:]] == [1, 2]
    assert all(any(s.signals.get_nowait()["kind"] == "queue" for _ in range(len(s.signals))) for s in subs[1:])
    store.close()


def test_estimate_comes_from_real_answered_chats_on_the_topic(tmp_path):
    store = Store.open(tmp_path / "p.db")
    service = ChatService(example_config(tmp_path), store, None, None, None, ChatHub(), lambda: None)  # type: ignore[arg-type]
    service.start_setup = lambda chat_id: None
    for i in range(MIN_SAMPLES):
        chat, _ = service.open("general", None, None)
        store.chats.set_state(chat.id, ACTIVE, officer="@o:p")
        store.db.execute("UPDATE chats SET answered_ts = created_ts + ? WHERE id = ?", [(i + 1) * 60_000, chat.id])
    waiting, _ = service.open("general", None, None)
    other_topic, _ = service.open("lost-property", None, None)
    assert service.queue_place(store.chats.get(waiting.id)) == (1, 180)          # median of 1..5 minutes
    assert service.queue_place(store.chats.get(other_topic.id)) == (2, None)     # no data for that topic yet
    store.close()


def test_a_waiting_chat_is_abandoned_only_with_no_page_open_and_nothing_for_the_whole_limit():
    assert not abandoned(10_000, 10, 0, 1_000)                      # opened 9 s ago
    assert abandoned(11_000, 10, 0, 1_000)
    assert not abandoned(99_000, 10, 1, 1_000), "an open page keeps it"
    assert not abandoned(20_000, 10, 0, 1_000, 15_000, None), "a message (or a connection) 5 s ago"
    assert abandoned(25_000, 10, 0, 1_000, 15_000, None)
    assert not abandoned(10**9, 0, 0, 1_000), "0 turns it off"


def test_the_hub_remembers_when_a_chats_last_page_went_away():
    hub = ChatHub()
    assert hub.last_seen("c") is None
    first, second = hub.subscribe("c"), hub.subscribe("c")
    assert hub.connections("c") == 2 and hub.last_seen("c") is not None
    first.close()
    assert hub.connections("c") == 1
    second.close()
    gone = hub.last_seen("c")
    assert hub.connections("c") == 0 and gone is not None
    hub.forget("c")
    assert hub.last_seen("c") is None


def test_the_hub_forgets_pages_gone_longer_than_any_abandoned_limit():
    """A page usually closes after its chat ended, so the end cannot forget it: remembered for good, every chat
    ever served would stay in memory. Kept as long as the longest abandoned limit, which the decision needs."""
    now = [1_000.0]
    hub = ChatHub(keep_left_seconds=900, clock=lambda: now[0])
    for i in range(5_000):                        # a day of chats, one page closing every 17 s
        hub.subscribe(f"chat-{i}").close()
        now[0] += 17.28
    assert hub.remembered <= 900 / 17.28 + 60 / 17.28 + 2, hub.remembered
    assert hub.last_seen("chat-4999") is not None and hub.last_seen("chat-4950") is not None
    assert hub.last_seen("chat-0") is None
    # What is forgotten could not change the decision: older than the limit, as the creation time already is.
    recent = hub.last_seen("chat-4950")
    assert recent is not None and now[0] * 1000 - recent < 900_000


def test_a_hub_for_agencies_that_never_close_abandoned_chats_remembers_nothing():
    hub = ChatHub(keep_left_seconds=0)
    hub.subscribe("c").close()
    assert hub.remembered == 0 and hub.last_seen("c") is None


def test_the_longest_abandoned_limit_is_any_agencys_own_or_the_default(tmp_path):
    """What the bridge gives the hub (app.py): an agency's own, longer limit counts; 0 everywhere: nothing kept."""
    import yaml

    from bridge import config as cfg
    from tests.support.configs import ROOT

    def with_limits(default: float, own: list[float | None]) -> cfg.Config:
        raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
        raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
        raw["crypto"]["pickle_key"] = "c" * 64
        raw["chats"]["abandoned_seconds"] = default
        raw["agencies"].append({**raw["agencies"][0], "id": "north", "name": "North Police"})
        for key in ("dispatch_room", "topics"):
            raw["agencies"][1].pop(key, None)
        for agency, limit in zip(raw["agencies"], own):
            if limit is not None:
                agency.setdefault("timeouts", {})["abandoned_seconds"] = limit
        return cfg.load(raw, tmp_path, {})

    assert with_limits(900, [None, None]).longest_abandoned_seconds() == 900
    assert with_limits(900, [None, 7200]).longest_abandoned_seconds() == 7200
    assert with_limits(900, [0, 0]).longest_abandoned_seconds() == 0

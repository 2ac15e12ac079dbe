"""Metrics: the tiny recording functions move the right series; the levels are read at scrape time."""
from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bridge import metrics


def sample(name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_counters_and_histograms_move():
    before_matrix = sample("precinct_messages_bridged_total", direction="to_matrix")
    before_citizen = sample("precinct_messages_bridged_total", direction="to_citizen")
    metrics.message_bridged(metrics.TO_MATRIX)
    metrics.message_bridged(metrics.TO_MATRIX)
    metrics.message_bridged(metrics.TO_CITIZEN)
    assert sample("precinct_messages_bridged_total", direction="to_matrix") == before_matrix + 2
    assert sample("precinct_messages_bridged_total", direction="to_citizen") == before_citizen + 1

    waits = sample("precinct_waiting_seconds_count", agency="unit")
    under_30 = sample("precinct_waiting_seconds_bucket", agency="unit", le="30.0")
    metrics.chat_answered("unit", created_ms=1_000_000, answered_ms=1_020_000)      # 20 s
    metrics.chat_answered("unit", created_ms=1_000_000, answered_ms=1_100_000)      # 100 s
    assert sample("precinct_waiting_seconds_count", agency="unit") == waits + 2
    assert sample("precinct_waiting_seconds_bucket", agency="unit", le="30.0") == under_30 + 1
    total = sample("precinct_waiting_seconds_sum", agency="unit")
    metrics.first_response("unit", created_ms=0, replied_ms=45_000)
    assert sample("precinct_first_response_seconds_sum", agency="unit") >= 45
    assert sample("precinct_waiting_seconds_sum", agency="unit") == total

    deferred, final = (sample("precinct_decrypt_failures_total", final=f) for f in ("false", "true"))
    metrics.decrypt_failed(final=False)
    assert sample("precinct_decrypt_failures_total", final="false") == deferred + 1
    assert sample("precinct_decrypt_failures_total", final="true") == final

    lags = sample("precinct_appservice_transaction_lag_seconds_count")
    within_1s = sample("precinct_appservice_transaction_lag_seconds_bucket", le="1.0")
    metrics.transaction_processed(None)                 # a transaction with no room events: no lag to tell
    metrics.transaction_processed(metrics._now_ms() - 2000)
    assert sample("precinct_appservice_transaction_lag_seconds_count") == lags + 1
    assert sample("precinct_appservice_transaction_lag_seconds_bucket", le="1.0") == within_1s
    assert sample("precinct_appservice_transaction_lag_seconds_sum") >= 2


def test_levels_are_read_from_the_bridge_at_scrape_time():
    state = {("central", "waiting"): 3, ("central", "active"): 1, ("north", "closed"): 7}
    sockets = [2]
    unwatch = metrics.watch(metrics.LevelsCollector(lambda: dict(state), lambda: ["central", "north"],
                                                    lambda: sockets[0], lambda: 4))
    try:
        assert sample("precinct_queue_length", agency="central") == 3
        assert sample("precinct_queue_length", agency="north") == 0
        assert sample("precinct_active_chats", agency="central") == 1
        assert sample("precinct_websocket_connections") == 2
        assert sample("precinct_appservice_transactions_pending") == 4
        state[("central", "waiting")] = 2
        sockets[0] = 0
        assert sample("precinct_queue_length", agency="central") == 2
        assert sample("precinct_websocket_connections") == 0
    finally:
        unwatch()
    assert "precinct_queue_length" not in metrics.render().decode()


def test_a_second_bridge_replaces_the_first_ones_levels():
    first = metrics.watch(metrics.LevelsCollector(lambda: {}, lambda: ["a"], lambda: 1, lambda: 0))
    second = metrics.watch(metrics.LevelsCollector(lambda: {}, lambda: ["a"], lambda: 5, lambda: 0))
    try:
        assert sample("precinct_websocket_connections") == 5
        first()                                          # undoing the replaced one changes nothing
        assert sample("precinct_websocket_connections") == 5
    finally:
        second()


async def test_metrics_app_serves_prometheus_text():
    async with TestClient(TestServer(metrics.app())) as client:
        r = await client.get("/metrics")
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
        assert "# TYPE precinct_messages_bridged_total counter" in text
        assert (await client.get("/")).status == 404

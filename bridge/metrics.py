"""Prometheus metrics: tiny functions the chat code calls, and a scrape-time view of the store.

Counters and histograms are fed where things happen (``message_bridged``, ``chat_answered`` …);
levels that the store already knows (queue length, active chats, open WebSockets, unprocessed
appservice transactions) are read when Prometheus scrapes, so they can never drift from the truth
after a restart.  Served only on the private metrics listener (``metrics.bind_host``/``port``),
never on the public one: the figures describe police workload.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Seconds a citizen waits: from a few seconds (staffed desk) to an hour (night, busy).
WAIT_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))

TO_MATRIX, TO_CITIZEN = "to_matrix", "to_citizen"

_waiting = Histogram("precinct_waiting_seconds", "Time from a chat being opened until an officer answers it "
                     "(joins the room).", ["agency"], buckets=WAIT_BUCKETS, registry=REGISTRY)
_first_response = Histogram("precinct_first_response_seconds", "Time from a chat being opened until the first "
                            "message from an officer.", ["agency"], buckets=WAIT_BUCKETS, registry=REGISTRY)
_bridged = Counter("precinct_messages_bridged", "Messages carried across the bridge, by direction "
                   "(to_matrix: a citizen's message sent into the room; to_citizen: an officer's message stored "
                   "for the citizen).", ["direction"], registry=REGISTRY)
_decrypt = Counter("precinct_decrypt_failures", "Officer events the bridge could not decrypt: final=false when "
                   "first seen without keys (it waits for them), final=true when given up and the officer asked "
                   "to resend.", ["final"], registry=REGISTRY)
_key_requests = Counter("precinct_room_key_requests", "Room keys asked of an officer's devices "
                        "(m.room_key_request) because neither the push nor the device's inbox brought them within "
                        "5 s; Element answers, and the event is then decrypted without the officer resending.",
                        registry=REGISTRY)
_txn_lag = Histogram("precinct_appservice_transaction_lag_seconds", "From the oldest event's origin_server_ts in "
                     "an appservice transaction until the bridge finished processing it (homeserver queueing plus "
                     "bridge work).", buckets=LAG_BUCKETS, registry=REGISTRY)

_typing = Counter("precinct_typing_calls", "Typing notifications sent to the homeserver for citizens (coalesced: "
                  "changes of state only, at most one per chat per web.typing_interval_seconds).", registry=REGISTRY)
_refused = Counter("precinct_visitor_refusals", "Requests refused to protect the service, by reason "
                   "(rate_limited: a message over the chat's rate; too_many_connections: a WebSocket over a cap; "
                   "blocked: a new chat from a source an officer blocked; <limit>_per_address or <limit>_overall: "
                   "a request over a limits.* token bucket, limit being chats, offline_messages, uploads or "
                   "console_sign_ins; pow_*: a new chat without a good proof of work, by its error code; "
                   "busy_resources: a new chat while the bridge keeps its last file descriptors for open chats).",
                   ["reason"], registry=REGISTRY)


def typing_sent() -> None:
    _typing.inc()


def visitor_refused(reason: str) -> None:
    _refused.labels(reason).inc()


def message_bridged(direction: str) -> None:
    _bridged.labels(direction).inc()


def chat_answered(agency: str, created_ms: int, answered_ms: int | None = None) -> None:
    _waiting.labels(agency).observe(max(0.0, ((answered_ms or _now_ms()) - created_ms) / 1000))


def first_response(agency: str, created_ms: int, replied_ms: int | None = None) -> None:
    _first_response.labels(agency).observe(max(0.0, ((replied_ms or _now_ms()) - created_ms) / 1000))


def decrypt_failed(final: bool) -> None:
    _decrypt.labels("true" if final else "false").inc()


def room_key_requested() -> None:
    _key_requests.inc()


def transaction_processed(oldest_origin_ms: int | None) -> None:
    if oldest_origin_ms is not None:
        _txn_lag.observe(max(0.0, (_now_ms() - oldest_origin_ms) / 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


class LevelsCollector(Collector):
    """Gauges read at scrape time from callables the bridge supplies (store counts, the hub)."""

    def __init__(self, chat_counts: Callable[[], dict[tuple[str, str], int]], agencies: Callable[[], list[str]],
                 websockets: Callable[[], int], pending_transactions: Callable[[], int],
                 pow_bits: Callable[[], int] | None = None, *,
                 live_puppet_clients: Callable[[], int] | None = None) -> None:
        self.chat_counts, self.agencies = chat_counts, agencies
        self.live_puppet_clients = live_puppet_clients
        self.websockets, self.pending_transactions = websockets, pending_transactions
        self.pow_bits = pow_bits            # None while the proof-of-work gate is off

    def collect(self) -> Iterable[Metric]:
        counts = self.chat_counts()
        queue = GaugeMetricFamily("precinct_queue_length", "Chats waiting for an officer, per agency.",
                                  labels=["agency"])
        active = GaugeMetricFamily("precinct_active_chats", "Chats an officer has answered and not yet closed, "
                                   "per agency.", labels=["agency"])
        for agency in self.agencies():
            queue.add_metric([agency], counts.get((agency, "waiting"), 0))
            active.add_metric([agency], counts.get((agency, "active"), 0))
        yield queue
        yield active
        yield GaugeMetricFamily("precinct_websocket_connections", "Citizen WebSocket connections open now.",
                                value=self.websockets())
        yield GaugeMetricFamily("precinct_appservice_transactions_pending", "Appservice transactions stored but "
                                "not yet processed.", value=self.pending_transactions())
        if self.live_puppet_clients is not None:
            yield GaugeMetricFamily("precinct_live_puppet_clients", "Visitor devices (and the bot's) whose encryption "
                                    "state is loaded in memory now; idle ones are unloaded "
                                    "(crypto.idle_unload_seconds).", value=self.live_puppet_clients())
        if self.pow_bits is not None:
            yield GaugeMetricFamily("precinct_pow_difficulty_bits", "Leading zero bits a new chat's proof of work "
                                    "needs now (rises while chat creation is being refused).", value=self.pow_bits())


_watched: list[LevelsCollector] = []


def watch(collector: LevelsCollector) -> Callable[[], None]:
    """Register the bridge's scrape-time levels (replacing an earlier bridge's); returns the undo."""
    while _watched:
        REGISTRY.unregister(_watched.pop())
    REGISTRY.register(collector)
    _watched.append(collector)

    def unwatch() -> None:
        if collector in _watched:
            _watched.remove(collector)
            REGISTRY.unregister(collector)
    return unwatch


def render() -> bytes:
    return generate_latest(REGISTRY)


def app() -> web.Application:
    """The private metrics listener: ``GET /metrics`` in Prometheus' text format, nothing else."""
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    return application

"""The node's Prometheus metrics: `Metrics`, on a prometheus-client registry of its own.

`Metrics` names what a node measures (messages by direction, type and outcome; receipts;
HTTP refusals by code; publish and end-to-end latency; outbox depth) beside the process and
garbage-collector metrics, and renders them for `GET /metrics` in the format the scraper
asks for. Every label value comes from a closed set: a value outside it (a message type
read from an unverified header, say) is counted under a fixed fallback, so input can never
create a series on the public endpoint.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest

from exchange.errors import ERROR_TABLE
from exchange.model.common import MessageType

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""What `/metrics` answers to a scraper that asks for no particular format."""

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

UNKNOWN = "unknown"
"""The label of a message type, direction or outcome outside its closed set."""
OTHER_CODE = "other"
"""The label of an error code that the error table does not define."""

MESSAGE_TYPES = frozenset(t.value for t in MessageType)
DIRECTIONS = frozenset({"in", "out"})
OUTCOMES = frozenset(
    {"accepted", "refused", "sent", "delivered", "rejected", "failed", "received", "duplicate"}
)
RECEIPT_DIRECTIONS = frozenset({"sent", "received"})
RECEIPT_OUTCOMES = frozenset({"accepted", "rejected"})


def _closed(value: object, allowed: frozenset[str], fallback: str) -> str:
    return value if isinstance(value, str) and value in allowed else fallback


def type_label(value: object) -> str:
    """The `type` label of a message type: one of `MessageType`, else "unknown"."""
    return _closed(value, MESSAGE_TYPES, UNKNOWN)


def code_label(value: object) -> str:
    """The `code` label of an error code: one of the error table's, else "other"."""
    return value if isinstance(value, str) and value in ERROR_TABLE else OTHER_CODE


class Metrics:
    """What a node measures. The HTTP layer and the relay share one instance; each instance
    has its own registry, so apps in one process never mix their counts."""

    def __init__(self, prefix: str = "xb") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._messages = Counter(
            f"{prefix}_messages_total",
            "Messages by direction (out, in), type and outcome "
            "(out: accepted, refused, sent, delivered, rejected, failed; "
            "in: received, refused, duplicate). A type outside the protocol's is 'unknown'.",
            ("direction", "type", "outcome"),
            registry=self.registry,
        )
        self._receipts = Counter(
            f"{prefix}_receipts_total",
            "Receipts by direction (sent, received) and outcome (accepted, rejected).",
            ("direction", "outcome"),
            registry=self.registry,
        )
        self._refusals = Counter(
            f"{prefix}_http_refusals_total",
            "HTTP requests refused, by error code.",
            ("code",),
            registry=self.registry,
        )
        self._publish_latency = Histogram(
            f"{prefix}_publish_latency_seconds",
            "From handing a batch to the broker to its publisher confirm.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._end_to_end_latency = Histogram(
            f"{prefix}_end_to_end_latency_seconds",
            "From a message's creation to its recipient's receipt arriving back.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._outbox_depth = Gauge(
            f"{prefix}_outbox_depth",
            "Publishes waiting for a broker confirm.",
            registry=self.registry,
        )

    def message(self, direction: str, type: str, outcome: str, count: int = 1) -> None:
        """Count `count` messages of `type` that reached `outcome` (`direction`: out or in)."""
        self._messages.labels(
            _closed(direction, DIRECTIONS, UNKNOWN),
            type_label(type),
            _closed(outcome, OUTCOMES, UNKNOWN),
        ).inc(count)

    def receipt(self, direction: str, outcome: str) -> None:
        self._receipts.labels(
            _closed(direction, RECEIPT_DIRECTIONS, UNKNOWN),
            _closed(outcome, RECEIPT_OUTCOMES, UNKNOWN),
        ).inc()

    def refused(self, code: str) -> None:
        self._refusals.labels(code_label(code)).inc()

    def observe_publish(self, seconds: float) -> None:
        self._publish_latency.observe(seconds)

    def observe_end_to_end(self, seconds: float) -> None:
        self._end_to_end_latency.observe(seconds)

    def set_outbox_depth(self, depth: int) -> None:
        self._outbox_depth.set(depth)

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one sample (`xb_messages_total`, with all its labels); 0
        when it has not been counted yet."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the format the `Accept` header asks for (Prometheus text 0.0.4
        by default, OpenMetrics on request) and that format's content type."""
        encoder: Callable[[CollectorRegistry], bytes]
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        return generate_latest(self.registry).decode("utf-8")

"""The node's Prometheus metrics: a tiny in-house Counter, Histogram and Gauge, and `Metrics`.

`Metrics` names what a node measures (messages by direction, type and outcome; publish and
end-to-end latency; outbox depth; HTTP refusals) and renders the Prometheus text format
(version 0.0.4) for `GET /metrics`. Used from the event loop only; no locks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(labels[n] for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> list[str]:
        return [*self.header(), *self.samples()]


class Counter(_Metric):
    """A value that only goes up, per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter cannot go down")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {_number(value)}"


class Gauge(_Metric):
    """A value that goes up and down, per label set."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {_number(value)}"


class Histogram(_Metric):
    """Observations counted in cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labelnames)
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("histogram buckets must be increasing")
        self.buckets = (*buckets, math.inf)
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        counts, total = self._series.setdefault(key, ([0] * len(self.buckets), [0.0]))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
                break
        total[0] += value

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return 0 if series is None else sum(series[0])

    def samples(self) -> Iterable[str]:
        for key, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                running += n
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.labelnames, key, le)} {running}"
            yield f"{self.name}_sum{_labels(self.labelnames, key)} {_number(total[0])}"
            yield f"{self.name}_count{_labels(self.labelnames, key)} {running}"


class Metrics:
    """What a node measures. The HTTP layer and the relay share one instance."""

    def __init__(self, prefix: str = "xb") -> None:
        self.messages = Counter(
            f"{prefix}_messages_total",
            "Messages by direction (out, in), type and outcome "
            "(out: accepted, refused, sent, delivered, rejected, failed; "
            "in: received, refused, duplicate).",
            ("direction", "type", "outcome"),
        )
        self.receipts = Counter(
            f"{prefix}_receipts_total",
            "Receipts by direction (sent, received) and outcome (accepted, rejected).",
            ("direction", "outcome"),
        )
        self.refusals = Counter(
            f"{prefix}_http_refusals_total", "HTTP requests refused, by error code.", ("code",)
        )
        self.publish_latency = Histogram(
            f"{prefix}_publish_latency_seconds",
            "From handing a batch to the broker to its publisher confirm.",
        )
        self.end_to_end_latency = Histogram(
            f"{prefix}_end_to_end_latency_seconds",
            "From a message's creation to its recipient's receipt arriving back.",
        )
        self.outbox_depth = Gauge(
            f"{prefix}_outbox_depth", "Publishes waiting for a broker confirm."
        )
        self._all: tuple[_Metric, ...] = (
            self.messages,
            self.receipts,
            self.refusals,
            self.publish_latency,
            self.end_to_end_latency,
            self.outbox_depth,
        )

    def message(self, direction: str, type: str, outcome: str, count: int = 1) -> None:
        """Count `count` messages of `type` that reached `outcome` (`direction`: out or in)."""
        self.messages.inc(count, direction=direction, type=type, outcome=outcome)

    def receipt(self, direction: str, outcome: str) -> None:
        self.receipts.inc(direction=direction, outcome=outcome)

    def refused(self, code: str) -> None:
        self.refusals.inc(code=code)

    def observe_publish(self, seconds: float) -> None:
        self.publish_latency.observe(seconds)

    def observe_end_to_end(self, seconds: float) -> None:
        self.end_to_end_latency.observe(seconds)

    def set_outbox_depth(self, depth: int) -> None:
        self.outbox_depth.set(depth)

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        lines: list[str] = []
        for metric in self._all:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"

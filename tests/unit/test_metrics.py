"""The node's metrics, as a Prometheus server scrapes them: the names and labels the
operator's guide lists, the process and GC metrics beside them, one registry per app, and
label values from closed sets only."""

from __future__ import annotations

from http_helpers import metric_samples
from prometheus_client.parser import text_string_to_metric_families

from exchange.metrics import MESSAGE_TYPES, OTHER_CODE, UNKNOWN, Metrics


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def test_the_metrics_the_operators_guide_names_are_exposed_with_their_labels() -> None:
    metrics = Metrics()
    metrics.message("out", "asset-inquiry", "accepted")
    metrics.message("out", "asset-inquiry", "accepted")
    metrics.message("in", "freeze-notice", "received")
    metrics.receipt("received", "accepted")
    metrics.refused("schema.invalid")
    for seconds in (0.004, 0.2, 0.2, 90.0):
        metrics.observe_publish(seconds)
    metrics.observe_end_to_end(0.2)
    metrics.set_outbox_depth(7)
    text = metrics.render()
    samples = metric_samples(text)
    sent = _labels(direction="out", type="asset-inquiry", outcome="accepted")
    assert samples["xb_messages_total", sent] == 2
    assert (
        samples[
            "xb_messages_total", _labels(direction="in", type="freeze-notice", outcome="received")
        ]
        == 1
    )
    assert samples["xb_receipts_total", _labels(direction="received", outcome="accepted")] == 1
    assert samples["xb_http_refusals_total", _labels(code="schema.invalid")] == 1
    assert samples["xb_outbox_depth", frozenset()] == 7
    # histograms: cumulative buckets, with sum and count
    assert samples["xb_publish_latency_seconds_bucket", _labels(le="0.005")] == 1
    assert samples["xb_publish_latency_seconds_bucket", _labels(le="0.25")] == 3
    assert samples["xb_publish_latency_seconds_bucket", _labels(le="60.0")] == 3
    assert samples["xb_publish_latency_seconds_bucket", _labels(le="+Inf")] == 4
    assert samples["xb_publish_latency_seconds_count", frozenset()] == 4
    assert abs(samples["xb_publish_latency_seconds_sum", frozenset()] - 90.404) < 1e-9
    assert samples["xb_end_to_end_latency_seconds_count", frozenset()] == 1
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["xb_publish_latency_seconds"] == "histogram"
    assert families["xb_messages"] == "counter"  # exposed as xb_messages_total
    assert families["xb_outbox_depth"] == "gauge"


def test_process_and_garbage_collector_metrics_come_with_them() -> None:
    names = {name for name, _ in metric_samples(Metrics().render())}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert "python_gc_collections_total" in names


def test_each_app_counts_on_its_own_registry() -> None:
    one, other = Metrics(), Metrics()
    one.refused("auth.missing")
    key = ("xb_http_refusals_total", _labels(code="auth.missing"))
    assert metric_samples(one.render())[key] == 1
    assert key not in metric_samples(other.render())


def test_labels_outside_their_closed_sets_fall_back_to_one_fixed_value() -> None:
    metrics = Metrics()
    metrics.message("in", 'asset-inquiry"} 1\nxb_forged 1', "refused")
    metrics.message("in", "x" * 5000, "refused")
    metrics.message("sideways", "freeze-notice", "exploded")
    metrics.receipt("lost", "maybe")
    metrics.refused("not.a.code")
    metrics.refused("auth.missing")
    samples = metric_samples(metrics.render())
    assert (
        samples["xb_messages_total", _labels(direction="in", type=UNKNOWN, outcome="refused")] == 2
    )
    assert (
        samples[
            "xb_messages_total", _labels(direction=UNKNOWN, type="freeze-notice", outcome=UNKNOWN)
        ]
        == 1
    )
    assert samples["xb_receipts_total", _labels(direction=UNKNOWN, outcome=UNKNOWN)] == 1
    codes = {dict(labels)["code"] for name, labels in samples if name == "xb_http_refusals_total"}
    assert codes == {OTHER_CODE, "auth.missing"}
    types = {dict(labels)["type"] for name, labels in samples if name == "xb_messages_total"}
    assert types <= {*MESSAGE_TYPES, UNKNOWN}


def test_the_scraper_gets_the_format_it_asks_for_with_its_content_type() -> None:
    metrics = Metrics()
    body, content_type = metrics.exposition(None)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE xb_outbox_depth gauge" in body
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")

"""The node's Prometheus metrics render in the text exposition format operators scrape."""

from __future__ import annotations

import re

import pytest

from exchange.metrics import Counter, Histogram, Metrics

SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+Inf-]+$')


def test_every_line_is_a_comment_or_a_well_formed_sample() -> None:
    metrics = Metrics()
    metrics.message("out", "asset-inquiry", "accepted")
    metrics.message("out", "asset-inquiry", "accepted")
    metrics.message("in", "freeze-notice", "received")
    metrics.receipt("received", "accepted")
    metrics.refused("schema.invalid")
    metrics.observe_publish(0.004)
    metrics.observe_end_to_end(0.2)
    metrics.set_outbox_depth(7)
    text = metrics.render()
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    assert 'xb_messages_total{direction="out",type="asset-inquiry",outcome="accepted"} 2' in text
    assert "xb_outbox_depth 7" in text
    assert 'xb_http_refusals_total{code="schema.invalid"} 1' in text
    assert "# TYPE xb_publish_latency_seconds histogram" in text


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    h = Histogram("lat_seconds", "latency", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 5.0):
        h.observe(value)
    text = "\n".join(h.render())
    assert 'lat_seconds_bucket{le="0.1"} 1' in text
    assert 'lat_seconds_bucket{le="1"} 3' in text
    assert 'lat_seconds_bucket{le="+Inf"} 4' in text
    assert "lat_seconds_sum 6.05" in text
    assert "lat_seconds_count 4" in text
    assert h.count() == 4


def test_label_values_are_escaped_and_labels_are_checked() -> None:
    c = Counter("odd_total", "odd", ("name",))
    c.inc(name='a "quoted"\\ line\nbreak')
    assert 'odd_total{name="a \\"quoted\\"\\\\ line\\nbreak"} 1' in c.render()
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(other="x")
    with pytest.raises(ValueError, match="cannot go down"):
        c.inc(-1, name="x")

"""The tally of refusals of unknown clients: bounded in memory and in entries, however many
sources there are, and every refusal is either written or counted in a summary."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from exchange.gateway.refusals import RefusalTally, should_audit
from exchange.model.common import utc_now


def test_ten_thousand_sources_cost_a_bounded_table_and_every_refusal_is_accounted_for() -> None:
    tally = RefusalTally(max_sources=100, written_per_interval=8)
    codes = ("auth.missing", "auth.invalid", "not_found")
    admitted, sent = 0, Counter[str]()
    for i in range(10_000):  # an attacker with a /64 of IPv6 addresses
        source = f"2001:db8::{i:x}"
        for code in codes:
            admitted += tally.admit(source, code)
            sent[code] += 1
        assert tally.sources <= 8 + 100
    assert admitted == 8  # each of the first 8 sources' first refusal; the cap holds after
    summary = tally.drain(utc_now())
    assert summary is not None
    assert len(summary["sources"]) == 100  # listed one by one; the rest in one row
    counted = Counter[str]()
    for row in [*summary["sources"], summary["untracked"]]:
        assert sum(row["codes"].values()) == row["count"]
        counted.update(row["codes"])
    assert summary["counted"] == 30_000 - 8 == counted.total()
    assert counted + Counter({"auth.missing": 8}) == sent


def test_the_summary_names_each_source_with_its_counts_busiest_first() -> None:
    tally = RefusalTally()
    start = utc_now()
    assert tally.admit("192.0.2.1", "auth.missing")
    for _ in range(3):
        assert not tally.admit("192.0.2.1", "auth.invalid")
    assert tally.admit("192.0.2.2", "not_found")
    assert not tally.admit("192.0.2.2", "not_found")
    summary = tally.drain(start + timedelta(seconds=60))
    assert summary is not None
    assert summary["counted"] == 4
    assert summary["sources"] == [
        {"source": "192.0.2.1", "count": 3, "codes": {"auth.invalid": 3}},
        {"source": "192.0.2.2", "count": 1, "codes": {"not_found": 1}},
    ]
    assert "untracked" not in summary
    assert summary["until"].endswith("Z") and summary["from"] <= summary["until"]


def test_a_new_interval_writes_each_sources_first_refusal_again() -> None:
    tally = RefusalTally()
    assert tally.admit("192.0.2.1", "auth.missing")
    assert tally.drain(utc_now()) is None  # nothing was only counted: no summary
    assert tally.admit("192.0.2.1", "auth.missing")
    assert not tally.admit("192.0.2.1", "auth.missing")
    assert tally.pending == 1


def test_bounds_must_make_sense() -> None:
    with pytest.raises(ValueError, match="positive interval"):
        RefusalTally(interval=0)
    with pytest.raises(ValueError, match="negative"):
        RefusalTally(max_sources=-1)


@pytest.mark.parametrize(
    ("method", "code", "audited"),
    [
        ("POST", "request.invalid", True),
        ("POST", "not_found", True),
        ("GET", "auth.missing", True),
        ("GET", "not_found", False),  # a failed read refuses nothing the node was asked to do
        ("HEAD", "request.bad_parameter", False),
    ],
)
def test_what_is_audited(method: str, code: str, audited: bool) -> None:
    assert should_audit(method, code) is audited

"""The corpus itself: enough distinct cases, each well formed, each expecting a code that the error
table defines with that status, and every kind of hostile input of the threat list covered.

Printing the counts (`-s`) gives the figures for the closing note of a run.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hostile_corpus import CASES_DIR, Case, load_cases

from exchange.errors import ERROR_TABLE, RECEIPT_REASONS

HTTP = load_cases("http")
BROKER = load_cases("broker")
MIN_REFUSALS = 150

HTTP_KEYS = {"id", "kind", "category", "description", "request", "expect"}
HTTP_REQUEST_KEYS = {
    "method", "path", "auth", "headers", "content_type", "body", "chunked", "submission_type",
}  # fmt: skip
HTTP_EXPECT_KEYS = {
    "status", "code", "error_paths", "error_path_prefix", "audit", "actor", "max_errors",
}  # fmt: skip
BROKER_KEYS = {"id", "kind", "category", "description", "envelope", "delivery", "setup", "expect"}
BROKER_EXPECT_KEYS = {"outcome", "code", "receipt", "receipt_to", "audit_digest"}

# What the threat list asks the corpus to cover, with the least number of cases for each.
HTTP_CATEGORIES = {
    "malformed-json": 10, "content-type": 5, "body-size": 2, "deep-nesting": 3,
    "huge-values": 4, "invalid-utf8": 5, "duplicate-keys": 4, "non-finite-numbers": 3,
    "number-range": 4, "unknown-fields": 4, "enum-values": 8, "dates": 8, "recipients": 5,
    "reserved-fields": 4, "authentication": 8, "authorization": 3, "case-reference": 8,
    "routing-injection": 5, "payload-schema": 4, "parameters": 8, "routing": 4,
    "case-updates": 2, "not-an-object": 3, "content-encoding": 2,
}  # fmt: skip
BROKER_CATEGORIES = {
    "signature": 8, "tampering": 8, "signer": 10, "time": 6, "schema": 8,
    "not-an-envelope": 8, "ambiguous-json": 3, "missing-fields": 6, "size": 2,
    "routing": 4, "replay": 2, "receipts": 3, "control": 3, "case-updates": 4,
}  # fmt: skip
BROKER_CODES = {
    "signature.invalid", "envelope.malformed", "envelope.too_large", "cert.unknown",
    "cert.expired", "cert.revoked", "sender.mismatch", "message.expired", "clock.skew",
    "message.replayed", "recipient.mismatch", "schema.invalid", "schema.unknown",
    "exchange.mismatch",
}  # fmt: skip


def refusals() -> list[Case]:
    return HTTP + [c for c in BROKER if c.expect["outcome"] == "rejected"]


def test_the_corpus_has_at_least_150_distinct_refusals() -> None:
    cases = refusals()
    by_category = Counter(f"{c.kind}/{c.category}" for c in HTTP + BROKER)
    print(
        f"\nhostile corpus: {len(HTTP)} HTTP cases, {len(BROKER)} broker cases "
        f"({sum(1 for c in BROKER if c.expect['outcome'] == 'accepted')} controls), "
        f"{len(cases)} refusals; by category: {dict(sorted(by_category.items()))}"
    )
    assert len(cases) >= MIN_REFUSALS
    ignored = ("id", "description", "category")
    inputs = [
        json.dumps({k: v for k, v in c.doc.items() if k not in ignored}, sort_keys=True)
        for c in HTTP + BROKER
    ]
    duplicated = [i for i, n in Counter(inputs).items() if n > 1]
    assert not duplicated, duplicated[:3]


@pytest.mark.parametrize("case", HTTP, ids=[c.id for c in HTTP])
def test_an_http_case_is_well_formed(case: Case) -> None:
    doc = case.doc
    assert set(doc) == HTTP_KEYS, set(doc) ^ HTTP_KEYS
    assert (doc["id"], doc["kind"]) == (case.id, "http")
    assert case.description and case.category in HTTP_CATEGORIES
    assert set(doc["request"]) <= HTTP_REQUEST_KEYS
    assert set(case.expect) <= HTTP_EXPECT_KEYS
    code, status = case.expect["code"], case.expect["status"]
    assert ERROR_TABLE[code].status == status, (code, status)
    assert status >= 400


@pytest.mark.parametrize("case", BROKER, ids=[c.id for c in BROKER])
def test_a_broker_case_is_well_formed(case: Case) -> None:
    doc = case.doc
    assert set(doc) <= BROKER_KEYS and {"envelope", "expect"} <= set(doc)
    assert (doc["id"], doc["kind"]) == (case.id, "broker")
    assert case.description and case.category in BROKER_CATEGORIES
    assert set(case.expect) <= BROKER_EXPECT_KEYS
    if case.expect["outcome"] == "accepted":
        assert set(case.expect) == {"outcome"} and case.category == "control"
        return
    assert case.expect["outcome"] == "rejected"
    assert case.expect["code"] in ERROR_TABLE
    assert isinstance(case.expect["receipt"], bool)
    if case.expect["receipt"]:
        assert case.expect["code"] in RECEIPT_REASONS


def test_every_kind_of_hostile_input_is_covered() -> None:
    for kind, cases, wanted in (
        ("http", HTTP, HTTP_CATEGORIES),
        ("broker", BROKER, BROKER_CATEGORIES),
    ):
        counts = Counter(c.category for c in cases)
        short = {cat: (counts[cat], least) for cat, least in wanted.items() if counts[cat] < least}
        assert not short, f"{kind}: too few cases in {short}"
    codes = {c.expect["code"] for c in BROKER if c.expect["outcome"] == "rejected"}
    assert codes >= BROKER_CODES, BROKER_CODES - codes
    assert sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir()) == ["broker", "http"]

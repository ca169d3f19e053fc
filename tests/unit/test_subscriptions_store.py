"""The durable store of case updates: one row per update id, cursors that never repeat, and
the publish and webhook work owed for an update committed with it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from exchange.model.common import utc_now
from exchange.storage.case_records import AuditIntent, NewCaseEvent
from exchange.storage.case_events import SubscriptionStore


def event(
    *, case: str = "AL-2026-0042", network: str = "see-pcn", digest: str = "a" * 64
) -> NewCaseEvent:
    now = utc_now()
    return NewCaseEvent(
        uuid.uuid4(), network, case, "frozen", "AL-ARO", "in", digest, now, now, b'{"x":1}'
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SubscriptionStore]:
    opened = await SubscriptionStore.open(tmp_path / "subscriptions.sqlite3")
    yield opened
    await opened.close()


async def test_an_update_is_stored_once_and_a_repeat_reports_the_digest_held(
    store: SubscriptionStore,
) -> None:
    first = event()
    stored = await store.record(first)
    assert (stored.cursor, stored.new) == (1, True)
    again = await store.record(first)
    assert (again.cursor, again.new, again.digest) == (1, False, first.digest)
    other = dataclasses.replace(first, digest="b" * 64)  # same id, other content
    clash = await store.record(other)
    assert (clash.new, clash.digest) == (False, first.digest)
    assert [r.id for r in await store.events_after(0, 10)] == [first.id]


async def test_cursors_grow_under_concurrent_writes_and_filters_select(
    store: SubscriptionStore,
) -> None:
    events = [event(case=f"C-{i % 3}", network="see-pcn" if i % 2 else "other") for i in range(60)]
    results = await asyncio.gather(*(store.record(e) for e in events))
    assert sorted(r.cursor for r in results) == list(range(1, 61))
    everything = await store.events_after(0, 100)
    assert [r.cursor for r in everything] == list(range(1, 61))
    page = await store.events_after(10, 5)
    assert [r.cursor for r in page] == [11, 12, 13, 14, 15]
    c1 = await store.events_after(0, 100, network="see-pcn", case="C-1")
    assert c1 and all(r.case == "C-1" and r.network == "see-pcn" for r in c1)
    assert await store.last_cursor() == 60
    assert await store.knows_case("see-pcn", "C-1")
    assert not await store.knows_case("see-pcn", "C-9")


async def test_an_outgoing_update_owes_one_publish_until_confirmed(
    store: SubscriptionStore,
) -> None:
    mine = event()
    await store.record(mine, routing_key="see-pcn.AL-2026-0042.frozen")
    await store.record(mine, routing_key="see-pcn.AL-2026-0042.frozen")  # repeat: no second row
    (due,) = await store.outbox_due(10, utc_now())
    assert (due.id, due.routing_key, due.attempts) == (mine.id, "see-pcn.AL-2026-0042.frozen", 0)
    later = utc_now() + timedelta(seconds=30)
    await store.outbox_retry([mine.id], later)
    assert await store.outbox_due(10, utc_now()) == []
    (retry,) = await store.outbox_due(10, later)
    assert retry.attempts == 1
    await store.outbox_confirmed([mine.id], utc_now())
    assert await store.outbox_depth() == 0


async def test_webhook_jobs_are_queued_with_the_update_and_settle_once(
    store: SubscriptionStore,
) -> None:
    stored = await store.record(event(), webhooks=["see-pcn:a", "see-pcn:b"])
    jobs = await store.webhook_due(10, utc_now())
    assert sorted(j.webhook for j in jobs) == ["see-pcn:a", "see-pcn:b"]
    assert {j.record.cursor for j in jobs} == {stored.cursor}
    await store.webhook_delivered("see-pcn:a", stored.cursor, utc_now())
    retry_at = utc_now() + timedelta(seconds=5)
    await store.webhook_retry("see-pcn:b", stored.cursor, retry_at, "HTTP 503")
    assert await store.webhook_due(10, utc_now()) == []
    assert await store.webhook_next_due() == retry_at.replace(
        microsecond=retry_at.microsecond // 1000 * 1000
    )
    await store.webhook_gave_up("see-pcn:b", stored.cursor, utc_now(), "HTTP 503")
    assert await store.webhook_next_due() is None


async def test_the_store_survives_a_restart_with_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = await SubscriptionStore.open(path)
    await first.record(event())
    await first.set_meta("k", "v")
    await first.close()
    second = await SubscriptionStore.open(path)
    try:
        assert (await second.record(event())).cursor == 2
        assert await second.get_meta("k") == "v"
    finally:
        await second.close()


async def test_a_store_of_schema_version_1_is_upgraded_and_its_rows_owe_no_audit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "subscriptions.sqlite3"
    store = await SubscriptionStore.open(path)
    old = event()
    await store.record(old)
    await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as version 1 left it
        conn.execute("DROP INDEX case_events_audit_owed")
        conn.execute("ALTER TABLE case_events DROP COLUMN audit_owed")
        conn.execute("PRAGMA user_version=1")
        conn.commit()
    store = await SubscriptionStore.open(path)
    try:
        assert await store.audit_owed(10) == []
        new = event()
        intent = AuditIntent("stored", detail={"from": "AL-ARO"})
        stored = await store.record(new, audit=[intent])
        assert (stored.new, stored.audit_owed) == (True, True)
        ((record, intents),) = await store.audit_owed(10)
        assert (record.id, intents) == (new.id, [intent])
        await store.audit_written(new.id)
        assert await store.audit_owed(10) == []
        assert [r.id for r in await store.events_after(0, 10)] == [old.id, new.id]
    finally:
        await store.close()

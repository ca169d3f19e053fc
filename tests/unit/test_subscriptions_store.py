"""Case updates in the node's one database: one row per update id, cursors that never repeat,
and the publish, webhook jobs and audit entries owed for an update committed with it (or
not at all). A data directory of the earlier four-file layout is refused at start."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from node_db import NodeDatabase

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.config import EARLIER_FILES
from exchange.errors import ConfigError
from exchange.gateway.app import create_app, open_database
from exchange.model.common import utc_now
from exchange.network import init_network_dir
from exchange.storage import outbox
from exchange.storage.case_events import (
    CaseEventStore,
    insert_event,
    knows_case,
    webhook_delivered,
    webhook_gave_up,
    webhook_retry,
)
from exchange.storage.case_records import NewCaseEvent, Stored
from exchange.storage.outbox import FANOUT, Publish

ROUTING_KEY = "see-pcn.AL-2026-0042.frozen"


def event(
    *, case: str = "AL-2026-0042", network: str = "see-pcn", digest: str = "a" * 64
) -> NewCaseEvent:
    now = utc_now()
    return NewCaseEvent(
        uuid.uuid4(), network, case, "frozen", "AL-ARO", "in", digest, now, now, b'{"x":1}'
    )


class Node(NodeDatabase):
    """A node's database with its audit log; updates written as the service writes them."""

    @property
    def store(self) -> CaseEventStore:
        return CaseEventStore(self.db, self.audit.write)

    async def record(self, new: NewCaseEvent, webhooks: Sequence[str] = ()) -> Stored:
        """A received update: stored once with its webhook jobs (no publish owed)."""
        return await self.db.call(lambda conn: insert_event(conn, new, webhooks))

    async def publish(self, new: NewCaseEvent) -> Stored:
        """An update of this node's: stored, owed to the cases exchange and audited together,
        as `CaseUpdates` does (a repeat of the id writes nothing)."""
        owed = Publish(
            new.id, FANOUT, "case-update", "case-update", "cases", ROUTING_KEY, body=new.envelope
        )
        entry = EntryFields.build(AuditEvent.ACCEPTED, message_id=new.id, digest=new.digest)

        def run(conn: sqlite3.Connection) -> Stored:
            stored = insert_event(conn, new)
            if stored.new:
                outbox.add(conn, [owed], new.received_at)
                self.audit.write(conn, entry)
            return stored

        return await self.db.call(run)

    async def events(self) -> list[str]:
        return [str(r.id) for r in await self.store.events_after(0, 1000)]

    async def audited(self) -> list[tuple[str, str | None]]:
        return [(str(e.event), e.message_id) for e in await self.audit.entries(0, 1000)]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    opened = await Node.open(tmp_path / "node.sqlite3")
    yield opened
    await opened.close()


async def test_an_update_is_stored_once_and_a_repeat_reports_the_digest_held(node: Node) -> None:
    first = event()
    stored = await node.record(first)
    assert (stored.cursor, stored.new) == (1, True)
    again = await node.record(first)
    assert (again.cursor, again.new, again.digest) == (1, False, first.digest)
    other = dataclasses.replace(first, digest="b" * 64)  # same id, other content
    clash = await node.record(other)
    assert (clash.new, clash.digest) == (False, first.digest)
    assert await node.events() == [str(first.id)]
    held = await node.store.get(first.id)
    assert held is not None and held.digest == first.digest
    assert await node.store.get(uuid.uuid4()) is None


async def test_cursors_grow_under_concurrent_writes_and_filters_select(node: Node) -> None:
    events = [event(case=f"C-{i % 3}", network="see-pcn" if i % 2 else "other") for i in range(60)]
    results = await asyncio.gather(*(node.record(e) for e in events))
    assert sorted(r.cursor for r in results) == list(range(1, 61))
    everything = await node.store.events_after(0, 100)
    assert [r.cursor for r in everything] == list(range(1, 61))
    page = await node.store.events_after(10, 5)
    assert [r.cursor for r in page] == [11, 12, 13, 14, 15]
    c1 = await node.store.events_after(0, 100, network="see-pcn", case="C-1")
    assert c1 and all(r.case == "C-1" and r.network == "see-pcn" for r in c1)
    assert await node.store.last_cursor() == 60
    assert await node.store.knows_case("see-pcn", "C-1")
    assert not await node.store.knows_case("see-pcn", "C-9")
    assert await node.db.call(lambda conn: knows_case(conn, "other", "C-0"))


async def test_an_outgoing_update_owes_one_publish_until_confirmed_with_its_entry(
    node: Node,
) -> None:
    mine = event()
    assert (await node.publish(mine)).new
    assert not (await node.publish(mine)).new  # a repeat: no second row, no second entry
    (due,) = await node.outbox.next_batch(10, utc_now(), busy=set(), lookahead=10)
    assert (due.message_id, due.kind, due.recipient) == (mine.id, "case-update", FANOUT)
    assert (due.exchange, due.routing_key, due.attempts) == ("cases", ROUTING_KEY, 0)
    assert due.body == mine.envelope  # the update's own envelope, kept in its row
    later = utc_now() + timedelta(seconds=30)
    await node.outbox.retry([(due, later)])
    assert await node.outbox.next_batch(10, utc_now(), busy=set(), lookahead=10) == []
    assert await node.outbox.depth() == 1  # waiting for its retry
    (retry,) = await node.outbox.next_batch(10, later, busy=set(), lookahead=10)
    assert retry.attempts == 1
    await node.outbox.confirmed([retry], utc_now())
    assert await node.outbox.depth() == 0
    assert await node.outbox.next_batch(10, later, busy=set(), lookahead=10) == []
    # the acceptance and the broker's confirm are each audited once, in their transactions
    assert await node.audited() == [("accepted", str(mine.id)), ("confirmed", str(mine.id))]
    confirmed = (await node.audit.entries(1, 1))[0]
    assert confirmed.detail == {"exchange": "cases", "routing_key": ROUTING_KEY, "attempt": 2}


async def test_an_update_whose_transaction_fails_leaves_no_row_no_publish_and_no_entry(
    node: Node,
) -> None:
    doomed = event()
    owed = Publish(
        doomed.id, FANOUT, "case-update", "case-update", "cases", ROUTING_KEY, body=b"{}"
    )

    def run(conn: sqlite3.Connection) -> None:
        insert_event(conn, doomed, ["see-pcn:a"])
        outbox.add(conn, [owed], doomed.received_at)
        node.audit.write(conn, EntryFields.build(AuditEvent.ACCEPTED, message_id=doomed.id))
        raise OSError("disk I/O error")  # the transaction never commits

    with pytest.raises(OSError, match="disk I/O"):
        await node.db.call(run)
    assert await node.events() == []
    assert await node.outbox.depth() == 0
    assert await node.store.webhook_due(10, utc_now() + timedelta(days=1)) == []
    assert node.audit.head.size == 0 and await node.audited() == []
    # the log gave the entry's index back: the next fact's entry is entry 0
    kept = event()
    await node.publish(kept)
    assert await node.audited() == [("accepted", str(kept.id))]
    assert (await node.audit.inclusion_proof(0)).size == 1


async def test_webhook_jobs_are_queued_with_the_update_and_settle_once_audited(
    node: Node,
) -> None:
    stored = await node.record(event(), webhooks=["see-pcn:a", "see-pcn:b"])
    store = node.store
    jobs = await store.webhook_due(10, utc_now())
    assert sorted(j.webhook for j in jobs) == ["see-pcn:a", "see-pcn:b"]
    assert {j.record.cursor for j in jobs} == {stored.cursor}

    def entry(outcome: str) -> EntryFields:
        return EntryFields.build(
            AuditEvent.SUBSCRIPTION_DELIVERED, message_id=jobs[0].record.id, code=outcome
        )

    await store.webhook_settled(
        "see-pcn:a", stored.cursor, webhook_delivered(utc_now()), entry("a")
    )
    retry_at = utc_now() + timedelta(seconds=5)
    await store.webhook_settled(
        "see-pcn:b", stored.cursor, webhook_retry(retry_at, "HTTP 503"), entry("b.retry")
    )
    assert await store.webhook_due(10, utc_now()) == []
    assert await store.webhook_next_due() == retry_at.replace(
        microsecond=retry_at.microsecond // 1000 * 1000
    )
    (again,) = await store.webhook_due(10, retry_at)
    assert (again.webhook, again.attempts) == ("see-pcn:b", 1)
    await store.webhook_settled(
        "see-pcn:b", stored.cursor, webhook_gave_up(utc_now(), "HTTP 503"), entry("b.gave-up")
    )
    assert await store.webhook_next_due() is None
    assert await store.webhook_due(10, utc_now() + timedelta(days=1)) == []
    entries = await node.audit.entries(0, 10)
    assert [(str(e.event), e.code) for e in entries] == [
        ("subscription-delivered", "a"),
        ("subscription-delivered", "b.retry"),
        ("subscription-delivered", "b.gave-up"),
    ]


async def test_the_updates_survive_a_restart_with_their_cursor_and_entries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"
    first = await Node.open(path)
    one = event()
    await first.publish(one)
    await first.close()
    second = await Node.open(path)
    try:
        assert (await second.record(event())).cursor == 2  # a cursor never repeats
        assert await second.store.last_cursor() == 2
        assert await second.audited() == [("accepted", str(one.id))]
        assert await second.outbox.depth() == 1
    finally:
        await second.close()


# --- the earlier layout -------------------------------------------------------------------------


@pytest.mark.parametrize("earlier", [EARLIER_FILES, ("subscriptions.sqlite3",)], ids=["all", "one"])
async def test_a_data_directory_of_the_earlier_four_file_layout_is_refused_at_start(
    tmp_path: Path, earlier: tuple[str, ...]
) -> None:
    network = init_network_dir(tmp_path / "net", ["AL-ARO", "RS-PPO"], bus="memory")
    data = tmp_path / "data"
    data.mkdir()
    for name in earlier:  # what a node of the earlier layout left behind
        with sqlite3.connect(data / name) as conn:
            conn.execute("CREATE TABLE kept (x)")
        conn.close()
    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(data)})

    with pytest.raises(ConfigError) as info:
        open_database(config)
    message = str(info.value)
    assert all(name in message for name in earlier)
    assert "node.sqlite3" in message and "archive their audit log" in message

    # The gateway does not start on it (nor leave a new database behind that a second start
    # would take for the node's history).
    server = TestServer(create_app(config, start_relay=False))
    with pytest.raises(ConfigError, match="the layout before the node's database became one"):
        await server.start_server()
    await server.close()
    assert not config.database_path.exists()
    with pytest.raises(ConfigError):
        open_database(config)
    assert sorted(p.name for p in data.iterdir()) == sorted(earlier)


async def test_a_data_directory_of_the_new_layout_opens_with_every_table(tmp_path: Path) -> None:
    network = init_network_dir(tmp_path / "net", ["AL-ARO", "RS-PPO"], bus="memory")
    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    db = open_database(config)
    await db.start()
    try:

        def tables(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {name for (name,) in rows}

        names = await db.call(tables)
    finally:
        await db.close()
    assert db.path == config.database_path == config.audit_path
    assert {"messages", "outbox", "inbox", "case_events", "webhook_jobs"} <= names
    assert any("entries" in name or "leaves" in name for name in names), names

"""The node's messages: outbox, statuses, receipts, inbox, cases and deadlines, durably,
each write with its audit entries in one transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from node_db import NodeDatabase

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.gateway.submit import owed_publishes
from exchange.storage import outbox
from exchange.storage.messages import MessageStore, insert_inbox, insert_message, insert_receipt
from exchange.storage.outbox import OutboxItem
from exchange.storage.records import (
    IncomingMessage,
    IncomingReceipt,
    OutgoingRecord,
    ReceiptOutcome,
    ReceiptRecord,
)
from exchange.storage.sqlite_thread import SqliteThread
from exchange.transport.topology import Topology

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def outgoing(
    recipients: tuple[str, ...] = ("RS-PPO",),
    *,
    case: str = "AL-2026-0042",
    type: str = "asset-inquiry",
    created_at: datetime = T0,
    respond_by: datetime | None = None,
    in_reply_to: UUID | None = None,
    expires_at: datetime | None = None,
) -> OutgoingRecord:
    mid = uuid4()
    return OutgoingRecord(
        id=mid,
        type=type,
        case=case,
        in_reply_to=in_reply_to,
        recipients=recipients,
        created_at=created_at,
        respond_by=respond_by,
        envelope=b'{"header":{"id":"%s"}}' % str(mid).encode(),
        digest="ab" * 32,
        submitted_by="contact-point",
        expires_at=expires_at,
    )


class Node(NodeDatabase, MessageStore):
    """A node's database with its audit log, written as the gateway and the relay write it."""

    def __init__(self, db: SqliteThread, audit: AuditLog) -> None:
        NodeDatabase.__init__(self, db, audit)
        MessageStore.__init__(self, db)

    async def submit(self, record: OutgoingRecord) -> None:
        entry = EntryFields.build(AuditEvent.ACCEPTED, message_id=record.id, digest=record.digest)

        def run(conn: sqlite3.Connection) -> None:
            insert_message(conn, record)
            outbox.add(conn, owed_publishes(record, Topology(), "AL-ARO"), record.created_at)
            self.audit.write(conn, entry)

        await self.db.call(run)

    async def outbox_due(self, limit: int, now: datetime) -> list[OutboxItem]:
        return await self.outbox.next_batch(limit, now, busy=set(), lookahead=100)

    async def _items(self, keys: list[tuple[UUID, str]]) -> list[OutboxItem]:
        wanted, every = set(keys), T0 + timedelta(days=999)  # every row is due by then
        rows = await self.outbox.next_batch(100, every, busy=set(), lookahead=100)
        return [i for i in rows if i.key in wanted]

    async def outbox_confirmed(self, keys: list[tuple[UUID, str]], when: datetime) -> None:
        await self.outbox.confirmed(await self._items(keys), when)

    async def outbox_retry(self, keys: list[tuple[UUID, str]], due: datetime) -> None:
        await self.outbox.retry([(item, due) for item in await self._items(keys)])

    async def outbox_failed(
        self, keys: list[tuple[UUID, str]], reason: str, when: datetime
    ) -> None:
        await self.outbox.give_up(await self._items(keys), reason, when)

    async def record_receipt(
        self,
        message_id: UUID,
        from_node: str,
        outcome: str,
        reason: str | None,
        detail: str | None,
        received_at: datetime,
        envelope: bytes,
        *,
        digest: str | None = None,
        receipt_id: UUID | None = None,
    ) -> str | None:
        """The message's status after the receipt, or None when it was refused."""
        result = await self.receipt_outcome(
            message_id, from_node, outcome, reason, received_at, envelope, digest, receipt_id
        )
        return result.status if result.refusal is None else None

    async def receipt_outcome(
        self,
        message_id: UUID,
        from_node: str,
        outcome: str,
        reason: str | None,
        received_at: datetime,
        envelope: bytes,
        digest: str | None = None,
        receipt_id: UUID | None = None,
    ) -> ReceiptOutcome:
        if digest is None:  # the digest of what was signed
            message = await self.get_message(message_id)
            digest = message.digest if message is not None else "00" * 32
        record = ReceiptRecord(
            receipt_id or uuid4(),
            message_id,
            from_node,
            digest,
            outcome,
            reason,
            None,
            received_at,
            envelope,
        )
        incoming = IncomingReceipt(record, hashlib.sha256(envelope).hexdigest())
        return await self.db.call(lambda conn: insert_receipt(conn, incoming))

    async def inbox_store(self, *args: object) -> int:
        message = IncomingMessage(*args)  # type: ignore[arg-type]
        arrival = await self.db.call(lambda conn: insert_inbox(conn, message))
        return arrival.cursor

    async def inbox_digest(self, message_id: UUID) -> str | None:
        record = await self.inbox_get(message_id)
        return None if record is None else record.digest


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Node]:
    s = await Node.open(tmp_path / "data" / "node.sqlite3")
    yield s
    await s.close()


async def test_submit_writes_the_message_and_one_outbox_row_per_recipient(
    store: Node,
) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"), respond_by=T0 + timedelta(days=3))
    await store.submit(record)
    assert await store.outbox_depth() == 2
    message = await store.get_message(record.id)
    assert message is not None
    assert message.status == "accepted"
    assert message.recipients == ("RS-PPO", "MD-ARO")
    assert message.respond_by == T0 + timedelta(days=3)
    assert message.envelope == record.envelope
    assert message.submitted_by == "contact-point"
    assert [(s.recipient, s.state) for s in message.recipient_states] == [
        ("RS-PPO", "pending"),
        ("MD-ARO", "pending"),
    ]
    due = await store.outbox_due(10, T0)
    assert {(i.message_id, i.recipient, i.type, i.attempts) for i in due} == {
        (record.id, "RS-PPO", "asset-inquiry", 0),
        (record.id, "MD-ARO", "asset-inquiry", 0),
    }
    assert all(i.body == record.envelope for i in due)


async def test_a_failed_submit_leaves_nothing_behind_not_even_its_audit_entry(
    store: Node,
) -> None:
    taken = outgoing()
    await store.submit(taken)
    reused = dataclasses.replace(outgoing(("MD-ARO",)), id=taken.id)  # the id is taken
    with pytest.raises(sqlite3.IntegrityError):
        await store.submit(reused)
    assert await store.outbox_depth() == 1
    entries = await store.audit.entries(0, 10)
    assert [(e.event, e.message_id) for e in entries] == [("accepted", str(taken.id))]


async def test_outbox_rows_go_out_in_the_order_they_were_accepted_up_to_the_limit(
    store: Node,
) -> None:
    first, second = outgoing(created_at=T0 + timedelta(seconds=1)), outgoing(created_at=T0)
    await store.submit(first)
    await store.submit(second)
    assert [i.message_id for i in await store.outbox_due(1, T0 + timedelta(minutes=1))] == [
        first.id
    ]
    assert await store.outbox_due(10, T0 - timedelta(seconds=1)) == []


async def test_status_becomes_sent_only_when_every_recipient_is_confirmed(
    store: Node,
) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"))
    await store.submit(record)
    await store.outbox_confirmed([(record.id, "RS-PPO")], T0)
    message = await store.get_message(record.id)
    assert message is not None and message.status == "accepted"
    assert await store.outbox_depth() == 1
    await store.outbox_confirmed([(record.id, "MD-ARO"), (uuid4(), "RS-PPO")], T0)
    message = await store.get_message(record.id)
    assert message is not None and message.status == "sent"
    assert {s.state for s in message.recipient_states} == {"sent"}
    assert all(s.confirmed_at == T0 and s.attempts == 1 for s in message.recipient_states)
    assert await store.outbox_due(10, T0 + timedelta(days=1)) == []
    assert await store.outbox_depth() == 0


async def test_a_retry_counts_the_attempt_and_postpones_the_row(store: Node) -> None:
    record = outgoing()
    await store.submit(record)
    later = T0 + timedelta(seconds=30)
    await store.outbox_retry([(record.id, "RS-PPO")], later)
    assert await store.outbox_due(10, T0 + timedelta(seconds=29)) == []
    (item,) = await store.outbox_due(10, later)
    assert item.attempts == 1
    message = await store.get_message(record.id)
    assert message is not None
    assert message.recipient_states[0].next_attempt_at == later


async def test_positive_receipts_from_every_recipient_make_it_delivered(
    store: Node,
) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"))
    await store.submit(record)
    await store.outbox_confirmed([(record.id, "RS-PPO"), (record.id, "MD-ARO")], T0)
    status = await store.record_receipt(
        record.id, "RS-PPO", "accepted", None, None, T0 + timedelta(seconds=1), b"r1"
    )
    assert status == "sent"
    status = await store.record_receipt(
        record.id, "MD-ARO", "accepted", None, None, T0 + timedelta(seconds=2), b"r2"
    )
    assert status == "delivered"
    message = await store.get_message(record.id)
    assert message is not None
    assert [s.state for s in message.recipient_states] == ["delivered", "delivered"]
    assert [r.envelope for r in message.receipts] == [b"r1", b"r2"]


async def test_a_receipt_before_the_confirm_settles_the_outbox_row(store: Node) -> None:
    record = outgoing()
    await store.submit(record)
    status = await store.record_receipt(record.id, "RS-PPO", "accepted", None, None, T0, b"r")
    assert status == "delivered"
    assert await store.outbox_depth() == 0
    assert await store.outbox_due(10, T0 + timedelta(days=1)) == []


async def test_a_negative_receipt_rejects_with_its_code(store: Node) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"))
    await store.submit(record)
    status = await store.record_receipt(
        record.id, "RS-PPO", "rejected", "cert.revoked", "revoked", T0, b"neg"
    )
    assert status == "rejected"
    await store.record_receipt(record.id, "MD-ARO", "accepted", None, None, T0, b"ok")
    message = await store.get_message(record.id)
    assert message is not None
    assert message.status == "rejected" and message.reason == "cert.revoked"
    states = {s.recipient: s for s in message.recipient_states}
    assert states["RS-PPO"].state == "rejected"
    assert states["RS-PPO"].receipt is not None
    assert states["RS-PPO"].receipt.envelope == b"neg"
    assert states["MD-ARO"].state == "delivered"


async def test_a_later_positive_receipt_supersedes_a_refusal_and_the_history_keeps_both(
    store: Node,
) -> None:
    """RS-PPO refused the message (its CRL was stale, say), then accepted it when it came
    again: the message is delivered, and its history shows the refusal and the acceptance."""
    record = outgoing(("RS-PPO", "MD-ARO"))
    await store.submit(record)
    await store.record_receipt(record.id, "MD-ARO", "accepted", None, None, T0, b"md")
    refused = await store.record_receipt(
        record.id, "RS-PPO", "rejected", "cert.untrusted", None, T0 + timedelta(seconds=1), b"n"
    )
    assert refused == "rejected"
    accepted = await store.record_receipt(
        record.id, "RS-PPO", "accepted", None, None, T0 + timedelta(seconds=2), b"p"
    )
    assert accepted == "delivered"
    message = await store.get_message(record.id)
    assert message is not None
    assert (message.status, message.reason) == ("delivered", None)
    history = [(r.from_node, r.outcome, r.reason, r.envelope) for r in message.receipts]
    assert history == [
        ("MD-ARO", "accepted", None, b"md"),
        ("RS-PPO", "rejected", "cert.untrusted", b"n"),
        ("RS-PPO", "accepted", None, b"p"),
    ]
    states = {s.recipient: s for s in message.recipient_states}
    assert states["RS-PPO"].state == "delivered"
    assert states["RS-PPO"].receipt is not None and states["RS-PPO"].receipt.envelope == b"p"


async def test_a_refusal_never_undoes_a_positive_receipt(store: Node) -> None:
    """A genuine copy replayed after its expiry is refused by a recipient that accepted it
    before: the message stays delivered."""
    record = outgoing()
    await store.submit(record)
    await store.record_receipt(record.id, "RS-PPO", "accepted", None, None, T0, b"p")
    later = T0 + timedelta(hours=1)
    status = await store.record_receipt(
        record.id, "RS-PPO", "rejected", "message.expired", None, later, b"n"
    )
    assert status == "delivered"
    message = await store.get_message(record.id)
    assert message is not None and [r.outcome for r in message.receipts] == [
        "accepted",
        "rejected",
    ]


async def test_the_same_receipt_again_changes_nothing_but_its_id_reused_is_a_replay(
    store: Node,
) -> None:
    record = outgoing()
    await store.submit(record)
    receipt_id = uuid4()
    first = await store.receipt_outcome(
        record.id, "RS-PPO", "rejected", "schema.invalid", T0, b"neg", receipt_id=receipt_id
    )
    assert (first.refusal, first.status, first.new) == (None, "rejected", True)
    again = await store.receipt_outcome(
        record.id, "RS-PPO", "rejected", "schema.invalid", T0, b"neg", receipt_id=receipt_id
    )
    assert (again.refusal, again.status, again.new) == (None, "rejected", False)
    other = await store.receipt_outcome(
        record.id, "RS-PPO", "accepted", None, T0, b"pos", receipt_id=receipt_id
    )
    assert other.refusal == "message.replayed"
    message = await store.get_message(record.id)
    assert message is not None and len(message.receipts) == 1


async def test_a_refusal_may_name_the_bytes_published_but_an_acceptance_must_name_the_signed(
    store: Node,
) -> None:
    """Refused before its signature was checked, a message is named by the SHA-256 of the
    exact bytes received: the sender matches that against the bytes it published. Any other
    digest is about some other copy (an altered one) and is no receipt of this message."""
    record = outgoing()
    await store.submit(record)
    wire = hashlib.sha256(record.envelope).hexdigest()
    other = hashlib.sha256(record.envelope + b" ").hexdigest()
    positive_of_wire = await store.receipt_outcome(
        record.id, "RS-PPO", "accepted", None, T0, b"p1", digest=wire
    )
    assert positive_of_wire.refusal == "receipt.mismatch"
    of_a_copy = await store.receipt_outcome(
        record.id, "RS-PPO", "rejected", "signature.invalid", T0, b"n1", digest=other
    )
    assert of_a_copy.refusal == "receipt.mismatch"
    refused = await store.receipt_outcome(
        record.id, "RS-PPO", "rejected", "cert.revoked", T0, b"n2", digest=wire
    )
    assert (refused.refusal, refused.status) == (None, "rejected")
    message = await store.get_message(record.id)
    assert message is not None
    assert [(r.digest, r.reason) for r in message.receipts] == [(wire, "cert.revoked")]


async def test_a_database_of_layout_1_keeps_its_receipts(tmp_path: Path) -> None:
    """Layout 1 kept one receipt per recipient; opening it moves them to layout 2."""
    path = tmp_path / "old.sqlite3"
    record = outgoing()
    receipt_id = uuid4()
    envelope = b'{"header": {"id": "%s"}, "payload": {"outcome": "accepted"}, "signature": {}}'
    envelope %= str(receipt_id).encode()
    conn = sqlite3.connect(path)
    conn.executescript(LAYOUT_1)
    conn.execute(
        'INSERT INTO messages (id, type, "case", recipients, created_at, status, envelope, '
        "digest, updated_at) VALUES (?, 'asset-inquiry', 'C-1', '[\"RS-PPO\"]', ?, "
        "'delivered', ?, ?, ?)",
        (
            str(record.id),
            "2026-03-02T09:00:00Z",
            record.envelope,
            record.digest,
            "2026-03-02T09:00:00Z",
        ),
    )
    conn.execute(
        "INSERT INTO receipts VALUES (?, 'RS-PPO', 'accepted', NULL, NULL, ?, ?)",
        (str(record.id), "2026-03-02T09:00:01Z", envelope),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = await Node.open(path)
    try:
        message = await store.get_message(record.id)
        assert message is not None
        (kept,) = message.receipts
        assert (kept.id, kept.from_node, kept.digest, kept.envelope) == (
            receipt_id,
            "RS-PPO",
            record.digest,
            envelope,
        )
        again = await store.receipt_outcome(
            record.id, "RS-PPO", "rejected", "x.y", T0, b"n", receipt_id=uuid4()
        )
        assert again.status == "delivered"
    finally:
        await store.close()


LAYOUT_1 = """
CREATE TABLE messages (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, "case" TEXT NOT NULL, in_reply_to TEXT,
    recipients TEXT NOT NULL, created_at TEXT NOT NULL, respond_by TEXT, expires_at TEXT,
    status TEXT NOT NULL, reason TEXT, failure TEXT, envelope BLOB NOT NULL,
    digest TEXT NOT NULL, submitted_by TEXT, updated_at TEXT NOT NULL
);
CREATE TABLE receipts (
    message_id TEXT NOT NULL REFERENCES messages(id), from_node TEXT NOT NULL,
    outcome TEXT NOT NULL, reason TEXT, detail TEXT, received_at TEXT NOT NULL,
    envelope BLOB NOT NULL, PRIMARY KEY (message_id, from_node)
) WITHOUT ROWID;
"""


async def test_a_receipt_for_an_unknown_message_or_from_a_stranger_is_ignored(
    store: Node,
) -> None:
    record = outgoing()
    await store.submit(record)
    assert await store.record_receipt(uuid4(), "RS-PPO", "accepted", None, None, T0, b"") is None
    assert await store.record_receipt(record.id, "KZ-ARC", "rejected", "x", None, T0, b"") is None
    message = await store.get_message(record.id)
    assert message is not None and message.status == "accepted" and message.receipts == ()


async def test_an_expired_message_is_never_handed_out_and_fails(store: Node) -> None:
    record = outgoing(expires_at=T0 + timedelta(minutes=5))
    fresh = outgoing()
    await store.submit(record)
    await store.submit(fresh)
    due = await store.outbox_due(10, T0 + timedelta(minutes=5))
    assert [i.message_id for i in due] == [fresh.id]
    message = await store.get_message(record.id)
    assert message is not None
    assert message.status == "failed" and message.reason == "message.expired"
    assert message.recipient_states[0].state == "failed"
    assert await store.outbox_depth() == 1


async def test_a_rejected_message_past_its_expiry_stops_publishing_its_other_copies(
    store: Node,
) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"), expires_at=T0 + timedelta(minutes=5))
    await store.submit(record)
    await store.record_receipt(record.id, "RS-PPO", "rejected", "schema.invalid", None, T0, b"")
    assert [i.recipient for i in await store.outbox_due(10, T0)] == ["MD-ARO"]
    assert await store.outbox_due(10, T0 + timedelta(minutes=5)) == []
    assert await store.outbox_depth() == 0
    message = await store.get_message(record.id)
    assert message is not None and (message.status, message.reason) == (
        "rejected",
        "schema.invalid",
    )
    assert [s.state for s in message.recipient_states] == ["rejected", "failed"]


async def test_giving_up_on_a_row_fails_the_message(store: Node) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"))
    await store.submit(record)
    await store.outbox_confirmed([(record.id, "RS-PPO")], T0)
    await store.outbox_failed([(record.id, "MD-ARO")], "unroutable", T0)
    message = await store.get_message(record.id)
    assert message is not None and (message.status, message.reason) == ("failed", "unroutable")
    assert await store.outbox_depth() == 0


async def test_inbox_store_is_idempotent_and_pages_by_cursor(store: Node) -> None:
    ids = [uuid4() for _ in range(3)]
    cursors = []
    for i, mid in enumerate(ids):
        cursors.append(
            await store.inbox_store(
                mid, "asset-inquiry", "C-1", "RS-PPO", None, f"{i:064x}", b"{}", T0, None
            )
        )
    assert cursors == sorted(cursors) and len(set(cursors)) == 3
    again = await store.inbox_store(
        ids[1], "asset-inquiry", "C-1", "RS-PPO", None, "ff" * 32, b"x", T0, None
    )
    assert again == cursors[1]
    assert await store.inbox_digest(ids[1]) == f"{1:064x}"  # the first copy stands
    assert await store.inbox_digest(uuid4()) is None
    page = await store.inbox_page(0, 2)
    assert [r.id for r in page] == ids[:2]
    rest = await store.inbox_page(page[-1].cursor, 10)
    assert [r.id for r in rest] == ids[2:]
    assert await store.inbox_page(rest[-1].cursor, 10) == []
    record = await store.inbox_get(ids[0])
    assert record is not None and record.sender == "RS-PPO" and record.envelope == b"{}"
    assert await store.inbox_get(uuid4()) is None


async def test_case_messages_interleave_both_directions_in_time_order(
    store: Node,
) -> None:
    request = outgoing(created_at=T0, case="C-7")
    await store.submit(request)
    await store.submit(outgoing(case="OTHER"))
    reply_id = uuid4()
    await store.inbox_store(
        reply_id,
        "asset-inquiry-response",
        "C-7",
        "RS-PPO",
        request.id,
        "cd" * 32,
        b"{}",
        T0 + timedelta(hours=1),
        None,
    )
    messages = await store.case_messages("C-7")
    assert [(m.direction, m.id) for m in messages] == [("out", request.id), ("in", reply_id)]
    assert messages[0].status == "accepted" and messages[0].recipients == ("RS-PPO",)
    assert messages[1].sender == "RS-PPO" and messages[1].in_reply_to == request.id
    assert await store.case_messages("NONE") == []


async def test_overdue_lists_requests_we_owe_and_those_owed_to_us(store: Node) -> None:
    due = T0 + timedelta(hours=8)
    now = due + timedelta(minutes=1)
    # Owed to us: a request to two nodes; RS-PPO answered, MD-ARO did not.
    ours = outgoing(("RS-PPO", "MD-ARO"), respond_by=due)
    await store.submit(ours)
    await store.inbox_store(
        uuid4(), "asset-inquiry-response", "C", "RS-PPO", ours.id, "0" * 64, b"{}", now, None
    )
    # Not yet due, and a rejected one: neither is overdue.
    await store.submit(outgoing(respond_by=now + timedelta(hours=1)))
    rejected = outgoing(respond_by=due)
    await store.submit(rejected)
    await store.record_receipt(rejected.id, "RS-PPO", "rejected", "schema.invalid", None, T0, b"")
    # We owe: two requests received; we answered one.
    owed, answered = uuid4(), uuid4()
    for mid in (owed, answered):
        await store.inbox_store(mid, "freeze-notice", "C", "MD-ARO", None, "1" * 64, b"{}", T0, due)
    await store.submit(outgoing(("MD-ARO",), type="freeze-decision", in_reply_to=answered))

    report = await store.overdue(now)
    assert [(i.message_id, i.counterpart) for i in report.owed_to_us] == [(ours.id, "MD-ARO")]
    assert [(i.message_id, i.counterpart, i.type) for i in report.we_owe] == [
        (owed, "MD-ARO", "freeze-notice")
    ]
    assert report.we_owe[0].respond_by == due
    assert (await store.overdue(due - timedelta(seconds=1))).we_owe == ()


async def test_concurrent_writes_are_isolated_one_failure_spoils_none_of_the_others(
    store: Node,
) -> None:
    taken = outgoing()
    await store.submit(taken)
    good = [outgoing() for _ in range(50)]
    bad = dataclasses.replace(outgoing(("MD-ARO",)), id=taken.id)
    results = await asyncio.gather(
        *(store.submit(r) for r in good[:25]),
        store.submit(bad),
        *(store.submit(r) for r in good[25:]),
        return_exceptions=True,
    )
    assert sum(isinstance(r, sqlite3.IntegrityError) for r in results) == 1
    assert await store.outbox_depth() == 51
    message = await store.get_message(taken.id)
    assert message is not None and message.recipients == ("RS-PPO",)
    # One entry per message kept, none for the refused write, and the tree still verifies.
    entries = await store.audit.entries(0, 100)
    assert sorted(e.message_id or "" for e in entries) == sorted(str(r.id) for r in [taken, *good])
    assert [e.index for e in entries] == list(range(51))
    proof = await store.audit.consistency_proof(1)
    assert proof.new_size == 51


async def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    store = await Node.open(path)
    record = outgoing()
    await store.submit(record)
    await store.outbox_confirmed([(record.id, "RS-PPO")], T0)
    assert await store.ping() is True
    await store.close()
    reopened = await Node.open(path)
    try:
        message = await reopened.get_message(record.id)
        assert message is not None and message.status == "sent"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await reopened.close()


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await Node.open(tmp_path / "s.sqlite3")
    await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.outbox_depth()


async def test_an_unopenable_store_fails_at_open(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(sqlite3.OperationalError):
        await Node.open(tmp_path / "dir.sqlite3")

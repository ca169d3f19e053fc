"""The message store: outbox, statuses, receipts, inbox, cases and deadlines, durably."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from exchange.storage.records import OutgoingRecord
from exchange.storage.messages import MessageStore

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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MessageStore]:
    s = await MessageStore.open(tmp_path / "data" / "store.sqlite3")
    yield s
    await s.close()


async def test_submit_writes_the_message_and_one_outbox_row_per_recipient(
    store: MessageStore,
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
    assert all(i.envelope == record.envelope for i in due)


async def test_a_failed_submit_leaves_nothing_behind(store: MessageStore) -> None:
    record = outgoing(("RS-PPO", "RS-PPO"))  # the second outbox row violates the key
    with pytest.raises(sqlite3.IntegrityError):
        await store.submit(record)
    assert await store.get_message(record.id) is None
    assert await store.outbox_depth() == 0


async def test_outbox_due_respects_time_order_and_limit(store: MessageStore) -> None:
    first, second = outgoing(created_at=T0), outgoing(created_at=T0 + timedelta(seconds=1))
    await store.submit(second)
    await store.submit(first)
    assert [i.message_id for i in await store.outbox_due(1, T0 + timedelta(minutes=1))] == [
        first.id
    ]
    assert await store.outbox_due(10, T0 - timedelta(seconds=1)) == []


async def test_status_becomes_sent_only_when_every_recipient_is_confirmed(
    store: MessageStore,
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


async def test_a_retry_counts_the_attempt_and_postpones_the_row(store: MessageStore) -> None:
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
    store: MessageStore,
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


async def test_a_receipt_before_the_confirm_settles_the_outbox_row(store: MessageStore) -> None:
    record = outgoing()
    await store.submit(record)
    status = await store.record_receipt(record.id, "RS-PPO", "accepted", None, None, T0, b"r")
    assert status == "delivered"
    assert await store.outbox_depth() == 0
    assert await store.outbox_due(10, T0 + timedelta(days=1)) == []


async def test_a_negative_receipt_rejects_with_its_code_and_receipts_are_idempotent(
    store: MessageStore,
) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"))
    await store.submit(record)
    status = await store.record_receipt(
        record.id, "RS-PPO", "rejected", "cert.revoked", "revoked", T0, b"neg"
    )
    assert status == "rejected"
    # The same node answering again (a redelivery) changes nothing: the first receipt stands.
    again = await store.record_receipt(record.id, "RS-PPO", "accepted", None, None, T0, b"pos")
    assert again == "rejected"
    await store.record_receipt(record.id, "MD-ARO", "accepted", None, None, T0, b"ok")
    message = await store.get_message(record.id)
    assert message is not None
    assert message.status == "rejected" and message.reason == "cert.revoked"
    states = {s.recipient: s for s in message.recipient_states}
    assert states["RS-PPO"].state == "rejected"
    assert states["RS-PPO"].receipt is not None
    assert states["RS-PPO"].receipt.envelope == b"neg"
    assert states["MD-ARO"].state == "delivered"


async def test_a_receipt_for_an_unknown_message_or_from_a_stranger_is_ignored(
    store: MessageStore,
) -> None:
    record = outgoing()
    await store.submit(record)
    assert await store.record_receipt(uuid4(), "RS-PPO", "accepted", None, None, T0, b"") is None
    assert await store.record_receipt(record.id, "KZ-ARC", "rejected", "x", None, T0, b"") is None
    message = await store.get_message(record.id)
    assert message is not None and message.status == "accepted" and message.receipts == ()


async def test_an_expired_message_is_never_handed_out_and_fails(store: MessageStore) -> None:
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
    store: MessageStore,
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


async def test_giving_up_on_a_row_fails_the_message(store: MessageStore) -> None:
    record = outgoing(("RS-PPO", "MD-ARO"))
    await store.submit(record)
    await store.outbox_confirmed([(record.id, "RS-PPO")], T0)
    await store.outbox_failed([(record.id, "MD-ARO")], "unroutable", T0)
    message = await store.get_message(record.id)
    assert message is not None and (message.status, message.reason) == ("failed", "unroutable")
    assert await store.outbox_depth() == 0


async def test_inbox_store_is_idempotent_and_pages_by_cursor(store: MessageStore) -> None:
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
    store: MessageStore,
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


async def test_overdue_lists_requests_we_owe_and_those_owed_to_us(store: MessageStore) -> None:
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
    store: MessageStore,
) -> None:
    good = [outgoing() for _ in range(50)]
    bad = outgoing(("RS-PPO", "RS-PPO"))
    results = await asyncio.gather(
        *(store.submit(r) for r in good[:25]),
        store.submit(bad),
        *(store.submit(r) for r in good[25:]),
        return_exceptions=True,
    )
    assert sum(isinstance(r, sqlite3.IntegrityError) for r in results) == 1
    assert await store.outbox_depth() == 50
    assert await store.get_message(bad.id) is None


async def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = await MessageStore.open(path)
    record = outgoing()
    await store.submit(record)
    await store.outbox_confirmed([(record.id, "RS-PPO")], T0)
    assert await store.ping() is True
    await store.close()
    reopened = await MessageStore.open(path)
    try:
        message = await reopened.get_message(record.id)
        assert message is not None and message.status == "sent"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await reopened.close()


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await MessageStore.open(tmp_path / "s.sqlite3")
    await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.outbox_depth()


async def test_an_unopenable_store_fails_at_open(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(sqlite3.OperationalError):
        await MessageStore.open(tmp_path / "dir.sqlite3")

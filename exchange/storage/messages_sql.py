"""The SQL of messages, receipts and the inbox: status derivation, rows turned into records.

Every function here runs on the database thread, inside a transaction that `SqliteThread`
opened (the tables are in `exchange.storage.schema`).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from exchange.model.common import format_utc
from exchange.storage.records import (
    CaseMessage,
    InboxRecord,
    IncomingMessage,
    IncomingReceipt,
    MessageRecord,
    OverdueItem,
    OverdueReport,
    ReceiptRecord,
    RecipientState,
    RecipientStateName,
)

SELECT_EXPIRING = (
    "SELECT id FROM messages WHERE expires_at IS NOT NULL AND failure IS NULL "
    "AND status IN ('accepted', 'rejected') AND expires_at <= ?"
)
"""Messages that may still have unsent rows and are past their expiry (a partial index)."""

INSERT_INBOX = (
    'INSERT OR IGNORE INTO inbox (id, type, "case", sender, in_reply_to, digest, '
    "envelope, received_at, respond_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
"""Keeps the first copy of a message id; `inbox_values` makes its parameters."""


MARK_SENT = (
    "UPDATE messages SET status = 'sent', reason = NULL, updated_at = ? "
    "WHERE id = ? AND status = 'accepted' AND failure IS NULL AND NOT EXISTS ("
    "SELECT 1 FROM outbox o WHERE o.message_id = messages.id AND o.confirmed_at IS NULL)"
)
"""`refresh_status` after confirms were recorded, in one statement: confirms only ever
turn `accepted` into `sent` (a message's receipts already made it `delivered` or `rejected`
when they arrived, and a `failure` keeps it `failed`)."""


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"
    SENT = "sent"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"


def ts(value: datetime) -> str:
    return format_utc(value)


def dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def uuid_or_none(value: str | None) -> UUID | None:
    return None if value is None else UUID(value)


def refresh_status(conn: sqlite3.Connection, message_id: str, now: str) -> str:
    """Derive the status from the facts recorded so far, store it, and return it."""
    recipients, failure = conn.execute(
        "SELECT recipients, failure FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    wanted = set(json.loads(recipients))
    receipts = conn.execute(
        "SELECT from_node, outcome, reason FROM receipts WHERE message_id = ? ORDER BY seq",
        (message_id,),
    ).fetchall()
    # A recipient's positive receipt stands whatever it said before or after: it proves the
    # signed message was accepted (a refusal of a copy cannot undo that).
    positive = {node for node, outcome, _reason in receipts if outcome == "accepted"}
    negative = [
        reason
        for node, outcome, reason in receipts
        if outcome != "accepted" and node not in positive
    ]
    rows = conn.execute(
        "SELECT confirmed_at, abandoned_at FROM outbox WHERE message_id = ?", (message_id,)
    ).fetchall()
    reason: str | None = None
    if negative:
        status, reason = MessageStatus.REJECTED, negative[0] or "unspecified"
    elif wanted <= positive:
        status = MessageStatus.DELIVERED
    elif failure is not None:
        status, reason = MessageStatus.FAILED, failure
    elif all(confirmed is not None for confirmed, _ in rows):
        status = MessageStatus.SENT
    else:
        status = MessageStatus.ACCEPTED
    conn.execute(
        "UPDATE messages SET status = ?, reason = ?, updated_at = ? "
        "WHERE id = ? AND (status IS NOT ? OR reason IS NOT ?)",
        (status.value, reason, now, message_id, status.value, reason),
    )
    return status.value


def inbox_values(message: IncomingMessage) -> tuple[Any, ...]:
    return (
        str(message.id),
        message.type,
        message.case,
        message.sender,
        None if message.in_reply_to is None else str(message.in_reply_to),
        message.digest,
        message.envelope,
        ts(message.received_at),
        None if message.respond_by is None else ts(message.respond_by),
    )


INSERT_RECEIPT = (
    "INSERT OR IGNORE INTO receipts (id, receipt_digest, message_id, from_node, digest, "
    "outcome, reason, detail, received_at, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_receipt(conn: sqlite3.Connection, incoming: IncomingReceipt) -> tuple[bool, str]:
    """Keep a receipt unless one with its id is kept already; (kept now, the kept copy's
    receipt digest). A new receipt settles its sender's outbox row (it proves the publish
    arrived) and refreshes the message's status."""
    r = incoming.receipt
    mid, when = str(r.message_id), ts(r.received_at)
    values = (str(r.id), incoming.receipt_digest, mid, r.from_node, r.digest, r.outcome)
    if conn.execute(INSERT_RECEIPT, (*values, r.reason, r.detail, when, r.envelope)).rowcount != 1:
        (kept,) = conn.execute(
            "SELECT receipt_digest FROM receipts WHERE id = ?", (str(r.id),)
        ).fetchone()
        return False, str(kept)
    conn.execute(
        "UPDATE outbox SET confirmed_at = ? "
        "WHERE message_id = ? AND recipient = ? AND confirmed_at IS NULL",
        (when, mid, r.from_node),
    )
    refresh_status(conn, mid, when)
    return True, incoming.receipt_digest


INBOX_COLUMNS = (
    'cursor, id, type, "case", sender, in_reply_to, digest, envelope, received_at, respond_by'
)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def exists(conn: sqlite3.Connection, message_id: str) -> bool:
    return conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is not None


def abandon(
    conn: sqlite3.Connection, message_id: str, recipient: str | None, reason: str, at: str
) -> None:
    conn.execute(
        "UPDATE outbox SET abandoned_at = ? WHERE message_id = ? AND confirmed_at IS NULL "
        "AND abandoned_at IS NULL AND (? IS NULL OR recipient = ?)",
        (at, message_id, recipient, recipient),
    )
    conn.execute(
        "UPDATE messages SET failure = coalesce(failure, ?) WHERE id = ?", (reason, message_id)
    )
    refresh_status(conn, message_id, at)


def inbox_record(row: Any) -> InboxRecord:
    cursor, mid, type_, case, sender, irt, digest, envelope, received_at, respond_by = row
    return InboxRecord(
        cursor=int(cursor),
        id=UUID(mid),
        type=type_,
        case=case,
        sender=sender,
        in_reply_to=uuid_or_none(irt),
        digest=digest,
        envelope=bytes(envelope),
        received_at=at(received_at),
        respond_by=dt(respond_by),
    )


def read_message(conn: sqlite3.Connection, mid: str) -> MessageRecord | None:
    row = conn.execute(
        'SELECT id, type, "case", in_reply_to, recipients, created_at, respond_by, expires_at, '
        "status, reason, envelope, digest, submitted_by, updated_at FROM messages WHERE id = ?",
        (mid,),
    ).fetchone()
    if row is None:
        return None
    receipts = [
        ReceiptRecord(UUID(i), UUID(m), n, d, o, reason, detail, at(when), bytes(envelope))
        for i, m, n, d, o, reason, detail, when, envelope in conn.execute(
            "SELECT id, message_id, from_node, digest, outcome, reason, detail, received_at, "
            "envelope FROM receipts WHERE message_id = ? ORDER BY seq",
            (mid,),
        )
    ]
    states = []
    for recipient, attempts, next_at, confirmed, abandoned in conn.execute(
        "SELECT recipient, attempts, next_attempt_at, confirmed_at, abandoned_at FROM outbox "
        "WHERE message_id = ?",
        (mid,),
    ):
        receipt = deciding_receipt(receipts, recipient)
        state: RecipientStateName
        if receipt is not None:
            state = "delivered" if receipt.outcome == "accepted" else "rejected"
        elif confirmed is not None:
            state = "sent"
        elif abandoned is not None:
            state = "failed"
        else:
            state = "pending"
        states.append(
            RecipientState(
                recipient=recipient,
                state=state,
                attempts=int(attempts),
                next_attempt_at=None if confirmed or abandoned else at(next_at),
                confirmed_at=dt(confirmed),
                receipt=receipt,
            )
        )
    order = {r: i for i, r in enumerate(json.loads(row[4]))}
    states.sort(key=lambda s: order.get(s.recipient, len(order)))
    return MessageRecord(
        id=UUID(row[0]),
        type=row[1],
        case=row[2],
        in_reply_to=uuid_or_none(row[3]),
        recipients=tuple(json.loads(row[4])),
        created_at=at(row[5]),
        respond_by=dt(row[6]),
        expires_at=dt(row[7]),
        status=row[8],
        reason=row[9],
        envelope=bytes(row[10]),
        digest=row[11],
        submitted_by=row[12],
        updated_at=at(row[13]),
        recipient_states=tuple(states),
        receipts=tuple(receipts),
    )


def deciding_receipt(receipts: list[ReceiptRecord], recipient: str) -> ReceiptRecord | None:
    """The receipt that sets `recipient`'s state: its first positive one, else its first."""
    mine = [r for r in receipts if r.from_node == recipient]
    return next((r for r in mine if r.outcome == "accepted"), mine[0] if mine else None)


_INBOX_SELECT = f"SELECT {INBOX_COLUMNS} FROM inbox"  # noqa: S608 (constant column list)


def select_inbox_page(conn: sqlite3.Connection, after: int, limit: int) -> list[InboxRecord]:
    rows = conn.execute(
        f"{_INBOX_SELECT} WHERE cursor > ? ORDER BY cursor LIMIT ?", (after, limit)
    ).fetchall()
    return [inbox_record(r) for r in rows]


def select_inbox(conn: sqlite3.Connection, message_id: str) -> InboxRecord | None:
    row = conn.execute(f"{_INBOX_SELECT} WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else inbox_record(row)


def select_case(conn: sqlite3.Connection, case: str) -> list[CaseMessage]:
    sent = conn.execute(
        "SELECT id, type, recipients, in_reply_to, created_at, status FROM messages "
        'WHERE "case" = ?',
        (case,),
    ).fetchall()
    received = conn.execute(
        'SELECT id, type, sender, in_reply_to, received_at FROM inbox WHERE "case" = ?', (case,)
    ).fetchall()
    out = [
        CaseMessage("out", UUID(i), t, None, tuple(json.loads(r)), uuid_or_none(irt), at(c), s)
        for i, t, r, irt, c, s in sent
    ]
    out += [
        CaseMessage("in", UUID(i), t, sender, (), uuid_or_none(irt), at(when), None)
        for i, t, sender, irt, when in received
    ]
    out.sort(key=lambda m: (m.at, m.direction, str(m.id)))
    return out


def select_overdue(conn: sqlite3.Connection, now: str) -> OverdueReport:
    we_owe = conn.execute(
        'SELECT i.id, i.type, i."case", i.sender, i.respond_by FROM inbox i '
        "WHERE i.respond_by IS NOT NULL AND i.respond_by < ? AND NOT EXISTS ("
        "SELECT 1 FROM messages m WHERE m.in_reply_to = i.id "
        "AND m.status NOT IN ('rejected', 'failed')) ORDER BY i.respond_by, i.cursor",
        (now,),
    ).fetchall()
    owed = conn.execute(
        'SELECT m.id, m.type, m."case", o.recipient, m.respond_by FROM messages m '
        "JOIN outbox o ON o.message_id = m.id "
        "WHERE m.respond_by IS NOT NULL AND m.respond_by < ? "
        "AND m.status NOT IN ('rejected', 'failed') AND NOT EXISTS ("
        "SELECT 1 FROM inbox i WHERE i.in_reply_to = m.id AND i.sender = o.recipient) "
        "ORDER BY m.respond_by, o.recipient",
        (now,),
    ).fetchall()
    return OverdueReport(
        we_owe=tuple(OverdueItem(UUID(i), t, c, n, at(rb)) for i, t, c, n, rb in we_owe),
        owed_to_us=tuple(OverdueItem(UUID(i), t, c, n, at(rb)) for i, t, c, n, rb in owed),
    )

"""The node's messages: outgoing ones with their receipts, and the inbox.

The writes are functions of a connection (`insert_message`, `insert_inbox`,
`insert_receipt`), called inside the transaction of the operation they belong to, together
with the outbox rows and audit entries that operation owes. `MessageStore` reads. A
message's status is derived from facts that only accumulate (broker confirms, receipts,
give-ups): `accepted` -> `sent` (every recipient's publish confirmed) -> `delivered` (a
positive receipt from every recipient) | `rejected` (any negative receipt; its code is kept)
| `failed`.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from uuid import UUID

from exchange.storage import messages_sql as sql
from exchange.storage import outbox
from exchange.storage.messages_sql import MessageStatus
from exchange.storage.records import (
    CaseMessage,
    InboxArrival,
    InboxRecord,
    IncomingMessage,
    MessageRecord,
    OutgoingRecord,
    OverdueReport,
    ReceiptOutcome,
)
from exchange.storage.sqlite_thread import SqliteThread

__all__ = [
    "MessageStatus",
    "MessageStore",
    "insert_inbox",
    "insert_message",
    "insert_receipt",
]


def insert_message(conn: sqlite3.Connection, record: OutgoingRecord) -> None:
    """Store an outgoing message (its outbox rows are the caller's to add)."""
    created = sql.ts(record.created_at)
    conn.execute(
        'INSERT INTO messages (id, type, "case", in_reply_to, recipients, created_at, '
        "respond_by, expires_at, status, envelope, digest, submitted_by, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            str(record.id),
            record.type,
            record.case,
            None if record.in_reply_to is None else str(record.in_reply_to),
            json.dumps(list(record.recipients)),
            created,
            None if record.respond_by is None else sql.ts(record.respond_by),
            None if record.expires_at is None else sql.ts(record.expires_at),
            MessageStatus.ACCEPTED.value,
            record.envelope,
            record.digest,
            record.submitted_by,
            created,
        ),
    )


def insert_inbox(conn: sqlite3.Connection, message: IncomingMessage) -> InboxArrival:
    """Store a verified incoming message unless its id is already stored, and say which
    (with the stored copy's digest)."""
    values = sql.inbox_values(message)
    new = conn.execute(sql.INSERT_INBOX, values).rowcount == 1
    cursor, stored = conn.execute(
        "SELECT cursor, digest FROM inbox WHERE id = ?", (values[0],)
    ).fetchone()
    return InboxArrival(int(cursor), str(stored), new)


def insert_receipt(
    conn: sqlite3.Connection,
    message_id: UUID,
    from_node: str,
    digest: str,
    outcome: str,
    reason: str | None,
    detail: str | None,
    received_at: datetime,
    envelope: bytes,
) -> ReceiptOutcome:
    """Keep the first receipt from `from_node` for a message, checked: refused with
    "recipient.mismatch" when the message is unknown or `from_node` is not one of its
    recipients, with "receipt.mismatch" when `digest` is not the digest of what was sent.
    Nothing is recorded for a refused receipt. A receipt also settles that recipient's
    outbox row: it proves the publish arrived."""
    mid, at = str(message_id), sql.ts(received_at)
    row = conn.execute(
        "SELECT recipients, digest, type, created_at FROM messages WHERE id = ?", (mid,)
    ).fetchone()
    if row is None or from_node not in json.loads(row[0]):
        return ReceiptOutcome("recipient.mismatch")
    if row[1] != digest:
        return ReceiptOutcome("receipt.mismatch")
    status = sql.insert_receipt(conn, mid, from_node, outcome, reason, detail, at, envelope)
    return ReceiptOutcome(None, status, row[2], sql.at(row[3]))


class MessageStore:
    """Reads of messages and the inbox; every method runs on the database thread."""

    def __init__(self, db: SqliteThread) -> None:
        self._db = db

    async def get_message(self, message_id: UUID) -> MessageRecord | None:
        """An outgoing message with its status, receipts and each recipient's state."""
        return await self._db.call(lambda conn: sql.read_message(conn, str(message_id)))

    async def inbox_page(self, after: int, limit: int) -> list[InboxRecord]:
        """Incoming messages with a cursor greater than `after`, oldest first."""
        return await self._db.call(lambda conn: sql.select_inbox_page(conn, after, limit))

    async def inbox_get(self, message_id: UUID) -> InboxRecord | None:
        return await self._db.call(lambda conn: sql.select_inbox(conn, str(message_id)))

    async def case_messages(self, case: str) -> list[CaseMessage]:
        """Every message of a case, sent and received, in time order."""
        return await self._db.call(lambda conn: sql.select_case(conn, case))

    async def overdue(self, now: datetime) -> OverdueReport:
        """Requests past `respond_by` with no response, those we owe and those owed to us.

        A reply counts once it exists, except an outgoing reply that was rejected or failed.
        """
        return await self._db.call(lambda conn: sql.select_overdue(conn, sql.ts(now)))

    async def outbox_depth(self) -> int:
        """How many publishes (of every kind) still wait for a broker confirm."""
        return await self._db.call(outbox.depth)

    async def ping(self) -> bool:
        """True when the database commits a write (for readiness); raises if it cannot."""

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT INTO node_meta (key, value) "
                "VALUES ('ping', strftime('%Y-%m-%dT%H:%M:%fZ')) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
            return True

        return await self._db.call(run)

"""The node's messages: outgoing ones with their receipts, and the inbox.

The writes are functions of a connection (`insert_message`, `insert_inbox`,
`insert_receipt`), called inside the transaction of the operation they belong to, together
with the outbox rows and audit entries that operation owes. `MessageStore` reads. A
message's status is derived from facts that only accumulate (broker confirms, receipts,
give-ups): `accepted` -> `sent` (every recipient's publish confirmed) -> `delivered` (a
positive receipt from every recipient) | `rejected` (a negative receipt from a recipient that
has sent no positive one; its code is kept) | `failed`. Every receipt is kept: a recipient's
later positive receipt supersedes its earlier refusal, and the history shows both.
"""

from __future__ import annotations

import hashlib
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
    IncomingReceipt,
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


def insert_receipt(conn: sqlite3.Connection, incoming: IncomingReceipt) -> ReceiptOutcome:
    """Record a receipt, checked. Refused with "recipient.mismatch" when the message is
    unknown or the receipt's sender is not one of its recipients; with "receipt.mismatch"
    when it is not about what was sent: it must name the digest of the signed bytes, or (a
    refusal before the signature was checked) the SHA-256 of the exact bytes published;
    with "message.replayed" when its id was recorded with other content. Nothing is recorded
    for a refused receipt. Every receipt is kept, in the order it came (the history of the
    message's status); the same receipt again changes nothing."""
    r = incoming.receipt
    mid = str(r.message_id)
    row = conn.execute(
        "SELECT recipients, digest, type, created_at FROM messages WHERE id = ?", (mid,)
    ).fetchone()
    if row is None or r.from_node not in json.loads(row[0]):
        return ReceiptOutcome("recipient.mismatch")
    if r.digest != row[1] and (r.outcome == "accepted" or r.digest != _wire_digest(conn, mid)):
        return ReceiptOutcome("receipt.mismatch")
    new, kept = sql.insert_receipt(conn, incoming)
    if kept != incoming.receipt_digest:
        return ReceiptOutcome("message.replayed")
    (status,) = conn.execute("SELECT status FROM messages WHERE id = ?", (mid,)).fetchone()
    return ReceiptOutcome(None, str(status), row[2], sql.at(row[3]), new)


def _wire_digest(conn: sqlite3.Connection, message_id: str) -> str:
    """SHA-256 of the exact bytes published for a message (its stored envelope)."""
    (envelope,) = conn.execute(
        "SELECT envelope FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return hashlib.sha256(bytes(envelope)).hexdigest()


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

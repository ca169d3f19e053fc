"""The node's durable message store: outgoing messages, their outbox, receipts, and the inbox.

One SQLite file (WAL, synchronous=FULL) served by one worker thread (`SqliteThread`), so no
SQLite call runs on the event loop and concurrent writes share one commit. A message's
status is derived from facts that only accumulate (broker confirms, receipts, give-ups):
`accepted` -> `sent` (every recipient's publish confirmed) -> `delivered` (a positive receipt
from every recipient) | `rejected` (any negative receipt; its code is kept) | `failed`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

from exchange.gateway import store_sql as sql
from exchange.gateway.records import (
    CaseMessage,
    InboxArrival,
    InboxRecord,
    MessageRecord,
    OutboxItem,
    OutgoingRecord,
    OverdueReport,
    ReceiptOutcome,
)
from exchange.gateway.sqlite_thread import SqliteThread
from exchange.gateway.store_sql import MessageStatus

__all__ = ["MessageStatus", "MessageStore"]


class MessageStore:
    """Async access to the store; every method runs on the store's own thread."""

    def __init__(self, db: SqliteThread) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str | Path) -> MessageStore:
        db = SqliteThread(Path(path), sql.setup)
        await db.start()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    # --- the outbox, for the HTTP submit path and the relay ---------------------------------

    async def submit(self, record: OutgoingRecord) -> None:
        """Store an outgoing message and one outbox row per recipient, in one transaction."""
        created = sql.ts(record.created_at)

        def run(conn: sqlite3.Connection) -> None:
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
            conn.executemany(
                "INSERT INTO outbox (message_id, recipient, next_attempt_at) VALUES (?, ?, ?)",
                [(str(record.id), recipient, created) for recipient in record.recipients],
            )

        await self._db.call(run)

    async def outbox_due(self, limit: int, now: datetime) -> list[OutboxItem]:
        """Unconfirmed rows whose next attempt is due, oldest first.

        A message past its `expires_at` is never returned: its pending rows are abandoned and
        the message becomes `failed` with reason `message.expired`.
        """
        at = sql.ts(now)

        def run(conn: sqlite3.Connection) -> list[OutboxItem]:
            for (message_id,) in conn.execute(sql.SELECT_EXPIRING, (at,)).fetchall():
                sql.abandon(conn, message_id, None, "message.expired", at)
            rows = conn.execute(sql.SELECT_DUE, (at, at, limit)).fetchall()
            return [OutboxItem(UUID(m), r, t, bytes(e), a) for m, r, t, e, a in rows]

        return await self._db.call(run)

    async def outbox_confirmed(self, items: Sequence[tuple[UUID, str]], when: datetime) -> None:
        """Record the broker's confirms; a message whose every row is confirmed becomes `sent`."""
        at = sql.ts(when)
        keys = [(str(m), r) for m, r in items]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET confirmed_at = ?, attempts = attempts + 1 "
                "WHERE message_id = ? AND recipient = ? AND confirmed_at IS NULL",
                [(at, m, r) for m, r in keys],
            )
            conn.executemany(
                sql.MARK_SENT,
                [(at, message_id) for message_id in dict.fromkeys(m for m, _ in keys)],
            )

        await self._db.call(run)

    async def outbox_retry(
        self, items: Sequence[tuple[UUID, str]], next_attempt_at: datetime
    ) -> None:
        """Count a failed publish attempt and schedule the next one."""
        at = sql.ts(next_attempt_at)

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE message_id = ? AND recipient = ? AND confirmed_at IS NULL",
                [(at, str(m), r) for m, r in items],
            )

        await self._db.call(run)

    async def outbox_failed(
        self, items: Sequence[tuple[UUID, str]], reason: str, when: datetime
    ) -> None:
        """Give up on rows that cannot be sent; their messages become `failed` with `reason`."""
        at = sql.ts(when)

        def run(conn: sqlite3.Connection) -> None:
            for message_id, recipient in items:
                if sql.exists(conn, str(message_id)):
                    sql.abandon(conn, str(message_id), recipient, reason, at)

        await self._db.call(run)

    async def outbox_depth(self) -> int:
        """How many (message, recipient) publishes are still waiting for a broker confirm."""

        def run(conn: sqlite3.Connection) -> int:
            (n,) = conn.execute(
                "SELECT count(*) FROM outbox WHERE confirmed_at IS NULL AND abandoned_at IS NULL"
            ).fetchone()
            return int(n)

        return await self._db.call(run)

    # --- receipts and the inbox, for the relay's consumer -----------------------------------

    async def record_receipt(
        self,
        message_id: UUID,
        from_node: str,
        outcome: str,
        reason: str | None,
        detail: str | None,
        received_at: datetime,
        envelope: bytes,
    ) -> str | None:
        """Keep the first receipt from `from_node` and return the message's new status.

        None when the message is unknown or `from_node` is not one of its recipients. A
        receipt also settles that recipient's outbox row: it proves the publish arrived.
        """
        mid, at = str(message_id), sql.ts(received_at)

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT recipients FROM messages WHERE id = ?", (mid,)).fetchone()
            if row is None or from_node not in json.loads(row[0]):
                return None
            return sql.insert_receipt(conn, mid, from_node, outcome, reason, detail, at, envelope)

        return await self._db.call(run)

    async def record_receipt_checked(
        self,
        message_id: UUID,
        from_node: str,
        digest: str,
        outcome: str,
        reason: str | None,
        detail: str | None,
        received_at: datetime,
        envelope: bytes,
    ) -> ReceiptOutcome:
        """`record_receipt` for a receipt naming `digest`, checked in the same transaction:
        refused with "recipient.mismatch" when the message is unknown or `from_node` is not
        one of its recipients, with "receipt.mismatch" when `digest` is not the digest of
        what was sent. Nothing is recorded for a refused receipt."""
        mid, at = str(message_id), sql.ts(received_at)

        def run(conn: sqlite3.Connection) -> ReceiptOutcome:
            row = conn.execute(
                "SELECT recipients, digest, type, created_at FROM messages WHERE id = ?", (mid,)
            ).fetchone()
            if row is None or from_node not in json.loads(row[0]):
                return ReceiptOutcome("recipient.mismatch")
            if row[1] != digest:
                return ReceiptOutcome("receipt.mismatch")
            status = sql.insert_receipt(conn, mid, from_node, outcome, reason, detail, at, envelope)
            return ReceiptOutcome(None, status, row[2], sql.at(row[3]))

        return await self._db.call(run)

    async def inbox_digest(self, message_id: UUID) -> str | None:
        """The digest of an already stored incoming message (for duplicates), else None."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT digest FROM inbox WHERE id = ?", (str(message_id),))
            found = row.fetchone()
            return None if found is None else str(found[0])

        return await self._db.call(run)

    async def inbox_unaudited(self, limit: int = 10_000) -> list[InboxRecord]:
        """Stored messages whose audit record may be incomplete (the node stopped between
        storing and auditing them), oldest first."""

        def run(conn: sqlite3.Connection) -> list[InboxRecord]:
            rows = conn.execute(
                f"SELECT {sql.INBOX_COLUMNS} FROM inbox WHERE audited = 0 "  # noqa: S608
                "ORDER BY cursor LIMIT ?",
                (limit,),
            ).fetchall()
            return [sql.inbox_record(r) for r in rows]

        return await self._db.call(run)

    async def inbox_mark_audited(self, message_id: UUID) -> None:
        """The message's `verified` and `stored` audit entries are committed."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE inbox SET audited = 1 WHERE id = ?", (str(message_id),))

        await self._db.call(run)

    async def inbox_receive(
        self,
        message_id: UUID,
        type: str,
        case: str,
        sender: str,
        in_reply_to: UUID | None,
        digest: str,
        envelope: bytes,
        received_at: datetime,
        respond_by: datetime | None,
    ) -> InboxArrival:
        """Store a verified incoming message unless its id is already stored, and say which
        (with the stored copy's digest and audit flag), in one transaction."""
        values = sql.inbox_values(
            message_id, type, case, sender, in_reply_to, digest, envelope, received_at, respond_by
        )

        def run(conn: sqlite3.Connection) -> InboxArrival:
            new = conn.execute(sql.INSERT_INBOX, values).rowcount == 1
            cursor, stored, audited = conn.execute(
                "SELECT cursor, digest, audited FROM inbox WHERE id = ?", (values[0],)
            ).fetchone()
            return InboxArrival(int(cursor), str(stored), bool(audited), new)

        return await self._db.call(run)

    async def inbox_store(
        self,
        message_id: UUID,
        type: str,
        case: str,
        sender: str,
        in_reply_to: UUID | None,
        digest: str,
        envelope: bytes,
        received_at: datetime,
        respond_by: datetime | None,
    ) -> int:
        """Store a verified incoming message once; return its cursor (the same on a repeat)."""
        arrival = await self.inbox_receive(
            message_id, type, case, sender, in_reply_to, digest, envelope, received_at, respond_by
        )
        return arrival.cursor

    # --- reads for HTTP -----------------------------------------------------------------------

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

    async def recent_outgoing(self, limit: int) -> list[MessageRecord]:
        """The last `limit` messages this node accepted, newest first (for completing the
        audit record after a crash)."""

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT id FROM messages ORDER BY rowid DESC LIMIT ?", (limit,))
            return [str(row[0]) for row in rows]

        out = []
        for message_id in await self._db.call(run):
            record = await self.get_message(UUID(message_id))
            if record is not None:
                out.append(record)
        return out

    async def ping(self) -> bool:
        """True when the store commits a write (for readiness); raises if it cannot."""

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('ping', strftime('%Y-%m-%dT%H:%M:%fZ')) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
            return True

        return await self._db.call(run)

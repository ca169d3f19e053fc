"""The case updates a node holds, and the webhook jobs that deliver them.

The events table's autoincrement `cursor` is what SSE clients resume from, so it never
repeats and never goes back. `insert_event` stores an update once by id, with one job per
webhook, inside the caller's transaction (which also writes the update's outbox row and
audit entries); `CaseEventStore` reads, and settles webhook jobs with their audit entries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from exchange.audit.entries import EntryFields
from exchange.model.common import format_utc
from exchange.storage.case_records import CaseEventRecord, NewCaseEvent, Stored, WebhookJob
from exchange.storage.outbox import AuditWrite
from exchange.storage.sqlite_thread import SqliteThread

_EVENT_FIELDS = (
    "cursor",
    "id",
    "network",
    '"case"',
    "event",
    "sender",
    "direction",
    "digest",
    "created_at",
    "received_at",
    "envelope",
)


def _columns(alias: str = "") -> str:
    return ", ".join(f"{alias}{name}" for name in _EVENT_FIELDS)


_EVENT_COLUMNS = _columns()


def _ts(value: datetime) -> str:
    return format_utc(value)


def _record(row: Any) -> CaseEventRecord:
    cursor, mid, network, case, event, sender, direction, digest, created, received, env = row
    return CaseEventRecord(
        cursor=int(cursor),
        id=UUID(mid),
        network=network,
        case=case,
        event=event,
        sender=sender,
        direction=direction,
        digest=digest,
        created_at=datetime.fromisoformat(created),
        received_at=datetime.fromisoformat(received),
        envelope=bytes(env),
    )


def insert_event(
    conn: sqlite3.Connection, event: NewCaseEvent, webhooks: Sequence[str] = ()
) -> Stored:
    """Store an update once, with a job for each of `webhooks`.

    A repeat of a stored id changes nothing and answers `new=False` with the digest held,
    so the caller can tell a redelivery from a different message reusing the id.
    """
    values = (
        str(event.id),
        event.network,
        event.case,
        event.event,
        event.sender,
        event.direction,
        event.digest,
        _ts(event.created_at),
        _ts(event.received_at),
        event.envelope,
    )
    inserted = conn.execute(
        'INSERT OR IGNORE INTO case_events (id, network, "case", event, sender, '
        "direction, digest, created_at, received_at, envelope) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        values,
    ).rowcount
    cursor, digest = conn.execute(
        "SELECT cursor, digest FROM case_events WHERE id = ?", (values[0],)
    ).fetchone()
    if inserted:
        conn.executemany(
            "INSERT INTO webhook_jobs (webhook, cursor, next_attempt_at) VALUES (?, ?, ?)",
            [(hook, cursor, values[8]) for hook in webhooks],
        )
    return Stored(int(cursor), bool(inserted), str(digest))


def knows_case(conn: sqlite3.Connection, network: str, case: str) -> bool:
    """True when the network already has an update for the case (the case is followed)."""
    row = conn.execute(
        'SELECT 1 FROM case_events WHERE network = ? AND "case" = ? LIMIT 1', (network, case)
    ).fetchone()
    return row is not None


class CaseEventStore:
    """Reads of case updates, and webhook jobs; every method runs on the database thread."""

    def __init__(self, db: SqliteThread, audit: AuditWrite) -> None:
        self._db = db
        self._audit = audit

    async def events_after(
        self,
        after: int,
        limit: int,
        *,
        network: str | None = None,
        case: str | None = None,
    ) -> list[CaseEventRecord]:
        """Updates with a cursor greater than `after`, oldest first, optionally filtered."""
        where: list[str] = ["cursor > ?"]
        args: list[Any] = [after]
        if network is not None:
            where.append("network = ?")
            args.append(network)
        if case is not None:
            where.append('"case" = ?')
            args.append(case)
        query = (
            f"SELECT {_EVENT_COLUMNS} FROM case_events WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY cursor LIMIT ?"
        )

        def run(conn: sqlite3.Connection) -> list[CaseEventRecord]:
            return [_record(row) for row in conn.execute(query, (*args, limit)).fetchall()]

        return await self._db.call(run)

    async def get(self, update_id: UUID) -> CaseEventRecord | None:
        def run(conn: sqlite3.Connection) -> CaseEventRecord | None:
            row = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM case_events WHERE id = ?",  # noqa: S608
                (str(update_id),),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._db.call(run)

    async def last_cursor(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (cursor,) = conn.execute("SELECT coalesce(max(cursor), 0) FROM case_events").fetchone()
            return int(cursor)

        return await self._db.call(run)

    async def knows_case(self, network: str, case: str) -> bool:
        """True when the network already has an update for the case (the case is followed)."""
        return await self._db.call(lambda conn: knows_case(conn, network, case))

    # --- webhook jobs ---------------------------------------------------------------------------

    async def webhook_due(self, limit: int, now: datetime) -> list[WebhookJob]:
        def run(conn: sqlite3.Connection) -> list[WebhookJob]:
            rows = conn.execute(
                f"SELECT j.webhook, j.attempts, {_columns('e.')} "  # noqa: S608
                "FROM webhook_jobs j JOIN case_events e ON e.cursor = j.cursor "
                "WHERE j.delivered_at IS NULL AND j.given_up_at IS NULL "
                "AND j.next_attempt_at <= ? ORDER BY j.next_attempt_at, j.cursor LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
            return [WebhookJob(row[0], int(row[1]), _record(row[2:])) for row in rows]

        return await self._db.call(run)

    async def webhook_next_due(self) -> datetime | None:
        """When the earliest pending webhook job falls due (None: nothing pending)."""

        def run(conn: sqlite3.Connection) -> datetime | None:
            (due,) = conn.execute(
                "SELECT min(next_attempt_at) FROM webhook_jobs "
                "WHERE delivered_at IS NULL AND given_up_at IS NULL"
            ).fetchone()
            return None if due is None else datetime.fromisoformat(due)

        return await self._db.call(run)

    async def webhook_settled(
        self, webhook: str, cursor: int, change: WebhookChange, entry: EntryFields
    ) -> None:
        """Record an attempt's outcome and its audit entry in one transaction."""
        statement, args = change

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(statement, (*args, webhook, cursor))
            self._audit(conn, entry)

        await self._db.call(run)


WebhookChange = tuple[str, tuple[Any, ...]]
"""An UPDATE of one webhook job (its last parameters are the webhook and the cursor)."""


def webhook_delivered(when: datetime) -> WebhookChange:
    return (
        "UPDATE webhook_jobs SET delivered_at = ?, attempts = attempts + 1, last_error = NULL "
        "WHERE webhook = ? AND cursor = ?",
        (_ts(when),),
    )


def webhook_retry(next_attempt_at: datetime, error: str) -> WebhookChange:
    return (
        "UPDATE webhook_jobs SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
        "WHERE webhook = ? AND cursor = ?",
        (_ts(next_attempt_at), error[:500]),
    )


def webhook_gave_up(when: datetime, error: str) -> WebhookChange:
    return (
        "UPDATE webhook_jobs SET attempts = attempts + 1, given_up_at = ?, last_error = ? "
        "WHERE webhook = ? AND cursor = ?",
        (_ts(when), error[:500]),
    )

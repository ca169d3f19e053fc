"""The node's durable store of case updates: the events table, the update outbox, webhook jobs.

One SQLite file (`subscriptions.sqlite3`, WAL, synchronous=FULL) served by its own worker
thread. The events table's autoincrement `cursor` is what SSE clients resume from, so it
never repeats and never goes back; an update is stored once by id, and in the same
transaction its outbox row (when this node publishes it) and one job per webhook.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from exchange.gateway.sqlite_thread import SqliteThread
from exchange.model.common import format_utc
from exchange.subscriptions.records import (
    AuditIntent,
    CaseEventRecord,
    NewCaseEvent,
    PendingPublish,
    Stored,
    WebhookJob,
)

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS case_events (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    network TEXT NOT NULL,
    "case" TEXT NOT NULL,
    event TEXT NOT NULL,
    sender TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    digest TEXT NOT NULL,
    created_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    envelope BLOB NOT NULL,
    audit_owed TEXT
);
CREATE INDEX IF NOT EXISTS case_events_network ON case_events(network, "case", cursor);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events("case", cursor);
CREATE INDEX IF NOT EXISTS case_events_audit_owed ON case_events(cursor)
    WHERE audit_owed IS NOT NULL;
CREATE TABLE IF NOT EXISTS update_outbox (
    id TEXT PRIMARY KEY REFERENCES case_events(id),
    routing_key TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    confirmed_at TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS update_outbox_pending ON update_outbox(next_attempt_at)
    WHERE confirmed_at IS NULL;
CREATE TABLE IF NOT EXISTS webhook_jobs (
    webhook TEXT NOT NULL,
    cursor INTEGER NOT NULL REFERENCES case_events(cursor),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    given_up_at TEXT,
    last_error TEXT,
    PRIMARY KEY (webhook, cursor)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_jobs_pending ON webhook_jobs(next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

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


def _setup(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"subscriptions schema version {version} is newer than this program's")
    if version == 1:  # version 2 added the audit entries a row owes (none for older rows)
        conn.execute("ALTER TABLE case_events ADD COLUMN audit_owed TEXT")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


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


class SubscriptionStore:
    """Async access to the case-update store; every method runs on the store's thread."""

    def __init__(self, db: SqliteThread) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str | Path) -> SubscriptionStore:
        db = SqliteThread(Path(path), _setup)
        await db.start()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    # --- events ---------------------------------------------------------------------------

    async def record(
        self,
        event: NewCaseEvent,
        *,
        routing_key: str | None = None,
        webhooks: Sequence[str] = (),
        audit: Sequence[AuditIntent] = (),
    ) -> Stored:
        """Store an update once; with `routing_key`, also owe its publish; queue webhook jobs;
        note the `audit` entries it owes (cleared by `audit_written`).

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
            orjson.dumps([intent.to_json() for intent in audit]) if audit else None,
        )
        now = _ts(event.received_at)

        def run(conn: sqlite3.Connection) -> Stored:
            inserted = conn.execute(
                'INSERT OR IGNORE INTO case_events (id, network, "case", event, sender, '
                "direction, digest, created_at, received_at, envelope, audit_owed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            ).rowcount
            cursor, digest, owed = conn.execute(
                "SELECT cursor, digest, audit_owed IS NOT NULL FROM case_events WHERE id = ?",
                (values[0],),
            ).fetchone()
            if not inserted:
                return Stored(int(cursor), False, str(digest), bool(owed))
            if routing_key is not None:
                conn.execute(
                    "INSERT INTO update_outbox (id, routing_key, next_attempt_at) VALUES (?, ?, ?)",
                    (values[0], routing_key, now),
                )
            conn.executemany(
                "INSERT INTO webhook_jobs (webhook, cursor, next_attempt_at) VALUES (?, ?, ?)",
                [(hook, cursor, now) for hook in webhooks],
            )
            return Stored(int(cursor), True, str(digest), bool(owed))

        return await self._db.call(run)

    async def audit_owed(self, limit: int) -> list[tuple[CaseEventRecord, list[AuditIntent]]]:
        """The oldest updates whose audit entries are not all known to be written."""

        def run(conn: sqlite3.Connection) -> list[tuple[CaseEventRecord, list[AuditIntent]]]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS}, audit_owed FROM case_events "  # noqa: S608
                "WHERE audit_owed IS NOT NULL ORDER BY cursor LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                (_record(row[:-1]), [AuditIntent.from_json(d) for d in orjson.loads(row[-1])])
                for row in rows
            ]

        return await self._db.call(run)

    async def audit_written(self, update_id: UUID) -> None:
        """The update's audit entries are all durable: it owes none any more."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE case_events SET audit_owed = NULL WHERE id = ?", (str(update_id),))

        await self._db.call(run)

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

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                'SELECT 1 FROM case_events WHERE network = ? AND "case" = ? LIMIT 1',
                (network, case),
            ).fetchone()
            return row is not None

        return await self._db.call(run)

    # --- the update outbox ------------------------------------------------------------------

    async def outbox_due(self, limit: int, now: datetime) -> list[PendingPublish]:
        def run(conn: sqlite3.Connection) -> list[PendingPublish]:
            rows = conn.execute(
                "SELECT o.id, o.routing_key, e.envelope, o.attempts FROM update_outbox o "
                "JOIN case_events e ON e.id = o.id "
                "WHERE o.confirmed_at IS NULL AND o.next_attempt_at <= ? "
                "ORDER BY o.next_attempt_at LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
            return [PendingPublish(UUID(i), k, bytes(e), int(a)) for i, k, e, a in rows]

        return await self._db.call(run)

    async def outbox_confirmed(self, ids: Sequence[UUID], when: datetime) -> None:
        at = _ts(when)

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE update_outbox SET confirmed_at = ?, attempts = attempts + 1 "
                "WHERE id = ? AND confirmed_at IS NULL",
                [(at, str(i)) for i in ids],
            )

        await self._db.call(run)

    async def outbox_retry(self, ids: Sequence[UUID], next_attempt_at: datetime) -> None:
        at = _ts(next_attempt_at)

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE update_outbox SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE id = ? AND confirmed_at IS NULL",
                [(at, str(i)) for i in ids],
            )

        await self._db.call(run)

    async def outbox_depth(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (n,) = conn.execute(
                "SELECT count(*) FROM update_outbox WHERE confirmed_at IS NULL"
            ).fetchone()
            return int(n)

        return await self._db.call(run)

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

    async def webhook_delivered(self, webhook: str, cursor: int, when: datetime) -> None:
        await self._settle(
            "UPDATE webhook_jobs SET delivered_at = ?, attempts = attempts + 1, last_error = NULL "
            "WHERE webhook = ? AND cursor = ?",
            (_ts(when), webhook, cursor),
        )

    async def webhook_retry(
        self, webhook: str, cursor: int, next_attempt_at: datetime, error: str
    ) -> None:
        await self._settle(
            "UPDATE webhook_jobs SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
            "WHERE webhook = ? AND cursor = ?",
            (_ts(next_attempt_at), error[:500], webhook, cursor),
        )

    async def webhook_gave_up(self, webhook: str, cursor: int, when: datetime, error: str) -> None:
        await self._settle(
            "UPDATE webhook_jobs SET attempts = attempts + 1, given_up_at = ?, last_error = ? "
            "WHERE webhook = ? AND cursor = ?",
            (_ts(when), error[:500], webhook, cursor),
        )

    async def _settle(self, statement: str, args: tuple[Any, ...]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(statement, args)

        await self._db.call(run)

    # --- small durable settings ---------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._db.call(run)

    async def set_meta(self, key: str, value: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

        await self._db.call(run)

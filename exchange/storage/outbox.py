"""The node's one outbox: every publish it owes (requests, receipts, case updates).

A row is written in the same transaction as the fact that owes it (a message accepted, a
message received and answered, a case update stored) and settled in the same transaction as
the audit entry that records the broker's confirm. Rows sharing an `order_key` (a sender's
messages of one case) are handed out in the order they were written, and never while an
earlier one is still unconfirmed, so a recipient reads them in that order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.model.common import format_utc
from exchange.storage import messages_sql as sql
from exchange.storage.sqlite_thread import SqliteThread

AuditWrite = Callable[[sqlite3.Connection, EntryFields], int]
"""The audit log's `write`: an entry inside the caller's transaction."""

PublishKind = Literal["message", "receipt", "case-update"]
FANOUT = "*"
"""The recipient of a row the exchange fans out (a case update to a network)."""


@dataclass(frozen=True, slots=True)
class Publish:
    """A publish owed: `body` None means the stored message's own envelope."""

    message_id: UUID
    recipient: str
    kind: PublishKind
    type: str
    exchange: str
    routing_key: str
    order_key: str | None = None
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem(Publish):
    """One unconfirmed publish, with its envelope's bytes and the attempts made so far."""

    seq: int = 0
    attempts: int = 0

    @property
    def envelope(self) -> bytes:
        assert self.body is not None  # read with the stored message's envelope
        return self.body

    @property
    def key(self) -> tuple[UUID, str]:
        return (self.message_id, self.recipient)


def add(conn: sqlite3.Connection, publishes: Sequence[Publish], now: datetime) -> None:
    """Owe `publishes` (inside the caller's transaction); a repeat of a row is ignored."""
    at = format_utc(now)
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (message_id, recipient, kind, type, exchange, "
        "routing_key, order_key, body, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                str(p.message_id),
                p.recipient,
                p.kind,
                p.type,
                p.exchange,
                p.routing_key,
                p.order_key,
                p.body,
                at,
            )
            for p in publishes
        ],
    )


_SELECT_PENDING = (
    "SELECT seq, order_key, next_attempt_at <= ? FROM outbox "
    "WHERE confirmed_at IS NULL AND abandoned_at IS NULL ORDER BY seq LIMIT ?"
)
_SELECT_ROW = (
    "SELECT o.seq, o.message_id, o.recipient, o.kind, o.type, o.exchange, o.routing_key, "
    "o.order_key, coalesce(o.body, m.envelope), o.attempts "
    "FROM outbox o LEFT JOIN messages m ON o.body IS NULL AND m.id = o.message_id "
    "WHERE o.seq = ?"
)


def choose(
    pending: Sequence[tuple[int, str | None, bool]], busy: set[int], limit: int
) -> list[int]:
    """Of the pending rows (seq, order key, due) in outbox order, those to publish now: due,
    not busy (in flight), and not behind an earlier row of their order key that waits for a
    retry. (Rows behind a busy one may go: they follow it on its key's channel.)"""
    held: set[str] = set()
    chosen: list[int] = []
    for seq, key, due in pending:
        if seq in busy:
            continue
        if not due:
            if key is not None:
                held.add(key)
            continue
        if key is not None and key in held:
            continue
        chosen.append(seq)
        if len(chosen) >= limit:
            break
    return chosen


def depth(conn: sqlite3.Connection) -> int:
    """How many publishes (of every kind) still wait for a broker confirm."""
    (n,) = conn.execute(
        "SELECT count(*) FROM outbox WHERE confirmed_at IS NULL AND abandoned_at IS NULL"
    ).fetchone()
    return int(n)


class Outbox:
    """Async access to the outbox rows; each method is one transaction."""

    def __init__(self, db: SqliteThread, audit: AuditWrite) -> None:
        self._db = db
        self._audit = audit

    async def next_batch(
        self, limit: int, now: datetime, *, busy: set[int], lookahead: int
    ) -> list[OutboxItem]:
        """Up to `limit` rows to publish now (see `choose`), looking at the oldest
        `lookahead` unconfirmed rows, in the order they were written.

        A message past its `expires_at` is given up first: its rows are abandoned and the
        message becomes `failed` with reason `message.expired`.
        """
        at = format_utc(now)
        taken = set(busy)

        def run(conn: sqlite3.Connection) -> list[OutboxItem]:
            for (message_id,) in conn.execute(sql.SELECT_EXPIRING, (at,)).fetchall():
                sql.abandon(conn, message_id, None, "message.expired", at)
            pending = conn.execute(_SELECT_PENDING, (at, lookahead + len(taken))).fetchall()
            items = []
            for seq in choose(pending, taken, limit):
                s, m, r, k, t, x, rk, ok, b, a = conn.execute(_SELECT_ROW, (seq,)).fetchone()
                items.append(OutboxItem(UUID(m), r, k, t, x, rk, ok, bytes(b), seq=s, attempts=a))
            return items

        return await self._db.call(run)

    async def confirmed(self, items: Sequence[OutboxItem], when: datetime) -> None:
        """Record the broker's confirms and their audit entries in one transaction; a
        message whose every row is confirmed becomes `sent`."""
        at = format_utc(when)

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET confirmed_at = ?, attempts = attempts + 1 "
                "WHERE seq = ? AND confirmed_at IS NULL",
                [(at, it.seq) for it in items],
            )
            for it in items:
                self._audit(conn, _confirmed_entry(it))
            messages = dict.fromkeys(str(it.message_id) for it in items if it.kind == "message")
            conn.executemany(sql.MARK_SENT, [(at, m) for m in messages])

        await self._db.call(run)

    async def retry(self, schedule: Sequence[tuple[OutboxItem, datetime]]) -> None:
        """Count failed attempts and set when each row is tried next."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE seq = ? AND confirmed_at IS NULL",
                [(format_utc(due), it.seq) for it, due in schedule],
            )

        await self._db.call(run)

    async def give_up(self, items: Sequence[OutboxItem], reason: str, when: datetime) -> None:
        """Abandon rows that cannot be sent; their messages become `failed` with `reason`."""
        at = format_utc(when)

        def run(conn: sqlite3.Connection) -> None:
            for it in items:
                if it.kind == "message" and sql.exists(conn, str(it.message_id)):
                    sql.abandon(conn, str(it.message_id), it.recipient, reason, at)
                else:
                    conn.execute("UPDATE outbox SET abandoned_at = ? WHERE seq = ?", (at, it.seq))

        await self._db.call(run)

    async def depth(self) -> int:
        """How many publishes are still waiting for a broker confirm."""
        return await self._db.call(depth)


def _confirmed_entry(item: OutboxItem) -> EntryFields:
    detail: dict[str, object]
    if item.kind == "case-update":
        detail = {"exchange": "cases", "routing_key": item.routing_key}
    elif item.kind == "receipt":
        detail = {"recipient": item.recipient, "kind": "receipt"}
    else:
        detail = {"recipient": item.recipient}
    detail["attempt"] = item.attempts + 1
    return EntryFields.build(AuditEvent.CONFIRMED, message_id=item.message_id, detail=detail)

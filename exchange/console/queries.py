"""The console's lists, read from the node's database on its own thread.

The gateway's store answers one message, one case or one page of the inbox; a person also
needs the inbox newest first with filters and each request's standing, the messages sent,
and the cases recently active. These read the same tables (`exchange.storage.schema`),
nothing else, and write nothing. A request's status is derived as the overdue report
derives it: answered once a reply of ours exists that was not rejected or failed, else
overdue past its `respond_by`, else open; a message that expects no answer is received.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from exchange.model.common import format_utc

INBOX_STATUSES = ("open", "overdue", "answered", "received")
SENT_STATUSES = ("accepted", "sent", "delivered", "rejected", "failed")
PAGE = 50


@dataclass(frozen=True, slots=True)
class InboxRow:
    cursor: int
    id: UUID
    type: str
    case: str
    sender: str
    received_at: str
    respond_by: str | None
    priority: str | None
    tlp: str | None
    answered_at: str | None
    status: str

    @property
    def urgent(self) -> bool:
        return self.priority == "urgent"


@dataclass(frozen=True, slots=True)
class SentRow:
    id: UUID
    type: str
    case: str
    recipients: tuple[str, ...]
    created_at: str
    respond_by: str | None
    priority: str | None
    status: str
    answers: int
    overdue: bool

    @property
    def urgent(self) -> bool:
        return self.priority == "urgent"


@dataclass(frozen=True, slots=True)
class CaseRow:
    case: str
    messages: int
    last_at: str


_INBOX = """
SELECT *, (CASE WHEN answered_at IS NOT NULL THEN 'answered'
        WHEN respond_by IS NULL THEN 'received'
        WHEN respond_by < :now THEN 'overdue' ELSE 'open' END) AS status FROM (
    SELECT i.cursor, i.id, i.type, i."case", i.sender, i.received_at, i.respond_by,
        json_extract(CAST(i.envelope AS TEXT), '$.header.priority') AS priority,
        json_extract(CAST(i.envelope AS TEXT), '$.header.handling.tlp') AS tlp,
        (SELECT min(m.created_at) FROM messages m WHERE m.in_reply_to = i.id
            AND m.status NOT IN ('rejected', 'failed')) AS answered_at
    FROM inbox i
) WHERE 1 = 1
"""
_INBOX_FILTERS = {
    "case": ' AND "case" = :case',
    "kind": " AND type = :kind",
    "before": " AND cursor < :before",
    "status": " AND status = :status",
}
_SENT = (
    'SELECT m.id, m.type, m."case", m.recipients, m.created_at, m.respond_by, '
    "json_extract(CAST(m.envelope AS TEXT), '$.header.priority'), m.status, "
    "(SELECT count(*) FROM inbox i WHERE i.in_reply_to = m.id) "
    "FROM messages m WHERE 1 = 1"
)
_SENT_FILTERS = {
    "case": ' AND m."case" = :case',
    "kind": " AND m.type = :kind",
    "status": " AND m.status = :status",
    "before": " AND m.created_at < :before",
}


def inbox_rows(
    conn: sqlite3.Connection,
    now: datetime,
    *,
    case: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    before: int | None = None,
    limit: int = PAGE,
) -> list[InboxRow]:
    """Incoming messages, newest first, filtered; `before`: only cursors below it."""
    given = {"case": case, "kind": kind, "status": status, "before": before}
    args: dict[str, Any] = {"now": format_utc(now), "limit": limit}
    query = _INBOX
    for name, value in given.items():
        if value is not None:
            query += _INBOX_FILTERS[name]
            args[name] = value
    query += " ORDER BY cursor DESC LIMIT :limit"
    return [
        InboxRow(
            cursor=int(r[0]),
            id=UUID(r[1]),
            type=r[2],
            case=r[3],
            sender=r[4],
            received_at=r[5],
            respond_by=r[6],
            priority=r[7],
            tlp=r[8],
            answered_at=r[9],
            status=r[10],
        )
        for r in conn.execute(query, args).fetchall()
    ]


def sent_rows(
    conn: sqlite3.Connection,
    now: datetime,
    *,
    case: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    before: str | None = None,
    limit: int = PAGE,
) -> list[SentRow]:
    """Messages this node sent, newest first, with how many answers came back."""
    given = {"case": case, "kind": kind, "status": status, "before": before}
    args: dict[str, Any] = {"limit": limit}
    query = _SENT
    for name, value in given.items():
        if value is not None:
            query += _SENT_FILTERS[name]
            args[name] = value
    query += " ORDER BY m.created_at DESC, m.id LIMIT :limit"
    stamp = format_utc(now)
    rows = []
    for mid, kind_, case_, recipients, created, due, priority, state, answers in conn.execute(
        query, args
    ).fetchall():
        overdue = (
            due is not None
            and due < stamp
            and int(answers) < len(json.loads(recipients))
            and state not in ("rejected", "failed")
        )
        rows.append(
            SentRow(
                UUID(mid),
                kind_,
                case_,
                tuple(json.loads(recipients)),
                created,
                due,
                priority,
                state,
                int(answers),
                overdue,
            )
        )
    return rows


def recent_cases(conn: sqlite3.Connection, *, messages: bool, updates: bool) -> list[CaseRow]:
    """Cases by their latest activity: messages (sent and received) and/or case updates."""
    parts = []
    if messages:
        parts += [
            'SELECT "case", created_at AS at FROM messages',
            'SELECT "case", received_at AS at FROM inbox',
        ]
    if updates:
        parts.append('SELECT "case", received_at AS at FROM case_events')
    if not parts:
        return []
    query = (
        f'SELECT "case", count(*), max(at) FROM ({" UNION ALL ".join(parts)}) '  # noqa: S608
        'GROUP BY "case" ORDER BY max(at) DESC LIMIT 200'
    )
    return [CaseRow(c, int(n), at) for c, n, at in conn.execute(query).fetchall()]


def update_cursors(
    conn: sqlite3.Connection,
    *,
    network: str | None,
    case: str | None,
    outgoing_only: bool,
    limit: int,
) -> list[int]:
    """The cursors of the latest `limit` case updates that pass the filters, newest first."""
    query = "SELECT cursor FROM case_events WHERE 1 = 1"
    args: dict[str, Any] = {"limit": limit}
    if network is not None:
        query += " AND network = :network"
        args["network"] = network
    if case is not None:
        query += ' AND "case" = :case'
        args["case"] = case
    if outgoing_only:
        query += " AND direction = 'out'"
    query += " ORDER BY cursor DESC LIMIT :limit"
    return [int(row[0]) for row in conn.execute(query, args).fetchall()]


def replies_to(conn: sqlite3.Connection, message_id: UUID) -> list[tuple[str, str, str, str]]:
    """Messages that answer `message_id`, both ways: (direction, id, type, time)."""
    mid = str(message_id)
    sent = conn.execute(
        "SELECT 'out', id, type, created_at FROM messages WHERE in_reply_to = ?", (mid,)
    ).fetchall()
    received = conn.execute(
        "SELECT 'in', id, type, received_at FROM inbox WHERE in_reply_to = ?", (mid,)
    ).fetchall()
    return sorted(((str(d), str(i), str(t), str(at)) for d, i, t, at in sent + received), key=_at)


def _at(row: tuple[str, str, str, str]) -> str:
    return row[3]

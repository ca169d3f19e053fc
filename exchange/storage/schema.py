"""The tables of the node's database, created in one transaction when it opens.

One file holds every fact the node keeps (outgoing messages, the outbox, receipts, the
inbox, case updates, webhook jobs) beside its audit log's tables (created by
`exchange.audit.store.setup_schema`), so that a fact and the entries it owes commit
together. `PRAGMA user_version` numbers the layout; a newer one is refused.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    "case" TEXT NOT NULL,
    in_reply_to TEXT,
    recipients TEXT NOT NULL,
    created_at TEXT NOT NULL,
    respond_by TEXT,
    expires_at TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    failure TEXT,
    envelope BLOB NOT NULL,
    digest TEXT NOT NULL,
    submitted_by TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_case ON messages("case", created_at);
CREATE INDEX IF NOT EXISTS messages_reply ON messages(in_reply_to) WHERE in_reply_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_due ON messages(respond_by) WHERE respond_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_expiring ON messages(expires_at)
    WHERE expires_at IS NOT NULL AND failure IS NULL AND status IN ('accepted', 'rejected');
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'receipt', 'case-update')),
    type TEXT NOT NULL,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    order_key TEXT,
    body BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    confirmed_at TEXT,
    abandoned_at TEXT,
    UNIQUE (message_id, recipient)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(seq)
    WHERE confirmed_at IS NULL AND abandoned_at IS NULL;
CREATE TABLE IF NOT EXISTS receipts (
    message_id TEXT NOT NULL REFERENCES messages(id),
    from_node TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    received_at TEXT NOT NULL,
    envelope BLOB NOT NULL,
    PRIMARY KEY (message_id, from_node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    "case" TEXT NOT NULL,
    sender TEXT NOT NULL,
    in_reply_to TEXT,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    received_at TEXT NOT NULL,
    respond_by TEXT
);
CREATE INDEX IF NOT EXISTS inbox_case ON inbox("case", received_at);
CREATE INDEX IF NOT EXISTS inbox_reply ON inbox(in_reply_to) WHERE in_reply_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS inbox_due ON inbox(respond_by) WHERE respond_by IS NOT NULL;
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
    envelope BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS case_events_network ON case_events(network, "case", cursor);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events("case", cursor);
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
CREATE TABLE IF NOT EXISTS node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def setup_schema(conn: sqlite3.Connection) -> None:
    """Create the node's tables inside the caller's transaction; refuse a newer layout."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database layout {version} is newer than this program's")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

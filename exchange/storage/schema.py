"""The tables of the node's database, created in one transaction when it opens.

One file holds every fact the node keeps (outgoing messages, the outbox, receipts, the
inbox, case updates, webhook jobs) beside its audit log's tables (created by
`exchange.audit.store.setup_schema`), so that a fact and the entries it owes commit
together. `PRAGMA user_version` numbers the layout; a newer one is refused.
"""

from __future__ import annotations

import json
import sqlite3

from exchange.crypto.canonical import sha256_hex
from exchange.crypto.signing import signing_input

SCHEMA_VERSION = 2

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
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    receipt_digest TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    from_node TEXT NOT NULL,
    digest TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    received_at TEXT NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_message ON receipts(message_id, seq);
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
    """Create the node's tables inside the caller's transaction (bringing an older layout up
    to date in it); refuse a newer layout."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database layout {version} is newer than this program's")
    if version == 1:
        _receipts_keep_every_row(conn)
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _receipts_keep_every_row(conn: sqlite3.Connection) -> None:
    """Layout 1 -> 2: the receipts table kept one receipt per recipient; it now keeps every
    receipt (by its own id), so that a later positive receipt can supersede a negative one
    and the history shows both. The digest a layout-1 receipt named was its message's."""
    conn.execute("ALTER TABLE receipts RENAME TO receipts_v1")
    for statement in SCHEMA.split(";"):
        if "receipts" in statement and statement.strip():
            conn.execute(statement)
    rows = conn.execute(
        "SELECT r.message_id, r.from_node, m.digest, r.outcome, r.reason, r.detail, "
        "r.received_at, r.envelope FROM receipts_v1 r JOIN messages m ON m.id = r.message_id "
        "ORDER BY r.received_at, r.from_node"
    ).fetchall()
    for message_id, from_node, digest, *rest, envelope in rows:
        receipt_id, receipt_digest = _receipt_identity(bytes(envelope))
        conn.execute(
            "INSERT INTO receipts (id, receipt_digest, message_id, from_node, digest, outcome, "
            "reason, detail, received_at, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (receipt_id, receipt_digest, message_id, from_node, digest, *rest, envelope),
        )
    conn.execute("DROP TABLE receipts_v1")


def _receipt_identity(envelope: bytes) -> tuple[str, str]:
    """A stored receipt's own id and the digest of its signed bytes."""
    doc = json.loads(envelope)
    return str(doc["header"]["id"]), sha256_hex(signing_input(doc["header"], doc["payload"]))

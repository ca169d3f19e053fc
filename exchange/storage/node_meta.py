"""Small facts about the node itself, kept in its database's `node_meta` table.

Values are JSON documents under a fixed key. `get` and `put` run inside the caller's
transaction (on the database thread), so a fact and the audit entries it owes commit
together.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

CRL = "crl"
"""The newest CRL the node has used: `{"number": int, "der": base64}`."""


def get(conn: sqlite3.Connection, key: str) -> Any | None:
    row = conn.execute("SELECT value FROM node_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else orjson.loads(row[0])


def put(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO node_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, orjson.dumps(value).decode()),
    )

"""What a node holds, observed from outside its code: row counts of its store and its audit tail.

A refused input must change nothing but the audit log: `Snapshot` is taken before a case
and compared after it. The store is read through a read-only SQLite connection of its own
(WAL lets it read beside the node's writer), off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.gateway import keys

STORE_TABLES = ("messages", "outbox", "receipts", "inbox")


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    audit_size: int


def _store_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in STORE_TABLES
        }
    finally:
        conn.close()


async def store_counts(app: web.Application) -> dict[str, int]:
    return await asyncio.to_thread(_store_counts, app[keys.CONFIG].database_path)


async def snapshot(app: web.Application) -> Snapshot:
    return Snapshot(await store_counts(app), app[keys.AUDIT].head.size)


async def audit_since(app: web.Application, size: int) -> list[AuditEntry]:
    """Audit entries appended since the log had `size` entries (checkpoints left out)."""
    entries = await app[keys.AUDIT].entries(size, 1000)
    return [e for e in entries if e.event is not AuditEvent.CHECKPOINT]

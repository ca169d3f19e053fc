"""A node's database with its audit log inside, opened on its own for tests of the stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Self

from exchange.audit.log import AuditLog
from exchange.audit.store import setup_schema as setup_audit_schema
from exchange.storage.outbox import Outbox
from exchange.storage.schema import setup_schema
from exchange.storage.sqlite_thread import SqliteThread


def setup_node_database(conn: sqlite3.Connection) -> None:
    setup_audit_schema(conn)
    setup_schema(conn)


class NodeDatabase:
    """The tables a node keeps and its audit log (of AL-ARO, unsigned), in one file."""

    def __init__(self, db: SqliteThread, audit: AuditLog) -> None:
        self.db, self.audit = db, audit
        self.outbox = Outbox(db, audit.write)

    @classmethod
    async def open(cls, path: Path) -> Self:
        db = SqliteThread(path, setup_node_database)
        await db.start()
        return cls(db, await AuditLog.attach(db, None, node="AL-ARO"))

    async def close(self) -> None:
        await self.audit.close()
        await self.db.close()

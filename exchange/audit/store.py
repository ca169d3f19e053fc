"""The audit log's SQLite file: entries, cached subtree hashes, checkpoints, certificates.

Synchronous and single-connection: the log's writer thread, its reader thread and the
offline verifier each own one. WAL with synchronous=FULL: a commit is on disk when it
returns, which is what "durable when append returns" promises (NORMAL may lose the last
commits on power loss). Triggers refuse UPDATE and DELETE, so no code path rewrites history.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchange.audit.checkpoints import Checkpoint
from exchange.audit.merkle import CompactRange
from exchange.crypto.pki import kid_of
from exchange.errors import AuditError, ConfigError

STORE_FORMAT = 1
CACHE_LEVEL = 8
"""Perfect subtrees of 2**8 leaves and more are cached, so a proof reads <= 256 leaves at once."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS subtrees (
    end_idx INTEGER NOT NULL, level INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (end_idx, level)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (kid TEXT PRIMARY KEY, pem BLOB NOT NULL) WITHOUT ROWID;
"""
_APPEND_ONLY = ("entries", "subtrees", "checkpoints", "certificates")


def _append_only_triggers() -> str:
    statements = []
    for table in _APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} "
                f"ON {table} BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
            )
    return "\n".join(statements)


def setup_schema(conn: sqlite3.Connection) -> None:
    """Create the log's tables and triggers inside the caller's transaction (the audit log
    may share its database with the node's other tables)."""
    for statement in (_SCHEMA + _append_only_triggers()).split(";\n"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (STORE_FORMAT,))


@dataclass(frozen=True, slots=True)
class StoredState:
    """What the meta table says: the node, the size and the frontier after the last commit."""

    node: str | None
    frontier: CompactRange


class AuditStore:
    """One connection to an audit log file. Not thread-safe: one owner at a time."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> AuditStore:
        """Open (creating when writable) the log at `path`."""
        target = Path(path)
        if readonly:
            if not target.is_file():
                raise FileNotFoundError(f"no audit log at {target}")
            conn = sqlite3.connect(
                f"{target.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA query_only=ON")
        else:
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            setup_schema(conn)
            conn.execute("COMMIT")
        conn.execute("PRAGMA busy_timeout=10000")
        store = cls(conn, target)
        fmt = store._meta("format")
        if fmt is not None and int(fmt) != STORE_FORMAT:
            conn.close()
            raise ValueError(f"{target}: unknown audit log format {fmt!r}")
        return store

    def close(self) -> None:
        self._conn.close()

    def fold_wal(self) -> None:
        """Move the write-ahead log into the main file, so the file alone is the whole log."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _meta(self, key: str) -> bytes | str | int | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- state ---------------------------------------------------------------------------

    def state(self) -> StoredState:
        """The node and frontier recorded by the last commit (an empty frontier if none)."""
        node = self._meta("node")
        size = self._meta("size")
        frontier = self._meta("frontier")
        compact = (
            CompactRange.from_bytes(int(size), bytes(frontier))  # type: ignore[arg-type]
            if size is not None and frontier is not None
            else CompactRange()
        )
        return StoredState(node=str(node) if node is not None else None, frontier=compact)

    def claim_node(self, node: str) -> None:
        """Record which node this log belongs to (once)."""
        self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('node', ?)", (node,))

    def index_bounds(self) -> tuple[int | None, int | None, int]:
        """(lowest index, highest index, number of entries) as stored."""
        low, high, count = self._conn.execute(
            "SELECT min(idx), max(idx), count(*) FROM entries"
        ).fetchone()
        return low, high, count

    def last_index(self) -> int | None:
        row = self._conn.execute("SELECT max(idx) FROM entries").fetchone()
        return None if row[0] is None else int(row[0])

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        rows: Sequence[tuple[int, bytes, bytes]],
        subtrees: Sequence[tuple[int, int, bytes]],
        frontier: CompactRange,
        checkpoints: Sequence[Checkpoint] = (),
    ) -> None:
        """Write entries (idx, leaf, body), new cached subtrees (end, level, hash), the new
        frontier and new checkpoints inside the caller's transaction."""
        conn = self._conn
        conn.executemany("INSERT INTO entries (idx, leaf, body) VALUES (?, ?, ?)", rows)
        if subtrees:
            conn.executemany(
                "INSERT INTO subtrees (end_idx, level, hash) VALUES (?, ?, ?)", subtrees
            )
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (("size", frontier.size), ("frontier", frontier.to_bytes())),
        )
        if checkpoints:
            conn.executemany(
                "INSERT INTO checkpoints (size, body) VALUES (?, ?)",
                [(cp.size, cp.to_json()) for cp in checkpoints],
            )

    def add_certificate(self, cert: x509.Certificate) -> str:
        """Keep the node certificate that signs checkpoints, so auditors can find it."""
        kid = kid_of(cert)
        self._conn.execute(
            "INSERT OR IGNORE INTO certificates (kid, pem) VALUES (?, ?)",
            (kid, cert.public_bytes(Encoding.PEM)),
        )
        return kid

    # -- reading -------------------------------------------------------------------------

    def entry_rows(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Stored (idx, leaf, body) rows with start <= idx < end, in index order."""
        return self._conn.execute(
            "SELECT idx, leaf, body FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        ).fetchall()

    def iter_rows(self, start: int = 0, chunk: int = 2048) -> Iterator[tuple[int, bytes, bytes]]:
        """All rows from `start` on, read `chunk` at a time (bounded memory)."""
        while True:
            rows = self._conn.execute(
                "SELECT idx, leaf, body FROM entries WHERE idx >= ? ORDER BY idx LIMIT ?",
                (start, chunk),
            ).fetchall()
            if not rows:
                return
            yield from rows
            start = rows[-1][0] + 1

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Stored leaf hashes of entries [start, end)."""
        rows = self._conn.execute(
            "SELECT leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def subtree(self, end: int, level: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hash FROM subtrees WHERE end_idx = ? AND level = ?", (end, level)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def subtrees_ending(self, first_end: int, last_end: int) -> list[tuple[int, int, bytes]]:
        """Cached subtrees (end, level, hash) with first_end <= end <= last_end."""
        return self._conn.execute(
            "SELECT end_idx, level, hash FROM subtrees WHERE end_idx >= ? AND end_idx <= ? "
            "ORDER BY end_idx, level",
            (first_end, last_end),
        ).fetchall()

    def subtrees_beyond(self, size: int) -> int:
        row = self._conn.execute("SELECT count(*) FROM subtrees WHERE end_idx > ?", (size,))
        return int(row.fetchone()[0])

    def checkpoint_rows(self, since_size: int = 0, limit: int = -1) -> list[tuple[int, bytes]]:
        """Stored (size, checkpoint JSON) rows with size >= since_size, oldest first."""
        return self._conn.execute(
            "SELECT size, body FROM checkpoints WHERE size >= ? ORDER BY size LIMIT ?",
            (since_size, limit),
        ).fetchall()

    def checkpoints(self, since_size: int = 0, limit: int = -1) -> list[Checkpoint]:
        return [Checkpoint.from_json(body) for _, body in self.checkpoint_rows(since_size, limit)]

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self._conn.execute(
            "SELECT body FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else Checkpoint.from_json(row[0])

    def certificates(self) -> dict[str, x509.Certificate]:
        """Certificates kept in the log, by kid (recomputed from the certificate itself)."""
        found: dict[str, x509.Certificate] = {}
        for (pem,) in self._conn.execute("SELECT pem FROM certificates"):
            cert = x509.load_pem_x509_certificate(bytes(pem))
            found[kid_of(cert)] = cert
        return found


@dataclass(frozen=True, slots=True)
class OpenedLog:
    """A log checked fit to append to, with the state the writer starts from."""

    node: str
    frontier: CompactRange
    latest_checkpoint: Checkpoint | None

    @classmethod
    def claim(
        cls, store: AuditStore, node: str | None, certificate: x509.Certificate | None
    ) -> OpenedLog:
        """Check the log at `store` for `node` (claiming a new one), keeping the signing
        certificate; runs inside the caller's transaction.

        Refuses a log of another node, and one whose entries end elsewhere than its
        recorded size (a cut or damaged log must be verified, not appended to).
        """
        path = store.path
        recorded = store.state().node
        if node is None and recorded is None:
            raise ConfigError("a new audit log needs a node id or a signer")
        if node is not None and recorded is not None and recorded != node:
            raise ConfigError(f"{path} is the audit log of node {recorded}, not {node}")
        if node is not None:
            store.claim_node(node)
        if certificate is not None:
            store.add_certificate(certificate)
        state = store.state()
        size, last = state.frontier.size, store.last_index()
        if (last if last is not None else -1) != size - 1:
            raise AuditError(
                f"{path}: the log records {size} entries but its last index is {last}; "
                "run `exchange audit verify`",
                extra={"index": min(size, (last or 0) + 1)},
            )
        return cls(state.node or "", state.frontier, store.latest_checkpoint())

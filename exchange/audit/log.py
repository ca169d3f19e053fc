"""The node's append-only audit log: entries written inside the facts' own transactions.

The log lives in a SQLite database served by one `SqliteThread` (the node's database, shared
with its message and case-update tables, or a file of its own). `write(conn, fields)` is
called inside another operation's transaction, so a fact and the entries it owes commit
together or not at all; `append` is an operation of its own for entries that record no
other fact. The log keeps its Merkle frontier in memory as a `TransactionHook`: entries take
their index when written, and a rolled-back transaction gives its indexes back. Every
`every_entries` entries or `every_seconds`, the log signs a checkpoint, stores it, logs it
as an entry of its own and hands it to `on_checkpoint` (e.g. to publish it to the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from cryptography import x509

from exchange.audit.checkpoints import (
    Checkpoint,
    CheckpointPolicy,
    CheckpointSigner,
    sign_checkpoint,
    write_checkpoints_jsonl,
)
from exchange.audit.entries import AuditEntry, AuditEvent, EntryFields
from exchange.audit.merkle import CompactRange, leaf_hash
from exchange.audit.proofs import ConsistencyProof, InclusionProof, StoredTree
from exchange.audit.store import CACHE_LEVEL, AuditStore, OpenedLog, setup_schema
from exchange.errors import ConfigError
from exchange.log import get_logger
from exchange.model.common import utc_now
from exchange.storage.sqlite_thread import SqliteThread
from exchange.tasks import cancel_and_wait

_Row = tuple[int, bytes, bytes]
_Subtree = tuple[int, int, bytes]
CheckpointCallback = Callable[[Checkpoint], Awaitable[None] | None]
_T = TypeVar("_T")


def _note(level: str, event: str, **fields: Any) -> None:
    """Log an event of the log's own machinery; a failing log sink must not stop the log."""
    # Looked up at each use: a logger bound at import would keep the import-time log level.
    with contextlib.suppress(Exception):
        getattr(get_logger(__name__), level)(event, **fields)


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The log's size and RFC 9162 root after the last commit."""

    size: int
    root: bytes


class AuditLog:
    """A node's audit log. Open with `await AuditLog.open(path, ...)` (a file of its own) or
    `await AuditLog.attach(db, ...)` (inside the node's database)."""

    def __init__(
        self,
        db: SqliteThread,
        opened: OpenedLog,
        signer: CheckpointSigner | None,
        policy: CheckpointPolicy,
        on_checkpoint: CheckpointCallback | None,
        *,
        owns_db: bool,
    ) -> None:
        self._db = db
        self._owns_db = owns_db
        self.node = opened.node
        self._signer = signer
        self._policy = policy
        self._on_checkpoint = on_checkpoint
        self._loop = asyncio.get_running_loop()
        self._frontier = opened.frontier
        self._head = TreeHead(self._frontier.size, self._frontier.root())
        latest = opened.latest_checkpoint
        self._latest_checkpoint = latest
        # Entries other than checkpoints written since the last checkpoint.
        self._unchecked = self._frontier.size - (latest.size + 1 if latest else 0)
        self._last_checkpoint_at = time.monotonic()
        self._closing = False
        self._commits = 0
        # The open transaction's work, on the database thread (see the hook methods).
        self._before: tuple[CompactRange, int] | None = None
        self._rows: list[_Row] = []
        self._subtrees: list[_Subtree] = []
        self._signed: list[Checkpoint] = []
        self._callbacks: set[asyncio.Future[Any]] = set()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="audit-reader")
        self._reader_store: AuditStore | None = None
        self._timer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        signer: CheckpointSigner | None,
        *,
        node: str | None = None,
        checkpoints: CheckpointPolicy | None = None,
        on_checkpoint: CheckpointCallback | None = None,
    ) -> AuditLog:
        """Open or create the log in a database file of its own at `path`."""
        db = SqliteThread(Path(path), setup_schema)
        await db.start()
        try:
            return await cls.attach(
                db,
                signer,
                node=node,
                checkpoints=checkpoints,
                on_checkpoint=on_checkpoint,
                owns_db=True,
            )
        except BaseException:
            await db.close()
            raise

    @classmethod
    async def attach(
        cls,
        db: SqliteThread,
        signer: CheckpointSigner | None,
        *,
        node: str | None = None,
        checkpoints: CheckpointPolicy | None = None,
        on_checkpoint: CheckpointCallback | None = None,
        owns_db: bool = False,
    ) -> AuditLog:
        """The log in `db` (whose setup created the log's tables) for `node` (default: the
        signer's node). Without a signer the log records and proves, but signs no
        checkpoints. Refuses a log of another node or whose size disagrees with its entries.
        """
        owner = signer.node_id if signer is not None else node
        if node is not None and owner != node:
            raise ConfigError(f"the signer is node {owner}, not {node}")
        certificate = getattr(signer, "certificate", None)
        cert = certificate if isinstance(certificate, x509.Certificate) else None
        opened = await db.call(lambda conn: OpenedLog.claim(AuditStore(conn, db.path), owner, cert))
        log = cls(
            db,
            opened,
            signer,
            checkpoints or CheckpointPolicy(),
            on_checkpoint,
            owns_db=owns_db,
        )
        db.add_hook(log)
        if signer is not None:
            log._timer = asyncio.create_task(log._checkpoint_timer(), name="audit-checkpoints")
        return log

    # -- writing -------------------------------------------------------------------------

    def write(self, conn: sqlite3.Connection, fields: EntryFields) -> int:
        """Write an entry inside the caller's transaction (on the database thread); return
        its index. It commits with the caller's other writes, or not at all."""
        if fields.event is AuditEvent.CHECKPOINT:
            raise ValueError("checkpoint entries are written by the log itself")
        if not self._db.owns(conn):
            raise RuntimeError("an audit entry must be written in its log's own database")
        now = utc_now()
        body = fields.encode(self._frontier.size, now, self.node)
        self._remember()
        index = self._add_row(body)
        self._unchecked += 1
        if self._signer is not None and self._unchecked >= self._policy.every_entries:
            self._sign(now)
        return index

    def enqueue(self, fields: EntryFields) -> asyncio.Future[int]:
        """Queue an entry now, as an operation of its own; the future gives its index once
        it is durably committed. Entries are written in the order they are queued."""
        self._check_open()
        return self._db.submit(lambda conn: self.write(conn, fields))

    async def append(
        self,
        event: AuditEvent | str,
        *,
        actor: str | None = None,
        role: str | None = None,
        message_id: UUID | str | None = None,
        case: str | None = None,
        digest: str | None = None,
        code: str | None = None,
        envelope: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Record an event that is a fact of its own (no other write goes with it); returns
        its index once it is durably committed.

        `digest` is the hex SHA-256 of the envelope's canonical signed bytes (as in
        receipts); `envelope` is the signed wire dict, kept so auditors can verify it again.
        """
        return await self.enqueue(
            EntryFields.build(
                event,
                actor=actor,
                role=role,
                message_id=message_id,
                case=case,
                code=code,
                digest=digest,
                envelope=envelope,
                detail=detail,
            )
        )

    async def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint now if entries were added since the last one; return the latest.

        None when the log has no signer or no entries yet.
        """
        self._check_open()
        return await self._db.call(self._checkpoint_now)

    async def close(self) -> None:
        """Sign a last checkpoint if anything is unsigned, and stop. The log's own database
        is closed; a shared one is left to its owner."""
        if self._closing:
            return
        await cancel_and_wait(self._timer)
        if self._db.is_open:
            with contextlib.suppress(Exception):  # a broken disk: the entries are durable
                await self._db.call(self._checkpoint_now)
        self._closing = True
        await self._read(self._close_reader)
        self._reader.shutdown(wait=True)
        if self._owns_db:
            await self._db.close()
        if self._callbacks:
            await asyncio.gather(*self._callbacks, return_exceptions=True)

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("the audit log is closed")

    def _checkpoint_now(self, _conn: sqlite3.Connection) -> Checkpoint | None:
        if self._signer is not None and self._unchecked > 0:
            self._remember()
            return self._sign(utc_now())
        return self._latest_checkpoint

    def _checkpoint_if_due(self, _conn: sqlite3.Connection) -> None:
        due = self._last_checkpoint_at + self._policy.every_seconds
        if self._signer is not None and self._unchecked > 0 and time.monotonic() >= due:
            self._remember()
            self._sign(utc_now())

    async def _checkpoint_timer(self) -> None:
        """Sign a checkpoint `every_seconds` after the last one when entries wait for one."""
        while True:
            due = self._last_checkpoint_at + self._policy.every_seconds - time.monotonic()
            await asyncio.sleep(max(due, 0.05))
            if self._unchecked > 0 and time.monotonic() >= self._last_checkpoint_at + (
                self._policy.every_seconds
            ):
                try:
                    await self._db.call(self._checkpoint_if_due)
                except Exception as exc:  # disk full, signer gone: try again next time
                    _note("error", "audit_checkpoint_failed", error=str(exc))
                    await asyncio.sleep(self._policy.every_seconds)

    # -- the transaction hook (on the database thread) -----------------------------------

    def begin(self) -> None:
        self._before = None

    def _remember(self) -> None:
        """Keep the state before this transaction's first entry, to give it back on rollback."""
        if self._before is None:
            self._before = (self._frontier.copy(), self._unchecked)

    def before_commit(self, conn: sqlite3.Connection) -> None:
        if self._rows:
            AuditStore(conn, self._db.path).write(
                self._rows, self._subtrees, self._frontier, self._signed
            )

    def committed(self) -> None:
        if not self._rows:
            return
        self._head = TreeHead(self._frontier.size, self._frontier.root())
        self._commits += 1
        signed = self._signed
        if signed:
            self._latest_checkpoint = signed[-1]
            self._last_checkpoint_at = time.monotonic()
            if self._on_checkpoint is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                    self._loop.call_soon_threadsafe(self._announce_all, signed)
        self._rows, self._subtrees, self._signed, self._before = [], [], [], None

    def rolled_back(self) -> None:
        if self._before is not None:
            self._frontier, self._unchecked = self._before
        self._rows, self._subtrees, self._signed, self._before = [], [], [], None

    def _add_row(self, body: bytes) -> int:
        index = self._frontier.size
        leaf = leaf_hash(body)
        self._rows.append((index, leaf, body))
        for level, sub_index, digest in self._frontier.append(leaf):
            if level >= CACHE_LEVEL:
                self._subtrees.append(((sub_index + 1) << level, level, digest))
        return index

    def _sign(self, now: datetime) -> Checkpoint:
        assert self._signer is not None
        cp = sign_checkpoint(self._signer, self._frontier.size, self._frontier.root(), now)
        self._unchecked = 0
        fields = EntryFields(AuditEvent.CHECKPOINT, detail=cp.as_dict())
        self._add_row(fields.encode(self._frontier.size, now, self.node))
        self._signed.append(cp)
        return cp

    # -- reading -------------------------------------------------------------------------

    @property
    def database(self) -> SqliteThread:
        """The database the log lives in (facts written with its entries must live there)."""
        return self._db

    @property
    def head(self) -> TreeHead:
        """Size and root after the last commit (O(1))."""
        return self._head

    @property
    def commits(self) -> int:
        """Transactions that wrote entries since the log was opened."""
        return self._commits

    @property
    def latest_checkpoint(self) -> Checkpoint | None:
        return self._latest_checkpoint

    async def entries(self, start: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Up to `limit` entries from index `start` on (an HTTP page should cap `limit`)."""
        if start < 0 or limit < 0:
            raise ValueError("entries start at index 0 and a limit is not negative")
        end = min(start + limit, self._head.size)
        rows = await self._read(lambda s: s.entry_rows(start, end))
        return [AuditEntry.from_bytes(bytes(body)) for _, _, body in rows]

    async def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Proof that entry `index` is in the tree of `size` entries (default: now)."""
        size = self._head.size if size is None else size
        self._check_size(size)
        return await self._read(lambda s: StoredTree(s, size).inclusion(index, size))

    async def consistency_proof(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        """Proof that the tree of `old_size` entries is a prefix of the one of `new_size`."""
        new_size = self._head.size if new_size is None else new_size
        self._check_size(new_size)
        return await self._read(lambda s: StoredTree(s, new_size).consistency(old_size, new_size))

    async def checkpoints(self, since_size: int = 0, limit: int = -1) -> list[Checkpoint]:
        """Stored checkpoints with size >= since_size, oldest first."""
        return await self._read(lambda s: s.checkpoints(since_size, limit))

    async def export_checkpoints(self, path: str | os.PathLike[str]) -> int:
        """Write every stored checkpoint to a JSON Lines file (for `audit verify --checkpoints`)."""
        return await self._read(lambda s: write_checkpoints_jsonl(s.checkpoints(), path))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._head.size:
            raise ValueError(f"the log has {self._head.size} entries, not {size}")

    async def _read(self, work: Callable[[AuditStore], _T]) -> _T:
        return await self._loop.run_in_executor(self._reader, self._with_reader, work)

    def _with_reader(self, work: Callable[[AuditStore], _T]) -> _T:
        if self._reader_store is None:
            self._reader_store = AuditStore.open(self._db.path, readonly=True)
        return work(self._reader_store)

    def _close_reader(self, _store: AuditStore) -> None:
        if self._reader_store is not None:
            self._reader_store.close()
            self._reader_store = None

    # -- back on the event loop ----------------------------------------------------------

    def _announce_all(self, checkpoints: list[Checkpoint]) -> None:
        for checkpoint in checkpoints:
            self._announce(checkpoint)

    def _announce(self, checkpoint: Checkpoint) -> None:
        assert self._on_checkpoint is not None
        try:
            outcome = self._on_checkpoint(checkpoint)
        except Exception as exc:
            _note("error", "audit_checkpoint_failed", size=checkpoint.size, error=str(exc))
            return
        if outcome is not None:
            task = asyncio.ensure_future(outcome)
            self._callbacks.add(task)
            task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Future[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _note("error", "audit_checkpoint_failed", error=str(task.exception()))

"""The node's append-only audit log: group commit, incremental Merkle tree, checkpoints.

`await log.append(...)` queues an entry for one writer thread, which writes everything
queued in one SQLite transaction and resumes each caller after the commit: index order is
commit order, and an index is durable when it is returned. Every `every_entries` entries
or `every_seconds`, the writer signs a checkpoint, stores it, logs it as an entry of its
own and hands it to `on_checkpoint` (e.g. to publish it to the network's audit stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from exchange.audit.merkle import leaf_hash
from exchange.audit.proofs import ConsistencyProof, InclusionProof, StoredTree
from exchange.audit.store import CACHE_LEVEL, AuditStore, OpenedLog
from exchange.errors import ConfigError
from exchange.log import get_logger
from exchange.model.common import format_utc, utc_now

MAX_BATCH = 4096
"""Most entries written in one transaction (bounds the time a commit holds the writer)."""

_Row = tuple[int, bytes, bytes]
_Subtree = tuple[int, int, bytes]
_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]
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


@dataclass(slots=True)
class _Append:
    fields: EntryFields
    future: asyncio.Future[int]


@dataclass(slots=True)
class _ForceCheckpoint:
    future: asyncio.Future[Checkpoint | None]


@dataclass(slots=True)
class _Close:
    done: threading.Event = field(default_factory=threading.Event)


_Request = _Append | _ForceCheckpoint | _Close


class EntriesWritten:
    """Which (event, message id) pairs a log's newest entries hold, for completing an audit
    record without writing an entry twice.

    `refresh` reads what was committed since the last look: an entry another task wrote
    meanwhile counts as soon as its append has returned (the head includes it by then).
    """

    def __init__(self, log: AuditLog, window: int) -> None:
        self._log = log
        self._next = max(0, log.head.size - window)
        self._pairs: set[tuple[str, str | None]] = set()

    async def refresh(self) -> None:
        head = self._log.head.size
        if head > self._next:
            entries = await self._log.entries(self._next, head - self._next)
            self._pairs.update((str(e.event), e.message_id) for e in entries)
            self._next = head

    def holds(self, event: AuditEvent | str, message_id: UUID | str) -> bool:
        return (str(event), str(message_id)) in self._pairs


class AuditLog:
    """A node's audit log in one SQLite file. Open with `await AuditLog.open(...)`."""

    def __init__(
        self,
        opened: OpenedLog,
        signer: CheckpointSigner | None,
        policy: CheckpointPolicy,
        on_checkpoint: CheckpointCallback | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._store = opened.store
        self.node = opened.node
        self._signer = signer
        self._policy = policy
        self._on_checkpoint = on_checkpoint
        self._loop = loop
        self._frontier = opened.frontier
        self._head = TreeHead(self._frontier.size, self._frontier.root())
        latest = opened.latest_checkpoint
        self._latest_checkpoint = latest
        # Entries other than checkpoints written since the last checkpoint.
        self._unchecked = self._frontier.size - (latest.size + 1 if latest else 0)
        self._last_checkpoint_at = time.monotonic()
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._closing = False
        self._commits = 0
        self._callbacks: set[asyncio.Future[Any]] = set()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="audit-reader")
        self._reader_store: AuditStore | None = None
        self._writer = threading.Thread(target=self._run_writer, name="audit-writer", daemon=True)
        self._writer.start()

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
        """Open or create the log at `path` for `node` (default: the signer's node).

        Without a signer the log records and proves, but signs no checkpoints. Refuses a
        file that belongs to another node or whose recorded size disagrees with its entries.
        """
        owner = signer.node_id if signer is not None else node
        if node is not None and owner != node:
            raise ConfigError(f"the signer is node {owner}, not {node}")
        certificate = getattr(signer, "certificate", None)
        opened = await asyncio.to_thread(
            OpenedLog.open,
            Path(path),
            owner,
            certificate if isinstance(certificate, x509.Certificate) else None,
        )
        return cls(
            opened,
            signer,
            checkpoints or CheckpointPolicy(),
            on_checkpoint,
            asyncio.get_running_loop(),
        )

    # -- writing -------------------------------------------------------------------------

    def enqueue(self, fields: EntryFields) -> asyncio.Future[int]:
        """Queue an entry now (`EntryFields.build`, as `append` takes them); the future gives
        its index once it is durably committed.

        Entries are written in the order they are queued, so a caller can queue several
        without waiting for each. Cancelling a waiter does not withdraw the entry.
        """
        if fields.event is AuditEvent.CHECKPOINT:
            raise ValueError("checkpoint entries are written by the log itself")
        self._check_open()
        future: asyncio.Future[int] = self._loop.create_future()
        self._requests.put(_Append(fields, future))
        return future

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
        """Record an event; returns its index once it is durably committed.

        `digest` is the hex SHA-256 of the envelope's canonical signed bytes (as in
        receipts); `envelope` is the signed wire dict, kept so auditors can verify it again.
        Cancelling the caller does not withdraw an entry already queued.
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
        future: asyncio.Future[Checkpoint | None] = self._loop.create_future()
        self._requests.put(_ForceCheckpoint(future))
        return await future

    async def close(self) -> None:
        """Write what is queued, sign a last checkpoint if anything is unsigned, and close."""
        if self._closing:
            return
        self._closing = True
        await self._read(self._close_reader)
        self._reader.shutdown(wait=True)
        closing = _Close()
        self._requests.put(closing)
        await asyncio.to_thread(closing.done.wait)
        await asyncio.to_thread(self._writer.join)
        if self._callbacks:
            await asyncio.gather(*self._callbacks, return_exceptions=True)

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("the audit log is closed")

    # -- reading -------------------------------------------------------------------------

    @property
    def head(self) -> TreeHead:
        """Size and root after the last commit (O(1))."""
        return self._head

    @property
    def commits(self) -> int:
        """Transactions written since the log was opened (each one fsync, many entries)."""
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
            self._reader_store = AuditStore.open(self._store.path, readonly=True)
        return work(self._reader_store)

    def _close_reader(self, _store: AuditStore) -> None:
        if self._reader_store is not None:
            self._reader_store.close()
            self._reader_store = None

    # -- the writer thread ---------------------------------------------------------------

    def _run_writer(self) -> None:
        closing: _Close | None = None
        try:
            while closing is None:
                first = self._next_request()
                batch: list[_Request] = [] if first is None else [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._requests.get_nowait())
                    except queue.Empty:
                        break
                closing = next((r for r in batch if isinstance(r, _Close)), None)
                try:
                    self._write(batch, final=closing is not None)
                except Exception as exc:  # disk full, signer gone: callers must not wait forever
                    _note("exception", "audit_write_failed", requests=len(batch))
                    failed: list[_Result] = [
                        (r.future, None, exc)
                        for r in batch
                        if isinstance(r, _Append | _ForceCheckpoint)
                    ]
                    self._finish(failed, [], [])
        finally:
            with contextlib.suppress(Exception):  # best effort: the WAL is durable anyway
                self._store.fold_wal()
            self._store.close()
            if closing is not None:
                closing.done.set()

    def _next_request(self) -> _Request | None:
        """Wait for a request, or until a time-based checkpoint is due (then None)."""
        if self._signer is None or self._unchecked == 0:
            return self._requests.get()
        due = self._last_checkpoint_at + self._policy.every_seconds - time.monotonic()
        try:
            return self._requests.get(timeout=max(due, 0.0))
        except queue.Empty:
            return None

    def _write(self, batch: list[_Request], *, final: bool) -> None:
        appends = [r for r in batch if isinstance(r, _Append)]
        forced = [r for r in batch if isinstance(r, _ForceCheckpoint)]
        before = self._frontier.copy()
        unchecked_before = self._unchecked
        now = utc_now()
        stamp = format_utc(now)
        rows: list[_Row] = []
        subtrees: list[_Subtree] = []
        results: list[_Result] = []
        checkpoints: list[Checkpoint] = []
        try:
            for request in appends:
                try:
                    body = request.fields.encode(self._frontier.size, stamp, self.node)
                except Exception as exc:  # e.g. a detail value JSON cannot carry
                    results.append((request.future, None, exc))
                    continue
                results.append((request.future, self._frontier.size, None))
                self._add_row(body, rows, subtrees)
                self._unchecked += 1
                if self._signer is not None and self._unchecked >= self._policy.every_entries:
                    checkpoints.append(self._sign_checkpoint(now, rows, subtrees))
            if self._checkpoint_due(forced=bool(forced) or final):
                checkpoints.append(self._sign_checkpoint(now, rows, subtrees))
            if rows:
                self._store.commit_batch(rows, subtrees, self._frontier, checkpoints)
        except Exception:  # nothing of the batch was written: forget it, callers get the error
            self._frontier, self._unchecked = before, unchecked_before
            raise
        if not rows:
            self._finish(results, forced, [])
            return
        self._head = TreeHead(self._frontier.size, self._frontier.root())
        self._commits += 1
        if checkpoints:
            self._latest_checkpoint = checkpoints[-1]
            self._last_checkpoint_at = time.monotonic()
        self._finish(results, forced, checkpoints)

    def _add_row(self, body: bytes, rows: list[_Row], subtrees: list[_Subtree]) -> None:
        index = self._frontier.size
        leaf = leaf_hash(body)
        rows.append((index, leaf, body))
        for level, sub_index, digest in self._frontier.append(leaf):
            if level >= CACHE_LEVEL:
                subtrees.append(((sub_index + 1) << level, level, digest))

    def _checkpoint_due(self, *, forced: bool) -> bool:
        if self._signer is None or self._unchecked == 0:
            return False
        if forced or self._unchecked >= self._policy.every_entries:
            return True
        return time.monotonic() - self._last_checkpoint_at >= self._policy.every_seconds

    def _sign_checkpoint(
        self, now: datetime, rows: list[_Row], subtrees: list[_Subtree]
    ) -> Checkpoint:
        assert self._signer is not None
        cp = sign_checkpoint(self._signer, self._frontier.size, self._frontier.root(), now)
        self._unchecked = 0
        fields = EntryFields(AuditEvent.CHECKPOINT, detail=cp.as_dict())
        self._add_row(fields.encode(self._frontier.size, now, self.node), rows, subtrees)
        return cp

    def _finish(
        self, results: list[_Result], forced: list[_ForceCheckpoint], checkpoints: list[Checkpoint]
    ) -> None:
        """Hand results (and forced checkpoints' answer) back to the event loop."""
        latest = self._latest_checkpoint
        for request in forced:
            results.append((request.future, latest, None))
        if not results and not checkpoints:
            return
        with contextlib.suppress(RuntimeError):  # a closed event loop has nobody waiting
            self._loop.call_soon_threadsafe(self._resolve, results, checkpoints)

    # -- back on the event loop ----------------------------------------------------------

    def _resolve(
        self,
        results: list[_Result],
        checkpoints: list[Checkpoint],
    ) -> None:
        for future, value, error in results:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
        for checkpoint in checkpoints:
            if self._on_checkpoint is not None:
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

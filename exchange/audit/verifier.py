"""Offline verification of a node's audit log: entries, tree, checkpoints, envelopes.

Worker processes read the log in chunks and check each entry (its bytes against its leaf
hash, its place, its envelope's signature and schema); this process rebuilds the Merkle
tree from their leaf hashes and holds it against every checkpoint. Memory stays bounded
however long the log: a few chunks in flight, the tree's frontier, the checkpoints.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.audit.checkpoints import Checkpoint, check_checkpoint, verify_checkpoint
from exchange.audit.merkle import CompactRange, verify_consistency
from exchange.audit.proofs import StoredTree
from exchange.audit.scan import (
    ChunkResult,
    ChunkScanner,
    Finding,
    Trust,
    init_worker,
    scan_chunk,
)
from exchange.audit.store import CACHE_LEVEL, AuditStore
from exchange.crypto.pki import kid_of, load_certificate, node_id_of
from exchange.crypto.verify import TrustStore
from exchange.errors import ExchangeError

CHUNK_SIZE = 2048
MAX_FINDINGS = 1000

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class VerifyReport:
    """What `verify_log` found. `ok` when nothing failed; `first` is the first bad entry."""

    size: int = 0
    root: bytes = b""
    node: str | None = None
    checkpoints_verified: int = 0
    envelopes_verified: int = 0
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def add(self, finding: Finding) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)
        else:
            self.more_findings += 1


@dataclass(slots=True)
class _Known:
    checkpoint: Checkpoint
    source: str


class _CheckpointBook:
    """Every checkpoint to hold the rebuilt tree against, by size."""

    def __init__(self) -> None:
        self.by_size: dict[int, list[_Known]] = {}
        self.matched: dict[int, Checkpoint] = {}
        self.last_good = 0

    def add(self, cp: Checkpoint, source: str) -> bool:
        known = self.by_size.setdefault(cp.size, [])
        if any(k.checkpoint == cp for k in known):
            return False
        known.append(_Known(cp, source))
        return True

    def all(self) -> Iterable[_Known]:
        for size in sorted(self.by_size):
            yield from self.by_size[size]

    def check_root(self, size: int, root: bytes, report: VerifyReport) -> None:
        for known in self.by_size.get(size, ()):
            cp = known.checkpoint
            if cp.root_hash == root:
                self.matched.setdefault(size, cp)
                self.last_good = max(self.last_good, size)
                continue
            report.add(
                Finding(
                    size - 1,
                    f"the log's first {size} entries do not match the checkpoint of that size "
                    f"({known.source}, signed {cp.time:%Y-%m-%dT%H:%M:%SZ}): an entry from "
                    f"{self.last_good} to {size - 1} was altered, removed or inserted later",
                )
            )


def verify_log(
    db: str | os.PathLike[str],
    *,
    checkpoints: Iterable[tuple[Checkpoint, str]] = (),
    cert_paths: Sequence[Path] = (),
    ca_path: Path | None = None,
    crl_path: Path | None = None,
    jobs: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the log at `db` against its own and the given (checkpoint, source) pairs.

    Checkpoint signatures are checked with the certificates in `cert_paths`, or with the
    ones kept in the log (chained to `ca_path` when given). With `ca_path`, every kept
    envelope is verified again (signature, certificate, schema) using `cert_paths`, and
    with `crl_path` (the network's CRL) flagged if its signer's certificate was revoked
    before the entry was logged.
    """
    path = Path(db)
    store = AuditStore.open(path, readonly=True)
    try:
        trust = (ca_path, tuple(cert_paths), crl_path) if ca_path is not None else None
        return _Verification(store, path, cert_paths, trust, jobs, chunk_size, progress).run(
            checkpoints
        )
    finally:
        store.close()


class _Verification:
    def __init__(
        self,
        store: AuditStore,
        path: Path,
        cert_paths: Sequence[Path],
        trust: Trust | None,
        jobs: int | None,
        chunk_size: int,
        progress: Progress | None,
    ) -> None:
        self.store = store
        self.path = path
        self.cert_paths = tuple(cert_paths)
        self.trust = trust
        self.ca_path = trust[0] if trust is not None else None
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.chunk_size = chunk_size
        self.progress = progress
        self.state = store.state()
        self.report = VerifyReport(node=self.state.node)
        self.book = _CheckpointBook()
        self.compact = CompactRange()
        self.keys = self._key_ring()

    def run(self, extra: Iterable[tuple[Checkpoint, str]]) -> VerifyReport:
        report = self.report
        low, high, _count = self.store.index_bounds()
        if low is not None and low < 0:
            report.add(Finding(None, f"the log holds entries with negative index {low}"))
        total = 0 if high is None else high + 1
        self._collect_checkpoints(extra)
        self._stream(total)
        size = self.compact.size
        report.size, report.root = size, self.compact.root()
        self.book.check_root(size, report.root, report)
        for cp_size in sorted(s for s in self.book.by_size if s > size):
            for known in self.book.by_size[cp_size]:
                report.add(
                    Finding(
                        size,
                        f"the log ends at {size} entries but a checkpoint ({known.source}) "
                        f"covers {cp_size}: entries {size} to {cp_size - 1} were removed",
                    )
                )
        self._check_recorded_head(size)
        if report.ok:
            self._check_consistency(size)
        report.findings.sort(key=lambda f: f.sort_key)
        return report

    def _collect_checkpoints(self, extra: Iterable[tuple[Checkpoint, str]]) -> None:
        for size, body in self.store.checkpoint_rows():
            try:
                cp = Checkpoint.from_json(bytes(body))
            except ValueError as exc:
                self.report.add(Finding(None, f"stored checkpoint {size} is unreadable: {exc}"))
                continue
            if cp.size != size:
                self.report.add(Finding(None, f"stored checkpoint {size} says size {cp.size}"))
            self._admit(cp, "stored in the log")
        ignored = 0
        for cp, source in extra:
            if self.state.node is not None and cp.node != self.state.node:
                ignored += 1
                continue
            self._admit(cp, source)
        if ignored:
            self.report.warnings.append(f"ignored {ignored} checkpoints of other nodes")

    def _stream(self, total: int) -> None:
        ranges = [(a, min(a + self.chunk_size, total)) for a in range(0, total, self.chunk_size)]
        trust = self.trust
        if self.jobs == 1 or len(ranges) < 2:
            inline = ChunkScanner.open(self.path, self.state.node, trust)
            try:
                for start, end in ranges:
                    self._absorb(start, end, inline(start, end), total)
            finally:
                inline.close()
            return
        with ProcessPoolExecutor(
            self.jobs,
            mp_context=_process_context(),
            initializer=init_worker,
            initargs=(self.path, self.state.node, trust),
        ) as pool:
            pending: deque[tuple[int, int, Future[ChunkResult]]] = deque()
            queue = iter(ranges)
            for start, end in queue:
                pending.append((start, end, pool.submit(scan_chunk, start, end)))
                if len(pending) >= 3 * self.jobs:
                    done_start, done_end, future = pending.popleft()
                    self._absorb(done_start, done_end, future.result(), total)
            while pending:
                done_start, done_end, future = pending.popleft()
                self._absorb(done_start, done_end, future.result(), total)

    def _absorb(self, start: int, end: int, chunk: ChunkResult, total: int) -> None:
        """Feed a chunk's leaves, in order, into the tree; compare roots at checkpoints."""
        report, book, compact = self.report, self.book, self.compact
        for finding in chunk.findings:
            report.add(finding)
        report.envelopes_verified += chunk.envelopes
        logged = dict(chunk.checkpoints)
        completed: dict[tuple[int, int], bytes] = {}
        by_size = book.by_size
        for idx, leaf in chunk.leaves:
            if idx > compact.size:
                report.add(
                    Finding(
                        compact.size,
                        f"it is missing: the log jumps from entry {compact.size - 1} to {idx}",
                    )
                )
            size = compact.size
            if size in by_size:
                book.check_root(size, compact.root(), report)
            if idx in logged:
                self._logged_checkpoint(idx, logged[idx], compact.root())
            for level, sub_index, digest in compact.append(leaf):
                if level >= CACHE_LEVEL:
                    completed[((sub_index + 1) << level, level)] = digest
        for end_idx, level, digest in self.store.subtrees_ending(start + 1, end):
            expected = completed.get((end_idx, level))
            if expected is not None and expected == bytes(digest):
                continue
            first = end_idx - (1 << level)
            report.add(
                Finding(
                    end_idx - 1,
                    f"the cached hash of entries {first} to {end_idx - 1} does not match them",
                )
            )
        if self.progress is not None:
            self.progress(end, total)

    def _logged_checkpoint(self, idx: int, detail: dict[str, Any], root: bytes) -> None:
        try:
            cp = Checkpoint.from_dict(detail)
        except ValueError as exc:
            self.report.add(Finding(idx, f"its checkpoint cannot be read: {exc}"))
            return
        if cp.size != idx:
            self.report.add(Finding(idx, f"it records a checkpoint of size {cp.size}"))
            return
        if cp.root_hash != root:
            self.report.add(
                Finding(idx, "its checkpoint's root differs from the tree of the entries before")
            )
            return
        problem = self.keys.problem_with(cp)
        if problem is not None:
            self.report.add(Finding(idx, f"its checkpoint is not the node's: {problem}"))
        elif self.book.add(cp, f"logged as entry {idx}"):
            self.report.checkpoints_verified += 1
            self.book.matched.setdefault(cp.size, cp)
            self.book.last_good = max(self.book.last_good, cp.size)

    def _check_recorded_head(self, size: int) -> None:
        recorded = self.state.frontier
        if recorded.size != size or recorded.hashes != self.compact.hashes:
            self.report.add(
                Finding(
                    min(recorded.size, size),
                    f"the log records a tree of {recorded.size} entries that differs from the "
                    f"{size} entries it holds",
                )
            )
        beyond = self.store.subtrees_beyond(size)
        if beyond:
            self.report.add(
                Finding(size, f"{beyond} cached hashes cover entries past the end of the log")
            )

    def _admit(self, cp: Checkpoint, source: str) -> None:
        """Hold the tree against `cp` only if its signature verifies; else report it."""
        problem = self.keys.problem_with(cp)
        if problem is not None:
            self.report.add(Finding(None, f"checkpoint of size {cp.size} ({source}): {problem}"))
        elif self.book.add(cp, source):
            self.report.checkpoints_verified += 1

    def _key_ring(self) -> _KeyRing:
        kept = self.store.certificates().values()
        if self.ca_path is not None:
            trust = TrustStore.from_files(self.ca_path, None, self.cert_paths)
            for cert in kept:
                with contextlib.suppress(ExchangeError):  # not the network's: not trusted
                    trust.add_certificate(cert)
            return _KeyRing(trust=trust)
        if self.cert_paths:
            return _KeyRing(pinned=[load_certificate(p) for p in self.cert_paths])
        if kept:
            self.report.warnings.append(
                "checkpoint signatures were checked with the certificate kept in the log "
                "itself; pass --cert or --ca to pin the node's key"
            )
        return _KeyRing(pinned=list(kept))

    def _check_consistency(self, size: int) -> None:
        """Consistency proofs served from the stored tree verify between checkpoints."""
        tree = StoredTree(self.store, size)
        heads = [self.book.matched[s] for s in sorted(self.book.matched)]
        for old, new in itertools.pairwise(heads):
            proof = tree.consistency(old.size, new.size)
            if not verify_consistency(old.size, new.size, proof.path, old.root_hash, new.root_hash):
                self.report.add(
                    Finding(
                        new.size - 1,
                        f"no valid consistency proof from checkpoint {old.size} to {new.size}",
                    )
                )


class _KeyRing:
    """Who may sign checkpoints: certificates chained to the network CA, or pinned ones."""

    def __init__(
        self, *, trust: TrustStore | None = None, pinned: Iterable[x509.Certificate] = ()
    ) -> None:
        self._trust = trust
        self._pinned = {kid_of(c): c for c in pinned}

    def problem_with(self, cp: Checkpoint) -> str | None:
        """Why `cp`'s signature cannot be accepted, or None when it verifies."""
        if self._trust is not None:
            try:
                check_checkpoint(cp, self._trust)
            except ExchangeError as err:
                return err.detail
            return None
        cert = self._pinned.get(cp.kid)
        if cert is None:
            return f"no given certificate has kid {cp.kid}"
        if not cert.not_valid_before_utc <= cp.time <= cert.not_valid_after_utc:
            return "it was signed outside its certificate's validity"
        key = cert.public_key()
        if not isinstance(key, Ed25519PublicKey):
            return "its certificate does not hold an Ed25519 key"
        node = _node_of(cert)
        if node != cp.node:
            return f"its key belongs to {node}, not {cp.node}"
        if not verify_checkpoint(cp, key):
            return "its signature does not verify"
        return None


def _process_context() -> multiprocessing.context.BaseContext:
    """Fork when this process runs no other thread (workers start at once, modules loaded);
    otherwise a fork could copy a lock held by another thread, so start workers afresh."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _node_of(cert: x509.Certificate) -> str | None:
    try:
        return node_id_of(cert)
    except ExchangeError:
        return None

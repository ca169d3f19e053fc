"""Checking one range of audit entries: what each `audit verify` worker process does.

For each stored entry: its bytes against its recorded leaf hash, its place (the index it
names), its node, and its envelope verified again; the leaf hashes go back to the process
that rebuilds the tree, with any checkpoint entries met on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.audit.entries import REFUSAL_EVENTS, AuditEntry, AuditEvent
from exchange.audit.envelopes import EnvelopeChecker
from exchange.audit.merkle import leaf_hash
from exchange.audit.store import AuditStore

Trust = tuple[Path, tuple[Path, ...], Path | None]
"""The network CA, node certificate and CRL paths that envelopes are verified with."""


@dataclass(frozen=True, slots=True)
class Finding:
    """Something that does not verify. `index` is the entry it names: the bad entry itself,
    or for a checkpoint that no longer matches, the last entry it covers (the bad one is at
    or before it); None when only a checkpoint is at fault."""

    index: int | None
    reason: str

    @property
    def sort_key(self) -> tuple[int, int]:
        return (0, self.index) if self.index is not None else (1, 0)

    def __str__(self) -> str:
        where = f"entry {self.index}" if self.index is not None else "checkpoints"
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class ChunkResult:
    leaves: list[tuple[int, bytes]]
    findings: list[Finding]
    checkpoints: list[tuple[int, dict[str, Any]]]
    envelopes: int


class ChunkScanner:
    """Checks one range of entries; lives in a worker process (or inline for jobs=1)."""

    def __init__(self, db: Path, node: str | None, envelopes: EnvelopeChecker | None) -> None:
        self._store = AuditStore.open(db, readonly=True)
        self._node = node
        self._envelopes = envelopes

    def __call__(self, start: int, end: int) -> ChunkResult:
        result = ChunkResult([], [], [], 0)
        for idx, stored_leaf, raw in self._store.entry_rows(start, end):
            body = bytes(raw)
            leaf = leaf_hash(body)
            result.leaves.append((idx, leaf))
            if bytes(stored_leaf) != leaf:
                result.findings.append(
                    Finding(idx, "its bytes do not match its recorded leaf hash: it was altered")
                )
            try:
                entry = AuditEntry.from_bytes(body)
            except ValueError as exc:
                result.findings.append(Finding(idx, f"it cannot be read: {exc}"))
                continue
            if entry.index != idx:
                result.findings.append(
                    Finding(idx, f"it says it is entry {entry.index}: entries were moved")
                )
            if self._node is not None and entry.node != self._node:
                result.findings.append(Finding(idx, f"it belongs to node {entry.node}"))
            if entry.event is AuditEvent.CHECKPOINT:
                result.checkpoints.append((idx, entry.detail or {}))
            elif (
                self._envelopes is not None
                and entry.envelope is not None
                and entry.event not in REFUSAL_EVENTS
            ):
                result.envelopes += 1
                problem = self._envelopes.check(entry)
                if problem is not None:
                    result.findings.append(Finding(idx, problem))
        return result

    def close(self) -> None:
        self._store.close()

    @classmethod
    def open(cls, db: Path, node: str | None, trust: Trust | None) -> ChunkScanner:
        checker = EnvelopeChecker.from_files(*trust) if trust is not None else None
        return cls(db, node, checker)


_scanner: ChunkScanner | None = None


def init_worker(db: Path, node: str | None, trust: Trust | None) -> None:
    """Process pool initializer: one scanner (store connection, trust store) per worker."""
    global _scanner  # built once per worker process, used by every chunk it scans
    _scanner = ChunkScanner.open(db, node, trust)


def scan_chunk(start: int, end: int) -> ChunkResult:
    """Scan entries [start, end) in a worker process set up by `init_worker`."""
    assert _scanner is not None
    return _scanner(start, end)

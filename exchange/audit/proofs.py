"""Inclusion and consistency proofs served from a stored log, in bounded work.

Each proof needs O(log n) subtree hashes. Perfect subtrees of 256 leaves or more come from
the store's cache (written as the log grew); smaller ranges are hashed from <= 256 stored
leaf hashes; the ragged right edge splits into perfect pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exchange.audit.merkle import (
    EMPTY_ROOT,
    consistency_path,
    inclusion_path,
    node_hash,
    root,
)
from exchange.audit.store import CACHE_LEVEL, AuditStore


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry `index` (leaf hash `leaf`) is in the tree of `size` entries with root `root`."""

    index: int
    size: int
    leaf: bytes
    path: list[bytes]
    root: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "size": self.size,
            "leaf_hash": self.leaf.hex(),
            "path": [h.hex() for h in self.path],
            "root": self.root.hex(),
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The tree of `old_size` entries (`old_root`) is a prefix of the one of `new_size`."""

    old_size: int
    new_size: int
    path: list[bytes]
    old_root: bytes
    new_root: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.old_size,
            "to": self.new_size,
            "path": [h.hex() for h in self.path],
            "from_root": self.old_root.hex(),
            "to_root": self.new_root.hex(),
        }


class StoredTree:
    """The Merkle tree of a stored log, read lazily from its leaf and subtree tables."""

    def __init__(self, store: AuditStore, size: int) -> None:
        self._store = store
        self.size = size

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH of entries [start, end)."""
        n = end - start
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0 and n >= 1 << CACHE_LEVEL:
            cached = self._store.subtree(end, n.bit_length() - 1)
            if cached is not None:
                return cached
        if n <= 1 << CACHE_LEVEL:
            leaves = self._store.leaves(start, end)
            if len(leaves) != n:
                raise LookupError(f"entries {start}..{end - 1} are not all stored")
            return root(leaves)
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self.subtree_hash(start, start + k), self.subtree_hash(start + k, end))

    def root_at(self, size: int) -> bytes:
        self._check_size(size)
        return self.subtree_hash(0, size)

    def inclusion(self, index: int, size: int | None = None) -> InclusionProof:
        size = self.size if size is None else size
        self._check_size(size)
        path = inclusion_path(index, size, self.subtree_hash)
        leaf = self.subtree_hash(index, index + 1)
        return InclusionProof(index, size, leaf, path, self.root_at(size))

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        path = consistency_path(old_size, new_size, self.subtree_hash)
        return ConsistencyProof(
            old_size, new_size, path, self.root_at(old_size), self.root_at(new_size)
        )

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"the log has {self.size} entries, not {size}")

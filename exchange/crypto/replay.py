"""Replay guards: remember message ids long enough that a second copy is refused.

An id needs remembering only until the message would fail its expiry or clock-skew check
anyway; `verify_envelope` passes that time. `MemoryReplayGuard` is bounded: when full it
forgets expired ids first, then the oldest.
"""

from __future__ import annotations

import heapq
import threading
from datetime import datetime
from typing import Protocol
from uuid import UUID


class ReplayGuard(Protocol):
    def check_and_record(
        self, message_id: UUID, expires_at: datetime | None, now: datetime
    ) -> bool:
        """True if `message_id` was already seen (and is still remembered); else remember it
        until `expires_at` (None: as long as there is room) and return False."""
        ...


class MemoryReplayGuard:
    """An in-process replay guard holding at most `max_entries` ids."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._seen: dict[UUID, datetime | None] = {}  # insertion order = age
        self._expiries: list[tuple[datetime, UUID]] = []  # min-heap; may hold stale pairs
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_record(
        self, message_id: UUID, expires_at: datetime | None, now: datetime
    ) -> bool:
        with self._lock:
            if message_id in self._seen:
                forget_at = self._seen[message_id]
                if forget_at is None or forget_at >= now:
                    return True
                del self._seen[message_id]
            self._forget_expired(now)
            while len(self._seen) >= self.max_entries:
                del self._seen[next(iter(self._seen))]
            self._seen[message_id] = expires_at
            if expires_at is not None:
                heapq.heappush(self._expiries, (expires_at, message_id))
                if len(self._expiries) > 2 * self.max_entries:
                    self._compact()
            return False

    def _forget_expired(self, now: datetime) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] < now:
            expires_at, message_id = heapq.heappop(expiries)
            if self._seen.get(message_id) == expires_at:
                del self._seen[message_id]

    def _compact(self) -> None:
        self._expiries = [(at, mid) for mid, at in self._seen.items() if at is not None]
        heapq.heapify(self._expiries)

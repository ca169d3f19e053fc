"""Wakes the node's SSE streams and webhook worker when a case update has been stored, and
keeps the newest updates in memory so that streams rarely need to query the store.

A waiter takes a `token()` before it reads and waits on that token afterwards, so an update
committed between its read and its wait is never missed. `after(cursor)` answers from memory
only with an unbroken run of cursors; whenever memory cannot prove it has every update after
`cursor` (too old, or a gap) it answers None and the caller asks the store, the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import replace

import orjson

from exchange.storage.case_records import CaseEventRecord
from exchange.subscriptions import sse

DEFAULT_KEEP = 1024
"""Updates kept in memory (about 1.5 KB each: the record without its envelope, and its
frame); a reader further behind is served from the store."""


def frame_of(record: CaseEventRecord) -> bytes:
    """The record as one SSE event, its cursor as the event id."""
    return sse.frame(record.cursor, orjson.dumps(record.view()))


class EventFeed:
    """A broadcast signal with a bounded in-memory tail of the newest updates."""

    def __init__(self, keep: int | None = None) -> None:
        self._generation = asyncio.Event()
        self._closed = False
        self._keep = DEFAULT_KEEP if keep is None else keep
        self._tail: OrderedDict[int, tuple[CaseEventRecord, bytes]] = OrderedDict()
        self.last_cursor = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def token(self) -> asyncio.Event:
        """The current generation; `wait(token)` returns as soon as it has passed."""
        return self._generation

    def publish(self, record: CaseEventRecord) -> None:
        """`record` is durably stored: remember it and wake every waiter."""
        self.last_cursor = max(self.last_cursor, record.cursor)
        # the frame already holds what a reader needs of the envelope: keep the bytes once
        self._tail[record.cursor] = (replace(record, envelope=b""), frame_of(record))
        while len(self._tail) > self._keep:
            self._tail.popitem(last=False)
        released, self._generation = self._generation, asyncio.Event()
        released.set()

    def after(self, cursor: int, limit: int) -> list[tuple[CaseEventRecord, bytes]] | None:
        """Up to `limit` updates right after `cursor` with their frames, from memory; [] when
        none is known yet; None when memory cannot answer (ask the store). The records
        come without their envelope (`envelope == b""`): send the frame."""
        found: list[tuple[CaseEventRecord, bytes]] = []
        nxt = cursor + 1
        while len(found) < limit:
            entry = self._tail.get(nxt)
            if entry is None:
                break
            found.append(entry)
            nxt += 1
        if found or cursor >= self.last_cursor:
            return found
        return None

    async def wait(self, token: asyncio.Event, seconds: float) -> bool:
        """True when something was published after `token` was taken; False after `seconds`."""
        if token.is_set():
            return not self._closed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(token.wait(), seconds)
        return token.is_set() and not self._closed

    def close(self) -> None:
        """The node is shutting down: release every waiter for good."""
        self._closed = True
        self._generation.set()

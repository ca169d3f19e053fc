"""The audit of refused HTTP requests: each one of a known client, a count for everyone else.

A client that presented a valid token is accountable, so each of its refused writes and
failed authorizations is written with its token id as it happens. A request refused before
anyone is known (no token or a bad one, an unknown path, a wrong method) costs its sender
nothing, and writing each one would let anybody grow the permanent log as fast as the link
allows. `RefusalTally` counts those per source (the client address) and interval. The first
refusal of a source in an interval is written in full, up to `written_per_interval` of them.
The rest are counted by source and code, and `RefusalAudit.flush` writes them as one
`refused` entry whose `detail.counted` is their number, when the interval ends and at
shutdown. The table of sources is bounded: sources beyond it are counted together as
`untracked`. A stored path is cut to `MAX_PATH_CHARS`, with `path_length` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exchange.audit.entries import AuditEvent
from exchange.gateway import keys
from exchange.log import get_logger
from exchange.model.common import format_utc, utc_now

if TYPE_CHECKING:
    from exchange.audit.log import AuditLog

INTERVAL_SECONDS = 60.0
MAX_SOURCES = 256
WRITTEN_PER_INTERVAL = 32
MAX_PATH_CHARS = 256
MAX_METHOD_CHARS = 16
UNKNOWN_SOURCE = "unknown"

_log = get_logger(__name__)


def should_audit(method: str, code: str) -> bool:
    """A refused write is a refusal of something a client wanted the node to do; failed
    authentication is worth a trace wherever it happens. Failed reads are not."""
    return method not in ("GET", "HEAD", "OPTIONS") or code.startswith("auth.")


def _capped(detail: dict[str, Any], name: str, value: str, limit: int) -> None:
    detail[name] = value[:limit]
    if len(value) > limit:
        detail[f"{name}_length"] = len(value)  # the value stored is its first `limit` chars


def request_detail(request: web.Request, status: int) -> dict[str, Any]:
    """What a refused entry says about the request: method, path (both capped), status."""
    detail: dict[str, Any] = {}
    _capped(detail, "method", request.method, MAX_METHOD_CHARS)
    _capped(detail, "path", request.path, MAX_PATH_CHARS)
    detail["status"] = status
    return detail


class RefusalTally:
    """The unauthenticated refusals of the current interval, in bounded memory.

    At most `written_per_interval` sources are remembered as written and `max_sources` as
    counted; whatever is beyond is counted in one row for all.
    """

    def __init__(
        self,
        *,
        interval: float = INTERVAL_SECONDS,
        max_sources: int = MAX_SOURCES,
        written_per_interval: int = WRITTEN_PER_INTERVAL,
    ) -> None:
        if interval <= 0 or max_sources < 0 or written_per_interval < 0:
            raise ValueError("a tally needs a positive interval and no negative bounds")
        self.interval = interval
        self.max_sources = max_sources
        self.written_per_interval = written_per_interval
        self._started = utc_now()
        self._written: set[str] = set()
        self._counted: dict[str, Counter[str]] = {}
        self._untracked: Counter[str] = Counter()

    def admit(self, source: str, code: str) -> bool:
        """True: write this refusal in full (its source's first in the interval, within the
        cap). False: it is counted, and written with the interval's summary."""
        if source not in self._written and len(self._written) < self.written_per_interval:
            self._written.add(source)
            return True
        row = self._counted.get(source)
        if row is None:
            if len(self._counted) >= self.max_sources:
                self._untracked[code] += 1
                return False
            row = self._counted[source] = Counter()
        row[code] += 1
        return False

    @property
    def pending(self) -> int:
        """Refusals counted and not yet written in a summary."""
        rows = [*self._counted.values(), self._untracked]
        return sum(sum(row.values()) for row in rows)

    @property
    def sources(self) -> int:
        """Sources remembered in this interval (bounded by the two caps)."""
        return len(self._written | set(self._counted))

    def drain(self, now: datetime) -> dict[str, Any] | None:
        """The detail of the summary entry of the interval ending `now` (None when nothing
        was counted), and a new interval begins."""
        summary: dict[str, Any] | None = None
        if self.pending:
            rows = sorted(self._counted.items(), key=lambda item: (-item[1].total(), item[0]))
            summary = {
                "counted": self.pending,
                "from": format_utc(self._started),
                "until": format_utc(now),
                "interval_seconds": self.interval,
                "sources": [
                    {"source": source, "count": codes.total(), "codes": dict(sorted(codes.items()))}
                    for source, codes in rows
                ],
            }
            if self._untracked:
                summary["untracked"] = {
                    "count": self._untracked.total(),
                    "codes": dict(sorted(self._untracked.items())),
                }
        self._started = now
        self._written.clear()
        self._counted.clear()
        self._untracked.clear()
        return summary


class RefusalAudit:
    """Writes the audit entries of refused requests; one per application."""

    def __init__(self, tally: RefusalTally | None = None) -> None:
        self.tally = tally or RefusalTally()

    async def record(self, request: web.Request, code: str, status: int) -> None:
        """Audit the refusal of `request` with `code`, or count it (see the module)."""
        if not should_audit(request.method, code):
            return
        audit = request.app.get(keys.AUDIT)
        if audit is None:
            return
        principal = request.get(keys.PRINCIPAL)
        detail = request_detail(request, status)
        if principal is None:
            source = request.remote or UNKNOWN_SOURCE
            if not self.tally.admit(source, code):
                return
            detail["source"] = source
        try:
            await audit.append(
                AuditEvent.REFUSED,
                actor=principal.token_id if principal else None,
                role=principal.role.value if principal else None,
                code=code,
                detail=detail,
            )
        except Exception:
            with contextlib.suppress(Exception):
                _log.exception("audit_append_failed", event_kind="refused", code=code)

    async def flush(self, audit: AuditLog) -> int | None:
        """Write the summary of the refusals counted since the last flush; its index, or
        None when there was nothing to write. A new interval begins either way."""
        summary = self.tally.drain(utc_now())
        if summary is None:
            return None
        try:
            return await audit.append(AuditEvent.REFUSED, detail=summary)
        except Exception:
            with contextlib.suppress(Exception):  # the counts survive in the node's log
                _log.exception("audit_append_failed", event_kind="refused", summary=summary)
            return None

    async def run(self, audit: AuditLog) -> None:
        """Flush at the end of every interval, until cancelled."""
        while True:
            await asyncio.sleep(self.tally.interval)
            await self.flush(audit)

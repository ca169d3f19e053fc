"""The deadline compliance report: `exchange audit report`'s own rows, a chart drawn by the
server as SVG (no script, no image from elsewhere), a table, and a CSV export.

Each row is one request to one recipient with its deadline and first answer, read from the
node's audit log; the chart stacks, for each recipient node, how its requests stand. The
CSV neutralises cells a spreadsheet would take for a formula.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from exchange.audit.report import STATUSES, RequestDeadline, deadline_report, summary_by_node
from exchange.audit.store import AuditStore
from exchange.console.audit_pages import _time_filter
from exchange.console.web import page, render
from exchange.gateway import keys
from exchange.gateway.auth import Permission
from exchange.model.common import utc_now

CSV_COLUMNS = (
    "message_id",
    "type",
    "case",
    "sender",
    "recipient",
    "priority",
    "created_at",
    "respond_by",
    "answered_at",
    "answer_id",
    "status",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BAR_HEIGHT, BAR_GAP, LABEL_WIDTH, CHART_WIDTH = 28, 12, 110, 640


@dataclass(frozen=True, slots=True)
class Segment:
    status: str
    x: float
    width: float
    count: int


@dataclass(frozen=True, slots=True)
class Bar:
    node: str
    y: int
    total: int
    segments: tuple[Segment, ...]


def _report(path: Path) -> list[RequestDeadline]:
    store = AuditStore.open(path, readonly=True)
    try:
        return deadline_report(store)
    finally:
        store.close()


def chart(summary: dict[str, dict[str, int]]) -> tuple[list[Bar], int, int]:
    """Bars of the chart, its width and height: one bar per node, a segment per status."""
    most = max((counts["requests"] for counts in summary.values()), default=0)
    scale = (CHART_WIDTH - LABEL_WIDTH - 60) / most if most else 0.0
    bars = []
    for row, (node, counts) in enumerate(summary.items()):
        x, segments = float(LABEL_WIDTH), []
        for status in STATUSES:
            count = counts.get(status, 0)
            if count:
                width = count * scale
                segments.append(Segment(status, round(x, 1), round(width, 1), count))
                x += width
        bars.append(Bar(node, row * (BAR_HEIGHT + BAR_GAP), counts["requests"], tuple(segments)))
    height = max(1, len(bars)) * (BAR_HEIGHT + BAR_GAP)
    return bars, CHART_WIDTH, height


async def _rows(request: web.Request) -> tuple[list[RequestDeadline], dict[str, str]]:
    since, until = _time_filter(request, "since"), _time_filter(request, "until")
    path = request.app[keys.CONFIG].database_path
    rows = await asyncio.to_thread(_report, path)

    start = None if since is None else _as_utc(since)
    end = None if until is None else _as_utc(until)

    def inside(row: RequestDeadline) -> bool:
        created = row.created_at
        return (start is None or created >= start) and (end is None or created < end)

    shown = {k: v for k, v in (("since", since), ("until", until)) if v}
    return [r for r in rows if inside(r)], shown


def _as_utc(value: str) -> datetime:
    """A date or time from a filter, in UTC (a date or a time without offset is UTC)."""
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@page(Permission.AUDIT)
async def deadlines(request: web.Request) -> web.StreamResponse:
    rows, filters = await _rows(request)
    now = utc_now()
    summary = summary_by_node(rows, now)
    bars, width, height = chart(summary)
    context: dict[str, Any] = {
        "title": "Deadline compliance",
        "rows": [r.as_dict(now) for r in rows],
        "summary": summary,
        "statuses": STATUSES,
        "bars": bars,
        "width": width,
        "height": height,
        "filters": filters,
        "query": request.query_string,
    }
    return render(request, "deadlines.html", context)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


@page(Permission.AUDIT)
async def deadlines_csv(request: web.Request) -> web.StreamResponse:
    rows, _ = await _rows(request)
    now = utc_now()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        document = row.as_dict(now)
        writer.writerow([_cell(document[c]) for c in CSV_COLUMNS])
    node = request.app[keys.CONFIG].node_id
    name = f"deadlines-{node}-{now:%Y%m%d}.csv"
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )

"""The case-update endpoints: case updates for local users with the `subscriber` role.

`GET /v1/subscriptions/stream` is a Server-Sent Events stream whose `id:` is the update's
durable cursor: a client that reconnects with `Last-Event-ID` resumes right after the last
update it received, with nothing lost and nothing repeated. `GET /v1/subscriptions/events`
pages through the same updates for polling. Both filter by network and case, and audit each
update handed out as `subscription-delivered` to the calling token.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from aiohttp import web

from exchange.audit.entries import AuditEvent
from exchange.errors import FieldError, RequestError
from exchange.gateway import keys, views
from exchange.log import get_logger
from exchange.model.common import CASE_PATTERN, NETWORK_PATTERN
from exchange.subscriptions import sse
from exchange.subscriptions.feed import frame_of
from exchange.subscriptions.records import CaseEventRecord
from exchange.subscriptions.service import CaseUpdates

DEFAULT_PAGE = 100
MAX_PAGE = 500
STREAM_PAGE = 200
DEFAULT_HEARTBEAT_SECONDS = 15
RECONNECT_MILLISECONDS = 2000
MAX_CURSOR = 2**62

_log = get_logger(__name__)


def _bad(name: str, message: str, location: str = "query") -> RequestError:
    return RequestError(
        f"{name}: {message}",
        code="request.bad_parameter",
        errors=[FieldError(f"/{location}/{name}", message)],
    )


def _int_param(
    raw: str | None, name: str, default: int, low: int, high: int, location: str = "query"
) -> int:
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", raw.strip()) or not low <= int(raw) <= high:
        raise _bad(name, f"an integer from {low} to {high}", location)
    return int(raw)


def _filters(request: web.Request) -> tuple[str | None, str | None]:
    """The `network` and `case` filters; a network must be one this node belongs to."""
    network = request.query.get("network")
    case = request.query.get("case")
    if network is not None:
        members_of = [n.name for n in request.app[keys.CONFIG].member_networks()]
        if not re.fullmatch(NETWORK_PATTERN, network) or network not in members_of:
            raise _bad("network", f"one of this node's networks: {', '.join(members_of) or '-'}")
    if case is not None and not re.fullmatch(CASE_PATTERN, case):
        raise _bad("case", f"a case reference ({CASE_PATTERN})")
    return network, case


async def _audit_delivered(
    request: web.Request, records: Sequence[CaseEventRecord], channel: str
) -> None:
    principal, audit = request[keys.PRINCIPAL], request.app[keys.AUDIT]
    await asyncio.gather(
        *(
            audit.append(
                AuditEvent.SUBSCRIPTION_DELIVERED,
                actor=principal.token_id,
                role=principal.role.value,
                message_id=r.id,
                case=r.case,
                digest=r.digest,
                detail={"channel": channel, "cursor": r.cursor, "network": r.network},
            )
            for r in records
        )
    )


async def list_events(request: web.Request) -> web.StreamResponse:
    after = _int_param(request.query.get("after"), "after", 0, 0, MAX_CURSOR)
    limit = _int_param(request.query.get("limit"), "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    network, case = _filters(request)
    store = request.app[keys.CASE_UPDATES].store
    records = await store.events_after(after, limit, network=network, case=case)
    await _audit_delivered(request, records, "poll")
    return views.json_response(
        {"items": [r.view() for r in records], "next": records[-1].cursor if records else after}
    )


async def stream_events(request: web.Request) -> web.StreamResponse:
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id is not None and last_event_id.strip():
        start = _int_param(last_event_id, "Last-Event-ID", 0, 0, MAX_CURSOR, "header")
    else:
        start = _int_param(request.query.get("after"), "after", 0, 0, MAX_CURSOR)
    heartbeat = _int_param(
        request.query.get("heartbeat"), "heartbeat", DEFAULT_HEARTBEAT_SECONDS, 1, 300
    )
    network, case = _filters(request)
    service = request.app[keys.CASE_UPDATES]
    response = web.StreamResponse(
        headers={
            "Content-Type": sse.CONTENT_TYPE,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        await response.write(sse.retry_frame(RECONNECT_MILLISECONDS))
        await _pump(request, response, service, start, float(heartbeat), network, case)
    except ConnectionResetError:
        pass  # the client went away; it resumes with Last-Event-ID
    return response


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    service: CaseUpdates,
    cursor: int,
    heartbeat: float,
    network: str | None,
    case: str | None,
) -> None:
    """Send every update after `cursor` that passes the filters, then each new one.

    `scan` is the last cursor examined (filtered-out updates included): the newest updates
    come from the feed's memory, anything older or not provably complete from the store.
    """
    feed, scan = service.feed, cursor
    while not feed.closed:
        token, known = feed.token(), feed.last_cursor
        entries = feed.after(scan, STREAM_PAGE)
        if entries is None:
            records = await service.store.events_after(
                scan, STREAM_PAGE, network=network, case=case
            )
            entries = [(r, frame_of(r)) for r in records]
            last = records[-1].cursor if records else scan
            # a short page saw every update committed before `known` was read
            next_scan = last if len(records) == STREAM_PAGE else max(last, known)
        else:
            next_scan = entries[-1][0].cursor if entries else scan
            entries = [e for e in entries if _wanted(e[0], network, case)]
        if entries:
            await _audit_delivered(request, [record for record, _ in entries], "sse")
            await response.write(b"".join(frame for _, frame in entries))
        if next_scan > scan:
            scan = next_scan
            continue
        if not await feed.wait(token, heartbeat) and not feed.closed:
            await response.write(sse.HEARTBEAT)


def _wanted(record: CaseEventRecord, network: str | None, case: str | None) -> bool:
    return (network is None or record.network == network) and (case is None or record.case == case)

"""The case-update endpoints: case updates for local users with the `subscriber` role.

`GET /v1/subscriptions/stream` is a Server-Sent Events stream whose `id:` is the update's
durable cursor: a client that reconnects with `Last-Event-ID` resumes right after the last
update it received, with nothing lost and nothing repeated. `GET /v1/subscriptions/events`
pages through the same updates for polling. Both filter by network and case, and audit the
updates each poll or stream batch hands out as one `subscription-delivered` entry naming the
calling token and listing their ids. An update labelled TLP:RED or TLP:AMBER+STRICT (kept
from before such updates were refused) is never handed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from aiohttp import web
from pydantic import Field

from exchange.audit.entries import AuditEvent
from exchange.gateway import keys, views
from exchange.gateway.params import (
    HEADER,
    AsciiInt,
    Cursor,
    OneOfNode,
    RouteParams,
    member_networks,
    takes,
)
from exchange.gateway.reads import audit_read
from exchange.log import get_logger
from exchange.model.common import CaseRef, NetworkName
from exchange.storage.case_records import CaseEventRecord, named_recipients_only
from exchange.subscriptions import sse
from exchange.subscriptions.feed import frame_of
from exchange.subscriptions.service import CaseUpdates

DEFAULT_PAGE = 100
MAX_PAGE = 500
STREAM_PAGE = 200
DEFAULT_HEARTBEAT_SECONDS = 15
RECONNECT_MILLISECONDS = 2000

_log = get_logger(__name__)


MemberNetwork = Annotated[NetworkName, OneOfNode(member_networks, "one of this node's networks")]


class UpdateFilters(RouteParams):
    network: MemberNetwork | None = Field(None, description="Only this network's updates.")
    case: CaseRef | None = Field(None, description="Only this case's updates.")


class EventsQuery(UpdateFilters):
    after: Cursor = Field(0, description="Return updates after this cursor.")
    limit: AsciiInt = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="At most this many.")


class StreamQuery(UpdateFilters):
    last_event_id: Annotated[Cursor | None, HEADER] = Field(
        None,
        alias="Last-Event-ID",
        description="Resume after this cursor (sent by EventSource on reconnect).",
    )
    after: Cursor = Field(
        0, description="Start after this cursor when there is no Last-Event-ID (default 0)."
    )
    heartbeat: AsciiInt = Field(
        DEFAULT_HEARTBEAT_SECONDS,
        ge=1,
        le=300,
        description="Seconds between heartbeats while idle.",
    )


async def _audit_delivered(
    request: web.Request, records: Sequence[CaseEventRecord], channel: str
) -> None:
    """One entry for the updates handed out by one poll, or one batch of the stream."""
    await audit_read(
        request,
        AuditEvent.SUBSCRIPTION_DELIVERED,
        [r.id for r in records],
        [r.case for r in records],
        {
            "channel": channel,
            "networks": sorted({r.network for r in records}),
            "cursors": {"first": records[0].cursor, "last": records[-1].cursor} if records else {},
        },
    )


@takes(EventsQuery)
async def list_events(request: web.Request, params: EventsQuery) -> web.StreamResponse:
    after = params.after
    store = request.app[keys.CASE_UPDATES].store
    records = await store.events_after(
        after, params.limit, network=params.network, case=params.case
    )
    handed = [r for r in records if not named_recipients_only(r.envelope)]
    await _audit_delivered(request, handed, "poll")
    return views.json_response(
        {"items": [r.view() for r in handed], "next": records[-1].cursor if records else after}
    )


@takes(StreamQuery)
async def stream_events(request: web.Request, params: StreamQuery) -> web.StreamResponse:
    start = params.after if params.last_event_id is None else params.last_event_id
    heartbeat, network, case = params.heartbeat, params.network, params.case
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
            entries = [(r, frame_of(r)) for r in records if not named_recipients_only(r.envelope)]
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

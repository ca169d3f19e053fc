"""The prosecutor's case feed: the latest case updates of the node's networks, then each new
one live through the gateway's own Server-Sent Events stream.

The page lists the latest updates (audited as one `subscription-delivered` entry, as a poll
of `/v1/subscriptions/events` is) and the browser then opens `/console/feed/stream`, which
is `GET /v1/subscriptions/stream` itself run for the signed-in subscriber: the same
filters, the same audit of each batch, never an update labelled TLP:RED or
TLP:AMBER+STRICT. The stream ends when the session does (idle time, sign-out); the page
then says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from exchange.audit.entries import AuditEvent
from exchange.console import queries
from exchange.console.messages import bad_parameter, case_ref
from exchange.console.web import CONSOLE, PREFIX, PREPARED, SESSION, page, render
from exchange.gateway import case_updates_http, keys
from exchange.gateway.auth import Permission
from exchange.gateway.reads import audit_read
from exchange.storage.case_records import named_recipients_only

FEED_PAGE = 50


@page(Permission.SUBSCRIBE)
async def feed(request: web.Request) -> web.StreamResponse:
    networks = [n.name for n in request.app[keys.DIRECTORY].member_networks()]
    network = request.query.get("network") or None
    if network is not None and network not in networks:
        raise bad_parameter("network", "one of this node's networks")
    case = case_ref(request.query.get("case"))
    store = request.app[keys.CASE_UPDATES].store
    baseline = await store.last_cursor()
    cursors = await request.app[keys.DATABASE].call(
        lambda conn: queries.update_cursors(
            conn, network=network, case=case, outgoing_only=False, limit=FEED_PAGE
        )
    )
    records = (
        await store.events_after(min(cursors) - 1, FEED_PAGE, network=network, case=case)
        if cursors
        else []
    )
    handed = [r for r in records if r.cursor <= baseline and not named_recipients_only(r.envelope)]
    await audit_read(
        request,
        AuditEvent.SUBSCRIPTION_DELIVERED,
        [r.id for r in handed],
        [r.case for r in handed],
        {"channel": "console", "networks": sorted({r.network for r in handed})},
    )
    query: dict[str, Any] = {"after": baseline}
    if network:
        query["network"] = network
    if case:
        query["case"] = case
    stream = request.app.router["console-feed-stream"].url_for().with_query(query)
    context = {
        "title": "Case feed",
        "updates": [r.view() for r in reversed(handed)],
        "networks": networks,
        "filters": {"network": network or "", "case": case or ""},
        "stream": str(stream),
        "prefix": PREFIX,
    }
    return render(request, "feed.html", context)


@page(Permission.SUBSCRIBE, background=True)
async def feed_stream(request: web.Request) -> web.StreamResponse:
    """`GET /v1/subscriptions/stream` for the session's subscriber, until the session ends."""
    session = request[SESSION]
    remaining = request.app[CONSOLE].sessions.remaining(session)
    streaming: asyncio.Task[web.StreamResponse] = asyncio.ensure_future(
        case_updates_http.stream_events(request)
    )
    session.streams.add(streaming)
    try:
        await asyncio.wait({streaming}, timeout=max(0.0, remaining))
    finally:
        session.streams.discard(streaming)
        if not streaming.done():
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
    if not streaming.cancelled() and streaming.exception() is None:
        return streaming.result()
    if not streaming.cancelled():
        raise streaming.exception()  # type: ignore[misc]
    prepared: web.StreamResponse | None = request.get(PREPARED)
    if prepared is None:  # cancelled before it began: the session is over
        return web.Response(status=401, text="console.session: sign in again")
    return prepared

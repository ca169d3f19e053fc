"""A subscriber's client of its gateway: follow the SSE stream, or poll the events page.

`stream_updates` yields each case update once, reconnecting after a lost connection with
`Last-Event-ID` (the gateway resumes right after it). `poll_updates` waits, by polling
`GET /v1/subscriptions/events?after=`, until a number of updates arrived: what the demo
uses to show a subscriber receiving the scenario's updates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from exchange.subscriptions.sse import EVENT_NAME, parse_events

RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 10.0


class SubscriptionRefused(Exception):
    """The gateway answered with an error (bad token, role, parameter): reconnecting won't help."""

    def __init__(self, status: int, problem: Any) -> None:
        code = problem.get("code") if isinstance(problem, dict) else None
        detail = problem.get("detail") if isinstance(problem, dict) else problem
        super().__init__(f"HTTP {status} {code or ''}: {detail}".strip())
        self.status = status
        self.problem = problem


def _params(network: str | None, case: str | None, **extra: int | str | None) -> dict[str, str]:
    values = {"network": network, "case": case, **extra}
    return {k: str(v) for k, v in values.items() if v is not None}


async def _refusal(response: aiohttp.ClientResponse) -> SubscriptionRefused:
    text = await response.text()
    try:
        return SubscriptionRefused(response.status, orjson.loads(text))
    except orjson.JSONDecodeError:
        return SubscriptionRefused(response.status, text[:500])


async def fetch_updates(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    *,
    after: int = 0,
    limit: int = 100,
    network: str | None = None,
    case: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of updates after `after`, and the cursor to ask from next."""
    async with session.get(
        f"{url.rstrip('/')}/v1/subscriptions/events",
        params=_params(network, case, after=after, limit=limit),
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        if response.status != 200:
            raise await _refusal(response)
        page = orjson.loads(await response.read())
    return list(page["items"]), int(page["next"])


async def stream_updates(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    *,
    after: int = 0,
    network: str | None = None,
    case: str | None = None,
    heartbeat: int = 15,
    on_reconnect: Callable[[int, BaseException], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Every update after `after`, as it arrives, forever; resumes after lost connections."""
    last = after
    delay = RECONNECT_MIN_SECONDS
    while True:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last:
            headers["Last-Event-ID"] = str(last)
        try:
            async with session.get(
                f"{url.rstrip('/')}/v1/subscriptions/stream",
                params=_params(network, case, heartbeat=heartbeat),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=3 * heartbeat),
            ) as response:
                if response.status != 200:
                    raise await _refusal(response)
                async for event in parse_events(response.content):
                    if event.event != EVENT_NAME or event.id is None:
                        continue
                    item: dict[str, Any] = orjson.loads(event.data)
                    last = int(event.id)
                    delay = RECONNECT_MIN_SECONDS
                    yield item
            lost: BaseException = ConnectionError("the server ended the stream")
        except (aiohttp.ClientError, TimeoutError) as exc:
            lost = exc
        if on_reconnect is not None:
            on_reconnect(last, lost)
        await asyncio.sleep(delay)
        delay = min(RECONNECT_MAX_SECONDS, delay * 2)


async def poll_updates(
    url: str,
    token: str,
    *,
    expect: int,
    after: int = 0,
    network: str | None = None,
    case: str | None = None,
    within: float = 30.0,
    interval: float = 0.1,
    session: aiohttp.ClientSession | None = None,
) -> list[dict[str, Any]]:
    """Poll until `expect` updates after `after` arrived (or `within` seconds passed);
    return those seen."""
    own = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    items: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    try:
        while len(items) < expect and time.monotonic() < deadline:
            page, after = await fetch_updates(
                http, url, token, after=after, network=network, case=case
            )
            items += page
            if not page:
                await asyncio.sleep(interval)
    finally:
        if own:
            await http.close()
    return items


async def receive_updates(
    url: str,
    token: str,
    *,
    expect: int,
    out: Callable[[str], None] = print,
    after: int = 0,
    network: str | None = None,
    case: str | None = None,
    within: float = 30.0,
    session: aiohttp.ClientSession | None = None,
) -> list[dict[str, Any]]:
    """What a subscriber sees: wait for `expect` updates after `after`, print one line each
    with `out`, and return them (fewer if `within` seconds pass first)."""
    items = await poll_updates(
        url,
        token,
        expect=expect,
        after=after,
        network=network,
        case=case,
        within=within,
        session=session,
    )
    for item in items:
        out(f"  {format_update(item)}")
    return items


def format_update(item: dict[str, Any]) -> str:
    """One line per update: cursor, time, network, case, event, sender, summary."""
    summary = str(item.get("update", {}).get("summary", ""))
    return (
        f"{item['cursor']:>6}  {item['received_at']}  {item['network']:<12} {item['case']:<16} "
        f"{item['event']:<18} {item['sender']:<10} {summary}"
    )

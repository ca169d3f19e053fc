"""Server-Sent Events on the wire: frames the gateway writes and a parser for clients.

A frame is `id:`, `event:` and one `data:` line (compact JSON has no newlines), ended by a
blank line; a comment line (`: heartbeat`) keeps idle connections and proxies alive.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

EVENT_NAME = "case-update"
HEARTBEAT = b": heartbeat\n\n"
CONTENT_TYPE = "text/event-stream"


def frame(event_id: int, data: bytes, event: str = EVENT_NAME) -> bytes:
    """One SSE event; `data` must not contain a newline."""
    if b"\n" in data or b"\r" in data:
        raise ValueError("SSE data must be a single line")
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


def retry_frame(milliseconds: int) -> bytes:
    """Tells a browser's EventSource how long to wait before reconnecting."""
    return b"retry: %d\n\n" % milliseconds


@dataclass(frozen=True, slots=True)
class SseEvent:
    id: str | None
    event: str
    data: str


async def parse_events(lines: AsyncIterable[bytes]) -> AsyncIterator[SseEvent]:
    """Events from a stream of lines (as aiohttp's `response.content` yields them)."""
    event_id: str | None = None
    event = "message"
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event_id, event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            event_id = value

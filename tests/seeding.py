"""Putting rows into a node's database as the relay would, for tests of what reads them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from aiohttp import web

from exchange.gateway import keys
from exchange.storage.case_events import insert_event
from exchange.storage.case_records import NewCaseEvent
from exchange.storage.messages import insert_inbox
from exchange.subscriptions.http import CASE_UPDATES


async def seed_inbox(
    app: web.Application,
    message_id: UUID,
    type: str,
    case: str,
    sender: str,
    in_reply_to: UUID | None,
    digest: str,
    envelope: bytes,
    received_at: datetime,
    respond_by: datetime | None,
) -> int:
    """Store an incoming message (no audit entries: the tests read it back); its cursor."""
    arrival = await app[keys.DATABASE].call(
        lambda conn: insert_inbox(
            conn,
            message_id,
            type,
            case,
            sender,
            in_reply_to,
            digest,
            envelope,
            received_at,
            respond_by,
        )
    )
    return arrival.cursor


async def seed_case_event(app: web.Application, event: NewCaseEvent) -> None:
    """Store a verified case update and wake the node's readers, as its consumer does."""
    stored = await app[keys.DATABASE].call(lambda conn: insert_event(conn, event))
    if stored.new:
        app[CASE_UPDATES].feed.publish(event.stored_as(stored.cursor))

"""Putting rows into a node's database as the relay would, for tests of what reads them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exchange.gateway import keys
from exchange.gateway.keys import CASE_UPDATES
from exchange.storage.case_events import insert_event
from exchange.storage.case_records import NewCaseEvent
from exchange.storage.messages import insert_inbox
from exchange.storage.records import IncomingMessage


async def seed_inbox(app: web.Application, *fields: Any) -> int:
    """Store an incoming message (the fields of `IncomingMessage`), without the audit
    entries the relay writes with it: the tests read it back. Returns its cursor."""
    message = IncomingMessage(*fields)
    arrival = await app[keys.DATABASE].call(lambda conn: insert_inbox(conn, message))
    return arrival.cursor


async def seed_case_event(app: web.Application, event: NewCaseEvent) -> None:
    """Store a verified case update and wake the node's readers, as its consumer does."""
    stored = await app[keys.DATABASE].call(lambda conn: insert_event(conn, event))
    if stored.new:
        app[CASE_UPDATES].feed.publish(event.stored_as(stored.cursor))

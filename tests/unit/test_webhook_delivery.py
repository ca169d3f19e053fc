"""Webhook deliveries as a receiver sees them: signed as the Standard Webhooks specification
says (checked with the `standardwebhooks` package, not our own code), with one signature per
secret during a rotation; and a hostile target whose reply never ends costs the node a few
KiB, not its memory."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest
import standardwebhooks
from aiohttp import web
from aiohttp.test_utils import TestServer
from node_db import NodeDatabase

from exchange.config import WebhookConfig
from exchange.model.common import utc_now
from exchange.storage.case_events import CaseEventStore, insert_event
from exchange.storage.case_records import NewCaseEvent
from exchange.subscriptions.feed import EventFeed
from exchange.subscriptions.webhook_signing import new_secret
from exchange.subscriptions.webhooks import (
    MAX_REPLY_BYTES,
    Webhook,
    WebhookWorker,
    read_reply,
    webhook_key,
)

HUGE = 256 * 1024 * 1024
CHUNK = 64 * 1024
NETWORK = "see-pcn"


@dataclass
class Target:
    """`/hooks/ok` checks each request with the standardwebhooks package, once per secret it
    holds; `/hooks/huge` answers 200 with a 256 MiB body, counting what it managed to send."""

    secrets: dict[str, str]
    verified: dict[str, list[str]] = field(default_factory=dict)
    headers: list[dict[str, str]] = field(default_factory=list)
    huge_sent: int = 0

    async def ok(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.headers.append(dict(request.headers))
        for name, secret in self.secrets.items():
            try:
                update = standardwebhooks.Webhook(secret).verify(body, dict(request.headers))
            except standardwebhooks.WebhookVerificationError:
                continue
            self.verified.setdefault(name, []).append(update["id"])
        return web.Response(status=204)

    async def huge(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200, headers={"Content-Length": str(HUGE)})
        await response.prepare(request)
        chunk = b"x" * CHUNK
        try:
            while self.huge_sent < HUGE:
                await response.write(chunk)
                self.huge_sent += len(chunk)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the node hung up: what it did not read was never sent
        return response


@pytest.fixture
async def target() -> AsyncIterator[tuple[Target, TestServer]]:
    receiver = Target({"new": new_secret(), "old": new_secret(), "other": new_secret()})
    app = web.Application()
    app.router.add_post("/hooks/ok", receiver.ok)
    app.router.add_post("/hooks/huge", receiver.huge)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield receiver, server
    await server.close()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeDatabase]:
    opened = await NodeDatabase.open(tmp_path / "node.sqlite3")
    yield opened
    await opened.close()


def hook(url: str, *secrets: str) -> Webhook:
    config = WebhookConfig(url=url, secret_paths=tuple(Path(f"/{i}") for i in range(len(secrets))))
    keys = tuple(base64.b64decode(s.removeprefix("whsec_")) for s in secrets)
    return Webhook(webhook_key(NETWORK, url), NETWORK, config, keys)


async def deliver_one(
    node: NodeDatabase, webhook: Webhook, tlp: str = "AMBER"
) -> tuple[str, list[str]]:
    """Store one update owed to `webhook`, let a worker deliver it; the update's id and the
    outcomes the audit log recorded for it."""
    store = CaseEventStore(node.db, node.audit.write)
    now = utc_now()
    update_id = uuid.uuid4()
    header = {"id": str(update_id), "handling": {"tlp": tlp, "code": "H2"}}
    payload = {"case": "C-1", "summary": "frozen", "amount": {"amount": "1000", "currency": "EUR"}}
    envelope = orjson.dumps({"header": header, "payload": payload})
    new = NewCaseEvent(
        update_id, NETWORK, "C-1", "note", "AL-ARO", "in", "a" * 64, now, now, envelope
    )
    await node.db.call(lambda conn: insert_event(conn, new, [webhook.key]))
    worker = WebhookWorker(hooks={webhook.key: webhook}, store=store, feed=EventFeed())
    worker.start()
    try:
        for _ in range(400):
            outcomes = [
                str(e.detail["outcome"])
                for e in await node.audit.entries(0, 100)
                if e.event == "subscription-delivered" and e.detail is not None
            ]
            if outcomes:
                return str(update_id), outcomes
            await asyncio.sleep(0.025)
    finally:
        await worker.stop()
    raise AssertionError("the worker never settled the delivery")


async def test_a_delivery_verifies_with_the_standardwebhooks_package(
    node: NodeDatabase, target: tuple[Target, TestServer]
) -> None:
    receiver, server = target
    update_id, outcomes = await deliver_one(
        node, hook(str(server.make_url("/hooks/ok")), receiver.secrets["new"])
    )
    assert outcomes == ["delivered"]
    assert receiver.verified == {"new": [update_id]}  # the other secrets do not verify it
    (headers,) = receiver.headers
    assert headers["webhook-id"] == update_id  # the id is signed, and lets receivers dedupe
    assert not any(name.lower().startswith("x-xb-") for name in headers)


async def test_during_a_rotation_receivers_on_either_secret_verify_each_delivery(
    node: NodeDatabase, target: tuple[Target, TestServer]
) -> None:
    receiver, server = target
    rotating = hook(
        str(server.make_url("/hooks/ok")), receiver.secrets["new"], receiver.secrets["old"]
    )
    update_id, outcomes = await deliver_one(node, rotating)
    assert outcomes == ["delivered"]
    assert receiver.verified == {"new": [update_id], "old": [update_id]}
    (headers,) = receiver.headers
    assert headers["webhook-signature"].count("v1,") == 2  # newest first, space-separated


async def test_a_target_answering_256_mib_costs_the_node_a_few_kib(
    node: NodeDatabase, target: tuple[Target, TestServer]
) -> None:
    receiver, server = target
    _, outcomes = await deliver_one(node, hook(str(server.make_url("/hooks/huge")), new_secret()))
    assert outcomes == ["delivered"]  # a 200 is a 200, whatever follows it
    # The node read MAX_REPLY_BYTES and hung up: the target could push no more than the
    # kernel's socket buffers hold, a small fraction of what it meant to send.
    assert receiver.huge_sent < 32 * 1024 * 1024 < HUGE


async def test_read_reply_takes_at_most_the_limit(target: tuple[Target, TestServer]) -> None:
    _, server = target
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/hooks/huge"), data=b"{}") as response,
    ):
        assert len(await read_reply(response)) == MAX_REPLY_BYTES
        assert len(await read_reply(response, 10)) == 10  # the socket still holds more


@pytest.mark.parametrize("tlp", ["RED", "AMBER+STRICT"])
async def test_a_restricted_update_stored_before_the_upgrade_is_never_sent(
    node: NodeDatabase, target: tuple[Target, TestServer], tlp: str
) -> None:
    receiver, server = target
    webhook = hook(str(server.make_url("/hooks/ok")), receiver.secrets["new"])
    _, outcomes = await deliver_one(node, webhook, tlp=tlp)
    assert outcomes == ["gave-up"] and receiver.headers == []  # nothing reached the target
    (entry,) = [e for e in await node.audit.entries(0, 100) if e.code == "webhook.gave-up"]
    assert entry.detail is not None and "handling.restricted" in entry.detail["error"]

"""SSE resume: 1,000 case updates read through connections cut at random points, some in the
middle of an event, while more updates keep arriving; the subscriber ends up with every
update exactly once, in order.

The updates are signed envelopes stored the way the subscription consumer stores them
(straight into the node's store, for speed); the broker path to the same store is covered
end to end in `test_case_updates.py`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from http_helpers import bearer
from networks import NetworkFactory

from exchange.crypto.canonical import sha256_hex
from exchange.crypto.signing import NodeSigner, encode_envelope, signing_input
from exchange.gateway.app import create_app
from exchange.gateway.keys import CASE_UPDATES
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.storage.case_records import NewCaseEvent
from exchange.subscriptions import feed
from exchange.subscriptions.sse import parse_events
from tests.seeding import seed_case_event

pytestmark = pytest.mark.integration

TOTAL = 1000
MEMBERS = ["AL-ARO", "RS-PPO", "MD-ARO"]
NETWORK = "see-pcn"


@pytest.fixture
async def node(
    make_network: NetworkFactory,
) -> AsyncIterator[tuple[NetworkLayout, TestServer, web.Application]]:
    layout = make_network(MEMBERS, networks={NETWORK: MEMBERS})
    app = create_app(layout.config("RS-PPO", environ={}), start_relay=False)
    server = TestServer(app)
    await server.start_server()
    try:
        yield layout, server, app
    finally:
        await server.close()


def signed_updates(layout: NetworkLayout, count: int) -> list[NewCaseEvent]:
    pki = layout.directory / "pki"
    signer = NodeSigner.from_files(pki / "AL-ARO.key", pki / "AL-ARO.pem")
    events = []
    for i in range(count):
        case = f"AL-2026-{i % 7:04d}"
        header = Header.model_validate(
            {
                "id": uuid.uuid4(),
                "type": "case-update",
                "schema": "case-update/1",
                "sender": "AL-ARO",
                "recipients": ["RS-PPO", "MD-ARO"],
                "case": case,
                "created_at": utc_now(),
                "priority": "normal",
                "handling": {"tlp": "AMBER", "code": "H2"},
            }
        )
        payload = {"case": case, "network": NETWORK, "event": "note", "summary": f"Update {i}."}
        envelope = signer.sign_envelope(header, payload)
        now = utc_now()
        events.append(
            NewCaseEvent(
                header.id, NETWORK, case, "note", "AL-ARO", "in",
                sha256_hex(signing_input(envelope["header"], envelope["payload"])),
                header.created_at, now, encode_envelope(envelope),
            )
        )  # fmt: skip
    return events


async def _lines_until_cut(response: aiohttp.ClientResponse, budget: int) -> AsyncIterator[bytes]:
    """The stream's lines, until `budget` lines were read: then the connection is cut."""
    async for line in response.content:
        yield line
        budget -= 1
        if budget == 0:
            return


@pytest.mark.parametrize(
    ("keep", "case"),
    [(4096, None), (16, None), (16, "AL-2026-0003")],
    ids=["from-memory", "mostly-from-the-store", "filtered-by-case"],
)
async def test_a_subscriber_cut_off_at_random_points_loses_and_repeats_nothing(
    node: tuple[NetworkLayout, TestServer, web.Application],
    keep: int,
    case: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout, server, app = node
    service = app[CASE_UPDATES]
    monkeypatch.setattr(feed, "DEFAULT_KEEP", keep)
    service.feed = feed.EventFeed()  # how many recent updates the node keeps in memory
    events = signed_updates(layout, TOTAL)
    wanted = [str(e.id) for e in events if case is None or e.case == case]
    rng = random.Random(20260316)
    query = "heartbeat=1" + (f"&case={case}" if case else "")
    url = str(server.make_url(f"/v1/subscriptions/stream?{query}"))
    token = layout.nodes["RS-PPO"].token("subscriber")

    async def arrive() -> None:
        """Updates keep arriving while the subscriber reads: half at once, then in bursts."""
        await asyncio.gather(*(seed_case_event(app, e) for e in events[: TOTAL // 2]))
        rest = events[TOTAL // 2 :]
        while rest:
            size = rng.randint(1, 40)
            burst, rest = rest[:size], rest[size:]
            for event in burst:
                await seed_case_event(app, event)
            await asyncio.sleep(rng.uniform(0, 0.01))

    received: list[str] = []
    cursors: list[int] = []
    last_event_id: str | None = None
    connections = 0
    producer = asyncio.create_task(arrive())
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(120):
            while len(received) < len(wanted):
                headers = bearer(token)
                if last_event_id is not None:
                    headers["Last-Event-ID"] = last_event_id
                connections += 1
                response = await session.get(url, headers=headers)
                assert response.status == 200
                budget = rng.randint(1, max(8, len(wanted) // 4))  # may cut inside an event
                async for event in parse_events(_lines_until_cut(response, budget)):
                    item = orjson.loads(event.data)
                    assert event.id == str(item["cursor"])
                    received.append(item["id"])
                    cursors.append(item["cursor"])
                    last_event_id = event.id
                    if len(received) == len(wanted):
                        break
                response.close()  # the connection is cut, whatever was in flight
    await producer
    stored = await service.store.events_after(0, TOTAL + 1, case=case)
    assert sorted(received) == sorted(wanted)
    assert received == [str(r.id) for r in stored]  # nothing lost, nothing repeated, in order
    assert cursors == [r.cursor for r in stored]
    assert connections > 10  # it really was cut many times

"""Case updates through a gateway's HTTP API, as its local users see them (no broker needed).

A member publishes updates for its network only (else 403 `network.forbidden`, audited);
subscribers page through them or follow the SSE stream, whose `id:` is a durable cursor, so
a reconnect with `Last-Event-ID` resumes exactly after the last update received; every
update handed out is audited as `subscription-delivered`; contact points may not subscribe.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from http_helpers import bearer, submission

from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.client import GatewayClient
from exchange.gateway import keys
from exchange.gateway.api_models import CaseUpdateEvent, CaseUpdatePage
from exchange.gateway.app import create_app
from exchange.gateway.keys import CASE_UPDATES
from exchange.model.common import utc_now
from exchange.network import NetworkLayout
from exchange.storage.case_events import insert_event
from exchange.storage.case_records import NewCaseEvent
from exchange.storage.outbox import FANOUT, Outbox
from exchange.subscriptions.sse import parse_events

NODES = ["AL-ARO", "RS-PPO", "MD-ARO", "KZ-ARC"]
MEMBERS = ["AL-ARO", "RS-PPO", "MD-ARO"]
NETWORK = "see-pcn"
CASE = "AL-2026-0042"
EXCHANGE = str(Path(sys.executable).parent / "exchange")

pytestmark = pytest.mark.network(nodes=NODES, networks={NETWORK: MEMBERS})


def update(
    event: str = "opened",
    *,
    case: str = CASE,
    network: str = NETWORK,
    recipients: list[str] | None = None,
    payload_case: str | None = None,
) -> dict[str, Any]:
    return submission(
        "case-update",
        recipients if recipients is not None else ["RS-PPO", "MD-ARO"],
        case=case,
        priority="normal",
        payload={
            "case": payload_case or case,
            "network": network,
            "event": event,
            "summary": f"Case {case}: {event}.",
        },
    )


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return bearer(self.tokens[role])

    async def post(self, body: Any, role: str = "contact-point") -> Any:
        return await self.client.post("/v1/messages", json=body, headers=self.auth(role))

    async def get(self, path: str, role: str = "subscriber", **kwargs: Any) -> Any:
        headers = {**self.auth(role), **kwargs.pop("headers", {})}
        return await self.client.get(path, headers=headers, **kwargs)

    async def audit(self) -> list[AuditEntry]:
        entries = await self.app[keys.AUDIT].entries(0, 10_000)
        # without the entry of the directory the node started on
        return [e for e in entries if e.event is not AuditEvent.DIRECTORY_UPDATED]


async def _gateway(network: NetworkLayout, node: str, data: Path) -> Gateway:
    config = network.config(node, environ={"EXCHANGE_DATA_DIR": str(data)})
    app = create_app(config, start_relay=False)
    client = TestClient(TestServer(app))
    await client.start_server()
    return Gateway(client, app, dict(network.nodes[node].tokens))


@pytest.fixture
async def member(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await _gateway(network, "AL-ARO", tmp_path / "al")
    yield gw
    await gw.client.close()


@pytest.fixture
async def outsider(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await _gateway(network, "KZ-ARC", tmp_path / "kz")
    yield gw
    await gw.client.close()


async def publish(gw: Gateway, n: int, *, case: str = CASE) -> list[str]:
    ids = []
    for i in range(n):
        response = await gw.post(update("note" if i else "opened", case=case))
        assert response.status == 202, await response.text()
        ids.append((await response.json())["id"])
    return ids


# --- publishing -------------------------------------------------------------------------------


async def test_a_member_publishes_an_update_it_is_stored_once_audited_and_queued(
    member: Gateway,
) -> None:
    response = await member.post(update())
    assert response.status == 202
    update_id = (await response.json())["id"]
    page = await (await member.get("/v1/subscriptions/events")).json()
    CaseUpdatePage.model_validate(page)
    (item,) = page["items"]
    assert (item["id"], item["direction"], item["sender"]) == (update_id, "out", "AL-ARO")
    assert item["envelope"]["header"]["recipients"] == ["RS-PPO", "MD-ARO"]
    assert item["update"]["event"] == "opened"
    accepted = [e for e in await member.audit() if e.event == "accepted"]
    assert [(e.message_id, e.digest) for e in accepted] == [(update_id, item["digest"])]
    # one publish owed, in the node's one outbox: fanned out on the cases exchange, not one
    # copy per recipient on the messages exchange
    assert await member.app[keys.STORE].outbox_depth() == 1
    outbox = Outbox(member.app[keys.DATABASE], member.app[keys.AUDIT].write)
    (owed,) = await outbox.next_batch(10, utc_now(), busy=set(), lookahead=10)
    assert (str(owed.message_id), owed.kind, owed.recipient, owed.exchange) == (
        update_id,
        "case-update",
        FANOUT,
        "cases",
    )
    assert owed.routing_key == f"{NETWORK}.{CASE}.opened"
    assert json.loads(owed.body)["header"]["id"] == update_id


async def test_a_non_member_may_not_publish_for_the_network_refused_and_audited(
    outsider: Gateway,
) -> None:
    response = await outsider.post(update(recipients=["AL-ARO", "RS-PPO", "MD-ARO"]))
    assert response.status == 403
    problem = await response.json()
    assert problem["code"] == "network.forbidden"
    assert problem["errors"][0]["path"] == "/payload/network"
    assert [(e.event, e.code) for e in await outsider.audit()] == [("refused", "network.forbidden")]
    page = await (await outsider.get("/v1/subscriptions/events")).json()
    assert page["items"] == []


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        (
            update(recipients=["RS-PPO", "MD-ARO", "KZ-ARC"]),
            403,
            "network.forbidden",
            "/recipients/2",
        ),
        (update(recipients=["RS-PPO"]), 422, "request.invalid", "/recipients"),
        (update(payload_case="RS-2026-0001"), 422, "request.invalid", "/payload/case"),
        (update(network="other-net"), 403, "network.forbidden", "/payload/network"),
    ],
    ids=["to-a-non-member", "not-to-every-member", "another-case", "unknown-network"],
)
async def test_an_update_that_does_not_fit_its_network_is_refused_and_nothing_is_stored(
    member: Gateway, body: dict[str, Any], status: int, code: str, path: str
) -> None:
    response = await member.post(body)
    assert response.status == status
    problem = await response.json()
    assert problem["code"] == code
    assert path in [e["path"] for e in problem["errors"]]
    assert [(e.event, e.code) for e in await member.audit()] == [("refused", code)]
    assert await member.app[CASE_UPDATES].store.last_cursor() == 0


async def test_an_event_the_network_does_not_share_is_refused(
    network: NetworkLayout, tmp_path: Path
) -> None:
    toml = network.nodes["AL-ARO"].config_path.read_text()
    narrowed = tmp_path / "AL-ARO.toml"
    narrowed.write_text(
        toml.replace('name = "see-pcn"', 'name = "see-pcn"\nevents = ["opened", "frozen"]')
        .replace('"pki/', f'"{network.directory}/pki/')
        .replace('"data/', f'"{tmp_path}/data/')
    )
    from exchange.config import NodeConfig

    app = create_app(NodeConfig.load(narrowed, environ={}), start_relay=False)
    async with TestClient(TestServer(app)) as client:
        gw = Gateway(client, app, dict(network.nodes["AL-ARO"].tokens))
        response = await gw.post(update("charged"))
        assert response.status == 422
        assert (await response.json())["errors"][0]["path"] == "/payload/event"
        assert (await gw.post(update("frozen"))).status == 202


# --- who may read -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/subscriptions/events", "/v1/subscriptions/stream"], ids=["poll", "sse"]
)
async def test_only_subscribers_and_admins_may_read_updates(member: Gateway, path: str) -> None:
    for role in ("contact-point", "auditor"):
        response = await member.get(path, role=role)
        assert response.status == 403
        assert (await response.json())["code"] == "auth.forbidden"
    response = await member.client.get(path)
    assert response.status == 401
    assert (await member.get("/v1/subscriptions/events", role="admin")).status == 200
    # a subscriber cannot send
    assert (await member.post(update(), role="subscriber")).status == 403


# --- polling -----------------------------------------------------------------------------------


async def test_polling_pages_after_a_cursor_filters_and_audits_each_poll_once(
    member: Gateway,
) -> None:
    ids = await publish(member, 3)
    other = await publish(member, 2, case="AL-2026-0099")
    first = await (await member.get("/v1/subscriptions/events?limit=2")).json()
    assert [i["id"] for i in first["items"]] == ids[:2]
    rest = await (await member.get(f"/v1/subscriptions/events?after={first['next']}")).json()
    assert [i["id"] for i in rest["items"]] == [ids[2], *other]
    by_case = await (await member.get("/v1/subscriptions/events?case=AL-2026-0099")).json()
    assert [i["id"] for i in by_case["items"]] == other
    by_network = await (await member.get(f"/v1/subscriptions/events?network={NETWORK}")).json()
    assert len(by_network["items"]) == 5
    for item in by_network["items"]:
        CaseUpdateEvent.model_validate(item)
    delivered = [e for e in await member.audit() if e.event == "subscription-delivered"]
    # one entry per poll, listing the updates it handed out
    assert [e.detail["ids"] for e in delivered if e.detail] == [
        ids[:2],
        [ids[2], *other],
        other,
        [*ids, *other],
    ]
    assert {(e.actor, e.role) for e in delivered} == {("subscriber", "subscriber")}
    assert {e.detail["channel"] for e in delivered if e.detail} == {"poll"}
    assert [sorted(e.cases) for e in delivered] == [
        [CASE],
        sorted([CASE, "AL-2026-0099"]),
        ["AL-2026-0099"],
        sorted([CASE, "AL-2026-0099"]),
    ]


@pytest.mark.parametrize(
    "query",
    ["after=-1", "after=x", "limit=0", "limit=501", "network=see-arn", "case=a.b"],
)
async def test_bad_parameters_are_problems(member: Gateway, query: str) -> None:
    response = await member.get(f"/v1/subscriptions/events?{query}")
    assert response.status == 400
    assert (await response.json())["code"] == "request.bad_parameter"


@pytest.mark.parametrize("tlp", ["RED", "AMBER+STRICT"])
async def test_a_restricted_update_is_refused_and_one_kept_from_before_is_never_handed_out(
    member: Gateway, tlp: str
) -> None:
    refused = await member.post({**update(), "handling": {"tlp": tlp, "code": "H2"}})
    assert refused.status == 422 and (await refused.json())["code"] == "handling.restricted"
    # one stored by an earlier version, before such updates were refused at the door
    header = {"id": str(uuid.uuid4()), "handling": {"tlp": tlp, "code": "H2"}}
    payload = {"case": CASE, "network": NETWORK, "event": "frozen", "summary": "EUR 4,000,000"}
    now = utc_now()
    old = NewCaseEvent(
        uuid.UUID(header["id"]), NETWORK, CASE, "frozen", "RS-PPO", "in", "f" * 64, now, now,
        json.dumps({"header": header, "payload": payload}).encode(),
    )  # fmt: skip
    await member.app[keys.DATABASE].call(lambda conn: insert_event(conn, old))
    (shared,) = await publish(member, 1)
    page = await (await member.get("/v1/subscriptions/events")).json()
    assert [item["id"] for item in page["items"]] == [shared] and page["next"] == 2
    ((_, item),) = await read_sse(member, 1)
    assert item["id"] == shared
    handed = [e.message_id for e in await member.audit() if e.event == "subscription-delivered"]
    assert header["id"] not in handed


# --- the SSE stream -----------------------------------------------------------------------------


async def read_sse(
    member: Gateway, count: int, *, headers: dict[str, str] | None = None, query: str = ""
) -> list[tuple[str | None, dict[str, Any]]]:
    got: list[tuple[str | None, dict[str, Any]]] = []
    response = await member.get(f"/v1/subscriptions/stream?{query}", headers=headers or {})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    async with asyncio.timeout(10):
        async for event in parse_events(response.content):
            assert event.event == "case-update"
            got.append((event.id, json.loads(event.data)))
            if len(got) == count:
                break
    response.close()
    return got


async def test_the_stream_sends_updates_with_their_cursor_as_id_and_resumes(
    member: Gateway,
) -> None:
    ids = await publish(member, 4)
    first = await read_sse(member, 2)
    assert [(event_id, item["id"]) for event_id, item in first] == [
        (str(item["cursor"]), i) for (_, item), i in zip(first, ids[:2], strict=True)
    ]
    resumed = await read_sse(member, 2, headers={"Last-Event-ID": first[-1][0] or ""})
    assert [item["id"] for _, item in resumed] == ids[2:]
    # Last-Event-ID wins over `after`, which serves a first connection
    again = await read_sse(member, 1, headers={"Last-Event-ID": "3"}, query="after=1")
    assert [item["id"] for _, item in again] == ids[3:]


async def test_each_batch_the_stream_sends_is_audited_once_listing_its_updates(
    member: Gateway,
) -> None:
    ids = await publish(member, 4)
    assert [item["id"] for _, item in await read_sse(member, 4)] == ids
    delivered = [e for e in await member.audit() if e.event == "subscription-delivered"]
    assert [(e.actor, e.detail) for e in delivered] == [
        (
            "subscriber",
            {
                "channel": "sse",
                "count": 4,
                "ids": ids,
                "cases": [CASE],
                "networks": [NETWORK],
                "cursors": {"first": 1, "last": 4},
            },
        )
    ]


async def test_the_stream_delivers_live_updates_filtered_and_heartbeats_while_idle(
    member: Gateway,
) -> None:
    response = await member.get("/v1/subscriptions/stream?heartbeat=1&case=AL-2026-0077")
    lines: list[bytes] = []

    async def read() -> None:
        async for line in response.content:
            lines.append(line)
            if line.startswith(b"data:"):
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(1.3)
    assert b": heartbeat\n" in lines  # nothing yet: a heartbeat keeps the connection alive
    await publish(member, 1)  # another case: filtered out
    (wanted,) = await publish(member, 1, case="AL-2026-0077")
    async with asyncio.timeout(5):
        await reader
    assert json.loads(lines[-1].removeprefix(b"data: "))["id"] == wanted
    response.close()


async def test_a_bad_last_event_id_is_a_problem(member: Gateway) -> None:
    response = await member.get("/v1/subscriptions/stream", headers={"Last-Event-ID": "abc"})
    assert response.status == 400
    problem = await response.json()
    assert problem["errors"][0]["path"] == "/header/Last-Event-ID"


def cut_connections(gw: Gateway) -> None:
    server = gw.client.server.runner.server if gw.client.server.runner else None
    assert server is not None
    for connection in server.connections:
        connection.force_close()
        if connection.transport is not None:
            connection.transport.close()


async def test_the_client_follows_the_stream_across_a_cut_connection(member: Gateway) -> None:
    ids = await publish(member, 2)
    url = str(member.client.make_url("/"))
    seen: list[str] = []
    reconnects: list[int] = []
    async with (
        GatewayClient(url, member.tokens["subscriber"]) as subscriber,
        GatewayClient(url, member.tokens["admin"]) as admin,
    ):
        stream = subscriber.stream_case_updates(
            on_reconnect=lambda cursor, _: reconnects.append(cursor)
        )
        async with asyncio.timeout(10):
            async for item in stream:
                seen.append(str(item.id))
                if len(seen) == 2:
                    cut_connections(member)  # the network drops the connection
                    for _ in range(2):  # more arrive while the subscriber is away
                        ids.append(str((await admin.submit(update("note"))).id))
                if len(seen) == 4:
                    break
        await stream.aclose()
    assert seen == ids
    assert reconnects == [2]


async def test_exchange_subscribe_prints_updates_as_they_arrive(member: Gateway) -> None:
    await publish(member, 2)
    url = str(member.client.make_url("/"))
    process = await asyncio.create_subprocess_exec(
        EXCHANGE, "subscribe", "--url", url, "--network", NETWORK, "--count", "3",
        env={**os.environ, "EXCHANGE_TOKEN": member.tokens["subscriber"]},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(0.5)
    await publish(member, 1)  # arrives while it follows
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 3
    assert all(NETWORK in line and CASE in line for line in lines)
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    assert "opened" in lines[0] and "note" in lines[1]


async def test_exchange_subscribe_with_a_contact_point_token_is_refused(member: Gateway) -> None:
    url = str(member.client.make_url("/"))
    process = await asyncio.create_subprocess_exec(
        EXCHANGE, "subscribe", "--url", url, "--token", member.tokens["contact-point"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 1
    assert "auth.forbidden" in err.decode()

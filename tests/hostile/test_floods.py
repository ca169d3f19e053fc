"""Floods that cost the attacker nothing must not grow what the node keeps for ever.

Refused requests without a valid token are counted per source and interval instead of
written one by one, and the counts add up in the interval's summary entry; a stored path
is cut short, saying so; a page of 500 inbox messages is one audit entry listing the 500
ids; a client with a valid token is still audited refusal by refusal.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from http_helpers import auth_headers, metric_samples
from yarl import URL

from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.audit.store import AuditStore
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.gateway.problems import problem_middleware
from exchange.gateway.refusals import MAX_PATH_CHARS, WRITTEN_PER_INTERVAL
from exchange.model.common import utc_now
from exchange.network import NetworkLayout, init_network_dir
from tests.seeding import seed_inbox

NODE = "AL-ARO"
PARTNER = "RS-PPO"
Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> NetworkLayout:
    return init_network_dir(tmp_path_factory.mktemp("floods") / "net", [NODE, PARTNER])


@asynccontextmanager
async def gateway(
    network: NetworkLayout, data: Path
) -> AsyncIterator[tuple[Client, web.Application]]:
    """The node's gateway, HTTP only; its audit log is closed (and summarised) on exit."""
    app = create_app(
        network.config(NODE, environ={"EXCHANGE_DATA_DIR": str(data)}), start_relay=False
    )
    async with TestClient(TestServer(app)) as client:
        yield client, app


def stored_entries(network: NetworkLayout, data: Path) -> list[AuditEntry]:
    """Every entry of the node's log, read from its file (checkpoints left out)."""
    config = network.config(NODE, environ={"EXCHANGE_DATA_DIR": str(data)})
    store = AuditStore.open(config.database_path, readonly=True)
    try:
        entries = [AuditEntry.from_bytes(bytes(body)) for _, _, body in store.iter_rows()]
    finally:
        store.close()
    return after_start(e for e in entries if e.event is not AuditEvent.CHECKPOINT)


def after_start(entries: Iterable[AuditEntry]) -> list[AuditEntry]:
    """Without the entry of the directory the node started on."""
    return [e for e in entries if e.event is not AuditEvent.DIRECTORY_UPDATED]


def summaries(entries: list[AuditEntry]) -> list[dict[str, object]]:
    return [
        e.detail
        for e in entries
        if e.event is AuditEvent.REFUSED and e.detail and "counted" in e.detail
    ]


def written(entries: list[AuditEntry]) -> list[AuditEntry]:
    return [e for e in entries if e.event is AuditEvent.REFUSED and e.code is not None]


# --- refused requests -----------------------------------------------------------------------


async def test_a_thousand_unauthenticated_refusals_write_a_few_entries_whose_counts_add_up(
    network: NetworkLayout, tmp_path: Path
) -> None:
    wrong = {"Authorization": "Bearer not-a-token-of-this-node"}
    sent: Counter[str] = Counter()
    async with gateway(network, tmp_path) as (client, app):
        for i in range(1000):
            if i % 3 == 0:
                response = await client.post("/v1/messages", json={})
                sent["auth.missing"] += 1
            elif i % 3 == 1:
                response = await client.post("/v1/messages", json={}, headers=wrong)
                sent["auth.invalid"] += 1
            else:
                response = await client.post(f"/v1/nothing-here/{i}", data=b"x")
                sent["not_found"] += 1
            assert response.status in (401, 404)
        # While the interval runs: the first refusal is written, the rest only counted.
        live = after_start(await app[keys.AUDIT].entries(0, 2000))
        assert [(e.event, e.code) for e in live] == [("refused", "auth.missing")]
        assert app[keys.REFUSALS].tally.pending == 999
        metrics = metric_samples(await (await client.get("/metrics")).text())
        refusals = {
            dict(labels)["code"]: value
            for (name, labels), value in metrics.items()
            if name == "xb_http_refusals_total"
        }
        assert refusals == sent  # the metrics count every refusal
    entries = stored_entries(network, tmp_path)  # the app has shut down: the summary is in
    singles, counted = written(entries), summaries(entries)
    assert len(entries) <= 4, [(e.event, e.code) for e in entries]
    assert len(singles) + sum(int(str(s["counted"])) for s in counted) == 1000
    by_code: Counter[str] = Counter(e.code for e in singles if e.code)
    for summary in counted:
        for row in summary["sources"]:  # type: ignore[attr-defined]
            assert row["source"] == "127.0.0.1"
            assert sum(row["codes"].values()) == row["count"]
            by_code.update(row["codes"])
    assert by_code == sent
    assert all(e.detail and e.detail["source"] == "127.0.0.1" for e in singles)


async def test_the_next_interval_writes_its_first_refusal_again_and_sums_the_last(
    network: NetworkLayout, tmp_path: Path
) -> None:
    async with gateway(network, tmp_path) as (client, app):
        refusals = app[keys.REFUSALS]
        for _ in range(5):
            await client.post("/v1/messages", json={})
        await refusals.flush(app[keys.AUDIT])  # what the timer does when the interval ends
        await client.post("/v1/messages", json={})
        await refusals.flush(app[keys.AUDIT])  # nothing counted: nothing written
        entries = after_start(await app[keys.AUDIT].entries(0, 100))
    events = [(e.event.value, e.code) for e in entries if e.event is not AuditEvent.CHECKPOINT]
    assert events == [("refused", "auth.missing"), ("refused", None), ("refused", "auth.missing")]
    assert summaries(entries)[0]["counted"] == 4


async def test_the_interval_timer_writes_the_summary_on_its_own(
    network: NetworkLayout, tmp_path: Path
) -> None:
    async with gateway(network, tmp_path) as (client, app):
        # The app's own timer waits out the default interval; this one runs a short one.
        app[keys.REFUSALS].tally.interval = 0.2
        for _ in range(3):
            await client.post("/v1/messages", json={})
        run = asyncio.create_task(app[keys.REFUSALS].run(app[keys.AUDIT]))
        try:
            deadline = asyncio.get_running_loop().time() + 5
            while not summaries(await app[keys.AUDIT].entries(0, 100)):
                assert asyncio.get_running_loop().time() < deadline, "no summary was written"
                await asyncio.sleep(0.05)
        finally:
            run.cancel()
    assert summaries(stored_entries(network, tmp_path))[0]["counted"] == 2


async def test_an_8_kib_path_is_stored_cut_to_a_few_hundred_characters(
    network: NetworkLayout, tmp_path: Path
) -> None:
    path = "/v1/" + "a" * 8000  # about the longest request line aiohttp's parser accepts
    async with gateway(network, tmp_path) as (client, app):
        response = await client.post(URL(path, encoded=True), data=b"x")
        assert response.status == 404
        (entry,) = after_start(await app[keys.AUDIT].entries(0, 10))
    assert entry.detail is not None
    assert entry.detail["path"] == path[:MAX_PATH_CHARS]
    assert entry.detail["path_length"] == len(path)  # says it was cut, and from what
    assert len(entry.body) < 1024


async def test_a_64_kib_path_is_refused_by_the_parser_or_stored_capped(
    network: NetworkLayout, tmp_path: Path
) -> None:
    path = "/v1/" + "b" * 65536
    async with gateway(network, tmp_path) as (client, app):
        # On the wire, aiohttp's parser answers 400 before any handler: nothing is written.
        response = await client.post(URL(path, encoded=True), data=b"x")
        assert response.status == 400
        assert after_start(await app[keys.AUDIT].entries(0, 10)) == []
        # Were a longer line let through (another parser, a proxy), the middleware caps it.

        async def not_found(request: web.Request) -> web.StreamResponse:
            raise web.HTTPNotFound()

        request = make_mocked_request("POST", path, app=app)
        answer = await problem_middleware(request, not_found)
        assert answer.status == 404
        (entry,) = after_start(await app[keys.AUDIT].entries(0, 10))
    assert entry.detail == {
        "method": "POST",
        "path": path[:MAX_PATH_CHARS],
        "path_length": len(path),
        "status": 404,
        "source": "unknown",
    }
    assert len(entry.body) < 1024


async def test_an_authenticated_clients_refusals_are_each_audited_with_its_token(
    network: NetworkLayout, tmp_path: Path
) -> None:
    headers = auth_headers(network, NODE)
    async with gateway(network, tmp_path) as (client, app):
        for _ in range(WRITTEN_PER_INTERVAL + 10):
            response = await client.post("/v1/messages", json={"type": "nonsense"}, headers=headers)
            assert response.status == 422
        entries = await app[keys.AUDIT].entries(0, 1000)
    refused = [e for e in entries if e.event is AuditEvent.REFUSED]
    assert len(refused) == WRITTEN_PER_INTERVAL + 10
    assert {(e.actor, e.code) for e in refused} == {("contact-point", "request.invalid")}
    assert summaries(entries) == []


# --- reads ------------------------------------------------------------------------------------


async def test_a_page_of_500_inbox_messages_is_one_entry_listing_the_500_ids(
    network: NetworkLayout, tmp_path: Path
) -> None:
    async with gateway(network, tmp_path) as (client, app):
        ids = []
        for i in range(500):
            message_id = uuid4()
            envelope = json.dumps({"header": {"id": str(message_id)}, "payload": {}}).encode()
            await seed_inbox(
                app,
                message_id,
                "asset-inquiry-response",
                f"AL-2026-{i % 3:04d}",
                PARTNER,
                None,
                "cd" * 32,
                envelope,
                utc_now(),
                None,
            )
            ids.append(str(message_id))
        before = app[keys.AUDIT].head.size
        response = await client.get("/v1/inbox?limit=500", headers=auth_headers(network, NODE))
        assert [item["id"] for item in (await response.json())["items"]] == ids
        added = [
            e
            for e in await app[keys.AUDIT].entries(before, 1000)
            if e.event is not AuditEvent.CHECKPOINT
        ]
    (entry,) = added
    assert (entry.event, entry.actor, entry.role) == ("delivered", "contact-point", "contact-point")
    assert entry.detail is not None
    assert entry.detail["ids"] == ids and entry.detail["count"] == 500
    assert entry.cases == {"AL-2026-0000", "AL-2026-0001", "AL-2026-0002"}

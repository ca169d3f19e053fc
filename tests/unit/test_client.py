"""The typed client against real gateways: two nodes on one in-memory broker, served over
HTTP, used as an integrator would (a contact point, a subscriber, an auditor).

A message submitted through the client is delivered and read from the recipient's inbox;
every refusal is one `ProblemError` carrying the problem's status, code and field errors; case
updates arrive over the SSE stream in order; the audit endpoints give checkpoints and proofs
that verify.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
from aiohttp.test_utils import TestServer

from exchange.audit.checkpoints import check_checkpoint
from exchange.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from exchange.audit.merkle import root as merkle_root
from exchange.audit.redaction import member_digest, restore_entry
from exchange.client import GatewayClient, GatewayUnreachable, ProblemError
from exchange.crypto.verify import TrustStore
from exchange.errors import ExchangeError
from exchange.gateway.api_models import RedactedEnvelope, SubmitMessage
from exchange.gateway.app import create_app
from exchange.model.case_update import CaseUpdate
from exchange.model.common import HandlingCode, MessageType, Priority, Tlp
from exchange.model.envelope import Envelope, Handling
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NETWORK = "see-pcn"
CASE = "AL-2026-0042"


@dataclass
class Nodes:
    network: NetworkLayout
    urls: dict[str, str]

    def client(self, node: str, role: str = "contact-point") -> GatewayClient:
        return GatewayClient(self.urls[node], self.network.nodes[node].token(role))


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    """AL-ARO and RS-PPO, both members of the prosecutor network, on one in-memory broker."""
    members = ["AL-ARO", "RS-PPO"]
    network = init_network_dir(tmp_path / "net", members, bus="memory", networks={NETWORK: members})
    topology = Topology(prefix="xb")
    broker = MemoryBroker(topology)
    servers: list[TestServer] = []
    buses: list[MemoryBus] = []
    try:
        for node in members:
            bus = MemoryBus(topology, broker=broker, node_id=node)
            await bus.start()
            buses.append(bus)
            server = TestServer(create_app(network.config(node, environ={}), bus=bus))
            await server.start_server()
            servers.append(server)
        urls = {n: str(s.make_url("")) for n, s in zip(members, servers, strict=True)}
        yield Nodes(network, urls)
    finally:
        for server in servers:
            await server.close()
        for bus in buses:
            await bus.close()


def inquiry() -> SubmitMessage:
    """An urgent asset inquiry to RS-PPO, built as an integrator builds one."""
    example = sorted((EXAMPLES / "asset-inquiry" / "valid").glob("*.json"))[0]
    return SubmitMessage(
        type=MessageType.ASSET_INQUIRY,
        recipients=["RS-PPO"],
        case=CASE,
        priority=Priority.URGENT,
        handling=Handling(tlp=Tlp.AMBER, code=HandlingCode.H2),
        payload=json.loads(example.read_text(encoding="utf-8")),
    )


def update(event: str, summary: str) -> CaseUpdate:
    return CaseUpdate.model_validate(
        {"case": CASE, "network": NETWORK, "event": event, "summary": summary}
    )


async def test_a_submitted_message_is_delivered_and_read_from_the_recipients_inbox(
    nodes: Nodes,
) -> None:
    async with nodes.client("AL-ARO") as sender, nodes.client("RS-PPO") as recipient:
        accepted = await sender.submit(inquiry())
        assert accepted.status == "accepted"
        view = await sender.wait_settled(accepted.id, within=10)
        assert view.status == "delivered"
        (delivery,) = view.deliveries
        assert delivery.receipt is not None and delivery.receipt.outcome == "accepted"
        assert delivery.receipt.envelope.header.sender == "RS-PPO"

        page = await recipient.inbox()
        (item,) = page.items
        assert (item.id, item.sender, item.digest) == (accepted.id, "AL-ARO", view.digest)
        assert page.next == item.cursor
        assert (await recipient.inbox(after=page.next)).items == []
        assert (await recipient.inbox_item(accepted.id)).digest == view.digest

        case = await sender.case(CASE)
        assert [(m.direction, m.id, m.status) for m in case.messages] == [
            ("out", accepted.id, "delivered")
        ]
        assert (await recipient.case(CASE)).messages[0].direction == "in"
        overdue = await recipient.overdue()
        assert overdue.we_owe == [] and overdue.owed_to_us == []  # its deadline is days away


async def test_every_refusal_is_a_problem_error_with_its_status_code_and_field_errors(
    nodes: Nodes,
) -> None:
    async with nodes.client("AL-ARO") as client:
        unknown = inquiry().model_dump(mode="json") | {"recipients": ["KZ-ARC"]}
        with pytest.raises(ProblemError) as refused:
            await client.submit(unknown)  # a mapping goes as given: the gateway decides
        problem = refused.value
        assert isinstance(problem, ExchangeError)
        assert (problem.status, problem.code) == (422, "recipient.unknown")
        assert problem.http_status == 422 and problem.problem.code == "recipient.unknown"
        assert [e.path for e in problem.errors] == ["/recipients/0"]
        assert str(problem).startswith("HTTP 422 recipient.unknown: ")

        with pytest.raises(ProblemError) as missing:
            await client.message(uuid4())
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(ProblemError) as bad_cursor:
            await client.inbox(after=-1)
        assert (bad_cursor.value.status, bad_cursor.value.code) == (400, "request.bad_parameter")
        with pytest.raises(ProblemError) as not_auditor:
            await client.audit_checkpoint()
        assert (not_auditor.value.status, not_auditor.value.code) == (403, "auth.forbidden")

    async with GatewayClient(nodes.urls["AL-ARO"], "not-a-token") as stranger:
        with pytest.raises(ProblemError) as unknown_token:
            await stranger.inbox()
        assert (unknown_token.value.status, unknown_token.value.code) == (401, "auth.invalid")
        assert (await stranger.health()).node == "AL-ARO"  # no token needed


async def test_case_updates_arrive_over_the_stream_in_order_and_resume_after_a_cursor(
    nodes: Nodes,
) -> None:
    events = ["opened", "assets-identified", "frozen"]
    async with (
        nodes.client("AL-ARO") as publisher,
        nodes.client("RS-PPO", "subscriber") as subscriber,
    ):
        stream = subscriber.stream_case_updates(network=NETWORK, heartbeat=1)
        for event in events:
            await publisher.submit_case_update(
                update(event, f"Case {event}."), recipients=["RS-PPO"]
            )
        async with asyncio.timeout(10):
            seen = [await anext(stream) for _ in events]
        await stream.aclose()
        assert [i.update["event"] for i in seen] == events
        assert all((i.sender, i.direction, i.case) == ("AL-ARO", "in", CASE) for i in seen)
        assert [i.cursor for i in seen] == sorted(i.cursor for i in seen)

        resumed = subscriber.stream_case_updates(after=seen[0].cursor)
        async with asyncio.timeout(10):
            rest = [await anext(resumed), await anext(resumed)]
        await resumed.aclose()
        assert [i.id for i in rest] == [i.id for i in seen[1:]]

        polled = await subscriber.wait_case_updates(len(events), within=10)
        assert [i.id for i in polled] == [i.id for i in seen]
        page = await subscriber.case_updates(after=seen[-1].cursor)
        assert (page.items, page.next) == ([], seen[-1].cursor)

        with pytest.raises(ProblemError) as refused:  # a contact point may not subscribe
            await anext(publisher.stream_case_updates())
        assert refused.value.code == "auth.forbidden"


async def test_an_auditor_gets_a_checkpoint_and_proofs_that_verify(nodes: Nodes) -> None:
    async with nodes.client("AL-ARO") as sender:
        await sender.wait_settled((await sender.submit(inquiry())).id, within=10)
    trust = TrustStore.from_directory(nodes.network.directory / "pki")
    async with nodes.client("AL-ARO", "auditor") as auditor:
        checkpoint = await auditor.audit_checkpoint()
        check_checkpoint(checkpoint, trust)  # signed by AL-ARO's certificate
        page = await auditor.audit_entries(0, 1000)
        assert page.size >= checkpoint.size > 2 and page.next == len(page.items)
        assert [e.index for e in page.items] == list(range(len(page.items)))
        assert page.items[0].event == "directory-updated"  # the directory the node started on
        assert page.items[1].event == "accepted"
        size = checkpoint.size
        assert merkle_root(page.leaf_hashes[:size]) == checkpoint.root_hash
        for index in (1, 2):  # 1 kept the payload (redacted here), 2 did not
            proof = await auditor.inclusion_proof(index, size)
            assert proof.leaf == page.leaf_hashes[index]
            assert verify_inclusion(index, size, proof.leaf, proof.path, checkpoint.root_hash)
        assert 1 in page.redacted and 2 not in page.redacted
        assert page.leaf_hashes[2] == leaf_hash(page.items[2].body)  # the bytes themselves
        growth = await auditor.consistency_proof(1, size)
        assert growth.new_root == checkpoint.root_hash
        assert verify_consistency(1, size, growth.path, growth.old_root, growth.new_root)
        peers = await auditor.peer_checkpoints("RS-PPO")  # RS-PPO's, carried by its receipt
        assert all(cp.node == "RS-PPO" for cp in peers)
        for cp in peers:
            check_checkpoint(cp, trust)


async def test_an_auditor_sees_headers_digests_receipts_and_proofs_but_no_payload(
    nodes: Nodes,
) -> None:
    sent = inquiry()
    secret = sent.payload["contact"]["name"]  # a person named in the payload
    async with nodes.client("AL-ARO") as sender:
        view = await sender.wait_settled((await sender.submit(sent)).id, within=10)
        assert isinstance(view.envelope, Envelope) and view.envelope.payload == sent.payload
    reads = [
        ("AL-ARO", f"/v1/messages/{view.id}"),
        ("RS-PPO", "/v1/inbox"),
        ("RS-PPO", f"/v1/inbox/{view.id}"),
        ("AL-ARO", "/v1/audit/entries?limit=1000"),
        ("RS-PPO", "/v1/audit/entries?limit=1000"),
    ]
    for node, path in reads:
        async with nodes.client(node, "auditor") as auditor:
            status, answer = await auditor.request("GET", path)
        assert status == 200 and secret not in json.dumps(answer, ensure_ascii=False), path
    digest = member_digest(sent.payload)
    async with nodes.client("AL-ARO", "auditor") as auditor:
        seen = await auditor.message(view.id)
        assert isinstance(seen.envelope, RedactedEnvelope)
        assert seen.envelope.header == view.envelope.header  # the header, whole
        assert seen.envelope.withheld == {"payload": digest}
        assert seen.digest == view.digest
        (delivery,) = seen.deliveries  # the receipt, whole and signed: proof of receipt
        assert delivery.receipt is not None and isinstance(delivery.receipt.envelope, Envelope)
        page = await auditor.audit_entries(0, 1000)
    async with nodes.client("RS-PPO", "auditor") as auditor:
        (item,) = (await auditor.inbox()).items
        assert isinstance(item.envelope, RedactedEnvelope)
        assert item.envelope.withheld == {"payload": digest}
    # the accepted entry, redacted: whoever holds the payload restores the hashed bytes
    accepted = page.items[1]  # after the directory the node started on
    assert accepted.envelope is not None and "payload" not in accepted.envelope
    restored = restore_entry(orjson.loads(accepted.body), {"payload": sent.payload})
    assert leaf_hash(restored) == page.leaf_hashes[1]
    with pytest.raises(ValueError, match="digest differs"):
        restore_entry(orjson.loads(accepted.body), {"payload": {**sent.payload, "x": 1}})
    # a role that may read payloads gets the bytes themselves
    async with nodes.client("AL-ARO", "admin") as admin:
        full = await admin.audit_entries(0, 1000)
    assert full.redacted == frozenset() and full.items[1].envelope is not None
    assert full.items[1].envelope["payload"] == sent.payload
    assert [leaf_hash(e.body) for e in full.items] == full.leaf_hashes
    assert full.leaf_hashes[: len(page.items)] == page.leaf_hashes


async def test_operations_routes_and_a_gateway_that_does_not_answer(nodes: Nodes) -> None:
    async with GatewayClient(nodes.urls["RS-PPO"]) as operator:
        assert (await operator.health()).status == "ok"
        assert (await operator.wait_ready(within=10)).checks == {
            "broker": True,
            "store": True,
            "directory": True,
        }
        assert "xb_outbox_depth" in await operator.metrics()
        assert (await operator.openapi())["openapi"].startswith("3.")
        status, answer = await operator.request("GET", "/healthz")
        assert (status, answer) == (200, {"status": "ok", "node": "RS-PPO"})
    async with GatewayClient("http://127.0.0.1:9", "token", timeout=5) as nobody:
        with pytest.raises(GatewayUnreachable) as unreachable:
            await nobody.health()
        assert not unreachable.value.connected  # refused: the request never left
        assert unreachable.value.code == "service.unavailable"
        assert unreachable.value.url == "http://127.0.0.1:9/healthz"

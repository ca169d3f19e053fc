"""Case updates across a network of three members and one non-member, on the real RabbitMQ
and on the in-memory bus alike.

Each member receives each update exactly once (also when the broker delivers it again),
by polling and over SSE; the non-member receives nothing, may not publish (403), and an
update it injects on the broker anyway is refused by every member (`network.forbidden`),
audited and dead-lettered. A freeze decision and an asset-inquiry response on a followed
case become automatic updates, emitted once by one node.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_helpers import example_payload, submission
from networks import DemoNetworks
from polling import dead_letters

from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.demo.runner import DemoNetwork
from exchange.gateway import keys
from exchange.gateway.api_models import CaseUpdateEvent
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.transport.bus import Outgoing

pytestmark = pytest.mark.integration

MEMBERS = ("AL-ARO", "RS-PPO", "MD-ARO")
OUTSIDER = "KZ-ARC"
NETWORK = "see-pcn"
CASE = "AL-2026-0042"


@pytest.fixture
async def net(demo_networks: DemoNetworks) -> AsyncIterator[DemoNetwork]:
    layout = demo_networks.layout([*MEMBERS, OUTSIDER], networks={NETWORK: MEMBERS})
    async with demo_networks.running(layout) as network:
        yield network


def update(sender: str, event: str, summary: str, case: str = CASE) -> dict[str, Any]:
    return submission(
        "case-update",
        [m for m in MEMBERS if m != sender],
        case=case,
        priority="normal",
        payload={"case": case, "network": NETWORK, "event": event, "summary": summary},
    )


async def publish(net: DemoNetwork, sender: str, event: str, summary: str) -> str:
    status, answer = await net.call(sender, "POST", "/v1/messages", update(sender, event, summary))
    assert status == 202, answer
    return str(answer["id"])


async def updates_of(net: DemoNetwork, node: str, expect: int) -> list[CaseUpdateEvent]:
    """The node's updates once `expect` arrived (within 30 s)."""
    return await net.client(node, "subscriber").wait_case_updates(expect, within=30)


async def held_by(net: DemoNetwork, node: str) -> list[CaseUpdateEvent]:
    """Every update the node holds now."""
    return (await net.client(node, "subscriber").case_updates(limit=500)).items


async def test_members_receive_each_update_exactly_once_and_the_outsider_nothing(
    net: DemoNetwork,
) -> None:
    sent = [await publish(net, "AL-ARO", "note", f"Update {i} from Tirana.") for i in range(8)]
    sent += [await publish(net, "MD-ARO", "note", f"Update {i} from Chișinău.") for i in range(4)]
    for member in MEMBERS:
        got = await updates_of(net, member, len(sent))
        assert sorted(str(i.id) for i in got) == sorted(sent), member
        for item in got:
            own = item.sender == member
            assert item.direction == ("out" if own else "in")
    # the broker delivers one again (a publisher that crashed before recording the confirm)
    bus = net.apps["AL-ARO"][keys.BUS]
    assert bus is not None
    first = (await updates_of(net, "RS-PPO", 1))[0]
    await bus.publish(
        Outgoing(
            "cases",
            bus.topology.case_routing_key(NETWORK, CASE, "note"),
            encode_envelope(first.envelope.model_dump(mode="json", by_alias=True)),
            message_id=f"{first.id}-again",
        )
    )
    await asyncio.sleep(0.5)
    for member in MEMBERS:
        assert len(await held_by(net, member)) == len(sent), member  # nothing was added
    # the subscriber's stream carries the same updates, in cursor order
    streamed: list[CaseUpdateEvent] = []
    stream = net.client("RS-PPO", "subscriber").stream_case_updates()
    async with asyncio.timeout(10):
        async for item in stream:
            streamed.append(item)
            if len(streamed) == len(sent):
                break
    await stream.aclose()
    assert sorted(str(i.id) for i in streamed) == sorted(sent)
    assert [i.cursor for i in streamed] == sorted(i.cursor for i in streamed)
    # the non-member holds nothing and may not publish
    assert await held_by(net, OUTSIDER) == []
    status, problem = await net.call(
        OUTSIDER,
        "POST",
        "/v1/messages",
        {**update(OUTSIDER, "note", "x"), "recipients": list(MEMBERS)},
    )
    assert (status, problem["code"]) == (403, "network.forbidden")
    entries = await net.apps[OUTSIDER][keys.AUDIT].entries(0, 1000)
    ignored = ("checkpoint", "directory-updated")  # its own, and the directory it started on
    assert [(e.event, e.code) for e in entries if e.event not in ignored] == [
        ("refused", "network.forbidden")
    ]


async def test_an_update_the_outsider_injects_on_the_broker_is_refused_by_every_member(
    net: DemoNetwork,
) -> None:
    pki = net.layout.directory / "pki"
    signer = NodeSigner.from_files(pki / f"{OUTSIDER}.key", pki / f"{OUTSIDER}.pem")
    header = Header.model_validate(
        {
            "id": uuid.uuid4(),
            "type": "case-update",
            "schema": "case-update/1",
            "sender": OUTSIDER,
            "recipients": list(MEMBERS),
            "case": CASE,
            "created_at": utc_now(),
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    payload = {"case": CASE, "network": NETWORK, "event": "closed", "summary": "Case closed."}
    envelope = signer.sign_envelope(header, payload)
    bus = net.apps[OUTSIDER][keys.BUS]
    assert bus is not None
    # as if the broker's wall were missing (the test's broker user may publish anything)
    await bus.publish(
        Outgoing(
            "cases",
            bus.topology.case_routing_key(NETWORK, CASE, "closed"),
            encode_envelope(envelope),
            message_id=str(header.id),
        )
    )
    for member in MEMBERS:
        audit = net.apps[member][keys.AUDIT]
        refusals: list[Any] = []
        for _ in range(200):
            entries = await audit.entries(0, 1000)
            refusals = [e for e in entries if e.message_id == str(header.id)]
            if refusals:
                break
            await asyncio.sleep(0.05)
        assert [(e.event, e.code) for e in refusals] == [("rejected", "network.forbidden")]
        assert await held_by(net, member) == []
    dead = await dead_letters(net.apps["RS-PPO"][keys.BUS], "RS-PPO")
    assert [d.headers.get("x-xb-reason") for d in dead] == ["network.forbidden"]


async def test_decisions_and_findings_on_a_followed_case_become_automatic_updates(
    net: DemoNetwork,
) -> None:
    opened = await publish(net, "AL-ARO", "opened", "Tirana opened the case for the network.")
    for member in MEMBERS:  # every member now knows the network follows the case
        assert len(await updates_of(net, member, 1)) == 1
    decision = submission(
        "freeze-decision",
        ["AL-ARO"],
        priority="normal",
        payload=example_payload("freeze-decision", "executed-two-accounts-apartment"),
    )
    status, answer = await net.call("RS-PPO", "POST", "/v1/messages", decision)
    assert status == 202, answer
    findings = {
        **decision,
        "type": "asset-inquiry-response",
        "payload": example_payload("asset-inquiry-response", "partial-account-and-building-found"),
    }
    status, from_outsider = await net.call(OUTSIDER, "POST", "/v1/messages", findings)
    assert status == 202, from_outsider
    for member in MEMBERS:
        got = await updates_of(net, member, 3)
        events = {(i.update["event"], i.sender) for i in got}
        assert events == {
            ("opened", "AL-ARO"),
            ("frozen", "RS-PPO"),  # emitted by the member that sent the decision
            ("assets-identified", "AL-ARO"),  # the sender is no member: its recipient emits
        }, member
        assert len(got) == 3
        related = {i.update["event"]: i.update.get("related_messages") for i in got}
        assert related["frozen"][0] == answer["id"]
        assert related["assets-identified"][0] == from_outsider["id"]
    assert opened in {str(i.id) for i in got}
    assert await held_by(net, OUTSIDER) == []


async def test_updates_of_one_case_accepted_one_after_another_arrive_in_that_order(
    net: DemoNetwork,
) -> None:
    """The outbox keeps a sender's order within a case: 30 updates accepted one after
    another (each with its own routing key's event) are read by a member's subscriber in
    that order, polling and over SSE."""
    events = ["opened", "assets-identified", "frozen", *["note"] * 27]
    sent = [await publish(net, "AL-ARO", event, f"step {i}") for i, event in enumerate(events)]
    received = await updates_of(net, "RS-PPO", 30)
    assert [str(item.id) for item in received] == sent
    streamed: list[str] = []
    stream = net.client("RS-PPO", "subscriber").stream_case_updates(after=0)
    async with asyncio.timeout(10):
        async for item in stream:
            streamed.append(str(item.id))
            if len(streamed) == len(sent):
                break
    await stream.aclose()
    assert streamed == sent

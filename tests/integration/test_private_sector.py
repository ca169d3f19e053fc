"""Private-sector members (a virtual-asset service provider here) answer inquiries and carry
out freezes addressed to them, and nothing more, on the in-memory bus and on RabbitMQ.

The gateway enforces the roles the signed directory gives: what a member's role may send,
and what each recipient's may receive. A private-sector member that goes around its own
gateway and publishes a signed envelope of another type is refused by the recipient
(`role.forbidden`, with a negative receipt). The broker's own wall, from the rendered
topic permissions, is in `test_private_sector_broker_wall.py`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from http_helpers import example_payload, submission
from networks import DemoNetworks

from exchange.audit.entries import AuditEvent
from exchange.client import ProblemError
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.demo.runner import DemoNetwork
from exchange.gateway import keys
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import Bus, Outgoing
from exchange.transport.topology import Topology

pytestmark = pytest.mark.integration

VASP = "LT-VASP"
NODES = ["AL-ARO", "RS-PPO", VASP]
PCN = "see-pcn"


@pytest.fixture
async def net(demo_networks: DemoNetworks) -> Any:
    layout = demo_networks.layout(
        NODES, networks={PCN: ["AL-ARO", "RS-PPO"]}, roles={VASP: "private-sector"}
    )
    async with demo_networks.running(layout) as running:
        yield running


async def sent(net: DemoNetwork, sender: str, recipient: str, kind: str, **extra: Any) -> str:
    body = submission(type=kind, recipients=[recipient], payload=example_payload(kind), **extra)
    accepted = await net.client(sender).submit(body)
    settled = await net.wait_settled(sender, accepted.id)
    assert settled.status == "delivered", (kind, settled)
    return str(accepted.id)


async def refused(net: DemoNetwork, sender: str, recipient: str, kind: str) -> ProblemError:
    body = submission(type=kind, recipients=[recipient], payload=example_payload(kind))
    with pytest.raises(ProblemError) as info:
        await net.client(sender).submit(body)
    return info.value


async def test_a_vasp_answers_an_inquiry_and_a_freeze_addressed_to_it(net: DemoNetwork) -> None:
    inquiry = await sent(net, "AL-ARO", VASP, "asset-inquiry")
    await sent(net, VASP, "AL-ARO", "asset-inquiry-response", in_reply_to=inquiry)
    notice = await sent(net, "AL-ARO", VASP, "freeze-notice")
    await sent(net, VASP, "AL-ARO", "freeze-decision", in_reply_to=notice)


async def test_the_gateway_refuses_what_a_role_may_not_send_or_receive(net: DemoNetwork) -> None:
    for sender, recipient, kind in [
        ("AL-ARO", VASP, "extradition-support"),  # a VASP may not receive it
        ("AL-ARO", VASP, "asset-inquiry-response"),
        (VASP, "AL-ARO", "asset-inquiry"),  # nor send it
        (VASP, "RS-PPO", "extradition-support-response"),
    ]:
        problem = await refused(net, sender, recipient, kind)
        assert (problem.status, problem.code) == (403, "role.forbidden"), (sender, kind)
    # no case updates either way: a VASP is in no prosecutor network and may send none
    update = {
        "type": "case-update",
        "recipients": ["AL-ARO", "RS-PPO"],
        "case": "AL-2026-0042",
        "priority": "normal",
        "handling": {"tlp": "AMBER", "code": "H2"},
        "payload": {"case": "AL-2026-0042", "network": PCN, "event": "note", "summary": "x"},
    }
    status, problem = await net.call(VASP, "POST", "/v1/messages", update)
    assert (status, problem["code"]) == (403, "role.forbidden")
    path = f"/v1/subscriptions/events?network={PCN}"
    status, problem = await net.call(VASP, "GET", path, role="subscriber")
    assert (status, problem["code"]) == (400, "request.bad_parameter")  # not one of its networks
    entries = await net.apps[VASP][keys.AUDIT].entries(0, 1000)
    assert [e.code for e in entries if e.event is AuditEvent.REFUSED].count("role.forbidden") >= 3


async def test_a_vasp_going_around_its_gateway_is_refused_by_the_recipient(
    net: DemoNetwork, demo_networks: DemoNetworks
) -> None:
    pki = net.layout.pki_dir
    vasp = NodeSigner.from_files(pki / f"{VASP}.key", pki / f"{VASP}.pem")
    header = Header.model_validate(
        {
            "id": str(uuid.uuid4()),
            "type": "extradition-support",
            "schema": "extradition-support/1",
            "sender": VASP,
            "recipients": ["AL-ARO"],
            "case": "AL-2026-0042",
            "created_at": utc_now(),
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    envelope = encode_envelope(vasp.sign_envelope(header, example_payload("extradition-support")))
    topology = Topology(prefix=demo_networks.prefix)
    key = topology.routing_key("AL-ARO", "extradition-support", VASP)
    bus: Bus = net.shared_bus or AmqpBus(demo_networks.amqp_url, topology, node_id=VASP)
    if net.shared_bus is None:
        await bus.start()
    try:
        await bus.publish(Outgoing("messages", key, envelope, str(header.id)))
    finally:
        if net.shared_bus is None:
            await bus.close()
    for _ in range(200):
        entries = await net.apps["AL-ARO"][keys.AUDIT].entries(0, 1000)
        codes = [(e.event, e.code) for e in entries if e.message_id == str(header.id)]
        if (AuditEvent.RECEIPT_SENT, "role.forbidden") in codes:
            break
        await asyncio.sleep(0.05)
    assert (AuditEvent.REJECTED, "role.forbidden") in codes, codes
    assert (AuditEvent.RECEIPT_SENT, "role.forbidden") in codes  # the VASP is told why
    assert await net.apps["AL-ARO"][keys.STORE].inbox_page(0, 100) == []

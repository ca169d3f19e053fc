"""Two national brokers linked by exchange federation, as deploy/README.md describes.

Country A's broker carries AL-ARO, country B's carries RS-PPO. B federates A's messages
exchange: the federation link binds, on A, what B's queues are bound to, so that a
message AL-ARO publishes on A for RS-PPO lands in RS-PPO's inbox on B. A's definitions go
in with `rabbitmqctl import_definitions`, B's through the management HTTP API: both ways
of `exchange topology apply`. Both brokers are the test's own (spare ports, own data);
the federation plugin is enabled in B's own enabled_plugins file only.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from private_broker import PrivateBroker, close_all, free_port, start_all

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, Delivery, Outgoing, PublishError, Verdict
from exchange.transport.provision import import_with_management_api, import_with_rabbitmqctl
from exchange.transport.topology import Topology

pytestmark = pytest.mark.slow

VHOST = "see-arn"
LINK_SECONDS = 30.0


@dataclass
class Federated:
    upstream: PrivateBroker  # country A
    downstream: PrivateBroker  # country B, federating A's messages exchange
    topology: Topology
    password: str

    def url(self, broker: PrivateBroker, user: str) -> str:
        return f"amqp://{user}:{self.password}@127.0.0.1:{broker.port}/{VHOST}"


@pytest.fixture(scope="module")
def federated() -> Iterator[Federated]:
    base = Path(tempfile.mkdtemp(prefix="xbfed-"))
    management_port = free_port()
    a = PrivateBroker(base / "a", name="xbfeda")
    b = PrivateBroker(
        base / "b",
        name="xbfedb",
        plugins=["rabbitmq_federation", "rabbitmq_management"],
        config=lambda broker: (
            f"listeners.tcp.1 = 127.0.0.1:{broker.port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {management_port}\n"
        ),
    )
    try:
        start_all([a, b])
        net = Federated(a, b, Topology(prefix="xb"), secrets.token_urlsafe(16))
        on_a = net.topology.render_definitions(
            VHOST, ["AL-ARO"], passwords={"AL-ARO": net.password}
        )
        import_with_rabbitmqctl(on_a, ctl=a.ctl_command, env=a.ctl_env)
        on_b = net.topology.render_definitions(
            VHOST, ["RS-PPO"], passwords={"RS-PPO": net.password}
        )
        import_with_management_api(
            on_b, f"http://127.0.0.1:{management_port}", user="guest", password="guest"
        )
        # The link's user on A (here guest, on the loopback interface; in a deployment an
        # x509 user over amqps://, see deploy/README.md) and B's upstream and policy.
        a.ctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
        upstream = {
            "uri": f"amqp://guest:guest@127.0.0.1:{a.port}/{VHOST}",
            "ack-mode": "on-confirm",
        }
        b.ctl(
            "set_parameter", "-p", VHOST, "federation-upstream", "country-a", json.dumps(upstream)
        )
        b.ctl(
            "set_policy",
            "-p",
            VHOST,
            "--apply-to",
            "exchanges",
            "federate-messages",
            r"^xb\.messages$",
            json.dumps({"federation-upstream-set": "all"}),
        )
        yield net
    finally:
        close_all([a, b])
        shutil.rmtree(base, ignore_errors=True)


async def test_a_message_published_on_one_broker_reaches_the_inbox_on_the_other(
    federated: Federated,
) -> None:
    topology = federated.topology
    sender = AmqpBus(
        federated.url(federated.upstream, "AL-ARO"), topology, node_id="AL-ARO", provisioned=True
    )
    receiver = AmqpBus(
        federated.url(federated.downstream, "RS-PPO"), topology, node_id="RS-PPO", provisioned=True
    )
    await sender.start()
    await receiver.start()
    try:
        got: list[Delivery] = []
        arrived = asyncio.Event()

        async def handler(delivery: Delivery) -> Verdict:
            got.append(delivery)
            arrived.set()
            return ACK

        await receiver.consume(topology.inbox_queue("RS-PPO"), handler)
        key = topology.routing_key("RS-PPO", "asset-inquiry", "AL-ARO")
        sent = Outgoing("messages", key, b'{"n": 1}', str(uuid.uuid4()))
        async with asyncio.timeout(LINK_SECONDS):
            while True:  # until the link has bound RS-PPO's keys on A: unroutable before
                try:
                    await sender.publish(sent)
                    break
                except PublishError as err:
                    assert "unroutable" in str(err)
                    await asyncio.sleep(0.2)
            await arrived.wait()
        assert [(d.message_id, d.body, d.routing_key) for d in got] == [
            (sent.message_id, b'{"n": 1}', key)
        ]
        # the topic permissions still hold on the sending side of the link
        forged = Outgoing(
            "messages",
            topology.routing_key("RS-PPO", "asset-inquiry", "MD-ARO"),
            b"{}",
            str(uuid.uuid4()),
        )
        with pytest.raises(PublishError, match="ACCESS_REFUSED"):
            await sender.publish(forged)
    finally:
        await sender.close()
        await receiver.close()
    status = await asyncio.to_thread(federated.downstream.ctl, "federation_status")
    assert "running" in status

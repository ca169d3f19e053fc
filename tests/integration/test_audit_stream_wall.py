"""The audit stream on a real broker with the rendered definitions: only the broker's own
bindings write to it, and the replay believes nothing a node could slip in.

Each test has a virtual host of its own, imported from `Topology.render_definitions` with
a user per node (a password for the test, where production uses x509): a node may not
publish to, or bind into, the audit exchange; its messages and its checkpoints still reach
the stream; and what it can publish (as itself, on a routing key it is allowed) is held by
the replay against the signed header, the broker's clock and the CRL.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from rabbitmq_cli import ImportedVhost, imported_definitions
from seasoned_pki import SeasonedPki, seasoned_pki

from exchange.audit.stream import StreamReplay
from exchange.cli import main
from exchange.crypto.signing import encode_envelope
from exchange.crypto.verify import TrustStore
from exchange.demo.runner import DemoNetwork, free_base_port
from exchange.demo.scenario import load_payload
from exchange.gateway import keys
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import Outgoing, PublishError
from exchange.transport.topology import Topology

pytestmark = pytest.mark.integration


@dataclass(frozen=True, kw_only=True)
class Broker(ImportedVhost):
    al: str
    rs: str
    auditor: str

    def bus(self, user: str) -> AmqpBus:
        return AmqpBus(self.url(user), self.topology, node_id=user, provisioned=True)


@pytest.fixture
def broker() -> Iterator[Broker]:
    tag = secrets.token_hex(4).upper()
    net = Broker(
        vhost=f"xbstream-{tag.lower()}",
        topology=Topology(),
        password=secrets.token_urlsafe(16),
        al=f"AL-A{tag}",
        rs=f"RS-A{tag}",
        auditor=f"AUDIT-{tag}",
    )
    users = [net.al, net.rs, net.auditor]
    definitions = net.topology.render_definitions(
        net.vhost,
        [net.al, net.rs],
        passwords=dict.fromkeys(users, net.password),
        auditors=[net.auditor],
    )
    with imported_definitions(net.vhost, definitions, users):
        yield net


async def test_a_node_may_neither_publish_nor_bind_into_the_audit_exchange(
    broker: Broker,
) -> None:
    al = broker.bus(broker.al)
    await al.start()
    try:
        await al.declare_node(broker.al)
        slipped = Outgoing("audit", f"{broker.rs}.asset-inquiry.{broker.al}", b"{}", "slipped")
        with pytest.raises(PublishError, match=r"ACCESS_REFUSED - access to exchange 'xb\.audit'"):
            await al.publish(slipped)
        honest = Outgoing("messages", slipped.routing_key, b"{}", "honest")
        await al.publish(honest)  # the channel is back, and messages are copied as before
    finally:
        await al.close()
    connection = await aio_pika.connect(broker.url(broker.al))
    try:
        channel = await connection.channel()
        audit = await channel.get_exchange(broker.topology.audit.name, ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await audit.bind(broker.topology.messages.name, "#")  # copy everything it likes
    finally:
        await connection.close()
    assert await stream_routing_keys(broker) == [honest.routing_key]  # and nothing slipped in


async def stream_routing_keys(broker: Broker) -> list[str]:
    """The routing key of every record in the audit stream, read as the auditor."""
    auditor = AmqpBus(broker.url(broker.auditor), broker.topology)
    await auditor.start()
    try:
        return [d.routing_key async for d in auditor.read_audit_stream(idle_timeout=0.5)]
    finally:
        await auditor.close()


async def test_a_nodes_messages_and_checkpoints_still_reach_the_stream(
    broker: Broker, tmp_path: Path
) -> None:
    """Real gateways on the provisioned virtual host: a message, its receipt, and each
    node's signed checkpoint (now published on the messages exchange as `checkpoint.<node>`)
    are in the stream, and replay as verified."""
    layout = provisioned_layout(broker, tmp_path)
    network = DemoNetwork(layout, None)
    await network.start()
    try:
        body = {
            "type": "asset-inquiry",
            "recipients": [broker.rs],
            "case": "AL-2026-0042",
            "priority": "urgent",
            "handling": {"tlp": "AMBER", "code": "H2"},
            "payload": load_payload("01-asset-inquiry.json"),
        }
        accepted = await network.client(broker.al).submit(body)
        view = await network.wait_settled(broker.al, accepted.id)
        assert view.status == "delivered"
        for app in network.apps.values():
            assert await app[keys.AUDIT].checkpoint() is not None
        wanted = {broker.topology.checkpoint_routing_key(n) for n in (broker.al, broker.rs)}
        for _ in range(50):  # each relay publishes its checkpoint in the background
            if wanted <= set(await stream_routing_keys(broker)):
                break
            await asyncio.sleep(0.2)
    finally:
        await network.stop()
    pki = layout.directory / "pki"
    certs = [pki / f"{node}.pem" for node in (broker.al, broker.rs)]
    trust = TrustStore.from_files(pki / "ca.pem", None, certs)
    replay = StreamReplay(broker.url(broker.auditor), trust, idle_timeout=1.0)
    rows = [row async for row in replay]
    assert all(row.ok for row in rows), [(r.type, r.reason, r.detail) for r in rows if not r.ok]
    assert {(row.type, row.sender) for row in rows} == {
        ("asset-inquiry", broker.al),
        ("receipt", broker.rs),
        ("checkpoint", broker.al),
        ("checkpoint", broker.rs),
    }
    checkpoint = next(row for row in rows if row.kind == "checkpoint")
    assert checkpoint.route == f"messages checkpoint.{checkpoint.sender}"


async def test_a_backdated_envelope_a_node_injects_to_a_partner_is_flagged(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The attack of issue 13 on the live broker: AL signs an envelope "to" RS dated three
    days back (its certificate was valid then) and publishes it now, on a routing key its
    topic permission allows. RabbitMQ takes it; the replay flags it from the broker's clock."""
    pki = seasoned_pki([broker.al, broker.rs])
    now = utc_now()
    honest = envelope(pki, broker.al, broker.rs, now)
    backdated = envelope(pki, broker.al, broker.rs, now - timedelta(days=3))
    al = broker.bus(broker.al)
    await al.start()
    try:
        for sent in (honest, backdated):
            key = broker.topology.routing_key(broker.rs, "asset-inquiry", broker.al)
            await al.publish(Outgoing("messages", key, encode_envelope(sent), str(uuid.uuid4())))
    finally:
        await al.close()
    code, rows = await replay_cli(broker, pki, tmp_path, capsys)
    assert code == 1  # a check failed
    verdicts = {row["id"]: (row["ok"], row["reason"]) for row in rows}
    assert verdicts == {
        honest["header"]["id"]: (True, ""),
        backdated["header"]["id"]: (False, "clock.skew"),
    }
    code, rows = await replay_cli(broker, pki, tmp_path, capsys, "--offset", "1")
    assert [row["id"] for row in rows] == [backdated["header"]["id"]]  # from the 2nd record


async def test_with_the_crl_what_a_revoked_node_published_afterwards_is_flagged(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker does not read the CRL: a revoked node whose user is not yet deleted can
    still publish. With `--crl`, the replay flags what the broker recorded after the
    revocation, and only that."""
    pki = seasoned_pki([broker.al, broker.rs])
    al = broker.bus(broker.al)
    key = broker.topology.routing_key(broker.rs, "asset-inquiry", broker.al)
    await al.start()
    try:
        before = envelope(pki, broker.al, broker.rs, utc_now())
        await al.publish(Outgoing("messages", key, encode_envelope(before), str(uuid.uuid4())))
        revoked_at = utc_now().replace(microsecond=0) + timedelta(seconds=2)
        await asyncio.sleep((revoked_at - utc_now()).total_seconds() + 0.5)
        after = envelope(pki, broker.al, broker.rs, utc_now())
        await al.publish(Outgoing("messages", key, encode_envelope(after), str(uuid.uuid4())))
    finally:
        await al.close()
    crl = pki.write_crl(tmp_path / "crl.pem", {broker.al: revoked_at})
    code, rows = await replay_cli(broker, pki, tmp_path, capsys, "--crl", str(crl))
    assert code == 1
    assert [(row["id"], row["reason"]) for row in rows] == [
        (before["header"]["id"], ""),
        (after["header"]["id"], "cert.revoked"),
    ]
    code, rows = await replay_cli(broker, pki, tmp_path, capsys)  # without the CRL: unseen
    assert code == 0 and all(row["ok"] for row in rows)


def envelope(pki: SeasonedPki, sender: str, recipient: str, created: Any) -> dict[str, Any]:
    header = Header.model_validate(
        {
            "id": str(uuid.uuid4()),
            "type": "asset-inquiry",
            "schema": "asset-inquiry/1",
            "sender": sender,
            "recipients": [recipient],
            "case": "AL-2026-0042",
            "created_at": created,
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    return pki.signers[sender].sign_envelope(header, load_payload("01-asset-inquiry.json"))


async def replay_cli(
    broker: Broker,
    pki: SeasonedPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> tuple[int, list[dict[str, Any]]]:
    """`exchange audit replay --stream URL --ca ... --cert ... --format json`, as an auditor."""
    ca, certs = pki.write_public(tmp_path / "public")
    args = ["audit", "replay", "--stream", broker.url(broker.auditor), "--format", "json"]
    args += ["--ca", str(ca), "--cert", *map(str, certs), *extra]
    code = await asyncio.to_thread(main, args)
    out, _ = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def provisioned_layout(broker: Broker, tmp_path: Path) -> NetworkLayout:
    """Two gateways whose configuration logs each in as its own broker user, on the
    provisioned virtual host (they only check that their queues exist)."""
    nodes = [broker.al, broker.rs]
    layout = init_network_dir(
        tmp_path / "net", nodes, base_port=free_base_port(len(nodes)), bus="amqp"
    )
    for node in nodes:
        path = layout.nodes[node].config_path
        lines = []
        for line in path.read_text().splitlines():
            if line.startswith("amqp_url ="):
                line = f'amqp_url = "{broker.url(node)}"\namqp_provisioned = true'
            lines.append(line)
        path.write_text("\n".join(lines) + "\n")
    return layout

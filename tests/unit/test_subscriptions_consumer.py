"""The receiving side of case updates: what a member's subscription consumer accepts and refuses.

An update from a fellow member, addressed to this node and routed as its signed payload
says, is stored once and audited; everything else is refused with a code, audited and
dead-lettered: a non-member sender or a network this node is not in (`network.forbidden`),
a routing key naming another network, an update addressed to non-members, a forged
signature, an id reused for other content, another message type on the cases exchange.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchange.audit.log import AuditLog
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.gateway.app import load_identity
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.subscriptions.service import CaseUpdates
from exchange.transport.bus import ACK, Delivery, Disposition, Verdict
from exchange.transport.topology import Topology

NODES = ["AL-ARO", "RS-PPO", "MD-ARO", "KZ-ARC"]
NETWORKS = {"see-pcn": ["AL-ARO", "RS-PPO", "MD-ARO"], "kz-al": ["AL-ARO", "KZ-ARC"]}
CASE = "AL-2026-0042"
TOPOLOGY = Topology()

pytestmark = pytest.mark.network(nodes=NODES, networks=NETWORKS)


@dataclass
class Node:
    service: CaseUpdates
    audit: AuditLog

    async def deliver(self, body: bytes, routing_key: str) -> Verdict:
        delivery = Delivery(body, "cases", routing_key, str(uuid.uuid4()), {}, False, 1)
        return await self.service.consumer.handle_delivery(delivery)

    async def stored(self) -> list[str]:
        return [str(r.id) for r in await self.service.store.events_after(0, 1000)]

    async def audited(self) -> list[tuple[str, str | None]]:
        return [(e.event.value, e.code) for e in await self.audit.entries(0, 1000)]


@pytest.fixture
async def rs(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Node]:
    config = network.config("RS-PPO", environ={"EXCHANGE_DATA_DIR": str(tmp_path)})
    signer, trust = load_identity(config)
    audit = await AuditLog.open(config.audit_path, signer)
    service = await CaseUpdates.open(config, signer=signer, trust=trust, audit=audit)
    yield Node(service, audit)
    await service.close()
    await audit.close()


def signer_of(network: NetworkLayout, node: str) -> NodeSigner:
    pki = network.directory / "pki"
    return NodeSigner.from_files(pki / f"{node}.key", pki / f"{node}.pem")


def signed_update(
    network: NetworkLayout,
    sender: str = "AL-ARO",
    *,
    recipients: list[str] | None = None,
    net: str = "see-pcn",
    event: str = "frozen",
    summary: str = "Assets frozen.",
    message_id: uuid.UUID | None = None,
    type_: str = "case-update",
) -> tuple[dict[str, Any], str]:
    """The signed envelope and the routing key its payload names."""
    members = NETWORKS.get(net, [sender, "RS-PPO"])
    header = Header.model_validate(
        {
            "id": message_id or uuid.uuid4(),
            "type": type_,
            "schema": f"{type_}/1",
            "sender": sender,
            "recipients": recipients or [m for m in members if m != sender],
            "case": CASE,
            "created_at": utc_now(),
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    payload = {"case": CASE, "network": net, "event": event, "summary": summary}
    envelope = signer_of(network, sender).sign_envelope(header, payload)
    return envelope, TOPOLOGY.case_routing_key(net, CASE, event)


async def test_a_members_update_is_verified_stored_once_audited_and_acked(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network)
    body = encode_envelope(envelope)
    token = rs.service.feed.token()
    assert await rs.deliver(body, key) == ACK
    assert token.is_set()  # SSE streams and webhooks are woken
    assert await rs.deliver(body, key) == ACK  # the broker delivered it again
    assert await rs.stored() == [envelope["header"]["id"]]
    assert await rs.audited() == [("verified", None), ("stored", None)]
    (record,) = await rs.service.store.events_after(0, 10)
    assert (record.sender, record.direction, record.network) == ("AL-ARO", "in", "see-pcn")
    assert record.envelope == body


async def refused(rs: Node, body: bytes, key: str, code: str) -> None:
    verdict = await rs.deliver(body, key)
    assert (verdict.disposition, verdict.reason) == (Disposition.DEAD_LETTER, code)
    assert await rs.audited() == [("rejected", code)]
    assert await rs.stored() == []


async def test_an_update_signed_by_a_non_member_is_refused(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network, "KZ-ARC", recipients=["AL-ARO", "RS-PPO", "MD-ARO"])
    await refused(rs, encode_envelope(envelope), key, "network.forbidden")
    (entry,) = await rs.audit.entries(0, 10)
    assert entry.message_id == envelope["header"]["id"]
    assert entry.detail is not None and "KZ-ARC" in entry.detail["reason"]


async def test_an_update_of_a_network_this_node_is_not_in_is_refused(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network, net="kz-al", recipients=["KZ-ARC", "RS-PPO"])
    await refused(rs, encode_envelope(envelope), key, "network.forbidden")


async def test_a_routing_key_naming_another_network_than_the_signed_one_is_refused(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, _ = signed_update(network)
    await refused(
        rs,
        encode_envelope(envelope),
        TOPOLOGY.case_routing_key("kz-al", CASE, "frozen"),
        "network.forbidden",
    )


async def test_an_update_addressed_to_a_non_member_is_refused(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network, recipients=["RS-PPO", "MD-ARO", "KZ-ARC"])
    await refused(rs, encode_envelope(envelope), key, "network.forbidden")


async def test_an_update_not_addressed_to_this_node_is_refused(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network, recipients=["MD-ARO"])
    await refused(rs, encode_envelope(envelope), key, "recipient.mismatch")


async def test_a_forged_update_is_refused(network: NetworkLayout, rs: Node) -> None:
    envelope, key = signed_update(network)
    envelope["payload"]["summary"] = "Nothing was frozen; release the funds."
    await refused(rs, encode_envelope(envelope), key, "signature.invalid")


async def test_another_message_type_on_the_cases_exchange_is_refused(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network, type_="asset-inquiry")  # validly signed, wrong place
    await refused(rs, encode_envelope(envelope), key, "envelope.malformed")


async def test_an_id_reused_for_other_content_is_refused_as_a_replay(
    network: NetworkLayout, rs: Node
) -> None:
    same = uuid.uuid4()
    first, key = signed_update(network, message_id=same)
    second, _ = signed_update(network, message_id=same, summary="Something else.")
    assert await rs.deliver(encode_envelope(first), key) == ACK
    verdict = await rs.deliver(encode_envelope(second), key)
    assert (verdict.disposition, verdict.reason) == (Disposition.DEAD_LETTER, "message.replayed")
    assert await rs.stored() == [str(same)]
    assert (await rs.audited())[-1] == ("rejected", "message.replayed")


async def test_garbage_is_refused_as_malformed(rs: Node) -> None:
    await refused(rs, b"\xff not json", "see-pcn.x.frozen", "envelope.malformed")


async def test_a_case_outside_the_chosen_cases_is_not_kept(
    network: NetworkLayout, tmp_path: Path
) -> None:
    config = network.config("RS-PPO", environ={"EXCHANGE_DATA_DIR": str(tmp_path)})
    narrowed = config.model_copy(
        update={"networks": (config.networks[0].model_copy(update={"cases": ("RS-2026-0001",)}),)}
    )
    signer, trust = load_identity(config)
    audit = await AuditLog.open(narrowed.audit_path, signer)
    service = await CaseUpdates.open(narrowed, signer=signer, trust=trust, audit=audit)
    try:
        node = Node(service, audit)
        envelope, key = signed_update(network)
        assert await node.deliver(encode_envelope(envelope), key) == ACK
        assert await node.stored() == []
    finally:
        await service.close()
        await audit.close()


# --- the audit record of an update cut short between its two commits -------------------------
#
# The update's row and its audit entries are two files. The row is committed first, with the
# entries it owes; a node stopped before they are durable writes them when it starts again,
# or when the broker delivers the update again. Each entry is written once.


async def open_node(network: NetworkLayout, data: Path) -> Node:
    config = network.config("RS-PPO", environ={"EXCHANGE_DATA_DIR": str(data)})
    signer, trust = load_identity(config)
    audit = await AuditLog.open(config.audit_path, signer)
    service = await CaseUpdates.open(config, signer=signer, trust=trust, audit=audit)
    return Node(service, audit)


async def test_an_update_stored_when_the_node_stopped_is_audited_when_it_starts_again(
    network: NetworkLayout, tmp_path: Path
) -> None:
    envelope, key = signed_update(network)
    body = encode_envelope(envelope)
    node = await open_node(network, tmp_path)
    await node.audit.close()  # the node stops between the store's commit and the log's
    with pytest.raises(RuntimeError, match="audit log is closed"):
        await node.deliver(body, key)
    assert await node.stored() == [envelope["header"]["id"]]  # the row is committed
    await node.service.close()

    node = await open_node(network, tmp_path)  # the restart completes the record
    try:
        entries = await node.audit.entries(0, 10)
        assert [(e.event.value, e.message_id) for e in entries] == [
            ("verified", envelope["header"]["id"]),
            ("stored", envelope["header"]["id"]),
        ]
        assert entries[0].envelope == envelope  # the signed envelope, for auditors
        assert entries[1].detail["cursor"] == 1 and entries[1].detail["from"] == "AL-ARO"
        assert await node.service.store.audit_owed(10) == []
        assert await node.deliver(body, key) == ACK  # the broker's redelivery: nothing more
        assert await node.audited() == [("verified", None), ("stored", None)]
    finally:
        await node.service.close()
        await node.audit.close()


async def test_a_redelivered_update_completes_an_audit_record_that_failed(
    network: NetworkLayout, rs: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope, key = signed_update(network)
    body = encode_envelope(envelope)

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError("no space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(rs.audit, "enqueue", failing)
        with pytest.raises(OSError):
            await rs.deliver(body, key)  # not acked: the broker delivers it again
    assert await rs.audited() == []
    assert len(await rs.service.store.audit_owed(10)) == 1
    assert await rs.deliver(body, key) == ACK
    assert await rs.audited() == [("verified", None), ("stored", None)]
    assert await rs.service.store.audit_owed(10) == []
    assert await rs.deliver(body, key) == ACK
    assert await rs.audited() == [("verified", None), ("stored", None)]
    assert await rs.stored() == [envelope["header"]["id"]]


async def test_entries_written_before_the_row_was_cleared_are_not_written_again(
    network: NetworkLayout, tmp_path: Path
) -> None:
    envelope, key = signed_update(network)
    node = await open_node(network, tmp_path)

    async def cut(update_id: uuid.UUID) -> None:  # the node stops just before clearing the row
        raise RuntimeError("stopped")

    node.service.store.audit_written = cut  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="stopped"):
        await node.deliver(encode_envelope(envelope), key)
    assert await node.audited() == [("verified", None), ("stored", None)]
    await node.service.close()
    await node.audit.close()

    node = await open_node(network, tmp_path)
    try:  # closing signed a checkpoint; the update's entries are there once
        assert await node.audited() == [("verified", None), ("stored", None), ("checkpoint", None)]
        assert await node.service.store.audit_owed(10) == []
    finally:
        await node.service.close()
        await node.audit.close()


async def test_an_update_a_client_submitted_before_the_node_stopped_is_audited_accepted(
    network: NetworkLayout, tmp_path: Path
) -> None:
    envelope, _ = signed_update(network, sender="RS-PPO")
    node = await open_node(network, tmp_path)
    await node.audit.close()
    with pytest.raises(RuntimeError, match="audit log is closed"):
        await node.service.accept(envelope, actor="cp-1", role="contact-point")
    await node.service.close()

    node = await open_node(network, tmp_path)
    try:
        (entry,) = await node.audit.entries(0, 10)
        assert (entry.event.value, entry.message_id) == ("accepted", envelope["header"]["id"])
        assert (entry.actor, entry.role, entry.envelope) == ("cp-1", "contact-point", envelope)
        assert entry.detail == {"network": "see-pcn", "cursor": 1}
        assert await node.service.store.audit_owed(10) == []
    finally:
        await node.service.close()
        await node.audit.close()

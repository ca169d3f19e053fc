"""Automatic case updates: a freeze decision or an asset-inquiry response on a followed case
becomes one signed update for each network following it, emitted once, by one node.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from exchange.audit.log import AuditLog
from exchange.config import AutoUpdates, NetworkConfig, NodeConfig
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.gateway.app import load_identity
from exchange.gateway.records import OutgoingRecord
from exchange.gateway.store import MessageStore
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.subscriptions.automatic import automatic_update, automatic_update_id
from exchange.subscriptions.records import NewCaseEvent
from exchange.subscriptions.service import CaseUpdates

NODES = ["AL-ARO", "RS-PPO", "MD-ARO", "KZ-ARC"]
MEMBERS = ["AL-ARO", "RS-PPO", "MD-ARO"]
CASE = "AL-2026-0042"
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"

pytestmark = pytest.mark.network(nodes=NODES, networks={"see-pcn": MEMBERS})


def example(kind: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / kind / "valid" / name).read_text("utf-8"))
    return doc


EXECUTED = example("freeze-decision", "executed-two-accounts-apartment.json")
REFUSED = example("freeze-decision", "refused-ne-bis-in-idem.json")
PARTIAL = example("asset-inquiry-response", "partial-account-and-building-found.json")


def message(
    network: NetworkLayout, type_: str, payload: dict[str, Any], sender: str, recipient: str
) -> dict[str, Any]:
    header = Header.model_validate(
        {
            "id": uuid.uuid4(),
            "type": type_,
            "schema": f"{type_}/1",
            "sender": sender,
            "recipients": [recipient],
            "case": CASE,
            "in_reply_to": uuid.uuid4(),
            "created_at": utc_now(),
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    pki = network.directory / "pki"
    signer = NodeSigner.from_files(pki / f"{sender}.key", pki / f"{sender}.pem")
    return signer.sign_envelope(header, payload)


Opener = Callable[..., Any]


@pytest.fixture
async def open_node(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[CaseUpdates, AuditLog]] = []

    async def open_(node: str, **auto: Any) -> CaseUpdates:
        (tmp_path / node).mkdir()
        config = network.config(node, environ={"EXCHANGE_DATA_DIR": str(tmp_path / node)})
        if auto:
            nets = tuple(
                n.model_copy(update={"auto_updates": AutoUpdates(**auto)}) for n in config.networks
            )
            config = config.model_copy(update={"networks": nets})
        signer, trust = load_identity(config)
        audit = await AuditLog.open(config.audit_path, signer)
        service = await CaseUpdates.open(config, signer=signer, trust=trust, audit=audit)
        opened.append((service, audit))
        return service

    yield open_
    for service, audit in opened:
        await service.close()
        await audit.close()


async def follow(service: CaseUpdates, network: NetworkLayout) -> None:
    """Someone published an `opened` update for the case: the network now follows it."""
    envelope = message(network, "freeze-decision", EXECUTED, "AL-ARO", "RS-PPO")
    await service.store_update(
        NewCaseEvent(
            uuid.uuid4(), "see-pcn", CASE, "opened", "AL-ARO", "in", "0" * 64, utc_now(),
            utc_now(), encode_envelope(envelope),
        )
    )  # fmt: skip


async def automatic(service: CaseUpdates) -> list[dict[str, Any]]:
    return [r.view() for r in await service.store.events_after(0, 100) if r.direction == "out"]


async def test_a_sent_freeze_decision_becomes_one_signed_frozen_update_for_the_network(
    network: NetworkLayout, open_node: Opener
) -> None:
    rs = await open_node("RS-PPO")
    await follow(rs, network)
    decision = message(network, "freeze-decision", EXECUTED, "RS-PPO", "AL-ARO")
    await rs.on_message_sent(decision)
    await rs.on_message_sent(decision)  # a second call (a retry, the follower) changes nothing
    (item,) = await automatic(rs)
    header = item["envelope"]["header"]
    assert header["id"] == str(automatic_update_id("see-pcn", uuid.UUID(decision["header"]["id"])))
    assert (header["sender"], header["recipients"]) == ("RS-PPO", ["AL-ARO", "MD-ARO"])
    update = item["update"]
    assert (update["event"], update["network"], update["case"]) == ("frozen", "see-pcn", CASE)
    assert decision["header"]["id"] in update["related_messages"]
    assert update["amount"] == EXECUTED["total_frozen"]
    assert "RS-PPO executed the freeze" in update["summary"]
    for holder in ("Hoxha", "Țurcanu", "Balkan Trans"):  # no personal data in the summary
        assert holder not in update["summary"]
    # it verifies as any message does, and is queued for the cases exchange once
    pki = network.directory / "pki"
    trust = TrustStore.from_directory(pki)
    verify_envelope(item["envelope"], VerificationPolicy(trust=trust))
    assert await rs.store.outbox_depth() == 1
    signed = [e for e in await rs._audit.entries(0, 100) if e.event == "signed"]
    assert len(signed) == 1 and signed[0].actor == "gateway"


async def test_only_followed_cases_get_automatic_updates_unless_configured_for_all(
    network: NetworkLayout, open_node: Opener
) -> None:
    decision = message(network, "freeze-decision", EXECUTED, "RS-PPO", "AL-ARO")
    known = await open_node("RS-PPO")
    await known.on_message_sent(decision)
    assert await automatic(known) == []
    everything = await open_node("MD-ARO", follow="all")
    md_decision = message(network, "freeze-decision", EXECUTED, "MD-ARO", "AL-ARO")
    await everything.on_message_sent(md_decision)
    assert [i["update"]["event"] for i in await automatic(everything)] == ["frozen"]


async def test_the_receiver_emits_only_when_the_sender_cannot(
    network: NetworkLayout, open_node: Opener
) -> None:
    al = await open_node("AL-ARO", follow="all")
    from_member = message(network, "asset-inquiry-response", PARTIAL, "RS-PPO", "AL-ARO")
    await al.on_message_received(from_member)
    assert await automatic(al) == []  # RS-PPO, a member, emits it itself
    from_outsider = message(network, "asset-inquiry-response", PARTIAL, "KZ-ARC", "AL-ARO")
    await al.on_message_received(from_outsider)
    (item,) = await automatic(al)
    assert item["update"]["event"] == "assets-identified"
    assert item["envelope"]["header"]["recipients"] == ["RS-PPO", "MD-ARO"]
    assert "KZ-ARC answered the asset inquiry of AL-ARO: partial" in item["update"]["summary"]


async def test_disabled_automatic_updates_emit_nothing(
    network: NetworkLayout, open_node: Opener
) -> None:
    rs = await open_node("RS-PPO", enabled=False, follow="all")
    await rs.on_message_sent(message(network, "freeze-decision", EXECUTED, "RS-PPO", "AL-ARO"))
    assert await automatic(rs) == []


def test_a_refused_freeze_is_a_note_and_an_unshared_event_is_not_emitted(
    network: NetworkLayout,
) -> None:
    envelope = message(network, "freeze-decision", REFUSED, "RS-PPO", "AL-ARO")
    header = Header.model_validate(envelope["header"])
    see = NetworkConfig(name="see-pcn", members=tuple(MEMBERS))
    note = automatic_update(see, header, envelope["payload"])
    assert note is not None and note.event.value == "note"
    assert note.summary.endswith(": refused.")
    frozen_only = NetworkConfig(name="see-pcn", members=tuple(MEMBERS), events=("frozen",))
    assert automatic_update(frozen_only, header, envelope["payload"]) is None


async def test_the_inbox_follower_emits_for_received_messages_once_across_restarts(
    network: NetworkLayout, open_node: Opener, tmp_path: Path
) -> None:
    inbox = await MessageStore.open(tmp_path / "inbox.sqlite3")
    try:
        received = message(network, "freeze-decision", EXECUTED, "KZ-ARC", "AL-ARO")
        header = Header.model_validate(received["header"])
        await inbox.inbox_store(
            header.id, header.type.value, CASE, "KZ-ARC", header.in_reply_to, "0" * 64,
            encode_envelope(received), utc_now(), None,
        )  # fmt: skip
        al = await open_node("AL-ARO", follow="all")
        await al.start(None, inbox)
        for _ in range(100):
            if await automatic(al):
                break
            await asyncio.sleep(0.05)
        (item,) = await automatic(al)
        assert item["update"]["related_messages"][0] == str(header.id)
        await al.stop()
        assert await al.store.get_meta("automatic.inbox_cursor") == "1"
    finally:
        await inbox.close()


async def test_updates_of_a_message_sent_just_before_the_node_stopped_are_emitted_at_start(
    network: NetworkLayout, open_node: Opener, tmp_path: Path
) -> None:
    outgoing = await MessageStore.open(tmp_path / "store.sqlite3")
    try:
        # The message is committed, then the node stops before emitting its update.
        decision = message(network, "freeze-decision", EXECUTED, "RS-PPO", "AL-ARO")
        header = Header.model_validate(decision["header"])
        await outgoing.submit(
            OutgoingRecord(
                header.id, header.type.value, CASE, header.in_reply_to, ("AL-ARO",),
                header.created_at, None, encode_envelope(decision), "0" * 64, "cp-1",
            )
        )  # fmt: skip
        inquiry = message(network, "asset-inquiry", {}, "RS-PPO", "AL-ARO")
        await outgoing.submit(
            OutgoingRecord(
                uuid.UUID(inquiry["header"]["id"]), "asset-inquiry", CASE, None, ("AL-ARO",),
                utc_now(), None, encode_envelope(inquiry), "0" * 64, "cp-1",
            )
        )  # fmt: skip
        rs = await open_node("RS-PPO", follow="all")
        assert await rs.emit_missed_sent_updates(outgoing) == 1  # not for the inquiry
        (item,) = await automatic(rs)
        assert item["envelope"]["header"]["id"] == str(automatic_update_id("see-pcn", header.id))
        assert item["update"]["event"] == "frozen"
        assert await rs.emit_missed_sent_updates(outgoing) == 0  # the next start: nothing new
        assert len(await automatic(rs)) == 1
    finally:
        await outgoing.close()


def test_auto_update_settings_refuse_other_message_types() -> None:
    with pytest.raises(ValueError, match="cannot trigger updates"):
        AutoUpdates.model_validate({"message_types": ["asset-inquiry"]})
    assert NodeConfig.model_fields["networks"].default == ()

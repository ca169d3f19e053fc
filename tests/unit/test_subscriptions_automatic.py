"""Automatic case updates: a freeze decision or an asset-inquiry response on a followed case
becomes one signed update for each network following it, emitted once, by one node.

The update is made where the message is stored: by the gateway's submit path for a message
this node sends, by the relay's inbox step for one it receives. It is stored, owed to the
cases exchange and audited `signed` in the same transaction as the message itself, so once
a submit is answered or a delivery acked the update exists; nothing is left to emit later.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exchange.audit.entries import AuditEntry, AuditEvent, EntryFields
from exchange.config import AutoUpdates, NetworkConfig, NodeConfig
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.gateway.keys import CASE_UPDATES
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.relay.relay import Relay
from exchange.subscriptions.automatic import automatic_update, automatic_update_id
from exchange.subscriptions.service import CaseUpdates
from exchange.transport.bus import ACK, Delivery, Verdict
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

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
INQUIRY = example("asset-inquiry", "me-to-al-yacht-car-account.json")


def signer_of(network: NetworkLayout, node: str) -> NodeSigner:
    pki = network.directory / "pki"
    return NodeSigner.from_files(pki / f"{node}.key", pki / f"{node}.pem")


def message(
    network: NetworkLayout,
    type_: str,
    payload: dict[str, Any],
    sender: str,
    recipient: str,
    tlp: str = "AMBER",
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
            "handling": {"tlp": tlp, "code": "H2"},
        }
    )
    return signer_of(network, sender).sign_envelope(header, payload)


@dataclass
class Node:
    """A gateway app (no broker) with the relay's inbox, wired as the node wires them."""

    app: web.Application
    client: TestClient[web.Request, web.Application]
    relay: Relay
    tokens: dict[str, str]

    @property
    def config(self) -> NodeConfig:
        return self.app[keys.CONFIG]

    @property
    def service(self) -> CaseUpdates:
        return self.app[CASE_UPDATES]

    async def submit(
        self, type_: str, payload: dict[str, Any], recipient: str, tlp: str = "AMBER"
    ) -> uuid.UUID:
        """POST /v1/messages; the id of the message, once answered 202."""
        body = {
            "type": type_,
            "recipients": [recipient],
            "case": CASE,
            "in_reply_to": str(uuid.uuid4()),
            "priority": "normal",
            "handling": {"tlp": tlp, "code": "H2"},
            "payload": payload,
        }
        headers = {"Authorization": f"Bearer {self.tokens['contact-point']}"}
        response = await self.client.post("/v1/messages", json=body, headers=headers)
        assert response.status == 202, await response.text()
        return uuid.UUID((await response.json())["id"])

    async def receive(self, envelope: dict[str, Any], routing_key: str | None = None) -> Verdict:
        """A delivery from the node's inbox queue, handled by the relay's inbound pipeline."""
        header = envelope["header"]
        key = routing_key or Topology(prefix=self.config.topology_prefix).routing_key(
            self.config.node_id, header["type"], header["sender"]
        )
        body = encode_envelope(envelope)
        delivery = Delivery(body, "messages", key, header["id"], {}, False, 1)
        return await self.relay.inbox.handle(delivery)

    async def automatic(self) -> list[dict[str, Any]]:
        """The updates this node signed itself (the followed case's `opened` came in)."""
        records = await self.service.store.events_after(0, 100)
        return [r.view() for r in records if r.direction == "out"]

    async def entries(self) -> list[AuditEntry]:
        entries = await self.app[keys.AUDIT].entries(0, 1000)
        # without the entry of the directory the node started on
        return [e for e in entries if e.event is not AuditEvent.DIRECTORY_UPDATED]

    async def owed(self) -> list[tuple[str, str, str]]:
        """The outbox rows: (message id, kind, recipient)."""
        with contextlib.closing(sqlite3.connect(self.config.database_path)) as conn:
            rows = conn.execute("SELECT message_id, kind, recipient FROM outbox ORDER BY seq")
            return [tuple(row) for row in rows.fetchall()]


Opener = Callable[..., Awaitable[Node]]


@pytest.fixture
async def open_node(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Opener]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def open_(node: str, *, data: Path | None = None, **auto: Any) -> Node:
        config = network.config(
            node, environ={"EXCHANGE_DATA_DIR": str(data or tmp_path / node / "data")}
        )
        if auto:
            nets = tuple(
                n.model_copy(update={"auto_updates": AutoUpdates(**auto)}) for n in config.networks
            )
            config = config.model_copy(update={"networks": nets})
        app = create_app(config, start_relay=False)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        topology = Topology(prefix=config.topology_prefix)
        service = app[CASE_UPDATES]
        relay = Relay(  # the node's relay, not connected: its inbox step is what is tested
            config=config,
            view=app[keys.DIRECTORY],
            db=app[keys.DATABASE],
            signer=app[keys.SIGNER],
            trust=app[keys.TRUST],
            bus=MemoryBus(topology, broker=MemoryBroker(topology), node_id=config.node_id),
            audit=app[keys.AUDIT],
            metrics=app[keys.METRICS],
            peers=app[keys.PEERS],
            updates=service,
        )
        service.wake = relay.wake
        return Node(app, client, relay, dict(network.nodes[node].tokens))

    yield open_
    for client in clients:
        await client.close()


async def follow(node: Node, network: NetworkLayout) -> None:
    """AL-ARO published an `opened` update for the case: the network now follows it."""
    header = Header.model_validate(
        {
            "id": uuid.uuid4(),
            "type": "case-update",
            "schema": "case-update/1",
            "sender": "AL-ARO",
            "recipients": [m for m in MEMBERS if m != "AL-ARO"],
            "case": CASE,
            "created_at": utc_now(),
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    payload = {"case": CASE, "network": "see-pcn", "event": "opened", "summary": "Opened."}
    envelope = signer_of(network, "AL-ARO").sign_envelope(header, payload)
    key = Topology().case_routing_key("see-pcn", CASE, "opened")
    delivery = Delivery(encode_envelope(envelope), "cases", key, str(header.id), {}, False, 1)
    assert await node.service.consumer.handle(delivery) == ACK


def signed_entries(entries: list[AuditEntry]) -> list[AuditEntry]:
    return [e for e in entries if e.event == "signed"]


# --- sent -------------------------------------------------------------------------------------


async def test_a_sent_freeze_decision_becomes_one_signed_frozen_update_for_the_network(
    network: NetworkLayout, open_node: Opener
) -> None:
    rs = await open_node("RS-PPO")
    await follow(rs, network)
    commits = rs.app[keys.AUDIT].commits
    decision_id = await rs.submit("freeze-decision", EXECUTED, "AL-ARO")
    # answered 202: the message, its update and their entries were one transaction
    assert rs.app[keys.AUDIT].commits == commits + 1
    (item,) = await rs.automatic()
    header = item["envelope"]["header"]
    assert header["id"] == str(automatic_update_id("see-pcn", decision_id))
    assert (header["sender"], header["recipients"]) == ("RS-PPO", ["AL-ARO", "MD-ARO"])
    update = item["update"]
    assert (update["event"], update["network"], update["case"]) == ("frozen", "see-pcn", CASE)
    assert str(decision_id) in update["related_messages"]
    assert update["amount"] == EXECUTED["total_frozen"]
    assert "RS-PPO executed the freeze" in update["summary"]
    for holder in ("Hoxha", "Țurcanu", "Balkan Trans"):  # no personal data in the summary
        assert holder not in update["summary"]
    # it verifies as any message does, and is owed to the cases exchange once
    trust = TrustStore.from_directory(network.directory / "pki")
    verify_envelope(item["envelope"], VerificationPolicy(trust=trust))
    assert await rs.owed() == [
        (str(decision_id), "message", "AL-ARO"),
        (header["id"], "case-update", "*"),
    ]
    entries = await rs.entries()
    (signed,) = signed_entries(entries)
    assert (signed.actor, signed.message_id, signed.case) == ("gateway", header["id"], CASE)
    assert signed.detail is not None
    assert signed.detail["trigger"] == str(decision_id) and signed.detail["on"] == "sent"
    assert signed.detail["cursor"] == item["cursor"]
    accepted = [e for e in entries if e.event == "accepted"]
    assert [e.message_id for e in accepted][-1] == str(decision_id)
    assert accepted[-1].index + 1 == signed.index  # written together, in one transaction


def withheld_entries(entries: list[AuditEntry]) -> list[AuditEntry]:
    return [e for e in entries if (e.event, e.code) == ("refused", "handling.restricted")]


async def test_a_tlp_red_freeze_decision_sent_to_one_node_reaches_no_one_else(
    network: NetworkLayout, open_node: Opener
) -> None:
    rs = await open_node("RS-PPO")
    await follow(rs, network)
    with structlog.testing.capture_logs() as logs:
        decision_id = await rs.submit("freeze-decision", EXECUTED, "AL-ARO", tlp="RED")
    assert await rs.automatic() == []  # no update, so no amounts for the network
    assert await rs.owed() == [(str(decision_id), "message", "AL-ARO")]  # only to AL-ARO
    (withheld,) = withheld_entries(await rs.entries())
    assert withheld.message_id == str(automatic_update_id("see-pcn", decision_id))
    assert withheld.actor == "gateway" and withheld.detail is not None
    assert withheld.detail["trigger"] == str(decision_id) and withheld.detail["tlp"] == "RED"
    assert withheld.envelope is None  # the entry names the update; it holds nothing of it
    (line,) = [e for e in logs if e["event"] == "case_update.withheld"]
    assert (line["message_id"], line["network"], line["tlp"]) == (
        str(decision_id),
        "see-pcn",
        "RED",
    )


async def test_a_received_amber_strict_answer_from_an_outsider_is_not_passed_on(
    network: NetworkLayout, open_node: Opener
) -> None:
    al = await open_node("AL-ARO", follow="all")
    strict = message(network, "asset-inquiry-response", PARTIAL, "KZ-ARC", "AL-ARO", "AMBER+STRICT")
    assert await al.receive(strict) == ACK  # stored for AL-ARO, its named recipient
    assert [str(r.id) for r in await al.app[keys.STORE].inbox_page(0, 10)] == [
        strict["header"]["id"]
    ]
    assert await al.automatic() == []
    assert [kind for _, kind, _ in await al.owed()] == ["receipt"]
    (withheld,) = withheld_entries(await al.entries())
    assert withheld.detail is not None and withheld.detail["on"] == "received"
    assert await al.receive(strict) == ACK  # a redelivery withholds nothing twice
    assert len(withheld_entries(await al.entries())) == 1


async def test_preparing_a_messages_updates_again_stores_nothing_twice(
    network: NetworkLayout, open_node: Opener
) -> None:
    rs = await open_node("RS-PPO", follow="all")
    decision = message(network, "freeze-decision", EXECUTED, "RS-PPO", "AL-ARO")
    header = Header.model_validate(decision["header"])
    service, db = rs.service, rs.app[keys.DATABASE]

    async def emit() -> list[Any]:
        prepared = service.prepare_automatic(decision, header, None, "sent")
        assert len(prepared) == 1  # signed anew each time, under the same derived id
        return await db.call(lambda conn: service.store_automatic(conn, prepared))

    (stored,) = await emit()
    assert await emit() == []  # a retry of the same message: held once
    (item,) = await rs.automatic()
    assert item["id"] == str(stored.id) == str(automatic_update_id("see-pcn", header.id))
    assert len(signed_entries(await rs.entries())) == 1
    assert [kind for _, kind, _ in await rs.owed()] == ["case-update"]


async def test_an_update_that_cannot_be_stored_takes_its_message_with_it(
    network: NetworkLayout, open_node: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    rs = await open_node("RS-PPO", follow="all")
    audit = rs.app[keys.AUDIT]
    write = audit.write

    def no_signed_entry(conn: sqlite3.Connection, fields: EntryFields) -> int:
        if fields.event is AuditEvent.SIGNED:
            raise OSError("no space left on device")
        return write(conn, fields)

    monkeypatch.setattr(audit, "write", no_signed_entry)
    body = {
        "type": "freeze-decision",
        "recipients": ["AL-ARO"],
        "case": CASE,
        "in_reply_to": str(uuid.uuid4()),
        "priority": "normal",
        "handling": {"tlp": "AMBER", "code": "H2"},
        "payload": EXECUTED,
    }
    headers = {"Authorization": f"Bearer {rs.tokens['contact-point']}"}
    response = await rs.client.post("/v1/messages", json=body, headers=headers)
    assert response.status == 500  # not accepted: the client may send it again
    # neither the message nor its update nor the message's `accepted` entry was kept; the
    # refusal of the request is audited as any other
    assert await rs.owed() == []
    assert await rs.automatic() == []
    assert [(e.event.value, e.code) for e in await rs.entries()] == [("refused", "internal")]


async def test_only_followed_cases_get_automatic_updates_unless_configured_for_all(
    network: NetworkLayout, open_node: Opener
) -> None:
    known = await open_node("RS-PPO")
    await known.submit("freeze-decision", EXECUTED, "AL-ARO")
    assert await known.automatic() == []
    assert signed_entries(await known.entries()) == []
    everything = await open_node("MD-ARO", follow="all")
    await everything.submit("freeze-decision", EXECUTED, "AL-ARO")
    assert [i["update"]["event"] for i in await everything.automatic()] == ["frozen"]


async def test_disabled_automatic_updates_emit_nothing(
    network: NetworkLayout, open_node: Opener
) -> None:
    rs = await open_node("RS-PPO", enabled=False, follow="all")
    await rs.submit("freeze-decision", EXECUTED, "AL-ARO")
    assert await rs.automatic() == []


async def test_the_update_of_a_sent_message_is_there_after_a_restart_and_none_is_added(
    network: NetworkLayout, open_node: Opener, tmp_path: Path
) -> None:
    data = tmp_path / "rs-data"
    rs = await open_node("RS-PPO", data=data, follow="all")
    decision_id = await rs.submit("freeze-decision", EXECUTED, "AL-ARO")
    await rs.submit("asset-inquiry", INQUIRY, "AL-ARO")  # triggers no update
    before = await rs.automatic()
    await rs.client.close()  # the node stops right after answering

    again = await open_node("RS-PPO", data=data, follow="all")  # nothing to emit at start
    (item,) = await again.automatic()  # one, for the decision; none for the inquiry
    assert item == before[0]
    assert item["id"] == str(automatic_update_id("see-pcn", decision_id))
    assert item["update"]["event"] == "frozen"
    assert len(signed_entries(await again.entries())) == 1
    assert [kind for _, kind, _ in await again.owed()].count("case-update") == 1


# --- received ---------------------------------------------------------------------------------


async def test_the_receiver_emits_only_when_the_sender_cannot(
    network: NetworkLayout, open_node: Opener
) -> None:
    al = await open_node("AL-ARO", follow="all")
    from_member = message(network, "asset-inquiry-response", PARTIAL, "RS-PPO", "AL-ARO")
    assert await al.receive(from_member) == ACK
    assert await al.automatic() == []  # RS-PPO, a member, emits it itself
    from_outsider = message(network, "asset-inquiry-response", PARTIAL, "KZ-ARC", "AL-ARO")
    assert await al.receive(from_outsider) == ACK
    (item,) = await al.automatic()
    assert item["update"]["event"] == "assets-identified"
    assert item["envelope"]["header"]["recipients"] == ["RS-PPO", "MD-ARO"]
    assert "KZ-ARC answered the asset inquiry of AL-ARO: partial" in item["update"]["summary"]


async def test_a_received_message_and_its_update_are_stored_in_one_transaction_once(
    network: NetworkLayout, open_node: Opener
) -> None:
    al = await open_node("AL-ARO", follow="all")
    received = message(network, "freeze-decision", EXECUTED, "KZ-ARC", "AL-ARO")
    message_id = received["header"]["id"]
    audit = al.app[keys.AUDIT]
    commits = audit.commits
    assert await al.receive(received) == ACK
    assert audit.commits == commits + 1  # message, receipt, update and entries: one commit
    (item,) = await al.automatic()  # there when the delivery is acked
    update_id = str(automatic_update_id("see-pcn", uuid.UUID(message_id)))
    assert item["id"] == update_id
    assert item["update"]["related_messages"][0] == message_id
    events = [(e.event.value, e.message_id) for e in await al.entries()]
    assert events[-2:] == [("receipt-sent", message_id), ("signed", update_id)]
    assert events[:2] == [("verified", message_id), ("stored", message_id)]
    owed = await al.owed()
    assert [kind for _, kind, _ in owed] == ["receipt", "case-update"]

    assert await al.receive(received) == ACK  # the broker delivers it again
    assert audit.commits == commits + 1  # a duplicate: nothing written
    assert len(await al.automatic()) == 1
    assert await al.owed() == owed
    inbox = await al.app[keys.STORE].inbox_page(0, 10)
    assert [str(r.id) for r in inbox] == [message_id]


async def test_a_received_message_whose_update_fails_is_not_stored_and_comes_back(
    network: NetworkLayout, open_node: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    al = await open_node("AL-ARO", follow="all")
    received = message(network, "freeze-decision", EXECUTED, "KZ-ARC", "AL-ARO")
    audit = al.app[keys.AUDIT]
    write = audit.write

    def no_signed_entry(conn: sqlite3.Connection, fields: EntryFields) -> int:
        if fields.event is AuditEvent.SIGNED:
            raise OSError("no space left on device")
        return write(conn, fields)

    with monkeypatch.context() as patch:
        patch.setattr(audit, "write", no_signed_entry)
        with pytest.raises(OSError, match="no space"):
            await al.receive(received)  # not acked: the broker requeues it
    assert await al.app[keys.STORE].inbox_page(0, 10) == []
    assert await al.owed() == [] and await al.automatic() == []
    assert await al.entries() == []  # not even `verified`: it went with the message

    assert await al.receive(received) == ACK  # the redelivery: message, receipt, update
    assert len(await al.app[keys.STORE].inbox_page(0, 10)) == 1
    assert [kind for _, kind, _ in await al.owed()] == ["receipt", "case-update"]
    assert len(await al.automatic()) == 1
    indexes = [e.index for e in await al.app[keys.AUDIT].entries(0, 1000)]
    assert indexes == list(range(audit.head.size))


# --- the rules --------------------------------------------------------------------------------


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


def test_auto_update_settings_refuse_other_message_types() -> None:
    with pytest.raises(ValueError, match="cannot trigger updates"):
        AutoUpdates.model_validate({"message_types": ["asset-inquiry"]})
    assert NodeConfig.model_fields["networks"].default == ()

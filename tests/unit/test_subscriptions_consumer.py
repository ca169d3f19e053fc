"""The receiving side of case updates: what a member's subscription consumer accepts and refuses.

An update from a fellow member, addressed to this node and routed as its signed payload
says, is stored once and audited; everything else is refused with a code, audited and
dead-lettered: a non-member sender or a network this node is not in (`network.forbidden`),
a routing key naming another network, an update addressed to non-members, a forged
signature, an id reused for other content, another message type on the cases exchange.

The consumer is the node's one inbound pipeline (`CaseUpdates.consumer.handle`): an update
and its audit entries commit in one transaction of the node's database before the ack, so
a redelivery writes nothing twice and nothing is ever left to recover. A refusal is
audited even when its evidence cannot be kept, and requeued only when nothing can be.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.audit.merkle import leaf_hash
from exchange.audit.merkle import root as merkle_root
from exchange.config import NodeConfig
from exchange.crypto.canonical import sha256_hex
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.directory.view import load_view
from exchange.gateway.app import load_identity, open_database
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from exchange.storage.sqlite_thread import SqliteThread
from exchange.subscriptions.service import CaseUpdates
from exchange.transport.bus import ACK, REQUEUE, Delivery, Disposition, Verdict
from exchange.transport.topology import Topology
from tests.holding import held

NODES = ["AL-ARO", "RS-PPO", "MD-ARO", "KZ-ARC"]
NETWORKS = {"see-pcn": ["AL-ARO", "RS-PPO", "MD-ARO"], "kz-al": ["AL-ARO", "KZ-ARC"]}
CASE = "AL-2026-0042"
TOPOLOGY = Topology()

pytestmark = pytest.mark.network(nodes=NODES, networks=NETWORKS)


@dataclass
class Node:
    """RS-PPO's case updates over its one database, as the gateway opens them."""

    config: NodeConfig
    db: SqliteThread
    service: CaseUpdates
    audit: AuditLog

    async def deliver(self, body: bytes, routing_key: str) -> Verdict:
        delivery = Delivery(body, "cases", routing_key, str(uuid.uuid4()), {}, False, 1)
        return await self.service.consumer.handle(delivery)

    async def stored(self) -> list[str]:
        return [str(r.id) for r in await self.service.store.events_after(0, 1000)]

    async def audited(self) -> list[tuple[str, str | None]]:
        return [(e.event.value, e.code) for e in await self.audit.entries(0, 1000)]

    async def close(self) -> None:
        await self.service.close()
        await self.audit.close()
        await self.db.close()


async def open_node(config: NodeConfig) -> Node:
    signer, _ = load_identity(config)
    view = load_view(config)
    db = open_database(config)
    await db.start()
    audit = await AuditLog.attach(db, signer)
    service = await CaseUpdates.open(
        config, view=view, db=db, signer=signer, trust=view.trust, audit=audit
    )
    return Node(config, db, service, audit)


def rs_config(network: NetworkLayout, data: Path) -> NodeConfig:
    return network.config("RS-PPO", environ={"EXCHANGE_DATA_DIR": str(data)})


@pytest.fixture
async def rs(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Node]:
    node = await open_node(rs_config(network, tmp_path))
    yield node
    await node.close()


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
    await refused(rs, encode_envelope(envelope), key, "exchange.mismatch")


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
    config = rs_config(network, tmp_path)
    narrowed = config.model_copy(
        update={"networks": (config.networks[0].model_copy(update={"cases": ("RS-2026-0001",)}),)}
    )
    node = await open_node(narrowed)
    try:
        envelope, key = signed_update(network)
        assert await node.deliver(encode_envelope(envelope), key) == ACK
        assert await node.stored() == []
        assert await node.audited() == []
    finally:
        await node.close()


# --- a fact and its audit entries commit together ----------------------------------------------
#
# The update's row, its webhook jobs and its `verified` and `stored` entries are written in one
# transaction of the node's one database, before the delivery is acked: there is no moment in
# which one is durable without the other, so nothing is left to complete after a crash, and a
# redelivery finds the update held and writes nothing.


def committed_counts(config: NodeConfig) -> tuple[int, int]:
    """Updates and audit entries durably in the database file, read in one snapshot by a
    connection of its own (as another process would see them)."""
    with contextlib.closing(sqlite3.connect(config.database_path)) as conn:
        conn.execute("BEGIN")
        (updates,) = conn.execute("SELECT count(*) FROM case_events").fetchone()
        (entries,) = conn.execute("SELECT count(*) FROM entries").fetchone()
        conn.execute("COMMIT")
    return int(updates), int(entries)


def tree_is_whole(entries: list[Any], audit: AuditLog) -> bool:
    """The stored entries are exactly the leaves of the log's tree head."""
    leaves = [leaf_hash(e.body) for e in entries]
    return [e.index for e in entries] == list(range(audit.head.size)) and (
        merkle_root(leaves) == audit.head.root
    )


async def test_an_acked_update_has_its_entries_in_the_log_when_the_handler_returns(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network)
    body = encode_envelope(envelope)
    commits = rs.audit.commits
    assert await rs.deliver(body, key) == ACK
    assert rs.audit.commits == commits + 1  # the row and both entries: one transaction
    assert committed_counts(rs.config) == (1, 2)  # durable before the ack, together
    verified, stored = await rs.audit.entries(0, 10)
    update_id = envelope["header"]["id"]
    assert [(e.event.value, e.message_id) for e in (verified, stored)] == [
        ("verified", update_id),
        ("stored", update_id),
    ]
    assert verified.envelope == envelope and stored.envelope is None  # kept once, for auditors
    (record,) = await rs.service.store.events_after(0, 10)
    assert verified.digest == stored.digest == record.digest
    assert stored.detail == {
        "from": "AL-ARO",
        "type": "case-update",
        "network": "see-pcn",
        "event": "frozen",
        "cursor": record.cursor,
    }
    # the broker delivers it again (it never saw the ack): held once, nothing written
    assert await rs.deliver(body, key) == ACK
    assert rs.audit.commits == commits + 1
    assert committed_counts(rs.config) == (1, 2)
    assert await rs.audited() == [("verified", None), ("stored", None)]


async def test_an_update_whose_entries_cannot_be_written_is_not_stored_and_is_redelivered(
    network: NetworkLayout, rs: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope, key = signed_update(network)
    body = encode_envelope(envelope)
    write = rs.audit.write

    def disk_full_at_stored(conn: sqlite3.Connection, fields: EntryFields) -> int:
        if fields.event is AuditEvent.STORED:  # after `verified` was written in the same txn
            raise OSError("no space left on device")
        return write(conn, fields)

    with monkeypatch.context() as patch:
        patch.setattr(rs.audit, "write", disk_full_at_stored)
        with pytest.raises(OSError, match="no space"):
            await rs.deliver(body, key)  # not acked: the broker requeues it
    # the row went with the entries: nothing of the attempt is kept, not even `verified`
    assert await rs.stored() == []
    assert await rs.audited() == []
    assert rs.audit.head.size == 0 and committed_counts(rs.config) == (0, 0)

    assert await rs.deliver(body, key) == ACK  # the redelivery stores and audits it, once
    assert await rs.deliver(body, key) == ACK
    assert await rs.stored() == [envelope["header"]["id"]]
    entries = await rs.audit.entries(0, 10)
    assert [(e.index, e.event.value) for e in entries] == [(0, "verified"), (1, "stored")]
    assert tree_is_whole(entries, rs.audit)  # the index the failed attempt took was given back


async def test_an_update_acked_before_the_node_stopped_is_in_the_log_once_after_a_restart(
    network: NetworkLayout, tmp_path: Path
) -> None:
    envelope, key = signed_update(network)
    body = encode_envelope(envelope)
    node = await open_node(rs_config(network, tmp_path))
    try:
        assert await node.deliver(body, key) == ACK
    finally:
        await node.close()  # closing signs a checkpoint over what is there

    node = await open_node(rs_config(network, tmp_path))
    try:
        expected = [("verified", None), ("stored", None), ("checkpoint", None)]
        assert await node.audited() == expected  # no recovery: nothing was owed
        assert await node.deliver(body, key) == ACK  # the broker's redelivery: nothing more
        assert await node.audited() == expected
        assert await node.stored() == [envelope["header"]["id"]]
        assert tree_is_whole(await node.audit.entries(0, 10), node.audit)
    finally:
        await node.close()


async def test_a_handler_cancelled_while_its_transaction_waits_still_commits_it_once(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network)
    body = encode_envelope(envelope)
    async with held(rs.db) as database:
        handler = asyncio.create_task(rs.deliver(body, key))
        await database.queued_by(handler)  # verified, its transaction waits behind the held worker
        handler.cancel()  # the channel closed under it
        with pytest.raises(asyncio.CancelledError):
            await handler
        assert committed_counts(rs.config) == (0, 0)  # nothing committed yet
    # released: the queued transaction was not withdrawn with its caller; row and entries
    assert await rs.stored() == [envelope["header"]["id"]]
    assert await rs.audited() == [("verified", None), ("stored", None)]
    assert await rs.deliver(body, key) == ACK  # the redelivery finds it held
    assert await rs.audited() == [("verified", None), ("stored", None)]


async def test_an_update_a_client_submits_is_stored_owed_and_audited_accepted_together(
    network: NetworkLayout, rs: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope, key = signed_update(network, sender="RS-PPO")

    def disk_full(conn: sqlite3.Connection, fields: EntryFields) -> int:
        raise OSError("no space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(rs.audit, "write", disk_full)
        with pytest.raises(OSError, match="no space"):
            await rs.service.accept(envelope, actor="cp-1", role="contact-point")
    assert await rs.stored() == [] and await rs.audited() == []
    assert committed_counts(rs.config) == (0, 0)

    record = await rs.service.accept(envelope, actor="cp-1", role="contact-point")
    (entry,) = await rs.audit.entries(0, 10)  # there when `accept` returns
    assert (entry.event.value, entry.message_id) == ("accepted", envelope["header"]["id"])
    assert (entry.actor, entry.role, entry.envelope) == ("cp-1", "contact-point", envelope)
    assert entry.detail == {"network": "see-pcn", "cursor": record.cursor}
    assert entry.digest == record.digest
    assert await rs.service.store.last_cursor() == record.cursor
    with contextlib.closing(sqlite3.connect(rs.config.database_path)) as conn:
        owed = conn.execute("SELECT message_id, kind, exchange FROM outbox").fetchall()
    assert owed == [(envelope["header"]["id"], "case-update", "cases")]
    # our own update, coming back from the cases exchange: held once, not audited again
    assert await rs.deliver(encode_envelope(envelope), key) == ACK
    assert await rs.audited() == [("accepted", None)]
    assert await rs.stored() == [envelope["header"]["id"]]


# --- refusals the audit log cannot hold as they are -----------------------------------------------


async def test_an_update_holding_a_number_json_cannot_carry_exactly_is_audited_and_dead_lettered(
    network: NetworkLayout, rs: Node
) -> None:
    envelope, key = signed_update(network)
    doc = {**envelope, "payload": {**envelope["payload"], "amount": 2**53}}
    body = orjson.dumps(doc)  # 2**53 has no RFC 8785 form: neither signed nor kept as evidence
    verdict = await rs.deliver(body, key)
    assert verdict != REQUEUE  # a poison message must not come back forever
    assert (verdict.disposition, verdict.reason) == (Disposition.DEAD_LETTER, "envelope.malformed")
    (entry,) = await rs.audit.entries(0, 10)
    assert (entry.event.value, entry.code) == ("rejected", "envelope.malformed")
    assert entry.envelope is None  # the log cannot hold it; its digest names the bytes
    assert entry.digest == sha256_hex(body)
    assert entry.message_id == envelope["header"]["id"]
    assert entry.detail is not None and "RFC 8785" in entry.detail["reason"]
    assert await rs.stored() == []
    assert rs.audit.head.size == 1 and committed_counts(rs.config) == (0, 1)
    # the broker hands it out again (say, the dead-lettering was lost): audited, not stored
    again = await rs.deliver(body, key)
    assert (again.disposition, again.reason) == (Disposition.DEAD_LETTER, "envelope.malformed")
    assert await rs.stored() == []


async def test_a_refusal_whose_entry_cannot_be_written_falls_back_to_a_bare_entry(
    network: NetworkLayout, rs: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope, _ = signed_update(network)
    body = encode_envelope(envelope)
    write = rs.audit.write
    attempts: list[EntryFields] = []

    def only_bare_entries(conn: sqlite3.Connection, fields: EntryFields) -> int:
        attempts.append(fields)
        if fields.detail is not None:  # the entry with the refusal's details cannot be held
            raise ValueError("no RFC 8785 form")
        return write(conn, fields)

    monkeypatch.setattr(rs.audit, "write", only_bare_entries)
    routed_elsewhere = TOPOLOGY.case_routing_key("kz-al", CASE, "frozen")
    verdict = await rs.deliver(body, routed_elsewhere)
    assert (verdict.disposition, verdict.reason) == (Disposition.DEAD_LETTER, "network.forbidden")
    assert len(attempts) == 2  # the full entry (rolled back), then the fallback
    (entry,) = await rs.audit.entries(0, 10)
    assert (entry.event.value, entry.code, entry.digest) == (
        "rejected",
        "network.forbidden",
        sha256_hex(body),
    )
    assert (entry.message_id, entry.envelope, entry.detail) == (None, None, None)
    assert tree_is_whole([entry], rs.audit)


async def test_a_refusal_nothing_can_be_recorded_for_is_requeued_not_dropped(
    network: NetworkLayout, rs: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope, _ = signed_update(network)

    def disk_full(conn: sqlite3.Connection, fields: EntryFields) -> int:
        raise OSError("no space left on device")

    monkeypatch.setattr(rs.audit, "write", disk_full)
    routed_elsewhere = TOPOLOGY.case_routing_key("kz-al", CASE, "frozen")
    assert await rs.deliver(encode_envelope(envelope), routed_elsewhere) == REQUEUE
    assert rs.audit.head.size == 0 and committed_counts(rs.config) == (0, 0)

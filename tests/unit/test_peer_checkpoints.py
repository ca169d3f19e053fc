"""Checking other nodes' checkpoints as they are gossiped: a new valid one is kept and
audited once; a forged, misattributed or malformed one, and one contradicting what the node
signed before (two roots for one size, a log rewound), are refused with a stable code, audited
with the evidence, and remembered across restarts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from http_helpers import auth_headers

from exchange.audit.checkpoints import Checkpoint, sign_checkpoint
from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.audit.log import AuditLog
from exchange.audit.peers import PeerCheckpoints
from exchange.crypto.signing import NodeSigner
from exchange.crypto.verify import TrustStore
from exchange.directory.view import load_view
from exchange.gateway.app import load_identity
from exchange.model.common import utc_now
from exchange.network import NetworkLayout

# after the certificates made by the fixtures (they are not valid before they were issued)
T0 = utc_now().replace(microsecond=0) + timedelta(hours=1)


def identity(network: NetworkLayout, node: str) -> tuple[NodeSigner, TrustStore]:
    config = network.config(node, environ={})
    return load_identity(config)[0], load_view(config).trust


def root(n: int, salt: str = "") -> bytes:
    return hashlib.sha256(f"{salt}{n}".encode()).digest()


@dataclass
class Peers:
    peers: PeerCheckpoints
    audit: AuditLog
    rs: NodeSigner
    md: NodeSigner

    def cp(
        self, size: int, minutes: int, salt: str = "", signer: NodeSigner | None = None
    ) -> bytes:
        signer = signer or self.rs
        return sign_checkpoint(
            signer, size, root(size, salt), T0 + timedelta(minutes=minutes)
        ).to_json()

    async def entries(self) -> list[AuditEntry]:
        return await self.audit.entries(0, 1000)


@pytest.fixture
async def peers(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Peers]:
    signer, trust = identity(network, "AL-ARO")
    audit = await AuditLog.open(tmp_path / "audit.sqlite3", signer)
    peers = await PeerCheckpoints.beside(audit, trust, "AL-ARO")
    try:
        yield Peers(peers, audit, identity(network, "RS-PPO")[0], identity(network, "MD-ARO")[0])
    finally:
        await audit.close()


async def test_a_new_checkpoint_is_kept_and_audited_once(peers: Peers) -> None:
    first, later = peers.cp(10, 0), peers.cp(25, 1)
    assert (await peers.peers.observe(first, "RS-PPO")).outcome == "new"
    assert (await peers.peers.observe(first, "RS-PPO")).outcome == "known"
    assert (await peers.peers.observe(later, "RS-PPO")).outcome == "new"
    assert (await peers.peers.observe(first, "RS-PPO")).outcome == "known"  # older, agrees
    entries = await peers.entries()
    assert [e.event for e in entries] == [AuditEvent.PEER_CHECKPOINT] * 2
    assert entries[0].detail == {"checkpoint": Checkpoint.from_json(first).as_dict()}
    assert [c.size for c in await peers.peers.seen("RS-PPO")] == [10, 25]


async def _refused(peers: Peers, body: bytes, sender: str, code: str) -> AuditEntry:
    before = len(await peers.entries())
    seen = await peers.peers.observe(body, sender)
    assert (seen.outcome, seen.code) == ("refused", code), seen
    entries = await peers.entries()
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.event, entry.code) == (AuditEvent.REJECTED, code)
    assert entry.detail is not None
    if code == "checkpoint.invalid":
        # The header is unsigned: the entry blames the transport, never the sender.
        assert entry.detail["source"] == "transport"
        assert entry.detail["carried_by_envelope_from"] == sender
        assert "from" not in entry.detail
    else:
        assert entry.detail["from"] == sender
    return entry


async def test_two_roots_for_one_size_are_a_conflict(peers: Peers) -> None:
    honest = peers.cp(40, 0)
    assert (await peers.peers.observe(honest, "RS-PPO")).outcome == "new"
    forked = peers.cp(40, 0, salt="other history")
    entry = await _refused(peers, forked, "RS-PPO", "checkpoint.conflict")
    assert entry.detail is not None
    assert entry.detail["earlier"] == Checkpoint.from_json(honest).as_dict()
    assert entry.detail["checkpoint"] == Checkpoint.from_json(forked).as_dict()
    assert [c.root for c in await peers.peers.seen("RS-PPO")] == [root(40).hex()]


async def test_a_rewound_log_is_a_conflict_either_way_round(peers: Peers) -> None:
    assert (await peers.peers.observe(peers.cp(100, 5), "RS-PPO")).outcome == "new"
    # a smaller tree signed after the bigger one: entries were cut off
    await _refused(peers, peers.cp(60, 6), "RS-PPO", "checkpoint.conflict")
    # a bigger tree dated before a smaller one seen earlier
    assert (await peers.peers.observe(peers.cp(20, 1), "RS-PPO")).outcome == "new"
    await _refused(peers, peers.cp(200, 0), "RS-PPO", "checkpoint.conflict")


async def test_forged_misattributed_and_malformed_checkpoints_are_invalid(peers: Peers) -> None:
    good = Checkpoint.from_json(peers.cp(7, 0))
    bad_signature = replace(good, root=root(8).hex()).to_json()
    await _refused(peers, bad_signature, "RS-PPO", "checkpoint.invalid")
    # MD-ARO's own valid checkpoint, arriving on an envelope RS-PPO sent
    await _refused(peers, peers.cp(7, 0, signer=peers.md), "RS-PPO", "checkpoint.invalid")
    # RS-PPO's key used to sign a checkpoint that claims to be MD-ARO's
    claims_md = replace(good, node="MD-ARO")
    await _refused(peers, claims_md.to_json(), "MD-ARO", "checkpoint.invalid")
    for junk in (b"not json", b"[]", b'{"node": "RS-PPO"}', b"x" * 5000):
        await _refused(peers, junk, "RS-PPO", "checkpoint.invalid")
    await _refused(peers, 12345, "RS-PPO", "checkpoint.invalid")  # type: ignore[arg-type]
    assert await peers.peers.seen() == []


async def test_a_header_the_broker_varied_is_a_transport_warning_not_the_senders_fault(
    peers: Peers,
) -> None:
    """`x-xb-checkpoint` is outside the signature: a broker that alters it on RS-PPO's
    genuine envelopes must not make AL-ARO's log and logs accuse RS-PPO."""
    genuine = Checkpoint.from_json(peers.cp(7, 0))
    variants = [
        replace(genuine, root=root(8).hex()).to_json(),  # signature no longer verifies
        replace(genuine, size=8).to_json(),
        b"{not json",
        peers.cp(7, 0, signer=peers.md),  # another node's valid checkpoint
    ]
    with structlog.testing.capture_logs() as logs:
        for variant in variants:
            entry = await _refused(peers, variant, "RS-PPO", "checkpoint.invalid")
            assert entry.detail is not None
            assert "unsigned AMQP header x-xb-checkpoint" in entry.detail["note"]
            assert "broker could have altered" in entry.detail["note"]
    refused = [r for r in logs if r.get("code") == "checkpoint.invalid"]
    assert len(refused) == len(variants)
    for record in refused:
        assert record["log_level"] == "warning"
        assert record["event"] == "transport.checkpoint_header_invalid"
        assert "peer" not in record and record["envelope_from"] == "RS-PPO"
    # the genuine checkpoint still counts when it comes unaltered
    assert (await peers.peers.observe(genuine.to_json(), "RS-PPO")).outcome == "new"


async def test_a_conflict_is_signed_evidence_against_the_node_and_an_error(peers: Peers) -> None:
    assert (await peers.peers.observe(peers.cp(40, 0), "RS-PPO")).outcome == "new"
    with structlog.testing.capture_logs() as logs:
        await _refused(peers, peers.cp(40, 0, salt="fork"), "RS-PPO", "checkpoint.conflict")
    (record,) = [r for r in logs if r.get("code") == "checkpoint.conflict"]
    assert (record["log_level"], record["peer"]) == ("error", "RS-PPO")


async def test_the_same_bad_header_again_is_audited_once(peers: Peers) -> None:
    await _refused(peers, b"garbage", "RS-PPO", "checkpoint.invalid")
    for _ in range(5):
        again = await peers.peers.observe(b"garbage", "RS-PPO")
        assert (again.outcome, again.code) == ("refused", "checkpoint.invalid")
    assert len(await peers.entries()) == 1


async def test_what_was_seen_is_remembered_across_restarts(
    network: NetworkLayout, tmp_path: Path, peers: Peers
) -> None:
    assert (await peers.peers.observe(peers.cp(50, 0), "RS-PPO")).outcome == "new"
    _, trust = identity(network, "AL-ARO")
    reopened = await PeerCheckpoints.beside(peers.audit, trust, "AL-ARO")
    peers.peers = reopened
    await _refused(peers, peers.cp(50, 0, salt="fork"), "RS-PPO", "checkpoint.conflict")


async def test_auditors_read_what_was_seen_over_http_and_others_may_not(
    network: NetworkLayout, tmp_path: Path
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from exchange.gateway import keys
    from exchange.gateway.app import create_app

    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    rs, md = identity(network, "RS-PPO")[0], identity(network, "MD-ARO")[0]
    app = create_app(config, start_relay=False)
    async with TestClient(TestServer(app)) as client:
        for signer, size in ((rs, 3), (md, 9), (rs, 5)):
            body = sign_checkpoint(signer, size, root(size), T0 + timedelta(seconds=size))
            assert (await app[keys.PEERS].observe(body.to_json(), signer.node_id)).outcome == "new"

        def auth(role: str) -> dict[str, str]:
            return auth_headers(network, "AL-ARO", role)

        answer = await client.get("/v1/audit/peers", headers=auth("auditor"))
        assert answer.status == 200
        items = (await answer.json())["items"]
        assert [(i["node"], i["size"]) for i in items] == [
            ("MD-ARO", 9),
            ("RS-PPO", 3),
            ("RS-PPO", 5),
        ]
        assert all(Checkpoint.from_dict(i) for i in items)
        answer = await client.get("/v1/audit/peers?node=RS-PPO", headers=auth("auditor"))
        assert [i["size"] for i in (await answer.json())["items"]] == [3, 5]
        answer = await client.get("/v1/audit/peers?node=x'--", headers=auth("auditor"))
        assert answer.status == 400
        assert (await answer.json())["code"] == "request.bad_parameter"
        answer = await client.get("/v1/audit/peers", headers=auth("contact-point"))
        assert answer.status == 403

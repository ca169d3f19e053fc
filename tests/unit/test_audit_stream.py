"""Replaying the network's audit stream: what a node slips in is flagged, not believed.

The stream is the in-memory broker's, whose clock the tests set: each record's
`published_at` is when "the broker" wrote it. The live-broker versions of these attacks are
in tests/integration/test_audit_stream_wall.py.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from seasoned_pki import SeasonedPki, seasoned_pki

from exchange.audit.broker_clock import BrokerClock
from exchange.audit.checkpoints import sign_checkpoint
from exchange.audit.merkle import leaf_hash
from exchange.audit.revocations import Revocations
from exchange.audit.stream import StreamAuditor, StreamReplay, StreamRow
from exchange.crypto.pki import load_certificate
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore
from exchange.errors import ConfigError
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.transport.bus import Delivery, Outgoing, PublishError
from exchange.transport.memory import MemoryBus
from exchange.transport.topology import Topology

AL, RS, MD = "AL-ARO", "RS-PPO", "MD-ARO"
SignerFactory = Callable[..., NodeSigner]
HeaderFactory = Callable[..., Header]


@pytest.fixture(scope="module")
def seasoned() -> SeasonedPki:
    """Certificates a month old: a node can sign envelopes dated days back."""
    return seasoned_pki([AL, RS, MD])


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus(Topology())
    await bus.start()
    for node in (AL, RS, MD):
        await bus.declare_node(node)
    yield bus
    await bus.close()


def signed(
    signer: SignerFactory, make_header: HeaderFactory, sender: str = AL, **fields: Any
) -> dict[str, Any]:
    header = make_header(sender=sender, **fields)
    return signer(sender).sign_envelope(header, {"note": "test"})


async def publish(
    bus: MemoryBus, envelope: dict[str, Any], key: str | None = None, exchange: str = "messages"
) -> None:
    header = envelope["header"]
    key = key or bus.topology.routing_key(header["recipients"][0], header["type"], header["sender"])
    await bus.publish(Outgoing(exchange, key, encode_envelope(envelope), str(uuid.uuid4())))


def written_at(bus: MemoryBus, *times: datetime) -> None:
    """Set when the broker wrote each record of the stream, in order."""
    entries = bus.broker.streams[bus.topology.audit_stream_queue].entries
    assert len(entries) == len(times)
    for entry, when in zip(entries, times, strict=True):
        entry.published_at = when.timestamp()


async def replay(
    bus: MemoryBus, trust: TrustStore, **options: Any
) -> tuple[list[StreamRow], StreamReplay]:
    stream = StreamReplay("", trust, bus=bus, idle_timeout=0.01, **options)
    return [row async for row in stream], stream


def verdicts(rows: list[StreamRow]) -> list[tuple[str, str]]:
    return [(row.id, row.reason) for row in rows]


async def test_an_honest_exchange_replays_ok_and_copies_are_folded(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    envelope = signed(signer, make_header, recipients=[RS, MD])
    header = envelope["header"]
    for recipient in (RS, MD, RS):  # one copy per recipient, and one published again
        await publish(bus, envelope, bus.topology.routing_key(recipient, "asset-inquiry", AL))
    rows, stream = await replay(bus, trust_store)
    assert verdicts(rows) == [(header["id"], "")]
    assert rows[0].ok and rows[0].route == f"messages RS-PPO.asset-inquiry.{AL}"
    assert stream.duplicates == 2


async def test_a_backdated_envelope_a_node_slips_in_is_flagged(
    bus: MemoryBus, seasoned: SeasonedPki, make_header: HeaderFactory
) -> None:
    """The attack of issue 13: AL-ARO signs an envelope "to" RS-PPO dated days ago and
    publishes it now, on a routing key the broker allows it. Its signature is genuine (its
    certificate was valid then); only the broker's clock gives it away."""
    now, al, trust_store = utc_now(), seasoned.signers[AL], seasoned.trust()
    honest = al.sign_envelope(make_header(created_at=now - timedelta(minutes=4)), {})
    backdated = al.sign_envelope(make_header(created_at=now - timedelta(days=3)), {})
    ahead = al.sign_envelope(make_header(created_at=now + timedelta(hours=1)), {})
    for envelope in (honest, backdated, ahead):
        await publish(bus, envelope)
    written_at(bus, now, now, now)
    rows, _ = await replay(bus, trust_store)
    assert verdicts(rows) == [
        (honest["header"]["id"], ""),
        (backdated["header"]["id"], "clock.skew"),
        (ahead["header"]["id"], "clock.skew"),
    ]
    assert "backdated" in rows[1].detail and "dated ahead" in rows[2].detail
    # the allowed skew is the auditor's to choose
    rows, _ = await replay(bus, trust_store, max_skew=timedelta(days=4))
    assert [row.ok for row in rows] == [True, True, True]


async def test_a_route_that_does_not_match_the_signed_header_is_flagged(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    to_rs = signed(signer, make_header)
    await publish(bus, to_rs, f"{MD}.asset-inquiry.{AL}")  # MD-ARO is not a recipient
    await publish(bus, to_rs, f"{RS}.freeze-notice.{AL}")  # not its type
    update = signed(
        signer, make_header, type="case-update", schema="case-update/1", recipients=[RS]
    )
    await publish(bus, update, f"{RS}.case-update.{AL}")  # case updates travel on `cases`
    rows, _ = await replay(bus, trust_store)
    assert [row.reason for row in rows] == ["route.mismatch"] * 3
    assert "a case update on the messages exchange" in rows[2].detail


async def test_a_case_update_must_travel_under_its_signed_network_case_and_event(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    header = make_header(type="case-update", schema="case-update/1", recipients=[RS, MD])
    payload = {"case": header.case, "network": "see-pcn", "event": "frozen", "summary": "."}
    update = signer(AL).sign_envelope(header, payload)
    await bus.declare_subscription(RS, ["see-pcn"])
    right = bus.topology.case_routing_key("see-pcn", header.case, "frozen")
    await publish(bus, update, right, exchange="cases")
    other = signer(AL).sign_envelope(
        make_header(type="case-update", schema="case-update/1"), payload
    )
    await publish(bus, other, right.replace("frozen", "closed"), exchange="cases")
    rows, _ = await replay(bus, trust_store)
    assert [row.reason for row in rows] == ["", "route.mismatch"]


async def test_the_same_id_with_other_content_is_a_conflict(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    first = signed(signer, make_header)
    second = signed(signer, make_header, id=first["header"]["id"], case="AL-2026-0099")
    await publish(bus, first)
    await publish(bus, second)
    rows, _ = await replay(bus, trust_store)
    assert verdicts(rows) == [
        (first["header"]["id"], ""),
        (first["header"]["id"], "message.conflict"),
    ]


async def test_a_record_published_straight_into_the_audit_exchange_is_flagged(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    """The rendered definitions (and the in-memory bus) refuse it; a stream written before
    them, or by a broker whose permissions were loosened, may still hold one."""
    envelope = signed(signer, make_header)
    with pytest.raises(PublishError, match="ACCESS_REFUSED"):
        await publish(bus, envelope, exchange="audit")

    async def no_clock(when: datetime) -> int | None:
        raise AssertionError("a record refused on its route needs no clock")

    auditor = StreamAuditor(trust_store, BrokerClock(no_clock), bus.topology)
    slipped_in = Delivery(
        body=encode_envelope(envelope),
        exchange="audit",
        routing_key=f"{RS}.asset-inquiry.{AL}",
        message_id="m",
        headers={"x-stream-offset": 0},
        redelivered=False,
        delivery_count=1,
    )
    row = await auditor.check(slipped_in)
    assert row is not None and row.reason == "route.direct"


async def test_what_an_unverified_envelope_says_is_shown_escaped_and_cut(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    envelope = signed(signer, make_header)
    envelope["header"]["case"] = "\x1b]0;owned\x07\x1b[2J" + "C" * 5000  # breaks the signature
    await publish(bus, envelope, f"{RS}.asset-inquiry.{AL}")
    [row], _ = await replay(bus, trust_store)
    assert not row.ok
    cells = row.cells()
    assert all(cell.isprintable() and len(cell) <= 240 for cell in cells)
    assert "\\x1b]0;owned\\x07" in cells[4]


async def test_checkpoints_travel_under_their_own_nodes_key_and_never_fork(
    bus: MemoryBus, trust_store: TrustStore, signer: SignerFactory
) -> None:
    al = signer(AL)
    one = sign_checkpoint(al, 8, leaf_hash(b"a"), utc_now())
    fork = sign_checkpoint(al, 8, leaf_hash(b"b"), utc_now())
    for checkpoint, node in ((one, AL), (one, AL), (one, RS), (fork, AL)):
        key = bus.topology.checkpoint_routing_key(node)
        await bus.publish(Outgoing("messages", key, checkpoint.to_json(), str(uuid.uuid4())))
    rows, stream = await replay(bus, trust_store)
    assert [(row.kind, row.reason) for row in rows] == [
        ("checkpoint", ""),
        ("checkpoint", "route.mismatch"),  # RS-PPO's key: not where AL-ARO's go
        ("checkpoint", "checkpoint.conflict"),  # another root for the same size
    ]
    assert stream.duplicates == 1


async def test_with_the_crl_what_the_broker_wrote_after_a_revocation_is_flagged(
    bus: MemoryBus, seasoned: SeasonedPki, make_header: HeaderFactory, tmp_path: Path
) -> None:
    revoked_at = utc_now().replace(microsecond=0) - timedelta(days=1)
    crl = seasoned.write_crl(tmp_path / "crl.pem", {AL: revoked_at})
    trust, al = seasoned.trust(), seasoned.signers[AL]
    before = al.sign_envelope(make_header(created_at=revoked_at - timedelta(minutes=10)), {})
    after = al.sign_envelope(make_header(created_at=revoked_at + timedelta(minutes=10)), {})
    # dated before the revocation, written after: the broker's clock decides, not created_at
    sneaky = al.sign_envelope(make_header(created_at=revoked_at - timedelta(minutes=10)), {})
    for envelope in (before, after, sneaky):
        await publish(bus, envelope)
    written_at(
        bus,
        revoked_at - timedelta(minutes=10),
        revoked_at + timedelta(minutes=10),
        revoked_at + timedelta(minutes=10),
    )
    revocations = Revocations.from_file(crl, trust.ca)
    rows, _ = await replay(bus, trust, revocations=revocations)
    assert [row.reason for row in rows] == ["", "cert.revoked", "clock.skew"]
    rows, _ = await replay(bus, trust)  # without the CRL, nothing tells the revocation
    assert [row.reason for row in rows] == ["", "", "clock.skew"]


def test_a_crl_the_network_ca_did_not_sign_is_refused(pki_dir: Path, foreign_pki_dir: Path) -> None:
    ca = load_certificate(pki_dir / "ca.pem")
    assert len(Revocations.from_file(pki_dir / "crl.pem", ca)) == 0
    with pytest.raises(ConfigError, match="not the network's"):
        Revocations.from_file(foreign_pki_dir / "crl.pem", ca)


async def test_the_brokers_clock_answers_like_asking_each_time_but_asks_little() -> None:
    rng = random.Random(13)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    written = sorted(start + timedelta(seconds=rng.uniform(0, 3600)) for _ in range(400))

    async def first_at(when: datetime) -> int | None:
        since = when.replace(microsecond=0)
        return next((i for i, t in enumerate(written) if t >= since), None)

    clock = BrokerClock(first_at)
    questions = 0
    for offset, when in enumerate(written):
        for delta in (-301, -299, 299, 301, 3):
            asked = when + timedelta(seconds=delta)
            first = await first_at(asked)
            expected = first is None or offset < first
            assert await clock.written_before(offset, asked) is expected
            questions += 1
    assert clock.probes < questions / 2

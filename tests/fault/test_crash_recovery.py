"""Crashes and broker restarts with real processes: nothing accepted is lost or doubled.

Each node runs as `exchange node run` in its own process on a private RabbitMQ node. A
sender killed with SIGKILL after answering 202 but before publishing delivers the message
once after its restart; a broker restart in the middle of a stream of messages, and a
receiver killed with SIGKILL while it consumes one, leave every accepted message
`delivered`, in the recipient's inbox exactly once, and stored exactly once in its audit
log, which still verifies.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from fault_harness import NODE_START_SECONDS, FaultNetwork, Sent
from private_broker import PrivateBroker

pytestmark = pytest.mark.slow

SCALE = max(1, int(os.environ.get("XBFAULT_SCALE", "1")))
"""The longer form (README.md): N times the messages, N broker restarts, N receiver kills."""
SETTLE_SECONDS = 40.0 * SCALE


def _accepted(sent: Sequence[Sent]) -> dict[str, str]:
    """id -> sender of every message answered 202."""
    return {s.id: s.sender for s in sent if s.status == 202 and s.id is not None}


def _refusals(sent: Sequence[Sent]) -> list[str]:
    return [f"{s.sender}: {s.status} {s.error}" for s in sent if s.status != 202]


def _not_delivered(views: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        mid: (v.get("status"), v.get("reason"), [d.get("state") for d in v.get("deliveries", [])])
        for mid, v in views.items()
        if v.get("status") != "delivered"
    }


def _max_attempts(views: dict[str, dict[str, Any]]) -> int:
    return max((d["attempts"] for v in views.values() for d in v.get("deliveries", [])), default=0)


def _exactly_once(counts: Counter[str], expected: set[str]) -> dict[str, Any]:
    """What differs from 'each expected id once, nothing else' (empty when all is well)."""
    problems: dict[str, Any] = {}
    if doubled := {mid: n for mid, n in counts.items() if n > 1}:
        problems["more than once"] = doubled
    if missing := sorted(expected - counts.keys()):
        problems["missing"] = missing
    if extra := sorted(counts.keys() - expected):
        problems["unexpected"] = extra
    return problems


async def _assert_in_inbox_once(net: FaultNetwork, recipient: str, expected: set[str]) -> None:
    ids, _ = await net.inbox_ids(recipient)
    problems = _exactly_once(Counter(ids), expected)
    assert not problems, (
        f"{recipient}'s inbox: "
        + "; ".join(f"{len(v)} {k}" for k, v in problems.items())
        + f": {problems}"
    )


async def _assert_audited(
    net: FaultNetwork, recipient: str, expected: set[str], nodes: Iterable[str]
) -> None:
    """After a graceful stop: each log verifies, and the recipient stored each message once."""
    await net.stop_all()
    nodes = tuple(nodes)
    verifying = asyncio.gather(*(net.audit_verify(node) for node in nodes))
    stored, verified = await asyncio.gather(net.audit_events(recipient, "stored"), verifying)
    for node, (ok, out) in zip(nodes, verified, strict=True):
        assert ok, f"{node}'s audit log does not verify:\n{out[-3000:]}"
    problems = _exactly_once(stored, expected)
    assert not problems, (
        f"{recipient}'s audit log, 'stored' entries: "
        + "; ".join(f"{len(v)} {k}" for k, v in problems.items())
        + f": {problems}"
    )


async def test_a_sender_killed_after_202_before_publishing_delivers_once_after_restart(
    broker: PrivateBroker, network: FaultNetwork
) -> None:
    await network.start("AL-ARO", "RS-PPO")
    # With the broker's application stopped nothing can be published: the 202 rests on
    # the durable outbox alone.
    await asyncio.to_thread(broker.stop_app)
    try:
        sent = await network.send_inquiry("AL-ARO", ["RS-PPO"])
        assert sent.status == 202, sent.error
        assert sent.id is not None
        view = await network.status("AL-ARO", sent.id)
        assert view["status"] == "accepted", view  # not published, not confirmed
        assert view["deliveries"][0]["confirmed_at"] is None
        await network.kill("AL-ARO")
    finally:
        await asyncio.to_thread(broker.start_app)

    restarted = time.monotonic()
    await network.start("AL-ARO")  # the same data directory: the outbox row is still due
    views = await network.wait_settled({sent.id: "AL-ARO"}, SETTLE_SECONDS)
    print(f"\n  delivered {time.monotonic() - restarted:.1f}s after the sender's restart")
    assert views[sent.id]["status"] == "delivered", (views, network.diagnostics())
    delivery = views[sent.id]["deliveries"][0]
    assert delivery["receipt"]["outcome"] == "accepted"
    assert delivery["receipt"]["envelope"]["payload"]["digest"] == views[sent.id]["digest"]
    await _assert_in_inbox_once(network, "RS-PPO", {sent.id})
    item = await network.client("RS-PPO").inbox_item(sent.id)
    assert item.digest == views[sent.id]["digest"]
    await _assert_audited(network, "RS-PPO", {sent.id}, ("AL-ARO", "RS-PPO"))
    # the broker confirmed it once: after the restart, never before the kill
    assert await network.audit_events("AL-ARO", "confirmed") == Counter({sent.id: 1})


async def test_a_broker_restart_during_a_stream_loses_and_doubles_nothing(
    broker: PrivateBroker, network: FaultNetwork
) -> None:
    senders, recipient = ("AL-ARO", "MD-ARO"), "RS-PPO"
    await network.start(*senders, recipient)
    sent: list[Sent] = []
    total = 200 * SCALE
    # 200 messages over 10 s from two senders; the whole broker node stops after 2 s and
    # boots again (its queues recovered from disk) while the senders keep posting. The
    # longer form restarts it again 2 s after each restart, as long as the stream lasts.
    stream = asyncio.create_task(network.stream(senders, recipient, total, 20.0, sent))
    outages: list[tuple[float, float]] = []
    while len(outages) < SCALE and not stream.done():
        await asyncio.sleep(2.0)
        down_at = time.monotonic()
        await asyncio.to_thread(broker.restart)
        outages.append((down_at, time.monotonic()))
    await stream
    up_at = outages[-1][1]
    restart_seconds = max(up - down for down, up in outages)

    posted_during = sum(1 for s in sent for down, up in outages if down <= s.at <= up)
    assert posted_during > 0, "no message was posted while the broker restarted"
    assert any(s.at < outages[0][0] for s in sent)
    assert not _refusals(sent), _refusals(sent)  # the outbox accepts while the broker is away
    accepted = _accepted(sent)
    assert len(accepted) == total

    views = await network.wait_settled(accepted, SETTLE_SECONDS)
    print(
        f"\n  {len(outages)} broker restart(s), the longest {restart_seconds:.1f}s, "
        f"{posted_during} posted meanwhile; "
        f"all settled {time.monotonic() - up_at:.1f}s after it was back; "
        f"most publish attempts for one message: {_max_attempts(views)}"
    )
    not_delivered = _not_delivered(views)
    assert not not_delivered, (
        f"{len(not_delivered)} of {len(accepted)} not delivered "
        f"(broker restart took {restart_seconds:.1f}s): "
        f"{list(not_delivered.items())[:5]}\n{network.diagnostics()}"
    )
    await _assert_in_inbox_once(network, recipient, set(accepted))
    for node in (*senders, recipient):  # each is connected again and says so
        await network.wait_ready(node, within=10.0)
    await _assert_audited(network, recipient, set(accepted), (*senders, recipient))


async def test_a_receiver_killed_while_consuming_gets_every_message_once(
    network: FaultNetwork,
) -> None:
    senders, recipient = ("AL-ARO", "MD-ARO"), "RS-PPO"
    backlog, more = 200 * SCALE, 50 * SCALE
    await network.start(*senders, recipient)
    # The receiver is offline while a backlog builds up in its queue ...
    await network.nodes[recipient].stop()
    sent = await network.stream(senders, recipient, backlog, 80.0)
    assert not _refusals(sent), _refusals(sent)
    queued = await network.wait_sent(_accepted(sent), SETTLE_SECONDS)
    assert queued == backlog, f"only {queued} of {backlog} reached the broker"

    # ... then it comes back and drains it at full speed: kill it in the middle.
    stored_before_kills: list[int] = []
    for _ in range(SCALE):
        await network.nodes[recipient].start()
        stored_before_kills.append(
            await network.wait_received(recipient, at_least=20, within=NODE_START_SECONDS)
        )
        await network.kill(recipient)
    killed_at = time.monotonic()
    seen = sum(stored_before_kills)
    assert seen < backlog, f"not killed while consuming ({seen} of {backlog} stored)"

    # The senders keep sending while it is down and while it restarts.
    stream = asyncio.create_task(network.stream(senders, recipient, more, 25.0, sent))
    await network.start(recipient)
    await stream
    assert not _refusals(sent), _refusals(sent)
    accepted = _accepted(sent)
    assert len(accepted) == backlog + more

    views = await network.wait_settled(accepted, SETTLE_SECONDS)
    print(
        f"\n  killed {len(stored_before_kills)} time(s), each after it stored at least "
        f"{stored_before_kills} of {backlog} queued messages; "
        f"all {len(accepted)} settled {time.monotonic() - killed_at:.1f}s after the kill"
    )
    not_delivered = _not_delivered(views)
    assert not not_delivered, (
        f"{len(not_delivered)} of {len(accepted)} not delivered (killed after {seen} stored): "
        f"{list(not_delivered.items())[:5]}\n{network.diagnostics()}"
    )
    await _assert_in_inbox_once(network, recipient, set(accepted))
    await _assert_audited(network, recipient, set(accepted), (*senders, recipient))

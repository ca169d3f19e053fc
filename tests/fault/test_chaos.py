"""The chaos run: messages among three nodes while RabbitMQ restarts three times and each
gateway is killed with SIGKILL once; at the end, everything accepted is delivered exactly
once, nothing else appears, and every audit log verifies.

Every node sends asset inquiries to the two others in turn, at a steady rate, the POSTs
not waiting for one another. A POST to a node that is down (or dies while answering) is
tried again after a moment, as a contact point would, until it is answered 202: so the
run accepts exactly the number of messages asked for. A POST cut off by a SIGKILL may
have been committed without its answer arriving ("in doubt"); such a message is accepted
by the gateway all the same and must be delivered once too. The gateway's own audit log
says which ones it accepted.

The faults, spread over the run and one after the other:

1. the whole broker node restarts (stop, boot again on its data);
2. AL-ARO is killed with SIGKILL, and started again a second later;
3. the broker restarts again;
4. RS-PPO is killed and started again;
5. the broker stops; MD-ARO is killed and started again while there is no broker (it
   must serve anyway: its outbox accepts); then the broker boots.

In CI it is the shortened form (`XBCHAOS_MESSAGES`, default 1,800 at 30 msg/s: a minute); the long
form is `XBCHAOS_MESSAGES=10000 XBCHAOS_RATE=40 .venv/bin/pytest tests/fault/test_chaos.py -s`
(see tests/fault/README.md).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from fault_harness import NODE_START_SECONDS, FaultNetwork
from private_broker import PrivateBroker

pytestmark = pytest.mark.slow

MESSAGES = max(60, int(os.environ.get("XBCHAOS_MESSAGES", "1800")))
RATE = float(os.environ.get("XBCHAOS_RATE", "30"))
SETTLE_SECONDS = 120.0 + MESSAGES / 20
RETRY_SECONDS = 0.25
NODES = ("AL-ARO", "RS-PPO", "MD-ARO")


def _route(index: int) -> tuple[str, str]:
    """The index-th message's sender and recipient: every node sends to both others."""
    sender = index % 3
    recipient = (sender + 1 + (index // 3) % 2) % 3
    return NODES[sender], NODES[recipient]


@dataclass
class Ledger:
    """What the contact points saw: each message accepted (id -> sender, recipient), and
    the POSTs that failed: never reached a node, or cut off while it answered."""

    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)
    refused_by_down_node: int = 0
    in_doubt: int = 0
    other_failures: list[str] = field(default_factory=list)
    during_faults: int = 0
    faults: list[tuple[str, float, int]] = field(default_factory=list)  # name, s, accepted
    fault_now: bool = False


async def _post_until_accepted(net: FaultNetwork, index: int, ledger: Ledger) -> None:
    sender, recipient = _route(index)
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        sent = await net.send_inquiry(sender, [recipient])
        if sent.status == 202 and sent.id is not None:
            ledger.accepted[sent.id] = (sender, recipient)
            ledger.during_faults += ledger.fault_now
            return
        if sent.status == 0 and (sent.error or "").startswith("ClientConnectorError"):
            ledger.refused_by_down_node += 1  # the connection was refused: never arrived
        elif sent.status == 0:
            ledger.in_doubt += 1  # the node may have committed it before it died
        else:
            ledger.other_failures.append(f"{sender}: HTTP {sent.status} {sent.error}")
        await asyncio.sleep(RETRY_SECONDS)
    ledger.other_failures.append(f"message {index} from {sender} never accepted")


async def _stream(net: FaultNetwork, ledger: Ledger) -> float:
    loop = asyncio.get_running_loop()
    begin = loop.time()
    tasks = []
    for index in range(MESSAGES):
        await asyncio.sleep(max(0.0, begin + index / RATE - loop.time()))
        tasks.append(asyncio.create_task(_post_until_accepted(net, index, ledger)))
    await asyncio.gather(*tasks)
    return loop.time() - begin


async def _fault(ledger: Ledger, name: str, action: Callable[[], Awaitable[None]]) -> None:
    began, before = time.monotonic(), len(ledger.accepted)
    ledger.fault_now = True
    try:
        await action()
    finally:
        ledger.fault_now = False
    took, during = time.monotonic() - began, len(ledger.accepted) - before
    ledger.faults.append((name, took, during))
    print(f"  fault: {name} took {took:.1f}s, {during} messages accepted meanwhile")


async def _faults(net: FaultNetwork, broker: PrivateBroker, ledger: Ledger) -> None:
    planned = MESSAGES / RATE
    gap = planned / 6

    async def restart_broker() -> None:
        await asyncio.to_thread(broker.restart)

    def kill_and_restart(node: str) -> Callable[[], Awaitable[None]]:
        async def action() -> None:
            await net.kill(node)
            await asyncio.sleep(1.0)
            await net.start(node)

        return action

    async def kill_while_broker_down() -> None:
        await asyncio.to_thread(broker.stop)
        try:
            await net.kill("MD-ARO")
            await asyncio.sleep(0.5)
            await net.nodes["MD-ARO"].start()  # no broker: it must come up regardless
            answer = await _wait_serving(net, "MD-ARO")
            assert answer.startswith("503"), answer  # serving, not ready: no broker
            await asyncio.sleep(1.0)  # contact points keep posting to it meanwhile
        finally:
            await asyncio.to_thread(broker.start)
        await net.wait_ready("MD-ARO", within=NODE_START_SECONDS)

    schedule: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("broker restart 1", restart_broker),
        ("SIGKILL AL-ARO", kill_and_restart("AL-ARO")),
        ("broker restart 2", restart_broker),
        ("SIGKILL RS-PPO", kill_and_restart("RS-PPO")),
        ("broker restart 3 (SIGKILL MD-ARO while it is down)", kill_while_broker_down),
    ]
    begin = time.monotonic()
    for k, (name, action) in enumerate(schedule):
        await asyncio.sleep(max(0.0, begin + gap * (k + 0.5) - time.monotonic()))
        await _fault(ledger, name, action)


async def _wait_serving(net: FaultNetwork, node: str) -> str:
    """Wait until the node answers HTTP at all (ready or not); return what /readyz said."""
    deadline = time.monotonic() + NODE_START_SECONDS
    while time.monotonic() < deadline:
        _, answer = await net.readiness(node)
        if answer[:3].isdigit():
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"{node} does not answer:\n{net.nodes[node].tail()}")


async def _inboxes(net: FaultNetwork) -> dict[str, list[str]]:
    return {node: (await net.inbox_ids(node))[0] for node in NODES}


async def test_chaos_run_loses_and_doubles_nothing(
    broker: PrivateBroker, network: FaultNetwork
) -> None:
    net = network
    await net.start(*NODES)
    ledger = Ledger()
    started = time.monotonic()
    stream = asyncio.create_task(_stream(net, ledger))
    await _faults(net, broker, ledger)
    stream_seconds = await stream
    assert not ledger.other_failures, ledger.other_failures[:10]
    assert len(ledger.accepted) == MESSAGES
    assert len(ledger.faults) == 5
    idle = [name for name, _, during in ledger.faults if during == 0]
    assert not idle, f"faults without load (lower XBCHAOS_RATE or raise the messages): {idle}"
    for node in NODES:
        await net.wait_ready(node, within=NODE_START_SECONDS)

    # Wait until the recipients hold what they were sent, then until every sender has
    # the receipts that make its messages `delivered`.
    expected = Counter(recipient for _, recipient in ledger.accepted.values())
    deadline = time.monotonic() + SETTLE_SECONDS
    inboxes = await _inboxes(net)
    while any(len(inboxes[n]) < expected[n] for n in NODES) and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        inboxes = await _inboxes(net)
    views = await net.wait_settled(
        {mid: sender for mid, (sender, _) in ledger.accepted.items()},
        max(10.0, deadline - time.monotonic()),
        interval=1.0,
    )
    settled = time.monotonic() - started
    inboxes = await _inboxes(net)

    # Exactly once: each accepted message in its recipient's inbox once, nothing twice.
    everywhere = Counter(mid for ids in inboxes.values() for mid in ids)
    doubled = {mid: n for mid, n in everywhere.items() if n > 1}
    missing = sorted(set(ledger.accepted) - everywhere.keys())
    wrong_place = [
        mid
        for node, ids in inboxes.items()
        for mid in ids
        if mid in ledger.accepted and ledger.accepted[mid][1] != node
    ]
    orphans = sorted(everywhere.keys() - ledger.accepted.keys())
    not_delivered = {
        mid: (view.get("status"), view.get("reason"))
        for mid, view in views.items()
        if view.get("status") != "delivered"
    }
    print(
        f"\n  {MESSAGES} messages accepted in {stream_seconds:.0f}s "
        f"({ledger.during_faults} while a fault was under way), all settled after "
        f"{settled:.0f}s; POSTs refused by a node that was down: "
        f"{ledger.refused_by_down_node}, cut off (in doubt): {ledger.in_doubt}, "
        f"accepted by a gateway whose answer was lost: {len(orphans)}; "
        f"lost: {len(missing)}, duplicated: {len(doubled)}, not delivered: {len(not_delivered)}"
    )
    assert not doubled, f"{len(doubled)} delivered more than once: {list(doubled.items())[:5]}"
    assert not missing, f"{len(missing)} lost: {missing[:5]}\n{net.diagnostics()}"
    assert not wrong_place, wrong_place[:5]
    assert not not_delivered, f"{len(not_delivered)}: {list(not_delivered.items())[:5]}"
    assert len(orphans) <= ledger.in_doubt, (orphans, ledger.in_doubt)

    # The audit logs: each verifies; each sender recorded `accepted` for exactly what it
    # accepted (answered or not), each recipient `stored` each of its messages once.
    await net.stop_all()
    verified = await asyncio.gather(*(net.audit_verify(node) for node in NODES))
    for node, (ok, out) in zip(NODES, verified, strict=True):
        assert ok, f"{node}'s audit log does not verify:\n{out[-3000:]}"
    accepted_by = {node: await net.audit_events(node, "accepted") for node in NODES}
    for node in NODES:
        accepted_here = accepted_by[node]
        answered = {mid for mid, (s, _) in ledger.accepted.items() if s == node}
        unanswered = set(accepted_here) - answered
        assert answered <= set(accepted_here), (node, sorted(answered - set(accepted_here))[:5])
        assert unanswered <= set(orphans), (node, "accepted but never delivered", unanswered)
        assert max(accepted_here.values(), default=1) == 1
        assert Counter(inboxes[node]) == await net.audit_events(node, "stored"), node
    # an answer lost in a crash: still a message its gateway accepted and recorded
    unrecorded = [mid for mid in orphans if not any(mid in accepted_by[n] for n in NODES)]
    assert not unrecorded, unrecorded

"""Start a demo network in this process and play the scenario through the HTTP API.

Every step is checked as a user of the exchange would check it: the sender sees its
message `delivered` with a signed receipt from each recipient, the receipt verifies
against the network's CA and names the digest of what was sent, and the recipient's inbox
holds the message with that digest. The private-sector member's wall must hold (a request
it may not receive is refused by the sender's own gateway; it sees no case updates), a
tampered copy injected on the broker must be refused, and every node's audit log must
verify at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
from aiohttp import web

from exchange.audit.stream import StreamReplay
from exchange.cli.subscribe import format_update
from exchange.client import GatewayClient, ProblemError
from exchange.config import DEFAULT_AMQP_URL
from exchange.crypto.signing import encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.demo.evidence import CASE, STEP_TIMEOUT, tampering, verify_audit_logs
from exchange.demo.scenario import (
    CASE_EVENTS,
    DEMO_NODES,
    NETWORK,
    NODES,
    PROSECUTOR_NETWORK,
    ROLES,
    SCENARIO,
    VASP,
    load_payload,
)
from exchange.demo.vasp import INTRODUCTION, the_wall
from exchange.errors import ExchangeError
from exchange.gateway import keys
from exchange.gateway.api_models import MessageView, RecipientView
from exchange.gateway.app import create_app
from exchange.model.case_update import CaseUpdate
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.bus import Bus
from exchange.transport.memory import MemoryBus
from exchange.transport.provision import delete_topology
from exchange.transport.topology import Topology

Printer = Callable[[str], None]


@dataclass
class DemoResult:
    """What the run verified; `ok` only when every check passed."""

    bus: str
    directory: Path
    checks: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(passed for _, passed in self.checks)


async def amqp_answers(url: str, wait_seconds: float = 3.0) -> bool:
    """True when a RabbitMQ broker accepts a connection at `url`."""
    import aio_pika

    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), wait_seconds)
    except Exception:
        return False
    await connection.close()
    return True


def free_base_port(count: int) -> int:
    """A base port with `count` consecutive free ports after it."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count >= 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise ExchangeError("no free ports for the demo nodes", code="usage")


class DemoNetwork:
    """The nodes' gateways running in this process, and clients of their HTTP APIs."""

    def __init__(self, layout: NetworkLayout, bus: Bus | None) -> None:
        self.layout = layout
        self.shared_bus = bus
        self.runners: dict[str, web.AppRunner] = {}
        self.apps: dict[str, web.Application] = {}
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._clients: dict[tuple[str, str], GatewayClient] = {}

    async def start(self) -> None:
        if self.shared_bus is not None:
            await self.shared_bus.start()
        for node, info in self.layout.nodes.items():
            config = self.layout.config(node, environ={})
            app = create_app(config, bus=self.shared_bus)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, config.listen_host, config.listen_port).start()
            self.runners[node] = runner
            self.apps[node] = app
            try:
                await self.client(node).wait_ready(within=STEP_TIMEOUT)
            except ExchangeError:
                raise ExchangeError(
                    f"the node at {info.url} did not become ready", code="service.unavailable"
                ) from None

    async def stop(self) -> None:
        await self._session.close()
        for runner in reversed(list(self.runners.values())):
            await runner.cleanup()
        if self.shared_bus is not None:
            await self.shared_bus.close()

    def client(self, node: str, role: str = "contact-point") -> GatewayClient:
        """A client of `node`'s gateway with its token for `role` (one connection pool)."""
        key = (node, role)
        if key not in self._clients:
            info = self.layout.nodes[node]
            self._clients[key] = GatewayClient(info.url, info.token(role), session=self._session)
        return self._clients[key]

    async def call(
        self, node: str, method: str, path: str, body: Any = None, role: str = "contact-point"
    ) -> tuple[int, Any]:
        """Any route, answered or refused: the status and the document (for checks of
        refusals and of routes as sent)."""
        try:
            return await self.client(node, role).request(method, path, json=body)
        except ProblemError as refused:
            return refused.status, refused.body

    async def wait_settled(self, node: str, message_id: str | UUID) -> MessageView:
        """Poll the sender until the message is delivered, rejected or failed."""
        return await self.client(node).wait_settled(message_id, within=STEP_TIMEOUT)


async def run_demo(
    *,
    bus: str = "auto",
    keep: Path | None = None,
    serve: bool = False,
    out: Printer = print,
) -> DemoResult:
    """Create the network, start it, play the scenario; return what was verified."""
    amqp_url = os.environ.get("EXCHANGE_AMQP_URL", DEFAULT_AMQP_URL)
    if bus == "auto":
        bus = "amqp" if await amqp_answers(amqp_url) else "memory"
        why = "it answers" if bus == "amqp" else "it does not answer"
        out(f"Bus: {'RabbitMQ' if bus == 'amqp' else 'in-memory'} ({amqp_url} {why})")
    elif bus == "amqp" and not await amqp_answers(amqp_url):
        raise ExchangeError(f"RabbitMQ does not answer at {amqp_url}", code="service.unavailable")
    else:
        out(f"Bus: {'RabbitMQ at ' + amqp_url if bus == 'amqp' else 'in-memory'}")
    directory = keep if keep is not None else Path(tempfile.mkdtemp(prefix="exchange-demo-"))
    prefix = f"demo{uuid4().hex[:8]}"
    layout = init_network_dir(
        directory,
        DEMO_NODES,
        network=NETWORK,
        amqp_url=amqp_url,
        base_port=free_base_port(len(DEMO_NODES)),
        bus=bus,
        prefix=prefix,
        networks={PROSECUTOR_NETWORK: NODES},
        roles=ROLES,
    )
    out(f"Network {NETWORK!r}: {', '.join(DEMO_NODES)} — files in {directory}")
    out(f"Prosecutor network {PROSECUTOR_NETWORK!r} follows the case: {', '.join(NODES)}")
    out(INTRODUCTION)
    shared = MemoryBus(Topology(prefix)) if bus == "memory" else None
    network = DemoNetwork(layout, shared)
    result = DemoResult(bus, directory)
    try:
        await network.start()
        for node, info in layout.nodes.items():
            out(f"  {node} listening at {info.url}")
        await play_case(network, result, out)
        if serve:
            await _serve(network, out)
    finally:
        await network.stop()
        if bus == "amqp" and not serve:
            await delete_topology(amqp_url, Topology(prefix), DEMO_NODES)
        if keep is None and not serve:
            shutil.rmtree(directory, ignore_errors=True)
    return result


async def play_case(network: DemoNetwork, result: DemoResult, out: Printer) -> None:
    """The whole demo on a started network of `DEMO_NODES`: the case, the wall around the
    private-sector member, and the evidence checks."""
    await open_case(network, result, out)
    await play(network, result, out)
    await follow_case(network, result, out)
    await the_wall(network, result, out)
    forged = await tampering(network, result, out)
    verify_audit_logs(network, result, out)
    await replay_audit_stream(network, result, out, forged)


async def open_case(network: DemoNetwork, result: DemoResult, out: Printer) -> None:
    """Tirana tells the prosecutor network that the case is open; from then on the network
    follows it, and freeze decisions and findings become case updates automatically."""
    out("")
    out(f"Case {CASE}: AL-ARO tells the prosecutor network {PROSECUTOR_NETWORK!r} it is open")
    opened = CaseUpdate.model_validate(
        {
            "case": CASE,
            "network": PROSECUTOR_NETWORK,
            "event": "opened",
            "summary": "Albania opened a joint asset-recovery case with Serbia and Moldova.",
        }
    )
    recipients = [n for n in NODES if n != "AL-ARO"]
    try:
        accepted = await network.client("AL-ARO").submit_case_update(opened, recipients=recipients)
    except ProblemError as refused:
        out(f"  case update -: HTTP {refused.status}")
        result.checks.append(("case opened on the prosecutor network", False))
        return
    out(f"  case update {accepted.id}: HTTP 202")
    result.checks.append(("case opened on the prosecutor network", True))


async def follow_case(network: DemoNetwork, result: DemoResult, out: Printer) -> None:
    """MD-ARO's subscriber (a prosecutor following the network) sees the case unfold."""
    out("")
    out(f"MD-ARO's subscriber follows {PROSECUTOR_NETWORK!r} (Server-Sent Events / polling):")
    subscriber = network.client("MD-ARO", "subscriber")
    items = await subscriber.wait_case_updates(len(CASE_EVENTS), network=PROSECUTOR_NETWORK)
    for item in items:
        out(f"    {format_update(item)}")
    out(
        f"  {VASP} is not a member of {PROSECUTOR_NETWORK!r} and may publish nothing there: "
        f"AL-ARO, the member it answered, published the updates of {VASP}'s answer and freeze"
    )
    events = tuple(item.update["event"] for item in items)
    result.checks.append(("MD-ARO's subscriber received the case updates", events == CASE_EVENTS))


async def play(network: DemoNetwork, result: DemoResult, out: Printer) -> None:
    trust = _trust_store(network.layout)
    sent: list[str] = []
    for number, step in enumerate(SCENARIO, start=1):
        out("")
        out(f"Step {number}. {step.title}")
        body: dict[str, Any] = {
            "type": step.type,
            "recipients": list(step.recipients),
            "case": CASE,
            "priority": step.priority,
            "handling": {"tlp": step.tlp, "code": step.handling_code},
            "payload": load_payload(step.payload_file),
        }
        if step.replies_to is not None:
            body["in_reply_to"] = sent[step.replies_to]
        try:
            accepted = await network.client(step.sender).submit(body)
        except ProblemError as refused:
            out(f"  refused: HTTP {refused.status} {refused.body}")
            result.checks.append((f"step {number} accepted", False))
            sent.append("")
            continue
        message_id = str(accepted.id)
        sent.append(message_id)
        out(f"  {step.sender} -> {', '.join(step.recipients)}: {step.type} {message_id}")
        out("  202 accepted; waiting for receipts ...")
        view = await network.wait_settled(step.sender, message_id)
        delivered = view.status == "delivered"
        out(f"  status: {view.status}" + (f" ({view.reason})" if view.reason else ""))
        result.checks.append((f"step {number} delivered", delivered))
        for delivery in view.deliveries:
            result.checks.append(
                (
                    f"step {number} receipt from {delivery.recipient}",
                    _check_receipt(delivery, view, trust, out),
                )
            )
            result.checks.append(
                (
                    f"step {number} in {delivery.recipient}'s inbox",
                    await _check_inbox(network, delivery.recipient, message_id, view.digest, out),
                )
            )


def _check_receipt(
    delivery: RecipientView, view: MessageView, trust: TrustStore, out: Printer
) -> bool:
    receipt = delivery.receipt
    if receipt is None:
        out(f"  {delivery.recipient}: no receipt ({delivery.state})")
        return False
    # The nodes write envelopes in the canonical form, so the parsed receipt is what was signed.
    envelope = receipt.envelope.model_dump(mode="json", by_alias=True)
    try:
        verified = verify_envelope(
            encode_envelope(envelope), VerificationPolicy(trust=trust, max_skew=timedelta(hours=1))
        )
    except ExchangeError as err:
        out(f"  {delivery.recipient}: receipt does NOT verify: {err}")
        return False
    payload = verified.raw["payload"]
    same_digest = payload["digest"] == view.digest
    by_recipient = verified.envelope.header.sender == delivery.recipient
    ok = bool(
        same_digest
        and by_recipient
        and payload["outcome"] == "accepted"
        and payload["message_id"] == str(view.id)
    )
    out(
        f"  receipt from {delivery.recipient}: {payload['outcome']}, "
        f"signed by {verified.envelope.header.sender} (kid {envelope['signature']['kid'][:12]}…), "
        f"digest {'matches' if same_digest else 'DIFFERS'} {payload['digest'][:16]}…, "
        f"received {payload['received_at']}"
    )
    return ok


async def _check_inbox(
    network: DemoNetwork, node: str, message_id: str, digest: str, out: Printer
) -> bool:
    try:
        item = await network.client(node).inbox_item(message_id)
    except ProblemError as refused:
        out(f"  {node}'s inbox: HTTP {refused.status}, not the message sent")
        return False
    if item.digest != digest:
        out(f"  {node}'s inbox: HTTP 200, not the message sent")
        return False
    return True


async def replay_audit_stream(
    network: DemoNetwork, result: DemoResult, out: Printer, forged: str | None
) -> None:
    """Every node publishes a checkpoint; the network's audit stream is replayed and
    every envelope and checkpoint in it verified again, as an auditor would."""
    out("")
    out("Audit stream (the broker's copy of everything that crossed it)")
    for app in network.apps.values():
        await app[keys.AUDIT].checkpoint()
    bus = next(iter(network.apps.values()))[keys.BUS]
    assert bus is not None
    trust = _trust_store(network.layout)
    rows = [row async for row in StreamReplay("", trust, bus=bus, idle_timeout=1.0)]
    envelopes = [r for r in rows if r.kind == "envelope"]
    checkpoints = [r for r in rows if r.kind == "checkpoint"]
    bad = [r for r in rows if not r.ok]
    by_type: dict[str, int] = {}
    for row in envelopes:
        by_type[row.type] = by_type.get(row.type, 0) + 1
    out(
        f"  {len(envelopes)} envelopes ("
        + ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
        + f"), {len(checkpoints)} checkpoints"
    )
    for row in bad:
        out(f"  refused on replay: {row.type} {row.id} from {row.sender}: {row.reason}")
    expected_bad = {forged} if forged else set()
    # one copy per recipient; case updates cross the cases exchange and are counted apart
    requests = len({r.id for r in envelopes if r.type not in ("receipt", "case-update")})
    ok = (
        {r.id for r in bad} == expected_bad
        and all(r.reason == "signature.invalid" for r in bad)
        and requests == len(SCENARIO) + len(expected_bad)
        and by_type.get("receipt", 0) >= sum(len(s.recipients) for s in SCENARIO)
        and len({r.sender for r in checkpoints}) == len(network.apps)
    )
    out(
        "  every genuine envelope and every checkpoint verifies"
        if ok
        else "  the stream does NOT match the scenario"
    )
    result.checks.append(("audit stream replays and verifies", ok))


def _trust_store(layout: NetworkLayout) -> TrustStore:
    pki = layout.directory / "pki"
    certs = [p for p in sorted(pki.glob("*.pem")) if p.name not in ("ca.pem", "crl.pem")]
    return TrustStore.from_files(pki / "ca.pem", pki / "crl.pem", certs)


async def _serve(network: DemoNetwork, out: Printer) -> None:
    out("")
    out("Serving (Ctrl-C to stop):")
    for node, info in network.layout.nodes.items():
        out(f"  {node} {info.url}  console: {info.url}/console/")
        for role, token in info.tokens.items():
            out(f"    {role:<14} {token}")
    out(f"  (also in {network.layout.network_file})")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


def main(bus: str, keep: Path | None, serve: bool) -> int:
    result = asyncio.run(run_demo(bus=bus, keep=keep, serve=serve))
    print("")
    failed = [name for name, passed in result.checks if not passed]
    if failed:
        print(f"FAILED: {len(failed)} of {len(result.checks)} checks: " + "; ".join(failed))
        return 1
    print(f"OK: all {len(result.checks)} checks passed (bus: {result.bus})")
    sys.stdout.flush()
    return 0

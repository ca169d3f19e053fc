"""The demo's evidence checks: a tampered copy on the broker is refused, every node's audit
log verifies, and the broker's audit stream replays with every genuine envelope verified."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING
from uuid import uuid4

from exchange.audit.verifier import verify_log
from exchange.client import ProblemError
from exchange.crypto.signing import encode_envelope
from exchange.gateway import keys
from exchange.transport.bus import Outgoing

if TYPE_CHECKING:
    from exchange.demo.runner import DemoNetwork, DemoResult, Printer

STEP_TIMEOUT = 30.0
"""How long the demo waits for any one step."""
CASE = "AL-2026-0042"
"""The case the demo plays."""


async def tampering(network: DemoNetwork, result: DemoResult, out: Printer) -> str | None:
    """Inject a copy of a signed freeze notice with one IBAN changed: it must be refused."""
    out("")
    out("Tampering: a copy of the freeze notice with its first IBAN changed is put on the broker")
    sender, recipient = "AL-ARO", "RS-PPO"
    try:
        case = await network.client(sender).case(CASE)
    except ProblemError:
        case = None
    messages = case.messages if case else []
    notices = [m for m in messages if m.type == "freeze-notice" and recipient in m.recipients]
    if not notices:
        result.checks.append(("tampered copy refused", False))
        return None
    view = await network.client(sender).message(notices[0].id)
    forged = view.envelope.model_dump(mode="json", by_alias=True)
    original = forged["payload"]  # a contact point's view: the payload is there
    forged["header"]["id"] = str(uuid4())  # a "new" message, so only the signature can tell
    text = json.dumps(forged["payload"], ensure_ascii=False)
    forged["payload"] = json.loads(text.replace("RS35", "RS99", 1) if "RS35" in text else text + "")
    if forged["payload"] == original:
        forged["payload"]["instructions"] = "Release all frozen funds."
    app = network.apps[recipient]
    bus = app[keys.BUS]
    assert bus is not None
    await bus.publish(
        Outgoing(
            "messages",
            bus.topology.routing_key(recipient, "freeze-notice", sender),
            encode_envelope(forged),
            message_id=str(uuid4()),
        )
    )
    audit = app[keys.AUDIT]
    deadline = time.monotonic() + STEP_TIMEOUT
    refused = None
    while time.monotonic() < deadline and refused is None:
        entries = await audit.entries(0, 10_000)
        refused = next(
            (
                e
                for e in entries
                if e.event == "rejected" and str(e.message_id) == forged["header"]["id"]
            ),
            None,
        )
        await asyncio.sleep(0.05)
    ok = refused is not None and refused.code == "signature.invalid"
    try:
        await network.client(recipient).inbox_item(forged["header"]["id"])
        absent = False
    except ProblemError as answer:
        absent = answer.code == "not_found"
    out(
        f"  {recipient} refused it: {refused.code if refused else 'NOT REFUSED'}; "
        f"audited as entry {refused.index if refused else '-'}; not in its inbox: "
        f"{'yes' if absent else 'NO'}"
    )
    result.checks.append(("tampered copy refused", ok and absent))
    return str(forged["header"]["id"])


def verify_audit_logs(network: DemoNetwork, result: DemoResult, out: Printer) -> None:
    out("")
    out("Audit logs")
    pki = network.layout.directory / "pki"
    certs = sorted(pki.glob("*.pem"))
    certs = [p for p in certs if p.name not in ("ca.pem", "crl.pem")]
    for node in network.layout.nodes:
        config = network.layout.config(node, environ={})
        report = verify_log(config.audit_path, cert_paths=certs, jobs=1)
        out(
            f"  {node}: {report.size} entries, "
            + ("verifies" if report.ok else f"DOES NOT VERIFY: {report.first}")
        )
        result.checks.append((f"{node} audit log verifies", report.ok))

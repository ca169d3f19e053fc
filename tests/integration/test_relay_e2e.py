"""The demo's nodes end to end, on the real RabbitMQ and on the in-memory bus alike.

Every step of the demo's case, the private-sector member's among them, is delivered with a
signed receipt that verifies, and the member's wall holds;
a revoked sender is refused with `cert.revoked`, answered with a negative receipt and
dead-lettered; a tampered copy is refused; a redelivered message lands once; overdue
requests are tracked on both sides.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from typing import Any

import pytest
from http_helpers import submission
from polling import dead_letters

from exchange.audit import merkle
from exchange.audit.checkpoints import Checkpoint, check_checkpoint
from exchange.crypto.pki import load_crl, revoke_node
from exchange.crypto.signing import encode_envelope
from exchange.demo.evidence import CASE
from exchange.demo.runner import DemoNetwork, DemoResult, _trust_store, play_case
from exchange.demo.scenario import SCENARIO, load_payload
from exchange.gateway import keys
from exchange.model.common import utc_now
from exchange.transport.bus import Outgoing

pytestmark = pytest.mark.integration


async def _deliver(network: DemoNetwork, sender: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a message (202) and wait until every recipient's receipt says delivered."""
    status, sent = await network.call(sender, "POST", "/v1/messages", body)
    assert status == 202, sent
    assert (await network.wait_settled(sender, sent["id"])).status == "delivered"
    return sent


def _send_body(
    type_: str, recipients: list[str], payload_file: str, **extra: Any
) -> dict[str, Any]:
    extra.setdefault("priority", "normal")
    return submission(type_, recipients, payload=load_payload(payload_file), **extra)


async def test_every_step_of_the_case_is_delivered_with_verified_receipts(
    demo_network: DemoNetwork,
) -> None:
    result = DemoResult("test", demo_network.layout.directory)
    lines: list[str] = []
    await play_case(demo_network, result, lines.append)
    failed = [name for name, ok in result.checks if not ok]
    assert not failed, "\n".join(lines)
    # case opened, 9 steps (4 of them EE-VASP's), 10 recipients in all: delivered + receipt
    # + inbox checks, the subscriber's case updates, the wall (2), tamper, 4 audits, the
    # audit stream
    assert (len(SCENARIO), sum(len(s.recipients) for s in SCENARIO)) == (9, 10)
    assert len(result.checks) == 1 + 9 + 2 * 10 + 1 + 2 + 1 + 4 + 1
    text = "\n".join(lines)
    assert "AL-ARO -> EE-VASP: extradition-support: HTTP 403 role.forbidden" in text
    # EE-VASP's answer and freeze reach the prosecutor network through AL-ARO
    assert "assets-identified  AL-ARO     EE-VASP answered the asset inquiry" in text
    assert "frozen             AL-ARO     EE-VASP executed the freeze" in text


async def test_an_auditor_checks_inclusion_and_consistency_over_http(
    network: DemoNetwork,
) -> None:
    await _deliver(
        network,
        "AL-ARO",
        _send_body("asset-inquiry", ["RS-PPO"], "01-asset-inquiry.json"),
    )
    status, first = await network.call("AL-ARO", "GET", "/v1/audit/checkpoint", role="auditor")
    assert status == 200
    trust = _trust_store(network.layout)
    checkpoint = Checkpoint.from_dict(first)
    check_checkpoint(checkpoint, trust)  # signed by AL-ARO's certificate
    # a contact point may not audit
    status, problem = await network.call("AL-ARO", "GET", "/v1/audit/checkpoint")
    assert (status, problem["code"]) == (403, "auth.forbidden")
    status, page = await network.call(
        "AL-ARO", "GET", f"/v1/audit/entries?from=0&limit={checkpoint.size}", role="auditor"
    )
    assert status == 200 and len(page["items"]) == checkpoint.size
    leaves = [bytes.fromhex(i["leaf_hash"]) for i in page["items"]]
    root = bytes.fromhex(checkpoint.root)
    assert merkle.root(leaves) == root
    # the auditor gets the hashed bytes of each entry that keeps no payload; the others
    # come redacted (the payload replaced by its digest), never with the payload
    for item, leaf in zip(page["items"], leaves, strict=True):
        if item["redacted"]:
            assert "body" not in item and "payload" not in item["entry"]["envelope"]
        else:
            assert merkle.leaf_hash(base64.b64decode(item["body"])) == leaf
    assert any(item["redacted"] for item in page["items"])
    for index in (0, checkpoint.size - 1):
        status, proof = await network.call(
            "AL-ARO",
            "GET",
            f"/v1/audit/proof/inclusion?index={index}&size={checkpoint.size}",
            role="auditor",
        )
        assert status == 200
        path = [bytes.fromhex(h) for h in proof["path"]]
        assert merkle.verify_inclusion(index, checkpoint.size, leaves[index], path, root)
    # more happens; the new checkpoint must extend the old one
    status, again = await network.call(
        "AL-ARO",
        "POST",
        "/v1/messages",
        _send_body("asset-inquiry", ["RS-PPO"], "01-asset-inquiry.json"),
    )
    assert (await network.wait_settled("AL-ARO", again["id"])).status == "delivered"
    status, second = await network.call("AL-ARO", "GET", "/v1/audit/checkpoint", role="auditor")
    later = Checkpoint.from_dict(second)
    assert later.size > checkpoint.size
    status, proof = await network.call(
        "AL-ARO",
        "GET",
        f"/v1/audit/proof/consistency?from={checkpoint.size}&to={later.size}",
        role="auditor",
    )
    assert status == 200
    assert merkle.verify_consistency(
        checkpoint.size,
        later.size,
        [bytes.fromhex(h) for h in proof["path"]],
        root,
        bytes.fromhex(later.root),
    )
    status, problem = await network.call(
        "AL-ARO", "GET", "/v1/audit/proof/inclusion?index=999999", role="auditor"
    )
    assert (status, problem["code"]) == (404, "not_found")  # no entry 999999 yet


async def test_case_view_and_in_reply_to_correlation(network: DemoNetwork) -> None:
    sent = await _deliver(
        network,
        "AL-ARO",
        _send_body("asset-inquiry", ["RS-PPO"], "01-asset-inquiry.json", priority="urgent"),
    )
    answer = await _deliver(
        network,
        "RS-PPO",
        _send_body(
            "asset-inquiry-response",
            ["AL-ARO"],
            "02-asset-inquiry-response.json",
            in_reply_to=sent["id"],
        ),
    )
    status, case = await network.call("AL-ARO", "GET", f"/v1/cases/{CASE}")
    assert status == 200
    by_id = {m["id"]: m for m in case["messages"]}
    assert by_id[sent["id"]]["direction"] == "out"
    assert by_id[answer["id"]]["direction"] == "in"
    assert by_id[answer["id"]]["in_reply_to"] == sent["id"]


async def test_overdue_requests_are_tracked_on_both_sides(network: DemoNetwork) -> None:
    sent = await _deliver(
        network,
        "AL-ARO",
        _send_body("asset-inquiry", ["RS-PPO"], "01-asset-inquiry.json", priority="urgent"),
    )
    later = utc_now() + timedelta(days=8)
    al_store = network.apps["AL-ARO"][keys.STORE]
    rs_store = network.apps["RS-PPO"][keys.STORE]
    assert [str(i.message_id) for i in (await al_store.overdue(later)).owed_to_us] == [sent["id"]]
    assert [str(i.message_id) for i in (await rs_store.overdue(later)).we_owe] == [sent["id"]]
    assert not (await al_store.overdue(utc_now())).owed_to_us  # not yet due
    await _deliver(
        network,
        "RS-PPO",
        _send_body(
            "asset-inquiry-response",
            ["AL-ARO"],
            "02-asset-inquiry-response.json",
            in_reply_to=sent["id"],
        ),
    )
    assert not (await al_store.overdue(later)).owed_to_us
    assert not (await rs_store.overdue(later)).we_owe


async def test_a_revoked_sender_is_refused_answered_and_dead_lettered(
    network: DemoNetwork,
) -> None:
    pki = network.layout.directory / "pki"
    revoke_node(pki, "MD-ARO")
    crl = load_crl(pki / "crl.pem")
    for app in network.apps.values():
        app[keys.TRUST].set_crl(crl)
    status, sent = await network.call(
        "MD-ARO",
        "POST",
        "/v1/messages",
        _send_body("extradition-support", ["RS-PPO"], "05-extradition-support.json"),
    )
    assert status == 202
    view = await network.wait_settled("MD-ARO", sent["id"])
    assert view.status == "rejected"
    assert view.reason == "cert.revoked"
    receipt = view.deliveries[0].receipt
    assert receipt is not None
    assert receipt.outcome == "rejected" and receipt.reason == "cert.revoked"
    assert receipt.envelope.header.sender == "RS-PPO"
    # nothing in the recipient's inbox; the refusal is audited; the copy is dead-lettered
    status, _ = await network.call("RS-PPO", "GET", f"/v1/inbox/{sent['id']}")
    assert status == 404
    entries = await network.apps["RS-PPO"][keys.AUDIT].entries(0, 1000)
    refusals = [e for e in entries if e.event == "rejected" and str(e.message_id) == sent["id"]]
    assert [e.code for e in refusals] == ["cert.revoked"]
    dead = await dead_letters(network.apps["RS-PPO"][keys.BUS], "RS-PPO")
    assert [d.headers.get("x-xb-reason") for d in dead] == ["cert.revoked"]


async def test_a_redelivered_message_lands_once(network: DemoNetwork) -> None:
    status, sent = await network.call(
        "AL-ARO",
        "POST",
        "/v1/messages",
        _send_body("asset-inquiry", ["RS-PPO"], "01-asset-inquiry.json"),
    )
    assert status == 202
    view = await network.wait_settled("AL-ARO", sent["id"])
    assert view.status == "delivered"
    bus = network.apps["AL-ARO"][keys.BUS]
    assert bus is not None
    # the publisher crashed before it recorded the confirm: the same bytes go out again
    await bus.publish(
        Outgoing(
            "messages",
            bus.topology.routing_key("RS-PPO", "asset-inquiry", "AL-ARO"),
            encode_envelope(view.envelope.model_dump(mode="json", by_alias=True)),
            message_id=f"{sent['id']}-again",
        )
    )
    rs = network.apps["RS-PPO"]
    labels = {"direction": "in", "type": "asset-inquiry", "outcome": "duplicate"}
    for _ in range(200):
        if rs[keys.METRICS].sample("xb_messages_total", **labels) == 1:
            break
        await asyncio.sleep(0.05)
    assert rs[keys.METRICS].sample("xb_messages_total", **labels) == 1
    entries = await rs[keys.AUDIT].entries(0, 1000)
    mine = [e.event for e in entries if str(e.message_id) == sent["id"]]
    # stored once, with its one receipt (owed in the same transaction, already delivered)
    assert sorted(mine) == ["receipt-sent", "stored", "verified"]
    assert await rs[keys.STORE].outbox_depth() == 0
    status, page = await network.call("RS-PPO", "GET", "/v1/inbox?after=0&limit=100")
    assert [i["id"] for i in page["items"]].count(sent["id"]) == 1

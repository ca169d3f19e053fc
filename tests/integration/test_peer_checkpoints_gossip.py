"""Checkpoint gossip end to end, on the real RabbitMQ and on the in-memory bus alike: every
envelope (request, receipt, case update) carries its sender's latest checkpoint; the
recipient checks and keeps it; an auditor exports what one node saw of another and proves
that other node's log against it with `exchange audit verify --checkpoints`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from http_helpers import submission

from exchange.audit.entries import AuditEvent
from exchange.cli import main as cli
from exchange.demo.evidence import CASE
from exchange.demo.runner import DemoNetwork
from exchange.demo.scenario import PROSECUTOR_NETWORK, load_payload
from exchange.gateway import keys

pytestmark = pytest.mark.integration


async def _checkpoint(net: DemoNetwork, node: str) -> dict[str, Any]:
    status, cp = await net.call(node, "GET", "/v1/audit/checkpoint", role="auditor")
    assert status == 200, cp
    return dict(cp)


async def _seen(net: DemoNetwork, at: str, of: str) -> list[dict[str, Any]]:
    status, page = await net.call(at, "GET", f"/v1/audit/peers?node={of}", role="auditor")
    assert status == 200, page
    return list(page["items"])


async def test_every_envelope_carries_its_senders_checkpoint_and_recipients_keep_it(
    network: DemoNetwork, tmp_path: Path
) -> None:
    net = network
    first = await net.call(
        "MD-ARO",
        "POST",
        "/v1/messages",
        submission(
            recipients=["AL-ARO", "RS-PPO"],  # so that every log has entries
            priority="normal",
            payload=load_payload("01-asset-inquiry.json"),
        ),
    )
    assert first[0] == 202
    assert (await net.wait_settled("MD-ARO", first[1]["id"])).status == "delivered"
    # Each node signs a checkpoint now; what it sends from here on carries it.
    al, rs, md = [await _checkpoint(net, n) for n in ("AL-ARO", "RS-PPO", "MD-ARO")]

    status, sent = await net.call(
        "AL-ARO",
        "POST",
        "/v1/messages",
        submission(priority="normal", payload=load_payload("01-asset-inquiry.json")),
    )
    assert status == 202, sent
    assert (await net.wait_settled("AL-ARO", sent["id"])).status == "delivered"
    update = submission(
        "case-update",
        ["AL-ARO", "RS-PPO"],
        priority="normal",
        payload={"case": CASE, "network": PROSECUTOR_NETWORK, "event": "note", "summary": "x"},
    )
    status, answer = await net.call("MD-ARO", "POST", "/v1/messages", update)
    assert status == 202, answer

    # RS-PPO saw AL-ARO's checkpoint on the request; AL-ARO saw RS-PPO's on the receipt;
    # both saw MD-ARO's on the case update.
    assert al in await _seen(net, "RS-PPO", "AL-ARO")
    assert rs in await _seen(net, "AL-ARO", "RS-PPO")
    for node in ("AL-ARO", "RS-PPO"):
        for _ in range(200):
            if md in await _seen(net, node, "MD-ARO"):
                break
            await asyncio.sleep(0.05)
        assert md in await _seen(net, node, "MD-ARO")
    entries = await net.apps["RS-PPO"][keys.AUDIT].entries(0, 10_000)
    kept = [e.detail for e in entries if e.event == AuditEvent.PEER_CHECKPOINT]
    assert {"checkpoint": al} in kept

    # The auditor's round trip: what RS-PPO saw of AL-ARO proves AL-ARO's log.
    rs_config = net.layout.config("RS-PPO", environ={})
    al_config = net.layout.config("AL-ARO", environ={})
    exported = tmp_path / "al-seen-by-rs.jsonl"
    assert (
        cli(
            [
                "audit",
                "peer-checkpoints",
                "--db",
                str(rs_config.database_path),
                "--node",
                "AL-ARO",
                "--out",
                str(exported),
            ]
        )
        == 0
    )
    assert exported.read_text().count("\n") >= 1
    verify = ["audit", "verify", "--db", str(al_config.audit_path), "--checkpoints", str(exported)]
    assert cli([*verify, "--jobs", "1"]) == 0

"""`exchange send` and `exchange inbox` against a running gateway, as a contact point uses them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from networks import NetworkFactory

from exchange.cli import main
from exchange.crypto.signing import NodeSigner, signing_input
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.network import NetworkLayout
from tests.seeding import seed_inbox

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


@pytest.fixture
async def served(
    make_network: NetworkFactory,
) -> AsyncIterator[tuple[NetworkLayout, TestServer, web.Application]]:
    network = make_network(["AL-ARO", "RS-PPO"])
    app = create_app(network.config("AL-ARO", environ={}), start_relay=False)
    server = TestServer(app)
    await server.start_server()
    try:
        yield network, server, app
    finally:
        await server.close()


def payload_file(tmp_path: Path) -> Path:
    source = sorted((EXAMPLES / "asset-inquiry" / "valid").glob("*.json"))[0]
    target = tmp_path / "payload.json"
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return target


async def run_cli(*argv: str) -> int:
    # The CLI runs its own event loop: give it a thread, as a separate process would have.
    return await asyncio.to_thread(main, list(argv))


async def test_send_prints_the_id_and_status_and_the_message_is_queued(
    served: tuple[NetworkLayout, TestServer, web.Application],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    network, server, app = served
    token = network.nodes["AL-ARO"].token("contact-point")
    code = await run_cli(
        "send", "--url", str(server.make_url("/")), "--token", token, "--type", "asset-inquiry",
        "--to", "RS-PPO", "--case", "AL-2026-0042", "--priority", "urgent",
        str(payload_file(tmp_path)),
    )  # fmt: skip
    assert code == 0
    message_id, status = capsys.readouterr().out.splitlines()[-1].split()
    assert status == "accepted"
    message = await app[keys.STORE].get_message(UUID(message_id))
    assert message is not None and message.recipients == ("RS-PPO",)


async def test_a_refused_send_exits_1_and_prints_the_problem(
    served: tuple[NetworkLayout, TestServer, web.Application],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    network, server, app = served
    monkeypatch.setenv("EXCHANGE_TOKEN", network.nodes["AL-ARO"].token("contact-point"))
    code = await run_cli(
        "send", "--url", str(server.make_url("/")), "--type", "asset-inquiry",
        "--to", "KZ-ARC", "--case", "C-1", str(payload_file(tmp_path)),
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "recipient.unknown" in err and "/recipients/0" in err
    assert await app[keys.STORE].outbox_depth() == 0


async def test_send_refuses_unreadable_input_and_reports_an_unreachable_gateway(
    served: tuple[NetworkLayout, TestServer, web.Application],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    common = ["--token", "t", "--type", "freeze-notice", "--to", "RS-PPO", "--case", "C-1"]
    assert await run_cli("send", "--url", "http://127.0.0.1:9", *common, str(bad)) == 2
    good = payload_file(tmp_path)
    assert await run_cli("send", "--url", "http://127.0.0.1:9", *common, str(good)) == 1
    assert "cannot reach" in capsys.readouterr().err


async def test_inbox_lists_received_messages_and_the_next_cursor(
    served: tuple[NetworkLayout, TestServer, web.Application],
    capsys: pytest.CaptureFixture[str],
) -> None:
    network, server, app = served
    mid = uuid4()
    pki = network.directory / "pki"
    signer = NodeSigner.from_files(pki / "RS-PPO.key", pki / "RS-PPO.pem")
    # as another implementation may sign it: a time with an offset, not in the canonical form
    header = {
        "id": str(mid), "type": "freeze-notice", "schema": "freeze-notice/1",
        "sender": "RS-PPO", "recipients": ["AL-ARO"], "case": "C-9", "in_reply_to": None,
        "created_at": "2026-03-01T01:00:00+01:00", "expires_at": None, "priority": "urgent",
        "handling": {"tlp": "AMBER", "code": "H2"},
    }  # fmt: skip
    signature = signer.sign_bytes(signing_input(header, {}))
    envelope = {
        "header": header,
        "payload": {},
        "signature": {"alg": "Ed25519", "kid": signer.kid, "value": signature},
    }
    cursor = await seed_inbox(
        app,
        mid, "freeze-notice", "C-9", "RS-PPO", None, "0" * 64, json.dumps(envelope).encode(),
        datetime(2026, 3, 1, tzinfo=UTC), None,
    )  # fmt: skip
    url = str(server.make_url("/"))
    token = network.nodes["AL-ARO"].token("contact-point")
    assert await run_cli("inbox", "--url", url, "--token", token) == 0
    out = capsys.readouterr().out
    assert str(mid) in out and "freeze-notice" in out and f"next: {cursor}" in out
    # --json prints the envelope exactly as signed, so that it still verifies
    assert await run_cli("inbox", "--url", url, "--token", token, "--json") == 0
    (item,) = json.loads(capsys.readouterr().out)["items"]
    assert item["envelope"] == envelope
    assert await run_cli("inbox", "--url", url, "--token", "wrong") == 1
    assert "auth.invalid" in capsys.readouterr().err

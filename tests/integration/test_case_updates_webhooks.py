"""Webhooks: a member's gateway POSTs each case update it receives to the URLs its network
configures, signed as the Standard Webhooks specification says; a failing target is retried
with backoff and given up after `max_tries`; every attempt is audited. The target here is a
local aiohttp server that checks each signature with the `standardwebhooks` package, as a
real receiver would.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import standardwebhooks
from aiohttp import web
from aiohttp.test_utils import TestServer
from http_helpers import submission
from networks import DemoNetworks

from exchange.demo.runner import DemoNetwork
from exchange.gateway import keys
from exchange.subscriptions.webhook_signing import new_secret

pytestmark = pytest.mark.integration

MEMBERS = ("AL-ARO", "RS-PPO", "MD-ARO")
NETWORK = "see-pcn"
CASE = "AL-2026-0042"
FLAKY_FAILURES = 2


@dataclass
class Target:
    """The webhook receiver: `/ok` always accepts, `/flaky` fails twice per update first,
    `/down` always fails. Every request's signature is checked."""

    secret: str
    accepted: dict[str, list[str]] = field(default_factory=lambda: {"ok": [], "flaky": []})
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            update = standardwebhooks.Webhook(self.secret).verify(body, dict(request.headers))
        except standardwebhooks.WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        name = request.match_info["name"]
        assert update == orjson.loads(body)
        assert update["id"] == request.headers["webhook-id"]
        self.attempts[name, update["id"]] += 1
        if name == "down" or (
            name == "flaky" and self.attempts[name, update["id"]] <= FLAKY_FAILURES
        ):
            return web.Response(status=503)
        self.accepted[name].append(update["id"])
        return web.Response(status=204)


@pytest.fixture
async def target() -> AsyncIterator[tuple[Target, TestServer]]:
    receiver = Target(new_secret())
    app = web.Application()
    app.router.add_post("/hooks/{name}", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    yield receiver, server
    await server.close()


@pytest.fixture
async def net(
    target: tuple[Target, TestServer], demo_networks: DemoNetworks
) -> AsyncIterator[DemoNetwork]:
    receiver, server = target
    layout = demo_networks.layout(MEMBERS, networks={NETWORK: MEMBERS})
    (layout.directory / "hook.secret").write_text(receiver.secret + "\n")
    (layout.directory / "wrong.secret").write_text(new_secret() + "\n")
    hooks = [("ok", "hook.secret", 3), ("flaky", "hook.secret", 5), ("down", "hook.secret", 3)]
    hooks.append(("ok?as=impostor", "wrong.secret", 2))  # a secret the receiver does not hold
    config = layout.nodes["RS-PPO"].config_path
    with config.open("a", encoding="utf-8") as toml:  # the [[networks]] table is the last one
        for name, secret, tries in hooks:
            toml.write(
                f'\n[[networks.webhooks]]\nurl = "{server.make_url("/hooks/" + name)}"\n'
                f'secret_paths = ["{secret}"]\nmax_tries = {tries}\n'
                "retry_min_seconds = 0.05\nretry_max_seconds = 0.2\ntimeout_seconds = 5\n"
            )
    async with demo_networks.running(layout) as network:
        yield network


async def test_each_update_reaches_the_webhooks_signed_retried_and_given_up_audited(
    net: DemoNetwork, target: tuple[Target, TestServer]
) -> None:
    receiver, _ = target
    sent = []
    for i in range(3):
        body = submission(
            "case-update",
            ["RS-PPO", "MD-ARO"],
            case=CASE,
            priority="normal",
            payload={"case": CASE, "network": NETWORK, "event": "note", "summary": f"#{i}"},
        )
        status, answer = await net.call("AL-ARO", "POST", "/v1/messages", body)
        assert status == 202
        sent.append(answer["id"])
    audit = net.apps["RS-PPO"][keys.AUDIT]
    expected = 3 * (1 + 3 + 3 + 2)  # ok once; flaky 2 failures + 1; down 3; impostor 2
    entries: list[Any] = []
    for _ in range(400):
        entries = [e for e in await audit.entries(0, 10_000) if e.event == "subscription-delivered"]
        if len(entries) >= expected:
            break
        await asyncio.sleep(0.05)
    assert sorted(receiver.accepted["ok"]) == sorted(sent)  # each exactly once
    assert sorted(receiver.accepted["flaky"]) == sorted(sent)
    for update_id in sent:
        assert receiver.attempts["flaky", update_id] == FLAKY_FAILURES + 1
        assert receiver.attempts["down", update_id] == 3  # max_tries, then given up
    assert receiver.bad_signatures == 3 * 2  # the impostor's requests were all refused
    outcomes = Counter(
        (e.detail["url"].rsplit("/", 1)[1], e.detail["outcome"], e.code)
        for e in entries
        if e.detail is not None
    )
    assert outcomes == {
        ("ok", "delivered", None): 3,
        ("ok", "retry", "webhook.retry"): 3,  # the impostor (its URL without the query) ...
        ("ok", "gave-up", "webhook.gave-up"): 3,  # ... refused with 401 twice each
        ("flaky", "retry", "webhook.retry"): 6,
        ("flaky", "delivered", None): 3,
        ("down", "retry", "webhook.retry"): 6,
        ("down", "gave-up", "webhook.gave-up"): 3,
    }
    assert len(entries) == expected
    # the audit names the update and the case, never the URL's query
    assert {e.message_id for e in entries} == set(sent)
    assert all("?" not in str(e.detail) for e in entries)

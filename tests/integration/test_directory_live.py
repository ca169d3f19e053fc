"""The signed network directory on the real broker: a fourth country joins three running
nodes without a restart or a configuration edit, a removed member is refused from that
serial on, and a rolled-back, foreign or malformed directory changes nothing.

Each node reads the directory stream every 0.2 s; every directory is published exactly as
the secretariat does it (`exchange directory publish`, to `<prefix>.directory`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from directories import resign
from http_helpers import submission
from networks import NetworkFactory

from exchange.audit.entries import AuditEvent
from exchange.cli.directory import publish_directory
from exchange.client import GatewayClient, ProblemError
from exchange.crypto.pki import create_ca
from exchange.demo.runner import free_base_port
from exchange.directory.document import DirectoryBody, sign_directory
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.gateway.keys import CASE_UPDATES
from exchange.network import NetworkLayout, add_node
from exchange.transport.provision import delete_topology
from exchange.transport.topology import Topology

pytestmark = pytest.mark.integration

FIRST = ["AL-ARO", "RS-PPO", "MD-ARO"]
JOINER = "KZ-ARC"
POLL = {"EXCHANGE_DIRECTORY_POLL_SECONDS": "0.2"}


@dataclass
class Live:
    layout: NetworkLayout
    amqp_url: str
    apps: dict[str, web.Application] = field(default_factory=dict)
    runners: dict[str, web.AppRunner] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    async def start(self, node: str) -> None:
        config = self.layout.config(node, environ=POLL)
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, config.listen_host, config.listen_port).start()
        self.apps[node], self.runners[node] = app, runner
        await self.client(node).wait_ready(within=20)

    def client(self, node: str, role: str = "contact-point") -> GatewayClient:
        assert self.session is not None
        info = self.layout.nodes[node]
        return GatewayClient(info.url, info.token(role), session=self.session)

    async def publish(self, document: bytes) -> None:
        await publish_directory(document, self.amqp_url, Topology(prefix=self.prefix))

    @property
    def prefix(self) -> str:
        return self.layout.config(FIRST[0], environ={}).topology_prefix

    async def serial(self, node: str) -> int:
        return self.apps[node][keys.DIRECTORY].serial

    async def all_at(self, serial: int, nodes: list[str], within: float = 10.0) -> None:
        for _ in range(int(within / 0.05)):
            if all([await self.serial(n) == serial for n in nodes]):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not all of {nodes} took serial {serial}: "
                             f"{[await self.serial(n) for n in nodes]}")  # fmt: skip

    async def refused(self, node: str, code: str) -> list[dict[str, Any]]:
        entries = await self.apps[node][keys.AUDIT].entries(0, 10_000)
        return [dict(e.detail or {}) for e in entries if (e.event, e.code) == ("rejected", code)]


@pytest.fixture
async def live(make_network: NetworkFactory, amqp_url: str, prefix: str) -> AsyncIterator[Live]:
    layout = make_network(
        FIRST, amqp_url=amqp_url, base_port=free_base_port(5), bus="amqp", prefix=prefix
    )
    net = Live(layout, amqp_url)
    net.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        for node in FIRST:
            await net.start(node)
        yield net
    finally:
        await net.session.close()
        for runner in reversed(list(net.runners.values())):
            await runner.cleanup()
        await delete_topology(amqp_url, Topology(prefix=prefix), [*FIRST, JOINER])


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    for _ in range(int(within / 0.05)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time allowed")


async def exchange_both_ways(net: Live, a: str, b: str) -> None:
    for sender, recipient in ((a, b), (b, a)):
        accepted = await net.client(sender).submit(submission(recipients=[recipient]))
        settled = await net.client(sender).wait_settled(accepted.id, within=15)
        assert settled.status == "delivered", (sender, recipient, settled)


async def test_a_fourth_member_joins_three_running_nodes_by_a_published_directory(
    live: Live,
) -> None:
    port = free_base_port(1)
    with pytest.raises(ProblemError) as unknown:  # not yet a member
        await live.client("AL-ARO").submit(submission(recipients=[JOINER]))
    assert unknown.value.code == "recipient.unknown"

    live.layout = add_node(live.layout, JOINER, port=port)  # its key, certificate, entry
    await live.publish(live.layout.directory_file.read_bytes())
    await live.all_at(2, FIRST)
    await live.start(JOINER)  # it starts from the new directory's file
    assert await live.serial(JOINER) == 2
    await exchange_both_ways(live, "AL-ARO", JOINER)
    await exchange_both_ways(live, JOINER, "MD-ARO")
    for node in FIRST:  # each took the directory once, and audited it
        entries = await live.apps[node][keys.AUDIT].entries(0, 10_000)
        updates = [e.detail for e in entries if e.event is AuditEvent.DIRECTORY_UPDATED]
        assert [u["serial"] for u in updates if u] == [1, 2]
        assert JOINER in updates[-1]["members"]  # type: ignore[index]


async def test_a_member_removed_from_the_directory_is_refused_from_that_serial_on(
    live: Live,
) -> None:
    await exchange_both_ways(live, "AL-ARO", "MD-ARO")

    def without_md(body: dict[str, Any]) -> None:
        body["members"] = [m for m in body["members"] if m["id"] != "MD-ARO"]

    await live.publish(resign(live.layout, without_md))
    await live.all_at(2, ["AL-ARO", "RS-PPO"])
    # MD-ARO cannot run on a directory that removed it: it refuses it and keeps serial 1.
    assert await eventually(lambda: live.refused("MD-ARO", "directory.invalid"))
    assert await live.serial("MD-ARO") == 1

    accepted = await live.client("MD-ARO").submit(submission(recipients=["AL-ARO"]))
    await eventually(lambda: live.refused("AL-ARO", "sender.unknown"))
    inbox = await live.apps["AL-ARO"][keys.STORE].inbox_page(0, 100)
    assert str(accepted.id) not in {str(item.id) for item in inbox}
    with pytest.raises(ProblemError) as refused:
        await live.client("AL-ARO").submit(submission(recipients=["MD-ARO"]))
    assert refused.value.code == "recipient.unknown"
    await exchange_both_ways(live, "AL-ARO", "RS-PPO")  # the others carry on


async def test_rollbacks_foreign_and_malformed_directories_are_refused_and_change_nothing(
    live: Live,
) -> None:
    first = live.layout.directory_file.read_bytes()
    second = resign(live.layout, lambda body: None)
    await live.publish(second)
    await live.all_at(2, FIRST)

    await live.publish(first)  # an older, genuine directory put back
    renamed = lambda body: body["members"][0].update(name="Somebody else")  # noqa: E731
    same_serial = resign(live.layout, renamed, serial=2, write=False)
    await live.publish(same_serial)  # serial 2 again, other content
    foreign_key, foreign_ca = create_ca(live.layout.network)  # same name, another key
    body = DirectoryBody.model_validate(json.loads(second)["directory"])
    forged = sign_directory(body.model_copy(update={"serial": 9}), foreign_key, foreign_ca)
    await live.publish(forged)
    await live.publish(b'{"directory": "nonsense"}')
    await live.publish(second)  # the one in use, again: passed over quietly

    for node in FIRST:
        await eventually(lambda n=node: live.refused(n, "directory.malformed"))  # the last
        rollbacks = await live.refused(node, "directory.rollback")
        assert [r["source"] for r in rollbacks] == ["broker offset 1", "broker offset 2"]
        assert len(await live.refused(node, "directory.untrusted")) == 1
        assert await live.serial(node) == 2
    await exchange_both_ways(live, "AL-ARO", "RS-PPO")


async def test_a_prosecutor_network_added_by_a_directory_carries_updates_at_once(
    live: Live,
) -> None:
    def with_network(body: dict[str, Any]) -> None:
        body["networks"] = [{"name": "jit-new", "members": ["AL-ARO", "RS-PPO"]}]

    await live.publish(resign(live.layout, with_network))
    await live.all_at(2, FIRST)

    async def bound() -> bool:  # RS-PPO's queue now takes the new network's updates
        return "jit-new" in live.apps["RS-PPO"][CASE_UPDATES].subscribed

    await eventually(bound)
    update = {
        "type": "case-update",
        "recipients": ["RS-PPO"],
        "case": "AL-2026-0042",
        "priority": "normal",
        "handling": {"tlp": "AMBER", "code": "H2"},
        "payload": {
            "case": "AL-2026-0042",
            "network": "jit-new",
            "event": "opened",
            "summary": "A joint team set up today.",
        },
    }
    await live.client("AL-ARO").submit(update)
    subscriber = live.client("RS-PPO", "subscriber")
    (item,) = await subscriber.wait_case_updates(1, network="jit-new")
    assert item.update["summary"] == "A joint team set up today."
    with pytest.raises(ProblemError) as outside:  # MD-ARO is not in it
        await live.client("MD-ARO", "subscriber").case_updates(network="jit-new")
    assert outside.value.status == 400

"""A node's gateway served on the loopback interface from a thread of its own, for tests that
talk HTTP to it as an outside client would (schemathesis, raw `http.client` requests).

`LiveGateway` is AL-ARO of a three-node network that shares the prosecutor network `see-pcn`,
with its relay on an in-memory broker where its partners' queues exist (so it is ready, and
what it accepts is published); it starts with three case updates, so that its event stream
has events to send. `check_answer` is what every answer must satisfy.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from http_helpers import bearer
from hypothesis import HealthCheck, settings

from exchange.errors import ERROR_TABLE
from exchange.gateway.app import create_app
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

NODE = "AL-ARO"
PARTNERS = ("RS-PPO", "MD-ARO")
NETWORK = "see-pcn"
CASE = "AL-2026-0042"
STOP_SECONDS = 10.0
JSON = "application/json"


def budget(examples: int) -> settings:
    """Hypothesis settings for `examples` requests to a live gateway (no deadline)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


class LiveGateway:
    """AL-ARO's gateway in a background event loop, reachable at `host:port`, with its relay
    on an in-memory broker where its partners' queues exist (so it is ready, and what it
    accepts is published)."""

    def __init__(self, root: Path) -> None:
        self.network: NetworkLayout = init_network_dir(
            root / "net", [NODE, *PARTNERS], bus="memory", networks={NETWORK: [NODE, *PARTNERS]}
        )
        config = self.network.config(NODE, environ={"EXCHANGE_DATA_DIR": str(root / "data")})
        topology = Topology(prefix=config.topology_prefix)
        broker = MemoryBroker(topology)
        self.bus = MemoryBus(topology, broker=broker, node_id=NODE)
        self.partners = MemoryBus(topology, broker=broker, node_id=PARTNERS[0])
        # Short shutdown: a client that left a stream open must not hold the teardown.
        self.runner = web.AppRunner(create_app(config, bus=self.bus), shutdown_timeout=1.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.host, self.port = "127.0.0.1", 0
        self.openapi: dict[str, Any] = {}

    def start(self) -> None:
        self.thread.start()

        async def serve() -> int:
            await self.bus.start()
            await self.partners.start()
            for node in PARTNERS:
                await self.partners.declare_node(node)
            await self.runner.setup()
            site = web.TCPSite(self.runner, self.host, 0)
            await site.start()
            return int(self.runner.addresses[0][1])

        self.port = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(30)
        status, _, body = self.request("GET", "/openapi.json")
        assert status == 200
        self.openapi = json.loads(body)
        for event in ("opened", "note", "frozen"):  # so that streams have events to check
            update = {
                "type": "case-update",
                "recipients": list(PARTNERS),
                "case": CASE,
                "priority": "normal",
                "handling": {"tlp": "AMBER", "code": "H2"},
                "payload": {"case": CASE, "network": NETWORK, "event": event, "summary": event},
            }
            headers = {**bearer(self.token()), "Content-Type": JSON}
            status, _, answer = self.request(
                "POST", "/v1/messages", json.dumps(update).encode(), headers
            )
            assert status == 202, answer

    def stop(self) -> None:
        async def close() -> None:
            await self.runner.cleanup()
            await self.bus.close()
            await self.partners.close()

        stopping = asyncio.run_coroutine_threadsafe(close(), self.loop)
        try:
            stopping.result(STOP_SECONDS)
        except TimeoutError:
            tasks = asyncio.run_coroutine_threadsafe(_task_names(), self.loop).result(5)
            raise AssertionError(
                f"the gateway did not stop within {STOP_SECONDS} s; still running: {tasks}"
            ) from None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def token(self, role: str = "contact-point") -> str:
        return self.network.nodes[NODE].tokens[role]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        """One request on a fresh connection: (status, content type, body).

        An event stream's body is not read (it never ends): only its status counts.
        """
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            content_type = response.getheader("Content-Type", "")
            if content_type.startswith("text/event-stream"):
                return response.status, content_type, b""
            return response.status, content_type, response.read()
        finally:
            conn.close()


async def _task_names() -> list[str]:
    current = asyncio.current_task()
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not current)


def check_answer(method: str, status: int, content_type: str, body: bytes) -> None:
    """No 5xx; a refusal is a problem document with a known code and its table status."""
    assert status < 500, f"{status}: {body[:500]!r}"
    if status < 400 or method == "HEAD":
        return
    assert content_type.startswith("application/problem+json"), (status, content_type, body[:200])
    problem = json.loads(body)
    assert problem["code"] in ERROR_TABLE, problem
    assert ERROR_TABLE[problem["code"]].status == status == problem["status"], problem
    assert problem["type"] == f"urn:xb:error:{problem['code']}"

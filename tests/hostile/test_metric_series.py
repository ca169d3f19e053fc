"""A partner's junk cannot multiply the series of the public /metrics.

The type of a refused delivery comes from a header nobody verified: 1,000 deliveries with
made-up types (random words, attempts to inject a sample, long and odd strings) are counted
under `type="unknown"`, and no other series appears.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer
from http_helpers import metric_samples

from exchange.gateway.app import create_app
from exchange.metrics import MESSAGE_TYPES, UNKNOWN
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.bus import Outgoing
from exchange.transport.memory import MemoryBroker, MemoryBus
from exchange.transport.topology import Topology

SENDER = "AL-ARO"
RECEIVER = "RS-PPO"


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> NetworkLayout:
    return init_network_dir(tmp_path_factory.mktemp("series") / "net", [SENDER, RECEIVER])


def _junk_type(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(rng.choices(string.ascii_lowercase + "-", k=rng.randint(1, 40)))
    if kind == 1:
        return 'asset-inquiry"} 1\nxb_forged_total 1'  # an attempt to inject a sample
    if kind == 2:
        return "".join(rng.choices('ÄßЖ漢🙂\\"\n', k=rng.randint(1, 12)))
    return "x" * rng.randint(100, 2000)


async def _until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_thousand_refused_deliveries_with_random_types_add_no_metric_series(
    network: NetworkLayout, tmp_path: Path
) -> None:
    config = network.config(RECEIVER, environ={"EXCHANGE_DATA_DIR": str(tmp_path)})
    topology = Topology(prefix=config.topology_prefix)
    broker = MemoryBroker(topology)
    sender = MemoryBus(topology, broker=broker, node_id=SENDER)
    receiver = MemoryBus(topology, broker=broker, node_id=RECEIVER)
    await sender.start()
    await receiver.start()
    app = create_app(config, bus=receiver)
    rng = random.Random(13)
    try:
        async with TestClient(TestServer(app)) as client:

            async def series() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
                return metric_samples(await (await client.get("/metrics")).text())

            before = await series()
            refused = (
                "xb_messages_total",
                frozenset({("direction", "in"), ("type", UNKNOWN), ("outcome", "refused")}),
            )
            types = set()
            for _ in range(1000):
                junk = _junk_type(rng)
                types.add(junk)
                body = json.dumps(
                    {"header": {"id": str(uuid4()), "type": junk}, "payload": {}, "signature": {}}
                )
                routing_key = topology.routing_key(RECEIVER, "asset-inquiry", SENDER)
                await sender.publish(Outgoing("messages", routing_key, body.encode(), str(uuid4())))

            async def all_refused() -> bool:
                counts = (await series()).items()
                return (
                    sum(
                        value
                        for (name, labels), value in counts
                        if name == "xb_messages_total"
                        and {("direction", "in"), ("outcome", "refused")} <= labels
                    )
                    == 1000
                )

            await _until(all_refused, within=60)
            after = await series()
    finally:
        await receiver.close()
        await sender.close()
    assert len(types) > 500
    new = {key for key in after if key not in before and key[0].startswith("xb_")}
    # the one row of refused deliveries of unknown type (and its creation time), no other
    assert {name for name, _ in new} <= {"xb_messages_total", "xb_messages_created"}
    assert {labels for _, labels in new} == {refused[1]}
    assert {dict(labels).get("type") for name, labels in after if "type" in dict(labels)} <= {
        *MESSAGE_TYPES,
        UNKNOWN,
    }
    assert not any(name.startswith("xb_forged") for name, _ in after)

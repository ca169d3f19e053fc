"""Raw RabbitMQ baseline for the relay, and our bus measured against it in the same run.

raw: N persistent messages of SIZE bytes, published with confirms (mandatory) as fast as
the client allows (straight on aiormq, W publishes in flight and gathered; the best W of a
short sweep is kept), consumed with manual acks from a plain quorum queue.
raw-topo: the same raw client, publishing into our topology (the inbox quorum queue with
its dead-lettering arguments, plus the broker's copy into the audit stream).
bus: `AmqpBus.publish_many` + `consume` on that topology.
bus/raw is the ratio that matters; bus/raw-topo isolates the client-side cost of the bus.

    .venv/bin/python bench/relay_raw.py [-n 10000] [--size 2048] [--chunk 1000] [--repeats 3]

`raw_baseline(url, n, size)` is reused by the end-to-end benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from exchange.transport.amqp import AmqpBus
from exchange.transport.bus import ACK, Delivery, Outgoing, Verdict
from exchange.transport.topology import Topology

DEFAULT_URL = os.environ.get("EXCHANGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
WINDOWS = (100, 250, 500, 1000, 2000)
SWEEP_MESSAGES = 3000
PREFETCH = 500
SENDER, RECIPIENT = "AL-ARO", "RS-PPO"
RESULTS = Path(__file__).parent / "results" / "relay_raw.json"
FIELDS = ("publish_msg_s", "consume_msg_s", "publish_consume_msg_s")
Phase = Callable[[int], Awaitable[float]]


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _body(size: int) -> bytes:
    return os.urandom(size // 2 + 1).hex().encode()[:size]


async def _phases(
    n: int, publish: Phase, consume: Callable[[int, Phase | None], Awaitable[float]]
) -> dict[str, float]:
    """Publish n; consume n; then consume n while publishing n (both, end to end)."""
    publish_s = await publish(n)
    consume_s = await consume(n, None)
    pipeline_s = await consume(n, publish)
    return dict(
        zip(FIELDS, (_rate(n, publish_s), _rate(n, consume_s), _rate(n, pipeline_s)), strict=True)
    )


def _raw_publisher(
    channel: AbstractChannel, exchange: str, key: str, size: int, window: int
) -> Phase:
    body = _body(size)

    async def publish(n: int) -> float:
        start = time.perf_counter()
        for first in range(0, n, window):
            results = await asyncio.gather(
                *(
                    channel.basic_publish(
                        body,
                        exchange=exchange,
                        routing_key=key,
                        properties=Basic.Properties(delivery_mode=2, message_id=uuid.uuid4().hex),
                        mandatory=True,
                    )
                    for _ in range(min(window, n - first))
                )
            )
            if not all(isinstance(r, Basic.Ack) for r in results):
                raise RuntimeError("a raw publish was not confirmed")
        return time.perf_counter() - start

    return publish


def _raw_consumer(
    channel: AbstractChannel, queue: str
) -> Callable[[int, Phase | None], Awaitable[float]]:
    async def consume(n: int, meanwhile: Phase | None) -> float:
        done = asyncio.get_running_loop().create_future()
        count = 0

        async def on_message(message: DeliveredMessage) -> None:
            nonlocal count
            assert message.delivery_tag is not None
            await channel.basic_ack(message.delivery_tag)
            count += 1
            if count == n and not done.done():
                done.set_result(None)

        start = time.perf_counter()
        ok = await channel.basic_consume(queue, on_message)
        if meanwhile is not None:
            await meanwhile(n)
        await done
        elapsed = time.perf_counter() - start
        assert ok.consumer_tag is not None
        await channel.basic_cancel(ok.consumer_tag)
        return elapsed

    return consume


async def raw_baseline(
    url: str, n: int, size: int, *, windows: Sequence[int] = WINDOWS, window: int | None = None
) -> dict[str, Any]:
    """Raw confirmed publish, consume, and both at once, through a plain quorum queue.

    Without `window`, a short sweep over `windows` first picks the fastest publish window.
    """
    connection = await aiormq.connect(url)
    queue = f"bench.raw.{uuid.uuid4().hex[:12]}"
    try:
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consumer = await connection.channel()
        await consumer.basic_qos(prefetch_count=PREFETCH)
        await publisher.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        consume = _raw_consumer(consumer, queue)
        sweep: dict[int, float] = {}
        for candidate in windows if window is None else ():
            sample = min(n, SWEEP_MESSAGES)
            publish = _raw_publisher(publisher, "", queue, size, candidate)
            sweep[candidate] = _rate(sample, await publish(sample))
            await consume(sample, None)
        best = window if window is not None else max(sweep, key=lambda w: sweep[w])
        rates = await _phases(n, _raw_publisher(publisher, "", queue, size, best), consume)
        await publisher.queue_delete(queue)
    finally:
        await connection.close()
    sweep_rates = {str(w): round(r) for w, r in sweep.items()}
    return {"messages": n, "size": size, "window": best, "window_sweep_msg_s": sweep_rates, **rates}


async def raw_topology_run(url: str, n: int, size: int, window: int) -> dict[str, float]:
    """The raw client, publishing into our topology (inbox + audit stream copy)."""
    topology = Topology(prefix=f"bench{uuid.uuid4().hex[:8]}")
    bus = AmqpBus(url, topology)
    await bus.start()
    connection = await aiormq.connect(url)
    try:
        await bus.declare_node(RECIPIENT)
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consumer = await connection.channel()
        await consumer.basic_qos(prefetch_count=PREFETCH)
        key = topology.routing_key(RECIPIENT, "asset-inquiry", SENDER)
        publish = _raw_publisher(publisher, topology.messages.name, key, size, window)
        return await _phases(n, publish, _raw_consumer(consumer, topology.inbox_queue(RECIPIENT)))
    finally:
        await connection.close()
        await _delete_topology(bus, topology)
        await bus.close()


async def bus_run(url: str, n: int, size: int, chunk: int) -> dict[str, float]:
    """The same through AmqpBus: publish_many in batches of `chunk`, consume with verdicts."""
    topology = Topology(prefix=f"bench{uuid.uuid4().hex[:8]}")
    bus = AmqpBus(url, topology, node_id=SENDER)
    await bus.start()
    body = _body(size)
    key = topology.routing_key(RECIPIENT, "asset-inquiry", SENDER)

    async def publish(count: int) -> float:
        start = time.perf_counter()
        for first in range(0, count, chunk):
            batch = [
                Outgoing("messages", key, body, str(uuid.uuid4()))
                for _ in range(min(chunk, count - first))
            ]
            if any(r is not None for r in await bus.publish_many(batch)):
                raise RuntimeError("a bus publish was not confirmed")
        return time.perf_counter() - start

    async def consume(count: int, meanwhile: Phase | None) -> float:
        done = asyncio.get_running_loop().create_future()
        seen = 0

        async def handler(_: Delivery) -> Verdict:
            nonlocal seen
            seen += 1
            if seen == count and not done.done():
                done.set_result(None)
            return ACK

        start = time.perf_counter()
        handle = await bus.consume(topology.inbox_queue(RECIPIENT), handler, prefetch=PREFETCH)
        if meanwhile is not None:
            await meanwhile(count)
        await done
        elapsed = time.perf_counter() - start
        await handle.cancel()
        return elapsed

    try:
        await bus.declare_node(RECIPIENT)
        await bus.declare_node(SENDER)
        return await _phases(n, publish, consume)
    finally:
        await _delete_topology(bus, topology)
        await bus.close()


async def _delete_topology(bus: AmqpBus, topology: Topology) -> None:
    async with bus._raw_channel() as ch:
        for node in (SENDER, RECIPIENT):
            for queue in (topology.inbox_queue(node), topology.dead_queue(node)):
                await ch.queue_delete(queue)
        await ch.queue_delete(topology.audit_stream_queue)
        for exchange in topology.exchanges():
            await ch.exchange_delete(exchange.name)


async def main(url: str, n: int, size: int, chunk: int, repeats: int) -> dict[str, Any]:
    """The three kinds of run alternate, so that load from elsewhere hits them alike."""
    sweep = await raw_baseline(url, min(n, SWEEP_MESSAGES), size)
    window = int(sweep["window"])
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "raw_topology": [], "bus": []}
    for _ in range(repeats):
        runs["raw"].append(await raw_baseline(url, n, size, window=window))
        runs["raw_topology"].append(await raw_topology_run(url, n, size, window))
        runs["bus"].append(await bus_run(url, n, size, chunk))
    median = {
        kind: {f: statistics.median(float(r[f]) for r in results) for f in FIELDS}
        for kind, results in runs.items()
    }
    raw, topo, bus = median["raw"], median["raw_topology"], median["bus"]
    print(f"relay_raw: {n} persistent messages of {size} B, one broker, median of {repeats} runs")
    print(f"raw publish window sweep (msg/s): {sweep['window_sweep_msg_s']} -> {window}")
    print(f"bus: publish_many in batches of {chunk}, prefetch {PREFETCH}")
    header = f"{'':22}{'raw':>9}{'raw-topo':>10}{'bus':>9}{'bus/raw':>9}{'bus/raw-topo':>14}"
    print(header)
    labels = ("publish (confirmed)", "consume (manual ack)", "publish + consume")
    for label, f in zip(labels, FIELDS, strict=True):
        print(
            f"{label:22}{raw[f]:>9.0f}{topo[f]:>10.0f}{bus[f]:>9.0f}"
            f"{bus[f] / raw[f]:>9.2f}{bus[f] / topo[f]:>14.2f}"
        )
    result = {
        "messages": n,
        "size": size,
        "window": window,
        "window_sweep_msg_s": sweep["window_sweep_msg_s"],
        "bus_chunk": chunk,
        "median_msg_s": median,
        "ratio_bus_to_raw": {f: bus[f] / raw[f] for f in FIELDS},
        "ratio_bus_to_raw_topology": {f: bus[f] / topo[f] for f in FIELDS},
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=1000, help="publish_many batch size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.n, args.size, args.chunk, args.repeats))

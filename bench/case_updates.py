"""Case-update fan-out benchmark: one publisher, N subscribers, SSE delivery latency.

Gateway path: `POST /v1/messages` (a case update) on the publisher node -> signed, stored,
audited, published to `<p>.cases` with a confirm -> the subscriber node verifies, stores and
audits it -> its SSE stream (`GET /v1/subscriptions/stream`, each update audited as
delivered) -> an SSE client in this process. Every node runs in its own process
(`exchange node run`), as in production. Two shapes of fan-out:
  nodes:   N subscriber nodes (network members), one SSE client each; on one machine the
           N + 1 nodes share its CPUs, where in production each authority has its own;
  clients: one subscriber node with N SSE clients (N local subscribers of one authority).
Latency is measured in this process, from just before the POST to the moment the SSE event
is parsed; load is offered open loop at `--rate` updates/s for `--seconds`.

Raw baseline, same run, same broker: the same fan-out (a topic exchange bound to N quorum
queues; persistent, mandatory, confirmed publishes of the same body size at the same rate),
from just before each publish to the consumer's receipt, all in this process.

    .venv/bin/python bench/case_updates.py [--rate 200 | --rate 50,100,200] [--seconds 10]
        [--subscribers 10] [--modes nodes,clients]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson

from exchange.client import GatewayClient, GatewayUnreachable, ProblemError
from exchange.demo.runner import amqp_answers, free_base_port
from exchange.network import NetworkLayout, init_network_dir
from exchange.transport.provision import delete_topology
from exchange.transport.topology import Topology

DEFAULT_URL = os.environ.get("EXCHANGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS = Path(__file__).parent / "results" / "case_updates.json"
PUBLISHER = "AL-ARO"
SUBSCRIBERS = (
    "RS-PPO", "MD-ARO", "ME-SPO", "MK-PPO", "BA-POS", "HR-USKOK", "SI-SDT", "BG-PPO",
    "RO-DIICOT", "XK-SPRK", "GR-PPO", "HU-PPO", "CY-LAW", "TR-MASAK", "UA-ARMA",
)  # fmt: skip
NETWORK = "bench-pcn"
CASE = "AL-2026-0042"
WARMUP = 40
SETTLE_SECONDS = 60.0
READY_SECONDS = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.50), 2),
        "p90_ms": round(at(0.90), 2),
        "p99_ms": round(at(0.99), 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def broker_pid() -> int | None:
    """The machine's long-running RabbitMQ (the oldest beam.smp), if it runs here."""
    found: list[tuple[int, int]] = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "beam.smp":
                stat = (proc / "stat").read_text()
                started = int(stat[stat.rindex(")") + 2 :].split()[19])
                found.append((started, int(proc.name)))
    return min(found)[1] if found else None


def other_cpu(broker: int | None) -> tuple[float, float]:
    """CPU seconds used so far by this process (the clients) and by the broker."""
    used = 0.0
    if broker is not None:
        with contextlib.suppress(OSError):
            used = cpu_seconds(broker)
    return time.process_time(), used


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- the gateway path ------------------------------------------------------------------------


@dataclass
class Subscriber:
    """An SSE client of one subscriber node; notes when each update (by sequence) arrives."""

    node: str
    client: GatewayClient
    arrived: dict[int, float] = field(default_factory=dict)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self) -> None:
        # the documents as sent, parsed as JSON only: no model is built before the time is noted
        stream = self.client.stream_case_update_documents(on_connect=lambda _: self.connected.set())
        async for document in stream:
            now = time.perf_counter()
            summary = document["update"]["summary"]
            self.arrived.setdefault(int(summary.rsplit("#", 1)[1]), now)


def update_body(seq: int, recipients: list[str]) -> dict[str, Any]:
    return {
        "type": "case-update",
        "recipients": recipients,
        "case": CASE,
        "priority": "normal",
        "handling": {"tlp": "AMBER", "code": "H2"},
        "payload": {
            "case": CASE,
            "network": NETWORK,
            "event": "assets-identified",
            "summary": f"Assets identified in a partner country; benchmark update #{seq}",
            "countries": ["AL", "RS"],
            "amount": {"amount": "575460.00", "currency": "EUR"},
        },
    }


class Nodes:
    """The network's nodes, each an `exchange node run` process."""

    def __init__(self, layout: NetworkLayout, logs: Path) -> None:
        self.layout = layout
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        exchange = str(Path(sys.executable).parent / "exchange")
        env = {**os.environ, "EXCHANGE_LOG_LEVEL": "WARNING"}
        for node, info in self.layout.nodes.items():
            log = (self.logs / f"{node}.log").open("wb")
            self.processes[node] = subprocess.Popen(
                [exchange, "node", "run", "--config", str(info.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + READY_SECONDS
        for node, info in self.layout.nodes.items():
            client = GatewayClient(info.url, session=session)
            while True:
                with contextlib.suppress(GatewayUnreachable, ProblemError):
                    await client.readiness()
                    break
                if self.processes[node].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"node {node} did not start; see {self.logs}/{node}.log")
                await asyncio.sleep(0.1)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes.values() if p.poll() is None)

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def offer(
    publisher: GatewayClient,
    recipients: list[str],
    first: int,
    count: int,
    rate: float,
    sent_at: dict[int, float],
    accepted_in: list[float],
) -> None:
    """POST `count` updates open loop at `rate`/s (each on time, whatever the others do)."""

    async def post(seq: int) -> None:
        body = update_body(seq, recipients)
        sent_at[seq] = started = time.perf_counter()
        await publisher.submit(body)
        accepted_in.append(time.perf_counter() - started)

    tasks = []
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(first + i)))
    await asyncio.gather(*tasks)


async def wait_arrived(subscribers: list[Subscriber], seqs: range) -> bool:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if all(all(s in sub.arrived for s in seqs) for sub in subscribers):
            return True
        await asyncio.sleep(0.05)
    return False


async def gateway_run(
    url: str, count: int, rate: float, fanout: int, mode: str, work: Path
) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    members = [PUBLISHER, *SUBSCRIBERS[: fanout if mode == "nodes" else 1]]
    layout = init_network_dir(
        work / "net",
        members,
        amqp_url=url,
        base_port=free_base_port(len(members)),
        bus="amqp",
        prefix=prefix,
        networks={NETWORK: members},
    )
    nodes = Nodes(layout, work)
    nodes.start()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await nodes.wait_ready(session)
            followed = members[1:] if mode == "nodes" else members[1:] * fanout
            subscribers = [
                Subscriber(
                    n,
                    GatewayClient(
                        layout.nodes[n].url, layout.nodes[n].token("subscriber"), session=session
                    ),
                )
                for n in followed
            ]
            followers = [asyncio.create_task(s.follow()) for s in subscribers]
            await asyncio.gather(*(s.connected.wait() for s in subscribers))
            info = layout.nodes[PUBLISHER]
            publisher = GatewayClient(info.url, info.token("contact-point"), session=session)
            recipients = members[1:]
            sent_at: dict[int, float] = {}
            accepted: list[float] = []
            await offer(publisher, recipients, 0, WARMUP, rate, sent_at, [])
            if not await wait_arrived(subscribers, range(WARMUP)):
                raise RuntimeError("the warm-up updates did not all arrive")
            broker = broker_pid()
            cpu_before, wall_before = nodes.cpu(), time.perf_counter()
            clients_before, broker_before = other_cpu(broker)
            await offer(publisher, recipients, WARMUP, count, rate, sent_at, accepted)
            complete = await wait_arrived(subscribers, range(WARMUP, WARMUP + count))
            wall = time.perf_counter() - wall_before
            cpu = nodes.cpu() - cpu_before
            clients_after, broker_after = other_cpu(broker)
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    finally:
        nodes.stop()
        await delete_topology(url, Topology(prefix), members)
    latencies = [
        sub.arrived[s] - sent_at[s]
        for sub in subscribers
        for s in range(WARMUP, WARMUP + count)
        if s in sub.arrived
    ]
    lost = count * len(subscribers) - len(latencies)
    return {
        "nodes": len(members),
        "sse_clients": len(subscribers),
        "complete": complete,
        "lost": lost,
        "sse_latency": percentiles(latencies),
        "post_202_latency": percentiles(accepted),
        "node_cpu_s_per_s": round(cpu / wall, 2),
        "bench_clients_cpu_s_per_s": round((clients_after - clients_before) / wall, 2),
        "broker_cpu_s_per_s": round((broker_after - broker_before) / wall, 2),
        "node_cpu_ms_per_update": round(1000 * cpu / count, 2),
        "update_bytes": len(orjson.dumps(update_body(WARMUP, recipients))),
    }


# --- the raw baseline ---------------------------------------------------------------------------


async def raw_run(url: str, count: int, rate: float, fanout: int, size: int) -> dict[str, Any]:
    """The same fan-out straight on RabbitMQ: no signing, verification, storage, audit or HTTP."""
    tag = uuid.uuid4().hex[:8]
    connection = await aio_pika.connect(url)
    arrived: list[dict[int, float]] = [{} for _ in range(fanout)]
    sent_at: dict[int, float] = {}
    body_pad = os.urandom(size).hex()[:size]
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            f"rawbench.{tag}", aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queues = []
        tags: list[str] = []
        for i in range(fanout):
            consumer_channel = await connection.channel()
            await consumer_channel.set_qos(prefetch_count=200)
            queue = await consumer_channel.declare_queue(
                f"rawbench.{tag}.{i}", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await queue.bind(exchange, f"{NETWORK}.#")
            queues.append(queue)

            def on_message(index: int):  # type: ignore[no-untyped-def]
                async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                    now = time.perf_counter()
                    arrived[index].setdefault(int(message.headers["seq"]), now)  # type: ignore[arg-type]
                    await message.ack()

                return handle

            tags.append(await queue.consume(on_message(i)))

        async def publish(seq: int) -> None:
            sent_at[seq] = time.perf_counter()
            await exchange.publish(
                aio_pika.Message(
                    body_pad.encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=f"{tag}-{seq}",
                    headers={"seq": seq},
                ),
                routing_key=f"{NETWORK}.{CASE}.assets-identified",
                mandatory=True,
            )

        async def offer_raw(first: int, n: int) -> None:
            tasks = []
            start = time.perf_counter()
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(publish(first + i)))
            await asyncio.gather(*tasks)

        async def settle(seqs: range) -> None:
            deadline = time.monotonic() + SETTLE_SECONDS
            while time.monotonic() < deadline:
                if all(all(s in a for s in seqs) for a in arrived):
                    return
                await asyncio.sleep(0.02)

        await offer_raw(0, WARMUP)
        await settle(range(WARMUP))
        await offer_raw(WARMUP, count)
        await settle(range(WARMUP, WARMUP + count))
        for queue, consumer_tag in zip(queues, tags, strict=True):
            with contextlib.suppress(Exception):
                await queue.cancel(consumer_tag)
                await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    measured = range(WARMUP, WARMUP + count)
    latencies = [a[s] - sent_at[s] for a in arrived for s in measured if s in a]
    return {
        "lost": count * fanout - len(latencies),
        "latency": percentiles(latencies),
    }


# --- report -----------------------------------------------------------------------------------


def report(runs: list[dict[str, Any]]) -> None:
    for result in runs:
        for mode, gw in result["gateway"].items():
            report_mode(result, mode, gw)
    print("\nSummary: SSE delivery latency p99 (ms) by offered rate")
    print(f"{'updates/s':>10} {'nodes':>10} {'clients':>10} {'raw AMQP':>10}")
    for result in runs:
        p99 = {m: g["sse_latency"]["p99_ms"] for m, g in result["gateway"].items()}
        print(
            f"{result['parameters']['rate']:>10} {p99.get('nodes', '-'):>10} "
            f"{p99.get('clients', '-'):>10} {result['raw']['latency']['p99_ms']:>10}"
        )


def report_mode(result: dict[str, Any], mode: str, gw: dict[str, Any]) -> None:
    raw = result["raw"]
    rows = [
        ("delivery latency p50 (ms)", gw["sse_latency"]["p50_ms"], raw["latency"]["p50_ms"]),
        ("delivery latency p90 (ms)", gw["sse_latency"]["p90_ms"], raw["latency"]["p90_ms"]),
        ("delivery latency p99 (ms)", gw["sse_latency"]["p99_ms"], raw["latency"]["p99_ms"]),
        ("delivery latency max (ms)", gw["sse_latency"]["max_ms"], raw["latency"]["max_ms"]),
        ("deliveries lost", gw["lost"], raw["lost"]),
    ]
    p = result["parameters"]
    shape = (
        f"{gw['sse_clients']} subscriber nodes"
        if mode == "nodes"
        else f"{gw['sse_clients']} SSE clients of one subscriber node"
    )
    print(
        f"\n[{mode}] case-update fan-out: {p['rate']}/s for {p['seconds']} s to {shape} "
        f"({gw['sse_latency'].get('n', 0)} SSE deliveries measured)"
    )
    print(f"{'metric':<28} {'gateway SSE':>12} {'raw AMQP':>10} {'ratio':>8}")
    for name, ours, base in rows:
        ratio = f"{ours / base:.1f}x" if isinstance(base, float) and base > 0 else "-"
        print(f"{name:<28} {ours:>12} {base:>10} {ratio:>8}")
    goal = "met" if gw["sse_latency"]["p99_ms"] <= 100 else "NOT met"
    print(f"goal p99 <= 100 ms at {p['rate']} updates/s: {goal}")
    print(
        f"POST -> 202 p50 {gw['post_202_latency']['p50_ms']} ms, "
        f"p99 {gw['post_202_latency']['p99_ms']} ms; nodes used "
        f"{gw['node_cpu_s_per_s']} CPU-s/s ({gw['node_cpu_ms_per_update']} CPU-ms per update "
        f"for all {gw['nodes']} nodes) on {result['machine']['cpus']} CPUs; SSE and HTTP "
        f"clients {gw['bench_clients_cpu_s_per_s']}, broker {gw['broker_cpu_s_per_s']} CPU-s/s "
        f"(load average before: {result['load_before']})"
    )


async def run_rate(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    count = int(rate * args.seconds)
    load_before = os.getloadavg()[0]
    gateway: dict[str, Any] = {}
    for mode in args.modes.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"bench-case-updates-{mode}-"))
        try:
            gateway[mode] = await gateway_run(args.url, count, rate, args.subscribers, mode, work)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    size = next(iter(gateway.values()))["update_bytes"]
    raw = await raw_run(args.url, count, rate, args.subscribers, size)
    return {
        "parameters": {
            "rate": rate,
            "seconds": args.seconds,
            "subscribers": args.subscribers,
            "updates": count,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_before": round(load_before, 2),
        "gateway": gateway,
        "raw": raw,
        "ratio_p99": {
            mode: round(gw["sse_latency"]["p99_ms"] / raw["latency"]["p99_ms"], 1)
            for mode, gw in gateway.items()
        },
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    if not await amqp_answers(args.url):
        raise SystemExit(f"RabbitMQ does not answer at {args.url}")
    return [await run_rate(args, float(rate)) for rate in args.rate.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument(
        "--rate", default="200", help="updates per second; a list (50,100,200) sweeps"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=10, choices=range(1, 16))
    parser.add_argument("--modes", default="nodes,clients", help="nodes, clients or both")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' files and logs")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    report(outcome)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": outcome}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")

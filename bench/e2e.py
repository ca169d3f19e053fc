"""End-to-end benchmark: POST -> recipient's inbox -> sender sees `delivered`, against raw RabbitMQ.

AL-ARO sends ~2 KB asset inquiries to RS-PPO through its HTTP API; both nodes run their real
gateways, stores, audit logs and relays, in this process (default) or, with `--split`, the
recipient in a child process of its own, as in production. Times are observed in the nodes
by wrapping `MessageStore` (and the sender's bus) methods: "in the inbox" is when the
recipient's `inbox_receive` has committed the row, "delivered" when the sender's
`record_receipt_checked` has committed the receipt that made the message `delivered`, and
the stages between (`STAGES`) show where a message waits (`time.perf_counter` is
CLOCK_MONOTONIC, one clock for both processes). Phases: throughput (closed loop, bounded
POSTs in flight), latency (open loop at fixed offered rates), the throughput phase again
under cProfile, CPU per call of each hot-path step, and the raw baseline of
`bench/relay_raw.py` (confirmed publish + consume, same broker, same size). Also reported:
CPU per thread and process, event loop lag, and the sender's outbox publisher batches.

    .venv/bin/python bench/e2e.py [--n 2000] [--rate 300] [--seconds 10] [--bus amqp|memory]
        [--split] [--in-flight 64] [--lower-rates 50,150] [--profile-clock cpu|wall]
        [--no-profile] [--profile-out FILE] [--keep] [--prefetch N]
        [--what-if-publisher-channels N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
import structlog
from aiohttp import web

from exchange.config import NodeConfig
from exchange.crypto.canonical import canonicalize
from exchange.crypto.verify import VerificationPolicy, verify_envelope
from exchange.demo.runner import DemoNetwork, amqp_answers, free_base_port
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.storage.records import InboxArrival, OutboxItem, ReceiptOutcome
from exchange.gateway.request_body import parse_json
from exchange.storage.messages import MessageStore
from exchange.gateway.submit import check_payload, parse_submission, sign_submission
from exchange.log import configure as configure_logging
from exchange.network import NetworkLayout, init_network_dir
from exchange.schemas import validate_payload
from exchange.transport.amqp import AmqpBus, delete_topology
from exchange.transport.bus import Bus, Outgoing
from exchange.transport.memory import MemoryBus
from exchange.transport.topology import Topology

sys.path.insert(0, str(Path(__file__).parent))
from relay_raw import raw_baseline

DEFAULT_URL = os.environ.get("EXCHANGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "schemas/examples/asset-inquiry/valid/me-to-al-yacht-car-account.json"
RESULTS = Path(__file__).parent / "results" / "e2e.json"
SENDER, RECIPIENT = "AL-ARO", "RS-PPO"
CASE = "AL-2026-0042"
SETTLE_TIMEOUT = 120.0
WARMUP = 200
TOP = 25
PROFILE_CLOCKS: dict[str, Callable[[], float]] = {
    "cpu": time.thread_time,  # the main thread's CPU time: preemption by others not counted
    "wall": time.perf_counter,
}

# --- observing the nodes ---------------------------------------------------------------


STAGES = (
    ("picked", "sender: read from the outbox to publish (outbox_due)"),
    ("confirmed", "sender: broker confirmed the publish (publish_many)"),
    ("recorded", "sender: confirm recorded (outbox_confirmed called)"),
    ("arrived", "recipient: delivered and verified (inbox_receive called)"),
    ("inbox", "recipient: inbox row committed (inbox_receive)"),
    ("receipt", "sender: receipt delivered and verified (record_receipt_checked)"),
    ("delivered", "sender: `delivered` committed"),
)
"""The moments a message passes, in order, each noted by wrapping a `MessageStore` method."""


@dataclass
class Observer:
    """When each message passed each stage (`STAGES`), by message id."""

    marks: dict[str, dict[str, float]] = field(
        default_factory=lambda: {stage: {} for stage, _ in STAGES}
    )
    cycles: list[dict[str, Any]] = field(default_factory=list)
    """The sender's outbox publisher, one entry per batch: (start, end) of each step."""
    _remaining: set[str] = field(default_factory=set)
    _done: asyncio.Future[None] | None = None

    @property
    def inbox_at(self) -> dict[str, float]:
        return self.marks["inbox"]

    @property
    def delivered_at(self) -> dict[str, float]:
        return self.marks["delivered"]

    def _mark(self, stage: str, message_id: Any) -> None:
        self.marks[stage].setdefault(str(message_id), time.perf_counter())

    def _step(self, name: str, started: float) -> None:
        if self.cycles and name not in self.cycles[-1]:
            self.cycles[-1][name] = (started, time.perf_counter())

    def publisher_cycles(self, start: float, end: float) -> dict[str, Any]:
        """The outbox publisher's batches within [start, end]: rows and ms per step."""
        cycles = [c for c in self.cycles if start <= c["outbox_due"][0] <= end]
        if not cycles:
            return {"batches": 0}
        steps: dict[str, float] = {}
        for c in cycles:
            for name, span in c.items():
                if name != "rows":
                    steps[name] = steps.get(name, 0.0) + (span[1] - span[0])
            if "publish_many" in c and "outbox_confirmed" in c:  # the audit appends between
                gap = c["outbox_confirmed"][0] - c["publish_many"][1]
                steps["audit_confirmed_appends"] = steps.get("audit_confirmed_appends", 0.0) + gap
        spread = cycles[-1]["outbox_due"][0] - cycles[0]["outbox_due"][0]
        return {
            "batches": len(cycles),
            "rows_per_batch": round(sum(c["rows"] for c in cycles) / len(cycles), 1),
            "ms_per_batch": round(1000 * spread / max(len(cycles) - 1, 1), 1),
            "ms_per_batch_by_step": {k: round(1000 * v / len(cycles), 1) for k, v in steps.items()},
        }

    def watch_recipient(self, store: MessageStore) -> None:
        """Note when each incoming message arrived and when its inbox row committed."""
        # The relay's one store call after verifying a message: `inbox_receive` looks for
        # a copy and stores the row in one transaction.
        inbox_receive = store.inbox_receive

        async def observed_inbox_receive(message_id: Any, *args: Any) -> InboxArrival:
            self._mark("arrived", message_id)
            arrival = await inbox_receive(message_id, *args)
            self._mark("inbox", message_id)
            return arrival

        # Instance attributes shadow the methods: the relay calls these from now on.
        store.inbox_receive = observed_inbox_receive  # type: ignore[method-assign,assignment]

    def watch_sender(self, store: MessageStore, bus: Bus | None) -> None:
        """Note when each outgoing message was published, confirmed, receipted, delivered."""
        outbox_due, outbox_confirmed = store.outbox_due, store.outbox_confirmed
        outbox_depth, record_receipt = store.outbox_depth, store.record_receipt_checked
        if bus is not None:
            publish_many = bus.publish_many

            async def observed_publish_many(msgs: Sequence[Outgoing]) -> list[Any]:
                started = time.perf_counter()
                results = await publish_many(msgs)
                self._step("publish_many", started)
                for msg, error in zip(msgs, results, strict=True):
                    if error is None and msg.exchange == "messages":
                        self._mark("confirmed", msg.message_id.split("/", 1)[0])
                return results

            bus.publish_many = observed_publish_many  # type: ignore[method-assign]

        async def observed_outbox_due(*args: Any) -> list[OutboxItem]:
            started = time.perf_counter()
            items = await outbox_due(*args)
            if items:
                self.cycles.append(
                    {"rows": len(items), "outbox_due": (started, time.perf_counter())}
                )
            for item in items:
                self._mark("picked", item.message_id)
            return items

        async def observed_outbox_confirmed(items: Sequence[tuple[Any, str]], when: Any) -> None:
            for message_id, _recipient in items:
                self._mark("recorded", message_id)
            started = time.perf_counter()
            await outbox_confirmed(items, when)
            self._step("outbox_confirmed", started)

        async def observed_outbox_depth() -> int:
            started = time.perf_counter()
            depth = await outbox_depth()
            self._step("outbox_depth", started)
            return depth

        async def observed_record_receipt(message_id: Any, *args: Any) -> ReceiptOutcome:
            self._mark("receipt", message_id)
            outcome = await record_receipt(message_id, *args)
            if outcome.status == "delivered":
                self._mark("delivered", message_id)
                self._remaining.discard(str(message_id))
                if not self._remaining and self._done is not None and not self._done.done():
                    self._done.set_result(None)
            return outcome

        store.outbox_due = observed_outbox_due  # type: ignore[method-assign,assignment]
        store.outbox_confirmed = observed_outbox_confirmed  # type: ignore[method-assign]
        store.outbox_depth = observed_outbox_depth  # type: ignore[method-assign]
        store.record_receipt_checked = observed_record_receipt  # type: ignore[method-assign,assignment]

    async def all_delivered(self, ids: list[str], within: float = SETTLE_TIMEOUT) -> bool:
        """Wait until every id in `ids` was seen `delivered` by the sender."""
        self._remaining = {i for i in ids if i not in self.delivered_at}
        if not self._remaining:
            return True
        self._done = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._done, within)
        except TimeoutError:
            return False
        return True


# --- CPU accounting (Linux /proc) ------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(path: str | Path) -> float:
    text = Path(path).read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_snapshot(broker_pid: int | None = None) -> dict[str, float]:
    """CPU seconds of this process by thread name (summed over its nodes), and the broker's."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            tid = int(task.name)
            name = "event loop (main thread)" if tid == main else names.get(tid, "other")
            name = name.rsplit("_", 1)[0] if name.startswith("audit-reader") else name
            out[name] = out.get(name, 0.0) + _stat_cpu(task / "stat")
    out["process total"] = _stat_cpu("/proc/self/stat")
    if broker_pid is not None:
        with contextlib.suppress(OSError):
            out["RabbitMQ broker (beam.smp)"] = _stat_cpu(f"/proc/{broker_pid}/stat")
    return out


def cpu_delta(
    before: dict[str, float], after: dict[str, float], wall: float, messages: int
) -> dict[str, Any]:
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    return {
        k: {
            "cpu_s": round(v, 2),
            "cpu_pct_of_wall": round(100 * v / wall, 1),
            "cpu_us_per_message": round(1e6 * v / max(messages, 1)),
        }
        for k, v in sorted(used.items(), key=lambda kv: -kv[1])
        if v >= 0.01
    }


# --- what-if (bench only, not production behaviour) ------------------------------------


async def widen_publisher(bus: Bus | None, channels: int) -> None:
    """What-if: give the bus's pool of confirm channels `channels` channels in all.

    `AmqpBus` spreads its publishes round robin over `publisher_channels` channels (8 by
    default); this patches the running bus (private attributes) to measure another size.
    """
    if channels < 1 or not isinstance(bus, AmqpBus) or bus._connection is None:
        return
    pool = list(bus._publishers[:channels])
    while len(pool) < channels:
        pool.append(await bus._connection.channel(publisher_confirms=True, on_return_raises=True))
    bus._publishers = tuple(pool)
    bus._next_publisher = 0


# --- event loop responsiveness ---------------------------------------------------------


class LoopLag:
    """How late a 5 ms timer fires: the time a ready callback waits for the event loop."""

    PERIOD = 0.005

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + self.PERIOD
            await asyncio.sleep(self.PERIOD)
            self.samples.append(time.perf_counter() - due)

    def take(self) -> list[float]:
        taken, self.samples = self.samples, []
        return taken

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- the recipient in a process of its own (--split) -----------------------------------


def recipient_process(
    config_path: str, log_path: str, clock: str, channels: int, conn: Connection
) -> None:
    """Child process: run the recipient node and answer the parent's commands on `conn`."""
    asyncio.run(_serve_recipient(Path(config_path), Path(log_path), clock, channels, conn))


async def _serve_recipient(
    config_path: Path, log_path: Path, clock: str, channels: int, conn: Connection
) -> None:
    log_file = _node_logging(log_path)
    config = NodeConfig.load(config_path, environ={})
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()  # opens the store, audit log, bus and relay
    await web.TCPSite(runner, config.listen_host, config.listen_port).start()
    await widen_publisher(runner.app[keys.BUS], channels)
    observer = Observer()
    observer.watch_recipient(runner.app[keys.STORE])
    lag = LoopLag()
    lag.start()
    profile = cProfile.Profile(PROFILE_CLOCKS[clock])
    started = 0.0
    conn.send("ready")
    try:
        while (command := await asyncio.to_thread(conn.recv)) != "stop":
            reply: Any = None
            if command == "cpu":
                reply = cpu_snapshot()
            elif command == "lag":
                reply = lag.take()
            elif command == "inbox":
                reply = {stage: observer.marks[stage] for stage in ("arrived", "inbox")}
            elif command == "profile-start":
                started = time.perf_counter()
                profile.enable()
            elif command == "profile-stop":
                profile.disable()
                reply = profile_summary(profile, time.perf_counter() - started)
            conn.send(reply)
    finally:
        await lag.stop()
        await runner.cleanup()
        log_file.close()
    conn.send("stopped")


class RemoteRecipient:
    """The parent's handle on the recipient's child process."""

    def __init__(self, config_path: Path, log_path: Path, clock: str, channels: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=recipient_process,
            args=(str(config_path), str(log_path), clock, channels, child),
            name="recipient",
            daemon=True,
        )

    async def start(self) -> None:
        self._process.start()
        answer = None
        with contextlib.suppress(EOFError, OSError):
            if await asyncio.to_thread(self._conn.poll, 60):
                answer = self._conn.recv()
        if answer != "ready":
            raise RuntimeError("the recipient process did not start (see its stderr above)")

    async def call(self, command: str) -> Any:
        def exchange() -> Any:
            self._conn.send(command)
            return self._conn.recv()

        return await asyncio.to_thread(exchange)

    async def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(EOFError, OSError):
                await self.call("stop")
            await asyncio.to_thread(self._process.join, 30)


@dataclass
class Harness:
    """The running nodes as the phases see them: where to send, what to observe."""

    network: DemoNetwork  # the sender's gateway (and the recipient's, unless split)
    observer: Observer
    remote: RemoteRecipient | None
    broker_pid: int | None
    lag: LoopLag = field(default_factory=LoopLag)

    async def loop_lag(self) -> dict[str, list[float]]:
        """Timer lateness samples since the last call, per process."""
        if self.remote is None:
            return {"both nodes": self.lag.take()}
        return {"sender+client": self.lag.take(), "recipient": await self.remote.call("lag")}

    async def cpu(self) -> dict[str, float]:
        here = cpu_snapshot(self.broker_pid)
        if self.remote is None:
            return here
        out = {k if k.startswith("RabbitMQ") else f"sender+client: {k}": v for k, v in here.items()}
        out.update({f"recipient: {k}": v for k, v in (await self.remote.call("cpu")).items()})
        return out

    async def sync(self) -> None:
        """Bring the recipient's inbox times over from its process."""
        if self.remote is not None:
            for stage, marks in (await self.remote.call("inbox")).items():
                self.observer.marks[stage].update(marks)


# --- load ------------------------------------------------------------------------------


@dataclass
class Sent:
    submitted: float  # perf_counter just before the POST
    accepted: float  # perf_counter when the 202 was read
    message_id: str | None  # None when refused


class Client:
    """POSTs the same request body (each becomes a new message) to the sender's gateway."""

    def __init__(self, network: DemoNetwork, session: aiohttp.ClientSession) -> None:
        info = network.layout.nodes[SENDER]
        self.url = info.url + "/v1/messages"
        self.session = session
        self.headers = {
            "Authorization": f"Bearer {info.token('contact-point')}",
            "Content-Type": "application/json",
        }
        payload = json.loads(PAYLOAD.read_text("utf-8"))
        self.body = orjson.dumps(
            {
                "type": "asset-inquiry",
                "recipients": [RECIPIENT],
                "case": CASE,
                "priority": "normal",
                "handling": {"tlp": "AMBER", "code": "H2"},
                "payload": payload,
            }
        )
        self.errors: list[str] = []

    async def post(self) -> Sent:
        started = time.perf_counter()
        async with self.session.post(self.url, data=self.body, headers=self.headers) as resp:
            answer = await resp.read()
        accepted = time.perf_counter()
        if resp.status != 202:
            self.errors.append(f"HTTP {resp.status}: {answer[:200]!r}")
            return Sent(started, accepted, None)
        return Sent(started, accepted, str(orjson.loads(answer)["id"]))

    async def closed_loop(self, n: int, in_flight: int) -> list[Sent]:
        """`n` POSTs by `in_flight` workers, each sending its next as soon as one is answered."""
        sent: list[Sent] = []
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                sent.append(await self.post())

        await asyncio.gather(*(worker() for _ in range(min(in_flight, n))))
        return sent

    async def open_loop(self, rate: float, seconds: float) -> tuple[list[Sent], list[float]]:
        """POST on a fixed schedule regardless of completions; also return each send's lag."""
        total = round(rate * seconds)
        tasks: list[asyncio.Task[Sent]] = []
        lags: list[float] = []
        start = time.perf_counter() + 0.01
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - due)
            tasks.append(asyncio.create_task(self.post()))
        return list(await asyncio.gather(*tasks)), lags


# --- statistics ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p95": round(percentile(ms, 95), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2) if ms else float("nan"),
    }


def _ids(sent: list[Sent]) -> list[str]:
    return [s.message_id for s in sent if s.message_id is not None]


async def throughput(client: Client, harness: Harness, n: int, in_flight: int) -> dict[str, Any]:
    observer = harness.observer
    cpu_before = await harness.cpu()
    await harness.loop_lag()
    start = time.perf_counter()
    sent = await client.closed_loop(n, in_flight)
    posted = time.perf_counter()
    ids = _ids(sent)
    settled = await observer.all_delivered(ids)
    end = max((observer.delivered_at[i] for i in ids if i in observer.delivered_at), default=start)
    wall = time.perf_counter() - start
    cpu_after = await harness.cpu()
    lag = await harness.loop_lag()
    await harness.sync()
    last_inbox = max((observer.inbox_at[i] for i in ids if i in observer.inbox_at), default=start)
    return {
        "messages": n,
        "in_flight": in_flight,
        "accepted": len(ids),
        "delivered": sum(1 for i in ids if i in observer.delivered_at),
        "all_delivered": settled,
        "seconds": round(end - start, 3),
        "accepted_msg_s": len(ids) / (posted - start),
        "inbox_msg_s": len(ids) / (last_inbox - start),
        "delivered_msg_s": len(ids) / (end - start),
        "post_ms": summary_ms([s.accepted - s.submitted for s in sent]),
        "outbox_publisher": observer.publisher_cycles(start, end),
        "loop_lag_ms": {who: summary_ms(samples) for who, samples in lag.items()},
        "cpu": cpu_delta(cpu_before, cpu_after, wall, len(ids)),
    }


async def latency(client: Client, harness: Harness, rate: float, seconds: float) -> dict[str, Any]:
    observer = harness.observer
    cpu_before = await harness.cpu()
    await harness.loop_lag()
    start = time.perf_counter()
    sent, lags = await client.open_loop(rate, seconds)
    sending = time.perf_counter() - start
    ids = _ids(sent)
    settled = await observer.all_delivered(ids)
    wall = time.perf_counter() - start
    cpu_after = await harness.cpu()
    lag = await harness.loop_lag()
    await harness.sync()
    ok = [s for s in sent if s.message_id is not None]
    since_submit = {
        stage: summary_ms([marks[s.message_id] - s.submitted for s in ok if s.message_id in marks])
        for stage, marks in observer.marks.items()
    }
    return {
        "offered_msg_s": rate,
        "seconds": seconds,
        "messages": len(sent),
        "accepted": len(ids),
        "all_delivered": settled,
        "achieved_send_msg_s": len(sent) / sending,
        "send_lag_ms": summary_ms(lags),
        "submit_to_accepted_ms": summary_ms([s.accepted - s.submitted for s in ok]),
        "submit_to_inbox_ms": since_submit["inbox"],
        "submit_to_delivered_ms": since_submit["delivered"],
        "stages_since_submit_ms": since_submit,
        "outbox_publisher": observer.publisher_cycles(start, start + wall),
        "loop_lag_ms": {who: summary_ms(samples) for who, samples in lag.items()},
        "cpu": cpu_delta(cpu_before, cpu_after, wall, len(ids)),
    }


# --- profile ---------------------------------------------------------------------------

AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event loop wait (epoll)", ("select.epoll", "selectors.py")),
    ("thread hand-off (store/audit queues)", ("SimpleQueue", "queue.py", "threading.py")),
    ("strict JSON parsing (stdlib json)", ("json/decoder", "json/__init__", "request_body.py")),
    ("bench load client", ("aiohttp/client", "aiohttp/connector", "bench/e2e.py")),
    ("canonicalization", ("crypto/canonical.py", "rfc8785", "orjson")),
    ("Ed25519 + hashing", ("cryptography", "crypto/signing.py", "crypto/verify.py", "hashlib")),
    ("pydantic validation", ("pydantic", "exchange/model/", "exchange/schemas.py", "api_models")),
    ("SQLite store", ("sqlite", "gateway/store", "aiosqlite")),
    ("audit log", ("exchange/audit/",)),
    ("aio-pika/AMQP", ("aio_pika", "aiormq", "pamqp", "exchange/transport/")),
    ("logging", ("structlog", "exchange/log.py", "logging/", "builtins.print")),
    ("HTTP/aiohttp server", ("aiohttp", "multidict", "yarl", "gateway/routes", "gateway/auth")),
    ("HTTP/aiohttp server", ("gateway/views", "gateway/problems")),
    ("HTTP/aiohttp server", ("gateway/app.py",)),
    ("gateway + relay logic", ("exchange/gateway/", "exchange/crypto/")),
    ("asyncio + socket I/O", ("asyncio/", "_contextvars", "socket", "_asyncio")),
    ("uuid", ("uuid.py", "posix.urandom")),
)


Key = tuple[str, int, str]  # (file, line, function) in pstats


def area_of(key: Key) -> str:
    where = f"{key[0]}:{key[2]}"
    for area, needles in AREAS:
        if any(n in where for n in needles):
            return area
    return "other"


def label_of(key: Key) -> str:
    path, line, func = key
    if path == "~":
        return func
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({func})"


def profile_summary(profile: cProfile.Profile, wall: float) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    table: dict[Key, tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]

    def area(key: Key) -> str:
        """By file; a generic builtin (len, str.isascii, ...) goes to its main caller's area."""
        found = area_of(key)
        callers = table[key][4] if key in table else {}
        if found == "other" and key[0] == "~" and callers:
            main_caller = max(callers, key=lambda c: callers[c][3])
            found = area_of(main_caller)
        return found

    by_area: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, _callers) in table.items():
        by_area[area(key)] = by_area.get(area(key), 0.0) + tt
    total = sum(by_area.values())

    def row(key: Key) -> dict[str, Any]:
        _cc, nc, tt, ct, _ = table[key]
        return {
            "function": label_of(key),
            "area": area(key),
            "calls": nc,
            "own_s": round(tt, 3),
            "cum_s": round(ct, 3),
        }

    own = sorted(table, key=lambda k: -table[k][2])[:TOP]
    skip = ("event loop wait (epoll)", "asyncio + socket I/O", "bench load client")
    cum = sorted((k for k in table if area(k) not in skip), key=lambda k: -table[k][3])[:TOP]
    return {
        "wall_s": round(wall, 3),
        "main_thread_profiled_s": round(total, 3),
        "areas_own_s": {a: round(s, 3) for a, s in sorted(by_area.items(), key=lambda kv: -kv[1])},
        "top_own": [row(k) for k in own],
        "top_cumulative": [row(k) for k in cum],
    }


# --- CPU cost of each step of the hot path, in isolation ------------------------------


def stage_costs(network: DemoNetwork, body: bytes, repeats: int = 300) -> dict[str, float]:
    """Main-thread CPU microseconds per call of the production functions a message passes.

    Measured on the loaded network's own signer and trust store, with `time.thread_time`
    (so other processes on the machine do not count).
    """
    config = network.layout.config(SENDER, environ={})
    app = network.apps[SENDER]
    signer, trust = app[keys.SIGNER], app[keys.TRUST]  # every node's certificate is trusted
    policy = VerificationPolicy(trust=trust)
    raw_request = parse_json(body)
    request = parse_submission(raw_request)
    model = check_payload(request)
    signed = sign_submission(request, model, config=config, signer=signer, submitted_by="b")
    wire = signed.record.envelope
    raw = orjson.loads(wire)
    key = signer.private_key
    steps: dict[str, Callable[[], object]] = {
        "gateway: strict JSON parse of the request": lambda: parse_json(body),
        "gateway: request model (parse_submission)": lambda: parse_submission(raw_request),
        "gateway: payload schema (check_payload)": lambda: check_payload(request),
        "gateway: sign_submission (header, sign, digest)": lambda: sign_submission(
            request, model, config=config, signer=signer, submitted_by="b"
        ),
        "canonicalize(header+payload)": lambda: canonicalize(
            {"header": raw["header"], "payload": raw["payload"]}
        ),
        "Ed25519 sign (2.4 KB)": lambda: key.sign(wire),
        "relay: verify_envelope": lambda: verify_envelope(wire, policy),
        "relay: validate_payload (receiver)": lambda: validate_payload(
            "asset-inquiry", raw["header"]["schema"], raw["payload"]
        ),
    }
    costs: dict[str, float] = {}
    for name, step in steps.items():
        step()
        started = time.thread_time()
        for _ in range(repeats):
            step()
        costs[name] = round((time.thread_time() - started) / repeats * 1e6, 1)
    return costs


# --- the broker ------------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


@contextlib.contextmanager
def fresh_vhost(base_url: str) -> Iterator[tuple[str, str | None]]:
    """A throwaway vhost (deleted afterwards) and its URL; the base URL if rabbitmqctl is absent."""
    if shutil.which("rabbitmqctl") is None:
        yield base_url, None
        return
    vhost = f"bench-e2e-{uuid.uuid4().hex[:10]}"
    parts = urllib.parse.urlsplit(base_url)
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        path = "/" + urllib.parse.quote(vhost, safe="")
        yield urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), vhost
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def broker_pid() -> int | None:
    with contextlib.suppress(Exception):
        return int(_rabbitmqctl("eval", "os:getpid().").strip('"'))
    return None


# --- the run ---------------------------------------------------------------------------


def _node_logging(path: Path) -> TextIO:
    """The nodes log as in production (JSON lines at INFO), to a file instead of stderr."""
    log_file = path.open("a", encoding="utf-8")
    configure_logging(os.environ.get("EXCHANGE_LOG_LEVEL", "INFO"), json=True)
    # As exchange.log does for stderr: a PrintLogger per logger, here on the log file.
    structlog.configure(logger_factory=lambda *_: structlog.PrintLogger(file=log_file))
    return log_file


async def run(
    args: argparse.Namespace, url: str, vhost: str | None, workdir: Path
) -> dict[str, Any]:
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    layout = init_network_dir(
        workdir / "network",
        (SENDER, RECIPIENT),
        amqp_url=url,
        base_port=free_base_port(2),
        bus=args.bus,
        prefix=prefix,
    )
    if args.prefetch is not None:
        for node in layout.nodes.values():
            _set_limit(node.config_path, "prefetch", args.prefetch)
    log_file = _node_logging(workdir / "nodes.log")
    remote = None
    if args.split:
        remote = RemoteRecipient(
            layout.nodes[RECIPIENT].config_path,
            workdir / "recipient.log",
            args.profile_clock,
            args.what_if_publisher_channels,
        )
        layout = NetworkLayout(layout.directory, layout.network, {SENDER: layout.nodes[SENDER]})
    shared = MemoryBus(Topology(prefix)) if args.bus == "memory" else None
    network = DemoNetwork(layout, shared)
    harness = Harness(network, Observer(), remote, broker_pid() if args.bus == "amqp" else None)
    result: dict[str, Any] = {}
    try:
        if remote is not None:
            await remote.start()
        await network.start()
        harness.lag.start()
        for app in network.apps.values():
            await widen_publisher(app[keys.BUS], args.what_if_publisher_channels)
        sender = network.apps[SENDER]
        harness.observer.watch_sender(sender[keys.STORE], sender[keys.BUS])
        if remote is None:
            harness.observer.watch_recipient(network.apps[RECIPIENT][keys.STORE])
        connector = aiohttp.TCPConnector(limit=max(args.in_flight, 256))
        async with aiohttp.ClientSession(connector=connector) as session:
            client = Client(network, session)
            result.update(await _warm_up(client, harness, args.in_flight))
            print(f"warm-up done; envelope {result['envelope_bytes']} B", flush=True)
            result["throughput"] = await throughput(client, harness, args.n, args.in_flight)
            print(_throughput_line(result["throughput"]), flush=True)
            result["latency"] = await latency(client, harness, args.rate, args.seconds)
            print(_latency_line(result["latency"]), flush=True)
            result["latency_lower_rates"] = []
            for rate in (float(r) for r in args.lower_rates.split(",") if r.strip()):
                result["latency_lower_rates"].append(
                    await latency(client, harness, rate, args.seconds)
                )
                print(_latency_line(result["latency_lower_rates"][-1]), flush=True)
            if not args.no_profile:
                result.update(await _profiled(client, harness, args))
            result["status_check"] = await _status_check(session, network, harness.observer)
            result["stage_cpu_us"] = stage_costs(network, client.body)
            result["client_errors"] = client.errors[:10]
    finally:
        await harness.lag.stop()
        await network.stop()
        if remote is not None:
            await remote.stop()
        if args.bus == "amqp" and vhost is None:
            await delete_topology(url, Topology(prefix), (SENDER, RECIPIENT))
        log_file.close()
    result["node_log_lines"] = _count_lines(workdir)
    return result


def _set_limit(config_path: Path, name: str, value: int) -> None:
    """Add `name = value` to the `[limits]` table of a node's configuration file."""
    text = config_path.read_text()
    config_path.write_text(text.replace("[limits]\n", f"[limits]\n{name} = {value}\n", 1))


def _count_lines(workdir: Path) -> int:
    total = 0
    for path in workdir.glob("*.log"):
        with path.open("rb") as fh:
            total += sum(1 for _ in fh)
    return total


async def _warm_up(client: Client, harness: Harness, in_flight: int) -> dict[str, Any]:
    """Some traffic first (connections, caches); measure the envelope's size on the wire."""
    await throughput(client, harness, WARMUP, in_flight)
    sample = (await client.closed_loop(1, 1))[0]
    assert sample.message_id is not None, client.errors[:3]
    store = harness.network.apps[SENDER][keys.STORE]
    record = await store.get_message(uuid.UUID(sample.message_id))
    assert record is not None
    return {
        "envelope_bytes": len(record.envelope),
        "payload_bytes": len(orjson.dumps(json.loads(PAYLOAD.read_text("utf-8")))),
    }


async def _profiled(client: Client, harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """The throughput phase again, under cProfile (in each process when split)."""
    profile = cProfile.Profile(PROFILE_CLOCKS[args.profile_clock])
    if harness.remote is not None:
        await harness.remote.call("profile-start")
    started = time.perf_counter()
    profile.enable()
    profiled = await throughput(client, harness, args.n, args.in_flight)
    profile.disable()
    if args.profile_out is not None:
        profile.dump_stats(args.profile_out)
    out: dict[str, Any] = {"profile": profile_summary(profile, time.perf_counter() - started)}
    if harness.remote is not None:
        out["profile_recipient"] = await harness.remote.call("profile-stop")
    for summary in out.values():
        summary["clock"] = args.profile_clock
        summary["delivered_msg_s_under_profiler"] = profiled["delivered_msg_s"]
    return out


async def _status_check(
    session: aiohttp.ClientSession, network: DemoNetwork, observer: Observer
) -> dict[str, Any]:
    """Ask the sender's API (GET /v1/messages/{id}) about a sample of messages seen delivered."""
    info = network.layout.nodes[SENDER]
    headers = {"Authorization": f"Bearer {info.token('contact-point')}"}
    sample = list(observer.delivered_at)[:: max(1, len(observer.delivered_at) // 25)]
    statuses: dict[str, int] = {}
    for mid in sample:
        async with session.get(f"{info.url}/v1/messages/{mid}", headers=headers) as resp:
            status = (await resp.json())["status"]
        statuses[status] = statuses.get(status, 0) + 1
    return {"sampled": len(sample), "statuses": statuses}


def _throughput_line(t: dict[str, Any]) -> str:
    return (
        f"throughput: {t['delivered']}/{t['messages']} delivered in {t['seconds']} s "
        f"= {t['delivered_msg_s']:.0f} msg/s"
    )


def _latency_line(lat: dict[str, Any]) -> str:
    inbox = lat["submit_to_inbox_ms"]
    return (
        f"latency at {lat['offered_msg_s']:.0f} msg/s: p50/p95/p99 submit->inbox "
        f"{inbox['p50']}/{inbox['p95']}/{inbox['p99']} ms"
    )


async def baseline(url: str, n: int, size: int) -> dict[str, Any] | None:
    if not await amqp_answers(url):
        return None
    return await raw_baseline(url, n, size)


# --- report ----------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    t, lat, raw = result["throughput"], result["latency"], result.get("raw")
    print()
    channels = result["what_if_publisher_channels"]
    what_if = f"WHAT-IF: {channels} publisher channels per bus; " if channels > 0 else ""
    if result.get("prefetch") is not None:
        what_if += f"prefetch {result['prefetch']}; "
    mode = "recipient in its own process" if result["split"] else "both nodes in one process"
    print(
        f"e2e: {SENDER} -> {RECIPIENT}, asset-inquiry, payload {result['payload_bytes']} B, "
        f"envelope {result['envelope_bytes']} B; bus {result['bus']}; {mode}; {what_if}"
        f"{os.cpu_count()} CPUs shared by the nodes, the load client and the broker; "
        f"load avg before {result['loadavg_before']}, after {result['loadavg_after']}"
    )
    print(f"\nThroughput: {t['messages']} POSTs, {t['in_flight']} in flight")
    print(f"  {'':42}{'msg/s':>10}")
    print(f"  {'accepted (202 answered)':42}{t['accepted_msg_s']:>10.0f}")
    print(f"  {'in the recipient inbox':42}{t['inbox_msg_s']:>10.0f}")
    print(f"  {'delivered at the sender (end to end)':42}{t['delivered_msg_s']:>10.0f}")
    if raw is not None:
        print(
            f"  {'raw confirmed publish + consume (window ' + str(raw['window']) + ')':42}"
            f"{raw['publish_consume_msg_s']:>10.0f}"
        )
        print(
            f"  {'  raw publish alone / consume alone':42}{raw['publish_msg_s']:>10.0f}"
            f"{raw['consume_msg_s']:>8.0f}"
        )
        print(f"  {'ratio end-to-end / raw (goal >= 0.5)':42}{result['ratio']:>10.2f}")
    print(f"  POST answered in ms: {_fmt(t['post_ms'])}")
    _print_publisher(t["outbox_publisher"])
    print(
        f"\nLatency: {lat['offered_msg_s']:.0f} msg/s offered for {lat['seconds']} s, open loop "
        f"({lat['messages']} POSTs, sent at {lat['achieved_send_msg_s']:.0f}/s)"
    )
    print(f"  {'ms':28}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for name, k in (
        ("submit -> 202", "submit_to_accepted_ms"),
        ("submit -> inbox (goal p99<=50)", "submit_to_inbox_ms"),
        ("submit -> delivered", "submit_to_delivered_ms"),
        ("send lag behind schedule", "send_lag_ms"),
    ):
        s = lat[k]
        print(f"  {name:28}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}")
    print("\n  Where the time goes: ms since submit at each stage, p50 / p99, by offered rate")
    phases = [lat, *result["latency_lower_rates"]]
    print(f"  {'':58}" + "".join(f"{p['offered_msg_s']:>12.0f}/s" for p in phases))
    print(f"  {'202 answered':58}" + "".join(_p50_p99(p["submit_to_accepted_ms"]) for p in phases))
    for stage, meaning in STAGES:
        cells = "".join(_p50_p99(p["stages_since_submit_ms"][stage]) for p in phases)
        print(f"  {meaning:58}{cells}")
    for p in phases:
        print(f"  at {p['offered_msg_s']:.0f}/s:", end="")
        _print_publisher(p["outbox_publisher"])
    print("\nEvent loop lag (how late a 5 ms timer fires), ms p50/p99/max:")
    for phase, data in (("throughput", t), ("latency", lat), *(("latency", p) for p in phases[1:])):
        for who, s in data["loop_lag_ms"].items():
            label = f"{phase} at {data['offered_msg_s']:.0f}/s" if phase == "latency" else phase
            print(f"  {label:22}{who:16}{s['p50']:>8.1f}{s['p99']:>8.1f}{s['max']:>8.1f}")
    for phase, data in (("throughput", t), ("latency", lat)):
        print(f"\nCPU during the {phase} phase (same-named threads of both nodes summed):")
        print(f"  {'':42}{'cpu s':>8}{'% core':>8}{'us/msg':>8}")
        for name, c in data["cpu"].items():
            print(
                f"  {name:42}{c['cpu_s']:>8.2f}{c['cpu_pct_of_wall']:>7.1f}%"
                f"{c['cpu_us_per_message']:>8}"
            )
    for key, who in (
        ("profile", "sender gateway + relay + load client" if result["split"] else "both nodes"),
        ("profile_recipient", "recipient gateway + relay"),
    ):
        if key in result:
            _print_profile(result[key], who)
    print("\nMain-thread CPU per call of each hot-path step, in isolation (microseconds):")
    for name, us in result["stage_cpu_us"].items():
        print(f"  {name:50}{us:>9.1f}")
    print(f"\nsender's API on a sample of delivered messages: {result['status_check']}")
    if result["client_errors"]:
        print(f"client errors: {result['client_errors']}")


def _print_profile(prof: dict[str, Any], who: str) -> None:
    print(
        f"\nProfile of the throughput phase, {who} (cProfile, {prof['clock']} clock, main "
        f"thread only; {prof['delivered_msg_s_under_profiler']:.0f} msg/s under the profiler; "
        f"a coroutine's calls count each resume). Own time by area:"
    )
    for area, s in prof["areas_own_s"].items():
        print(f"  {area:38}{s:>8.2f} s {100 * s / prof['main_thread_profiled_s']:>6.1f}%")
    for title, rows in (
        ("Top functions by own time", prof["top_own"]),
        ("Top by cumulative time (event loop and load client left out)", prof["top_cumulative"]),
    ):
        print(f"\n{title}:")
        print(f"  {'own s':>7}{'cum s':>8}{'calls':>9}  {'area':26}function")
        for r in rows:
            print(
                f"  {r['own_s']:>7.2f}{r['cum_s']:>8.2f}{r['calls']:>9}  "
                f"{r['area'][:25]:26}{r['function'][:110]}"
            )


def _print_publisher(cycles: dict[str, Any]) -> None:
    if not cycles["batches"]:
        return
    steps = ", ".join(f"{k} {v}" for k, v in cycles["ms_per_batch_by_step"].items())
    print(
        f"  sender's outbox publisher: {cycles['batches']} batches of "
        f"{cycles['rows_per_batch']} rows on average, one every {cycles['ms_per_batch']} ms; "
        f"ms per batch: {steps}"
    )


def _p50_p99(s: dict[str, float]) -> str:
    return f"{s['p50']:>7.0f}/{s['p99']:<6.0f}"


def _fmt(s: dict[str, float]) -> str:
    return f"p50 {s['p50']}, p95 {s['p95']}, p99 {s['p99']}, max {s['max']}"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.bus == "amqp" and not await amqp_answers(args.url):
        raise SystemExit(f"RabbitMQ does not answer at {args.url} (try --bus memory)")
    loadavg = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        with fresh_vhost(args.url) if args.bus == "amqp" else _no_vhost(args.url) as (url, vhost):
            result = await run(args, url, vhost, workdir)
            print("raw baseline ...", flush=True)
            size = result["envelope_bytes"]
            result["raw"] = await baseline(url, args.raw_n or args.n, size)
    finally:
        if args.keep:
            print(f"kept {workdir} (network, node data, nodes.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result.update(
        bus=args.bus,
        split=args.split,
        what_if_publisher_channels=args.what_if_publisher_channels,
        prefetch=args.prefetch,
        loadavg_before=loadavg,
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        cpus=os.cpu_count(),
        python=platform.python_version(),
        command=" ".join(sys.argv),
    )
    raw = result["raw"]
    result["ratio"] = (
        result["throughput"]["delivered_msg_s"] / raw["publish_consume_msg_s"] if raw else None
    )
    return result


@contextlib.contextmanager
def _no_vhost(url: str) -> Iterator[tuple[str, str | None]]:
    yield url, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--n", type=int, default=2000, help="messages in the throughput phase")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent POSTs")
    parser.add_argument("--rate", type=float, default=300.0, help="offered msg/s (latency)")
    parser.add_argument(
        "--lower-rates", default="50,150", help="also these rates, comma-separated ('' for none)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase length")
    parser.add_argument("--bus", choices=("amqp", "memory"), default="amqp")
    parser.add_argument("--raw-n", type=int, default=0, help="raw baseline messages (--n)")
    parser.add_argument(
        "--split", action="store_true", help="run the recipient node in a process of its own"
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--what-if-publisher-channels",
        type=int,
        default=0,
        metavar="N",
        help="experiment: patch the running AmqpBus to publish over N channels "
        "(default 0: the bus's own pool)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument(
        "--prefetch",
        type=int,
        metavar="N",
        help="the nodes' `limits.prefetch` (inbox deliveries in flight; default: the config's)",
    )
    parser.add_argument(
        "--profile-out",
        type=Path,
        metavar="FILE",
        help="also write the main process's cProfile data there (pstats format)",
    )
    parser.add_argument(
        "--profile-clock",
        choices=tuple(PROFILE_CLOCKS),
        default="cpu",
        help="cpu: main-thread CPU time (robust on a busy machine); wall: includes waits",
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

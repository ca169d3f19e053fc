"""Soak: three nodes as processes at a steady load for a bounded time; does memory stay flat?

AL-ARO, RS-PPO and MD-ARO each run `exchange node run --config FILE` as in production
(the process harness of `tests/fault/fault_harness.py`), on the shared RabbitMQ in a
throwaway virtual host (`rabbitmqctl add_vhost`, deleted at the end). For `--seconds` the
benchmark offers, open loop:

- asset inquiries (2.4 KB signed) at `--rate` msg/s in total, each node sending in turn to
  the two others in turn;
- case updates of the prosecutor network `see-pcn` (all three nodes) at `--update-rate`/s,
  each to the two other members;
- the reads of a contact point, every `--poll-every` s on each node: the new inbox pages
  (`GET /v1/inbox?after=CURSOR`), the new case updates (`GET /v1/subscriptions/events`,
  subscriber token) and the status of each message it sent that is not yet seen delivered
  (`GET /v1/messages/{id}`).

Every `--sample-every` s the RSS (`VmRSS` of /proc/PID/status) of each node process is
sampled, with its anonymous RSS, CPU time, threads, open files, `/metrics` series and data
directory size; the broker's `beam.smp` and this process are sampled too, for information.

Verdict: growth = median RSS of the last `--window` s of the load / median RSS of the first
`--window` s after `--warmup` (default 20 % of the run) - 1, for each node; it must stay
below `--max-growth` (10 %). At the end every accepted inquiry must be `delivered` and in
its recipient's inbox once, every case update in each other member's updates once, and
every node's audit log must verify (`exchange audit verify`). Exit code 1 otherwise.
The rates are compared with the offered rate (the baseline of a soak): achieved / offered.

    .venv/bin/python bench/soak.py [--seconds 600] [--warmup SECONDS] [--rate 30]
        [--update-rate 1] [--poll-every 2] [--sample-every 5] [--window 30]
        [--max-growth 10] [--settle 180] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

# The process harness of the fault tests (tests/ is not a package), as tests/fault/conftest.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fault"))

from e2e_nodes import broker_pid, fresh_vhost
from fault_harness import FINAL_STATES, FaultNetwork, Sent

from exchange.client import GatewayUnreachable, ProblemError
from exchange.demo.runner import CASE, amqp_answers, free_base_port
from exchange.network import init_network_dir

DEFAULT_URL = os.environ.get("EXCHANGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS = Path(__file__).parent / "results" / "soak.json"
NODES = ("AL-ARO", "RS-PPO", "MD-ARO")
PCN = "see-pcn"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = 500  # inbox and update pages read at a time (the API's maximum)
STATUS_READS = 200  # at most this many GET /v1/messages/{id} per node and poll
STATUS_AFTER = 0.5  # ask about a message only once it is this old (s)

_T = TypeVar("_T")


# --- the broker ------------------------------------------------------------------------


# --- memory and CPU, from /proc --------------------------------------------------------


def proc_sample(pid: int) -> dict[str, float] | None:
    """RSS, anonymous RSS and peak RSS (KiB), threads, CPU seconds and open files of `pid`."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kib(name: str) -> float:
        return float(fields.get(name, "0 kB").split()[0])

    ticks = stat.rsplit(")", 1)[1].split()  # fields after the command name; utime is 14th
    return {
        "rss_kb": kib("VmRSS"),
        "anon_kb": kib("RssAnon"),
        "hwm_kb": kib("VmHWM"),
        "threads": float(fields.get("Threads", "0").strip()),
        "cpu_s": (int(ticks[11]) + int(ticks[12])) / CLK_TCK,
        "fds": float(fds),
    }


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var


# --- the load --------------------------------------------------------------------------


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class NodeLoad:
    """What one node was asked to do and what it answered, as a contact point sees it."""

    node: str
    pending: dict[str, float] = field(default_factory=dict)  # sent id -> monotonic sent at
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> final view
    inbox: Counter[str] = field(default_factory=Counter)  # ids read from its inbox
    updates_in: Counter[str] = field(default_factory=Counter)  # update ids from others
    inbox_cursor: int = 0
    updates_cursor: int = 0
    reads: Counter[str] = field(default_factory=Counter)  # GETs by kind
    read_errors: Counter[str] = field(default_factory=Counter)
    read_seconds: list[tuple[float, float]] = field(default_factory=list)  # (t, poll cycle s)

    def settle(self, message_id: str, view: dict[str, Any]) -> None:
        """Note a message seen in a final state (keeping only what the report needs)."""
        if view.get("status") not in FINAL_STATES:
            return
        receipts = [d["receipt"]["received_at"] for d in view["deliveries"] if d.get("receipt")]
        self.delivered[message_id] = {
            "status": view["status"],
            "created_at": view["created_at"],
            "receipts_at": receipts,
        }
        self.pending.pop(message_id, None)


@dataclass
class Soak:
    net: FaultNetwork
    args: argparse.Namespace
    begin: float = 0.0  # monotonic start of the load
    inquiries: list[tuple[Sent, str, float]] = field(default_factory=list)  # sent, to, POST s
    updates: list[tuple[Sent, float]] = field(default_factory=list)
    skipped: int = 0  # offers not made because too many POSTs were already in flight
    in_flight: int = 0
    lag: list[float] = field(default_factory=list)  # how late each offer was made (s)
    loads: dict[str, NodeLoad] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    broker: int | None = None

    def __post_init__(self) -> None:
        self.loads = {n: NodeLoad(n) for n in NODES}

    def now(self) -> float:
        return time.monotonic() - self.begin

    # -- offering ------------------------------------------------------------------------

    async def offer(self, rate: float, seconds: float, post: Any) -> None:
        """Call `post(index)` at `rate`/s for `seconds`, each on schedule whatever the
        others do (open loop), unless `--max-in-flight` POSTs are already unanswered."""
        if rate <= 0:
            return
        tasks: set[asyncio.Task[None]] = set()
        total = int(seconds * rate)
        for index in range(total):
            due = self.begin + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lag.append(max(0.0, time.monotonic() - due))
            if self.in_flight >= self.args.max_in_flight:
                self.skipped += 1
                continue
            task = asyncio.create_task(self._counted(post(index)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def _counted(self, coro: Any) -> None:
        self.in_flight += 1
        try:
            await coro
        finally:
            self.in_flight -= 1

    async def post_inquiry(self, index: int) -> None:
        sender = NODES[index % len(NODES)]
        others = [n for n in NODES if n != sender]
        recipient = others[(index // len(NODES)) % len(others)]
        started = time.monotonic()
        sent = await self.net.send_inquiry(sender, [recipient])
        self.inquiries.append((sent, recipient, time.monotonic() - started))
        if sent.id is not None:
            self.loads[sender].pending[sent.id] = sent.at

    async def post_update(self, index: int) -> None:
        sender = NODES[index % len(NODES)]
        body = {
            "type": "case-update",
            "recipients": [n for n in NODES if n != sender],
            "case": CASE,
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
            "payload": {
                "case": CASE,
                "network": PCN,
                "event": "assets-identified",
                "summary": f"Assets identified in a partner country; soak update #{index}",
                "countries": ["AL", "RS", "MD"],
                "amount": {"amount": "575460.00", "currency": "EUR"},
            },
        }
        sent = await self.net.submit(sender, body)
        self.updates.append((sent, time.monotonic() - sent.at))

    # -- reading, as a contact point does ------------------------------------------------

    async def _get(self, load: NodeLoad, kind: str, read: Awaitable[_T]) -> _T | None:
        """`read`'s answer; None (counted as a read error) if it was refused or unanswered."""
        load.reads[kind] += 1
        try:
            return await read
        except ProblemError as refused:
            load.read_errors[f"{kind} HTTP {refused.status}"] += 1
        except GatewayUnreachable as exc:
            load.read_errors[f"{kind} {type(exc.error).__name__}"] += 1
        return None

    async def read_inbox(self, load: NodeLoad) -> None:
        client = self.net.client(load.node)
        while True:
            page = await self._get(load, "inbox", client.inbox(after=load.inbox_cursor, limit=PAGE))
            if not page or not page.items:
                return
            load.inbox.update(str(item.id) for item in page.items)
            load.inbox_cursor = page.next

    async def read_updates(self, load: NodeLoad) -> None:
        client = self.net.client(load.node, "subscriber")
        while True:
            read = client.case_updates(after=load.updates_cursor, limit=PAGE)
            page = await self._get(load, "updates", read)
            if not page or not page.items:
                return
            load.updates_in.update(str(i.id) for i in page.items if i.direction == "in")
            load.updates_cursor = page.next

    async def read_statuses(self, load: NodeLoad) -> None:
        due = time.monotonic() - STATUS_AFTER
        ids = [m for m, at in load.pending.items() if at <= due][:STATUS_READS]
        for start in range(0, len(ids), 20):
            chunk = ids[start : start + 20]
            client = self.net.client(load.node)
            views = await asyncio.gather(
                *(self._get(load, "status", client.message(m)) for m in chunk)
            )
            for message_id, view in zip(chunk, views, strict=True):
                if view is not None:
                    load.settle(message_id, view.model_dump(mode="json"))

    async def poll(self, node: str, stop: asyncio.Event) -> None:
        load = self.loads[node]
        while not stop.is_set():
            started = time.monotonic()
            await self.read_inbox(load)
            await self.read_updates(load)
            await self.read_statuses(load)
            load.read_seconds.append((self.now(), time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.args.poll_every)
        await self.read_inbox(load)
        await self.read_updates(load)

    # -- sampling ------------------------------------------------------------------------

    async def metrics_series(self, node: str) -> int | None:
        try:
            text = await self.net.client(node).metrics()
        except (GatewayUnreachable, ProblemError):
            return None
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))

    async def sample(self) -> None:
        row: dict[str, Any] = {"t": round(self.now(), 2), "nodes": {}}
        series = await asyncio.gather(*(self.metrics_series(n) for n in NODES))
        for node, count in zip(NODES, series, strict=True):
            process = self.net.nodes[node].process
            got = proc_sample(process.pid) if process is not None else None
            data = self.net.layout.directory / "data" / node
            row["nodes"][node] = {
                **(got or {}),
                "metrics_series": count,
                "data_bytes": directory_bytes(data),
                "pending": len(self.loads[node].pending),
            }
        row["broker"] = proc_sample(self.broker) if self.broker else None
        row["driver"] = proc_sample(os.getpid())
        row["in_flight"] = self.in_flight
        self.samples.append(row)

    async def sample_every(self, seconds: float, until: float) -> None:
        while True:
            await self.sample()
            if self.now() >= until - 1e-3:
                return
            next_at = min(until, (len(self.samples)) * seconds)
            await asyncio.sleep(max(0.0, next_at - self.now()))

    # -- settling ------------------------------------------------------------------------

    def expected_inbox(self) -> dict[str, set[str]]:
        expected: dict[str, set[str]] = {n: set() for n in NODES}
        for sent, recipient, _ in self.inquiries:
            if sent.id is not None:
                expected[recipient].add(sent.id)
        return expected

    def expected_updates(self) -> dict[str, set[str]]:
        expected: dict[str, set[str]] = {n: set() for n in NODES}
        for sent, _ in self.updates:
            if sent.id is not None:
                for node in NODES:
                    if node != sent.sender:
                        expected[node].add(sent.id)
        return expected

    def settled(self) -> bool:
        inbox, updates = self.expected_inbox(), self.expected_updates()
        return all(
            not load.pending
            and inbox[n] <= load.inbox.keys()
            and updates[n] <= load.updates_in.keys()
            for n, load in self.loads.items()
        )


# --- the run ---------------------------------------------------------------------------


def _node_memory(samples: list[dict[str, Any]], name: str, args: argparse.Namespace) -> Any:
    """The verdict numbers of one process (`name` a node, or 'broker' / 'driver')."""

    def value(row: dict[str, Any], key: str) -> float | None:
        got = row["nodes"].get(name) if name in NODES else row.get(name)
        return None if not got or key not in got else float(got[key])

    def series(key: str) -> list[tuple[float, float]]:
        out = []
        for row in samples:
            v = value(row, key)
            if v is not None:
                out.append((float(row["t"]), v))
        return out

    end = args.seconds
    warm = args.warmup
    result: dict[str, Any] = {}
    for key in ("rss_kb", "anon_kb"):
        points = series(key)
        after = [v for t, v in points if t >= warm]
        base = [v for t, v in points if warm <= t <= warm + args.window]
        last = [v for t, v in points if end - args.window <= t]
        start_kb, end_kb = median(base), median(last)
        result[key] = {
            "first_kb": points[0][1] if points else None,
            "after_warmup_kb": start_kb,
            "end_kb": end_kb,
            "growth": end_kb / start_kb - 1 if start_kb else float("nan"),
            "min_kb": min(after) if after else None,
            "max_kb": max(after) if after else None,
            "slope_kb_per_min": slope_per_minute([(t, v) for t, v in points if t >= warm]),
        }
    for key in ("cpu_s", "threads", "fds", "hwm_kb", "metrics_series", "data_bytes"):
        points = series(key)
        base = [v for t, v in points if warm <= t <= warm + args.window]
        result[key] = {
            "after_warmup": median(base) if base else None,
            "end": points[-1][1] if points else None,
        }
    return result


async def run(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    layout = init_network_dir(
        workdir / "net",
        NODES,
        amqp_url=url,
        base_port=free_base_port(len(NODES)),
        prefix=f"soak{uuid.uuid4().hex[:8]}",
        networks={PCN: NODES},
    )
    net = FaultNetwork(layout, workdir / "logs")
    soak = Soak(net, args, broker=await asyncio.to_thread(broker_pid))
    result: dict[str, Any] = {}
    try:
        started = time.monotonic()
        await net.start(*NODES)
        print(f"3 nodes ready in {time.monotonic() - started:.1f}s; logs in {workdir / 'logs'}")
        print(
            f"offering {args.rate:g} inquiries/s + {args.update_rate:g} case updates/s for "
            f"{args.seconds:g}s (warm-up {args.warmup:g}s), sampling every {args.sample_every:g}s",
            flush=True,
        )
        soak.begin = time.monotonic()
        stop_polling = asyncio.Event()
        pollers = [asyncio.create_task(soak.poll(n, stop_polling)) for n in NODES]
        sampler = asyncio.create_task(soak.sample_every(args.sample_every, args.seconds))
        progress = asyncio.create_task(_progress(soak))
        await asyncio.gather(
            soak.offer(args.rate, args.seconds, soak.post_inquiry),
            soak.offer(args.update_rate, args.seconds, soak.post_update),
        )
        offered_for = soak.now()
        await sampler
        progress.cancel()
        print(f"load ended at {offered_for:.1f}s; settling ...", flush=True)
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            if soak.settled():
                break
            await asyncio.sleep(0.5)
        settle_s = time.monotonic() - soak.begin - offered_for
        stop_polling.set()
        await asyncio.gather(*pollers)
        # What the status polls could not see in time, asked once more.
        for load in soak.loads.values():
            if load.pending:
                views = await net.wait_settled(dict.fromkeys(load.pending, load.node), 10.0)
                for message_id, view in views.items():
                    load.settle(message_id, view)
        print("stopping the nodes and verifying their audit logs ...", flush=True)
        await net.stop_all()
        verified = await asyncio.gather(*(net.audit_verify(n) for n in NODES))
        result = summarize(soak, args, offered_for, settle_s, verified)
    except BaseException:
        print(net.diagnostics(), file=sys.stderr)
        raise
    finally:
        await net.close()
    return result


async def _progress(soak: Soak) -> None:
    while True:
        await asyncio.sleep(60)
        row = soak.samples[-1] if soak.samples else None
        rss = (
            ", ".join(f"{n} {row['nodes'][n].get('rss_kb', 0) / 1024:.0f} MiB" for n in NODES)
            if row
            else ""
        )
        pending = sum(len(load.pending) for load in soak.loads.values())
        print(
            f"  {soak.now():5.0f}s: {len(soak.inquiries)} inquiries answered, "
            f"{pending} not yet seen delivered, {soak.in_flight} POSTs in flight; RSS {rss}",
            flush=True,
        )


def _exactly_once(counts: Counter[str], expected: set[str]) -> dict[str, int]:
    return {
        "missing": len(expected - counts.keys()),
        "more_than_once": sum(1 for m in expected if counts[m] > 1),
        "unexpected": len(counts.keys() - expected),
    }


def summarize(
    soak: Soak,
    args: argparse.Namespace,
    offered_for: float,
    settle_s: float,
    verified: Sequence[tuple[bool, str]],
) -> dict[str, Any]:
    inquiries_ok = [s for s, _, _ in soak.inquiries if s.id is not None]
    updates_ok = [s for s, _ in soak.updates if s.id is not None]
    refused = Counter(
        f"{s.status} {s.error}"[:160]
        for s in [*(s for s, _, _ in soak.inquiries), *(s for s, _ in soak.updates)]
        if s.id is None
    )
    views = {m: v for load in soak.loads.values() for m, v in load.delivered.items()}
    statuses = Counter(v.get("status") for v in views.values())
    not_final = sum(len(load.pending) for load in soak.loads.values())
    # Submit -> delivered, from the sender's own clock: created_at to the receipt's arrival.
    latency: list[tuple[float, float]] = []  # (created at, seconds)
    for view in views.values():
        if view["status"] == "delivered" and view["receipts_at"]:
            created = _parse_time(view["created_at"])
            receipt = max(_parse_time(at) for at in view["receipts_at"])
            latency.append((created, receipt - created))
    latency.sort()
    first = latency[0][0] if latency else 0.0
    minutes: dict[int, list[float]] = {}
    for created, seconds in latency:
        minutes.setdefault(int((created - first) // 60), []).append(seconds)
    per_minute = [
        {
            "minute": m,
            "n": len(v),
            "p50_ms": round(percentile(v, 0.5) * 1e3, 1),
            "p99_ms": round(percentile(v, 0.99) * 1e3, 1),
        }
        for m, v in sorted(minutes.items())
    ]
    expected_inbox, expected_updates = soak.expected_inbox(), soak.expected_updates()
    exactly = {
        n: {
            "inbox": _exactly_once(soak.loads[n].inbox, expected_inbox[n]),
            "updates": _exactly_once(soak.loads[n].updates_in, expected_updates[n]),
        }
        for n in NODES
    }
    audit = {
        n: {"ok": ok, "tail": out[-600:]} for n, (ok, out) in zip(NODES, verified, strict=True)
    }
    memory = {n: _node_memory(soak.samples, n, args) for n in NODES}
    memory_info = {p: _node_memory(soak.samples, p, args) for p in ("broker", "driver")}
    post_s = [s for _, _, s in soak.inquiries] + [s for _, s in soak.updates]
    offered = args.rate + args.update_rate
    accepted_rate = (len(inquiries_ok) + len(updates_ok)) / offered_for
    delivered = statuses.get("delivered", 0)
    correctness = {
        "refused_posts": sum(refused.values()),
        "refusals": dict(refused.most_common(10)),
        "inquiries_not_delivered": len(inquiries_ok) - delivered,
        "statuses": dict(statuses),
        "not_final": not_final,
        "exactly_once": exactly,
        "audit_verified": {n: a["ok"] for n, a in audit.items()},
        "skipped_offers": soak.skipped,
    }
    correct = (
        not refused
        and delivered == len(inquiries_ok)
        and not_final == 0
        and all(v == 0 for n in exactly.values() for c in n.values() for v in c.values())
        and all(a["ok"] for a in audit.values())
        and soak.skipped == 0
    )
    grew = {n: m["rss_kb"]["growth"] for n, m in memory.items()}
    flat = all(g < args.max_growth / 100 for g in grew.values())
    reads = Counter[str]()
    read_errors = Counter[str]()
    for load in soak.loads.values():
        reads.update(load.reads)
        read_errors.update(load.read_errors)
    cycles = [s for load in soak.loads.values() for t, s in load.read_seconds if t <= offered_for]
    return {
        "passed": flat and correct,
        "memory_flat": flat,
        "correct": correct,
        "max_growth": args.max_growth / 100,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "window": args.window,
        "offered_for_s": round(offered_for, 1),
        "settle_s": round(settle_s, 1),
        "offered": {"inquiries_per_s": args.rate, "updates_per_s": args.update_rate},
        "sent": {
            "inquiries": len(soak.inquiries),
            "inquiries_accepted": len(inquiries_ok),
            "inquiries_delivered": delivered,
            "updates": len(soak.updates),
            "updates_accepted": len(updates_ok),
            "update_copies_received": sum(
                len(expected_updates[n] & soak.loads[n].updates_in.keys()) for n in NODES
            ),
        },
        "rates": {
            "offered_msg_s": offered,
            "accepted_msg_s": round(accepted_rate, 2),
            "accepted_over_offered": round(accepted_rate / offered, 3),
            "delivered_msg_s": round(delivered / offered_for, 2),
            "delivered_over_offered": round(delivered / offered_for / args.rate, 3)
            if args.rate
            else None,
            "offer_lag_p99_ms": round(percentile(soak.lag, 0.99) * 1e3, 1),
        },
        "post_ms": {
            "p50": round(percentile(post_s, 0.5) * 1e3, 1),
            "p99": round(percentile(post_s, 0.99) * 1e3, 1),
            "max": round(max(post_s, default=0.0) * 1e3, 1),
        },
        "delivered_latency_per_minute": per_minute,
        "reads": dict(reads),
        "read_errors": dict(read_errors),
        "poll_cycle_ms": {
            "p50": round(percentile(cycles, 0.5) * 1e3, 1),
            "p99": round(percentile(cycles, 0.99) * 1e3, 1),
        },
        "correctness": correctness,
        "audit": audit,
        "memory": memory,
        "memory_info": memory_info,
        "samples": soak.samples,
    }


def report(result: dict[str, Any]) -> None:
    mib = 1024.0
    print(
        f"\nsoak: {result['offered_for_s']}s at {result['rates']['offered_msg_s']:g} msg/s "
        f"offered; RSS after warm-up (median of {result['window']:g}s from "
        f"{result['warmup']:g}s) vs at the end (median of the last {result['window']:g}s)"
    )
    print(
        f"  {'process':9}{'warm MiB':>10}{'end MiB':>9}{'growth':>9}{'min':>8}{'max':>8}"
        f"{'KiB/min':>9}{'anon grw':>10}{'CPU s':>8}{'fds':>9}{'series':>11}"
    )
    rows = {**result["memory"], **result["memory_info"]}
    for name, m in rows.items():
        rss, anon = m["rss_kb"], m["anon_kb"]
        if rss["first_kb"] is None:
            continue
        fds = f"{m['fds']['after_warmup']:.0f}>{m['fds']['end']:.0f}"
        series = m["metrics_series"]
        series_txt = (
            f"{series['after_warmup']:.0f}>{series['end']:.0f}"
            if series["after_warmup"] is not None
            else "-"
        )
        print(
            f"  {name:9}{rss['after_warmup_kb'] / mib:>10.1f}{rss['end_kb'] / mib:>9.1f}"
            f"{rss['growth']:>+9.1%}{rss['min_kb'] / mib:>8.1f}{rss['max_kb'] / mib:>8.1f}"
            f"{rss['slope_kb_per_min']:>9.0f}{anon['growth']:>+10.1%}"
            f"{(m['cpu_s']['end'] or 0) - (m['cpu_s']['after_warmup'] or 0):>8.0f}"
            f"{fds:>9}{series_txt:>11}"
        )
    sent, rates = result["sent"], result["rates"]
    print(
        f"  inquiries: {sent['inquiries']} POSTed, {sent['inquiries_accepted']} accepted, "
        f"{sent['inquiries_delivered']} delivered; case updates: {sent['updates']} POSTed, "
        f"{sent['updates_accepted']} accepted, {sent['update_copies_received']} copies received"
    )
    print(
        f"  rate: offered {rates['offered_msg_s']:g} msg/s, accepted {rates['accepted_msg_s']} "
        f"msg/s (ratio {rates['accepted_over_offered']}), inquiries delivered "
        f"{rates['delivered_msg_s']} msg/s (ratio {rates['delivered_over_offered']}); "
        f"settled {result['settle_s']}s after the load"
    )
    post = result["post_ms"]
    lat = result["delivered_latency_per_minute"]
    if lat:
        print(
            f"  POST ms p50 {post['p50']}, p99 {post['p99']}, max {post['max']}; "
            "submit->delivered p50/p99 ms by minute: "
            + ", ".join(f"{r['p50_ms']:.0f}/{r['p99_ms']:.0f}" for r in lat)
        )
    print(
        f"  reads: {result['reads']} (errors {result['read_errors'] or 'none'}), poll cycle "
        f"p50 {result['poll_cycle_ms']['p50']} ms, p99 {result['poll_cycle_ms']['p99']} ms"
    )
    c = result["correctness"]
    once = {
        f"{node} {where} {problem}": count
        for node, places in c["exactly_once"].items()
        for where, problems in places.items()
        for problem, count in problems.items()
        if count
    }
    audit = ", ".join(f"{n} {'ok' if ok else 'FAILED'}" for n, ok in c["audit_verified"].items())
    print(
        f"  correctness: {'ok' if result['correct'] else 'FAILED'}: refused POSTs "
        f"{c['refused_posts']}, inquiries not delivered {c['inquiries_not_delivered']} "
        f"(statuses {c['statuses']}), skipped offers {c['skipped_offers']}; in each inbox and "
        f"update feed exactly once: {once or 'yes'}; audit logs verify: {audit}"
    )
    print(
        f"  load average {result['loadavg_before']} before, {result['loadavg_after']} after; "
        f"{result['cpus']} CPUs"
    )
    print(
        f"\nSOAK {'PASSED' if result['passed'] else 'FAILED'}: RSS growth "
        + ", ".join(f"{n} {m['rss_kb']['growth']:+.1%}" for n, m in result["memory"].items())
        + f" (limit {result['max_growth']:.0%}); correctness "
        + ("ok" if result["correct"] else "FAILED")
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if not await amqp_answers(args.url):
        raise SystemExit(f"RabbitMQ does not answer at {args.url}")
    loadavg = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    failed = True
    try:
        with fresh_vhost(args.url) as url:
            result = await run(args, url, workdir)
        failed = not result["passed"]
    finally:
        if args.keep or failed:
            print(f"kept {workdir} (network, node data and logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result.update(
        loadavg_before=loadavg,
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        cpus=os.cpu_count(),
        python=platform.python_version(),
        command=" ".join(sys.argv),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--seconds", type=float, default=600.0, help="load length (<= 600)")
    parser.add_argument("--warmup", type=float, help="seconds before the baseline (20 %%)")
    parser.add_argument("--rate", type=float, default=30.0, help="inquiries/s, all nodes")
    parser.add_argument("--update-rate", type=float, default=1.0, help="case updates/s")
    parser.add_argument("--poll-every", type=float, default=2.0, help="reads per node (s)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS samples (s)")
    parser.add_argument("--window", type=float, default=30.0, help="median window (s)")
    parser.add_argument("--max-growth", type=float, default=10.0, help="RSS growth limit (%%)")
    parser.add_argument("--settle", type=float, default=180.0, help="wait for delivery (s)")
    parser.add_argument("--max-in-flight", type=int, default=500, help="unanswered POSTs")
    parser.add_argument("--keep", action="store_true", help="keep the network, data and logs")
    args = parser.parse_args()
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]: the soak is bounded to 10 minutes")
    if args.warmup is None:
        args.warmup = 0.2 * args.seconds
    if args.warmup + 2 * args.window > args.seconds:
        parser.error("--seconds must leave room for --warmup and two --window lengths")
    result = asyncio.run(main_async(args))
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {RESULTS}")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()

"""End-to-end benchmark: both nodes as `exchange node run` processes, against the protocol floor.

AL-ARO sends ~2 KB asset inquiries to RS-PPO through `POST /v1/messages`, from a load client
in a process of its own (`bench/e2e_load.py`). Both nodes are real gateway processes of a
network written by `exchange network init`, on a throwaway RabbitMQ virtual host, observed
only from outside (`bench/e2e_nodes.py`): a message is "in the inbox" at the recipient's
`inbox.stored` log line (its inbox row committed; the inbox API's `received_at` if the log
has none) and "delivered" when the sender's API says so (the receipt's `received_at`).

Phases, in one invocation: warm-up; the protocol floor (`bench/e2e_floor.py`: the same broker
work by raw aio-pika, no HTTP, crypto or disk), run 1; throughput (closed loop, `--n` POSTs,
`--in-flight` at a time); latency at each of `--rates` (open loop, `--seconds` each); the
floor, run 2 (the best run counts). CPU per message for each process (both gateways, the
load client, the broker's beam.smp) comes from /proc/PID/stat before and after each phase.

    .venv/bin/python bench/e2e.py [--n 2000] [--in-flight 64] [--rates 150,300]
        [--seconds 10] [--warmup 200] [--floor-n N] [--floor-runs 2] [--floor-window 500]
        [--floor-prefetch 500] [--prefetch N] [--settle 120] [--profile] [--keep] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_floor import floor_run
from e2e_load import LoadProcess, request_body
from e2e_nodes import (
    Api,
    NodeProcess,
    broker_pid,
    cpu_per_message,
    cpu_snapshot,
    delivered_at,
    fresh_vhost,
    inbox_times_from_log,
    init_network,
    set_limit,
)

DEFAULT_URL = os.environ.get("EXCHANGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS = Path(__file__).parent / "results" / "e2e.json"
SENDER, RECIPIENT = "AL-ARO", "RS-PPO"
FINAL = frozenset({"delivered", "rejected", "failed"})
P99_GOAL_MS = {150.0: 50.0, 300.0: 250.0}  # issue 12: p99 submit -> recipient inbox
RATIO_GOAL = 0.5
PROCESSES = (
    ("sender", f"sender gateway ({SENDER})"),
    ("recipient", f"recipient gateway ({RECIPIENT})"),
    ("load", "load client"),
    ("broker", "broker (beam.smp)"),
    ("main", "bench main process"),
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5))) - 1]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2) if ms else float("nan"),
    }


@dataclass
class Bench:
    """The running nodes, the load client and the broker, as the phases see them."""

    args: argparse.Namespace
    url: str
    nodes: dict[str, NodeProcess]
    apis: dict[str, Api]
    load: LoadProcess
    broker: int | None

    def pids(self) -> dict[str, int | None]:
        return {
            "sender": self.nodes[SENDER].pid,
            "recipient": self.nodes[RECIPIENT].pid,
            "load": self.load.pid,
            "broker": self.broker,
            "main": os.getpid(),
        }

    async def wait_delivered(self, base: int | None, ids: list[str]) -> bool:
        """Until the sender has every id delivered (its `/metrics` counter; else its API)."""
        sender = self.apis[SENDER]
        pending = list(ids)
        deadline = time.monotonic() + self.args.settle
        while time.monotonic() < deadline:
            count = await sender.counter("out", "delivered")
            if count is not None and base is not None:
                if count - base >= len(ids):
                    return True
            else:
                while (
                    pending and (await sender.get(f"/v1/messages/{pending[0]}"))["status"] in FINAL
                ):
                    pending.pop(0)
                if not pending:
                    return True
            await asyncio.sleep(0.1)
        return False

    async def phase(self, kind: str, a: float, b: float) -> dict[str, Any]:
        """Run the load client once; wait for every accepted message to be delivered."""
        pids = self.pids()
        base = await self.apis[SENDER].counter("out", "delivered")
        cpu_before, started = cpu_snapshot(pids), time.time()
        load = await self.load.run(kind, a, b)
        ids = [mid for _, _, mid in load["posts"] if mid is not None]
        settled = await self.wait_delivered(base, ids)
        wall = time.time() - started
        cpu = cpu_per_message(cpu_before, cpu_snapshot(pids), wall, len(ids))
        return {**load, "ids": ids, "all_delivered": settled, "wall_s": round(wall, 3), "cpu": cpu}

    async def idle(self, seconds: float) -> dict[str, float]:
        """% of one core each process uses with no load (the broker: its other users too)."""
        pids = self.pids()
        before = cpu_snapshot(pids)
        await asyncio.sleep(seconds)
        used = cpu_per_message(before, cpu_snapshot(pids), seconds, 1)
        return {k: v["pct_of_one_core"] for k, v in used.items()}

    async def timings(self, phase: dict[str, Any]) -> dict[str, Any]:
        """Submit -> 202, -> recipient inbox, -> delivered, per accepted message."""
        ids = phase["ids"]
        inbox = inbox_times_from_log(self.nodes[RECIPIENT].log_path)
        source = "recipient log (inbox.stored)"
        if any(i not in inbox for i in ids):
            api_times = await self.apis[RECIPIENT].inbox_received_at()
            inbox = {**api_times, **inbox}
            source = "recipient inbox API (received_at) where the log has no line"
        views = await self.apis[SENDER].messages(ids)
        delivered = {i: t for i in ids if (t := delivered_at(views[i])) is not None}
        ok = [(s, a, m) for s, a, m in phase["posts"] if m is not None]
        first = min((s for s, _, _ in phase["posts"]), default=0.0)
        in_inbox = [inbox[m] for _, _, m in ok if m in inbox]
        return {
            "posts": len(phase["posts"]),
            "accepted": len(ok),
            "in_inbox": len(in_inbox),
            "delivered": len(delivered),
            "inbox_source": source,
            "accepted_msg_s": _rate(len(ok), first, max((a for _, a, _ in ok), default=first)),
            "inbox_msg_s": _rate(len(in_inbox), first, max(in_inbox, default=first)),
            "delivered_msg_s": _rate(len(delivered), first, max(delivered.values(), default=first)),
            "submit_to_accepted_ms": summary_ms([a - s for s, a, _ in ok]),
            "submit_to_inbox_ms": summary_ms([inbox[m] - s for s, _, m in ok if m in inbox]),
            "submit_to_inbox_p50_ms_by_second": _by_second(ok, inbox, first),
            "submit_to_delivered_ms": summary_ms(
                [delivered[m] - s for s, _, m in ok if m in delivered]
            ),
        }


def _by_second(ok: list[Any], inbox: dict[str, float], first: float) -> list[float]:
    """p50 submit -> inbox of the messages submitted in each second of the phase."""
    seconds: dict[int, list[float]] = {}
    for s, _, m in ok:
        if m in inbox:
            seconds.setdefault(int(s - first), []).append(inbox[m] - s)
    last = max(seconds, default=-1)
    return [round(1000 * percentile(seconds.get(i, []), 50), 1) for i in range(last + 1)]


def _rate(count: int, start: float, end: float) -> float:
    return round(count / (end - start), 1) if end > start else 0.0


async def sample_sizes(api: Api, message_id: str) -> dict[str, int]:
    """Sizes of a request's and its receipt's signed envelopes, as the sender's API has them."""
    view = await api.get(f"/v1/messages/{message_id}")
    receipt = next(d["receipt"] for d in view["deliveries"] if d.get("receipt"))
    return {
        "request_envelope_bytes": len(orjson.dumps(view["envelope"])),
        "receipt_envelope_bytes": len(orjson.dumps(receipt["envelope"])),
    }


async def floor(bench: Bench, sizes: dict[str, int]) -> dict[str, Any]:
    """One run of the protocol floor, with the CPU of this process (its client) and the broker."""
    args = bench.args
    pids = {"main": os.getpid(), "broker": bench.broker}
    before, started = cpu_snapshot(pids), time.time()
    run = await floor_run(
        bench.url,
        args.floor_n or args.n,
        sizes["request_envelope_bytes"],
        sizes["receipt_envelope_bytes"],
        args.floor_window,
        args.floor_prefetch,
    )
    run["cpu"] = cpu_per_message(before, cpu_snapshot(pids), time.time() - started, run["messages"])
    print(f"floor: {run['messages']} messages, {run['msg_s']:.0f} msg/s", flush=True)
    return run


async def run(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    infos = init_network(
        workdir / "network", (SENDER, RECIPIENT), url, f"e2e{uuid.uuid4().hex[:8]}"
    )
    if args.prefetch is not None:
        for info in infos.values():
            set_limit(info.config, "prefetch", args.prefetch)
    nodes = {
        n: NodeProcess(
            info, workdir / f"{n}.log", workdir / f"{n}.pstats" if args.profile else None
        )
        for n, info in infos.items()
    }
    load = LoadProcess(infos[SENDER].url, infos[SENDER].token, request_body(RECIPIENT))
    result: dict[str, Any] = {"floor_runs": [], "latency": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        bench = Bench(
            args, url, nodes, {n: Api(http, i) for n, i in infos.items()}, load, broker_pid()
        )
        try:
            for node in nodes.values():
                node.start()
            for node in nodes.values():
                await node.wait_ready(http)
            await load.start()
            warm = await bench.phase("closed", args.warmup, args.in_flight)
            if not warm["ids"] or not warm["all_delivered"]:
                raise RuntimeError(f"warm-up failed: {warm['errors'][:3]}")
            sizes = await sample_sizes(bench.apis[SENDER], warm["ids"][0])
            result.update(sizes)
            print(f"warm-up done; envelopes {sizes}", flush=True)
            result["idle"] = await bench.idle(args.idle)
            floor_runs = max(1, args.floor_runs)
            for _ in range((floor_runs + 1) // 2):
                result["floor_runs"].append(await floor(bench, sizes))
            phase = await bench.phase("closed", args.n, args.in_flight)
            result["throughput"] = _public(phase) | await bench.timings(phase)
            result["throughput"].update(messages=args.n, in_flight=args.in_flight)
            print(_throughput_line(result["throughput"]), flush=True)
            for rate in args.rates:
                phase = await bench.phase("open", rate, args.seconds)
                lat = _public(phase) | await bench.timings(phase)
                lat.update(offered_msg_s=rate, seconds=args.seconds)
                lat["sent_msg_s"] = round(len(phase["posts"]) / args.seconds, 1)
                lat["send_lag_ms"] = summary_ms(phase["lags"])
                result["latency"].append(lat)
                print(_latency_line(lat), flush=True)
            for _ in range(floor_runs // 2):
                result["floor_runs"].append(await floor(bench, sizes))
        finally:
            load.stop()
            for node in nodes.values():
                node.stop()
    if args.profile:
        result["profiles"] = {n: _profile_top(node.profile_to) for n, node in nodes.items()}
    return result


def _public(phase: dict[str, Any]) -> dict[str, Any]:
    keep = ("all_delivered", "wall_s", "cpu", "errors")
    return {k: phase[k] for k in keep}


def _profile_top(path: Path | None, top: int = 15) -> list[dict[str, Any]]:
    """The node's whole run under cProfile: the functions with the most own time."""
    if path is None or not path.exists():
        return []
    table = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = sorted(table.items(), key=lambda kv: -kv[1][2])[:top]
    return [
        {
            "function": f"{k[0].split('site-packages/')[-1]}:{k[1]}({k[2]})",
            "own_s": round(v[2], 3),
            "cum_s": round(v[3], 3),
            "calls": v[1],
        }
        for k, v in rows
    ]


def _throughput_line(t: dict[str, Any]) -> str:
    return (
        f"throughput: {t['in_inbox']}/{t['posts']} in the inbox, {t['inbox_msg_s']:.0f} msg/s; "
        f"{t['delivered']} delivered, {t['delivered_msg_s']:.0f} msg/s"
    )


def _latency_line(lat: dict[str, Any]) -> str:
    s = lat["submit_to_inbox_ms"]
    rate = lat["offered_msg_s"]
    return f"latency at {rate:.0f} msg/s: submit->inbox p50 {s['p50']} p99 {s['p99']} ms"


# --- report ----------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    t, best = result["throughput"], result["floor"]
    runs = " / ".join(f"{r['msg_s']:.0f}" for r in result["floor_runs"])
    print(
        f"\ne2e: {SENDER} -> {RECIPIENT}, asset inquiry; envelopes: request "
        f"{result['request_envelope_bytes']} B, receipt {result['receipt_envelope_bytes']} B; "
        f"{result['cpus']} CPUs shared by both gateways, the load client and the broker; "
        f"load avg before {result['loadavg_before']}, after {result['loadavg_after']}"
    )
    print(f"\nThroughput: {t['messages']} POSTs, {t['in_flight']} in flight (closed loop)")
    print(f"  {'':58}{'msg/s':>9}")
    rows = (
        (f"protocol floor, raw aio-pika (best of {runs})", best["msg_s"]),
        ("e2e: POST answered 202", t["accepted_msg_s"]),
        ("e2e: POST -> recipient inbox", t["inbox_msg_s"]),
        ("e2e: POST -> delivered (receipt back at the sender)", t["delivered_msg_s"]),
    )
    for label, value in rows:
        print(f"  {label:58}{value:>9.0f}")
    print(f"  {f'e2e (inbox) / floor (goal >= {RATIO_GOAL})':58}{result['ratio']:>9.2f}")
    print(f"  {'e2e (delivered) / floor':58}{result['ratio_delivered']:>9.2f}")
    print(
        f"  {t['in_inbox']}/{t['accepted']} in the inbox, {t['delivered']} delivered; "
        f"inbox time from the {t['inbox_source']}"
    )
    print(f"\nLatency, open loop (ms)   {'':24}{'p50':>9}{'p99':>9}{'max':>9}  goal p99")
    for lat in result["latency"]:
        rate = lat["offered_msg_s"]
        goal = P99_GOAL_MS.get(rate)
        head = f"{rate:.0f} msg/s offered, {lat['seconds']:.0f} s (sent {lat['sent_msg_s']:.0f}/s, "
        head += f"into the inbox at {lat['inbox_msg_s']:.0f}/s)"
        print(f"  {head}")
        for label, key in (
            ("submit -> 202", "submit_to_accepted_ms"),
            ("submit -> recipient inbox", "submit_to_inbox_ms"),
            ("submit -> delivered", "submit_to_delivered_ms"),
            ("send lag behind schedule", "send_lag_ms"),
        ):
            s = lat[key]
            mark = ""
            if key == "submit_to_inbox_ms" and goal is not None:
                mark = f"  <= {goal:.0f} ({'met' if s['p99'] <= goal else 'missed'})"
            print(f"    {label:48}{s['p50']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}{mark}")
        by_second = " ".join(f"{v:.0f}" for v in lat["submit_to_inbox_p50_ms_by_second"])
        print(f"    submit -> inbox p50 of each second's messages: {by_second}")
    phases = [("floor", best), ("throughput", t)]
    phases += [(f"{lat['offered_msg_s']:.0f}/s", lat) for lat in result["latency"]]
    print("\nCPU per message: ms of CPU per message (% of one core) by process and phase")
    print(f"  {'':30}" + "".join(f"{name:>17}" for name, _ in phases))
    for key, label in PROCESSES:
        cells = []
        for _, data in phases:
            c = data["cpu"].get(key)
            cells.append(
                f"{c['cpu_ms_per_message']:>7.2f} ({c['pct_of_one_core']:>4.0f}%)" if c else "-"
            )
        label = "bench main (floor client)" if key == "main" else label
        print(f"  {label:30}" + "".join(f"{cell:>17}" for cell in cells))
    totals = [sum(c["cpu_ms_per_message"] for c in data["cpu"].values()) for _, data in phases]
    print(f"  {'all of these':30}" + "".join(f"{v:>17.2f}" for v in totals))
    idle = ", ".join(f"{dict(PROCESSES)[k]} {v:.1f}%" for k, v in result["idle"].items())
    print(f"  idle, % of one core: {idle}")
    for node, rows in result.get("profiles", {}).items():
        print(f"\n{node}: top functions by own time (cProfile, main-thread CPU, whole run):")
        for r in rows:
            print(
                f"  {r['own_s']:>8.2f} s {r['cum_s']:>8.2f} s {r['calls']:>9}  {r['function'][:90]}"
            )
    errors = t["errors"] + [e for lat in result["latency"] for e in lat["errors"]]
    if errors:
        print(f"\nload client errors: {errors[:5]}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--url", default=DEFAULT_URL, help="RabbitMQ (a fresh vhost is made on it)")
    add("--n", type=int, default=2000, help="POSTs in the throughput phase")
    add("--in-flight", type=int, default=64, help="concurrent POSTs (throughput phase)")
    add("--warmup", type=int, default=200, help="POSTs before measuring")
    add("--rates", default="150,300", help="offered msg/s of the latency phases, comma-separated")
    add("--seconds", type=float, default=10.0, help="length of each latency phase")
    add("--floor-n", type=int, default=0, help="messages per floor run (default: --n)")
    add(
        "--floor-runs",
        type=int,
        default=2,
        help="floor runs, half before e2e, half after; best counts",
    )
    add("--floor-window", type=int, default=500, help="floor: requests published per gather")
    add("--floor-prefetch", type=int, default=500, help="floor: deliveries in flight per consumer")
    add("--prefetch", type=int, metavar="N", help="the nodes' limits.prefetch (default: theirs)")
    add("--idle", type=float, default=3.0, help="seconds of CPU measured with no load")
    add("--settle", type=float, default=120.0, help="seconds to wait for a phase's deliveries")
    add("--profile", action="store_true", help="run each node under cProfile (slower)")
    add("--keep", action="store_true", help="keep the work directory (network, node logs)")
    add("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    loadavg = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        with fresh_vhost(args.url) as url:
            result = await run(args, url, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir} (network, node logs{', profiles' if args.profile else ''})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    best = max(result["floor_runs"], key=lambda r: r["msg_s"])
    result.update(
        floor=best,
        ratio=result["throughput"]["inbox_msg_s"] / best["msg_s"],
        ratio_delivered=result["throughput"]["delivered_msg_s"] / best["msg_s"],
        loadavg_before=loadavg,
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        cpus=os.cpu_count(),
        python=platform.python_version(),
        command=" ".join(sys.argv),
        goals={"ratio_min": RATIO_GOAL, "p99_submit_to_inbox_ms_max": P99_GOAL_MS},
    )
    return result


def main() -> None:
    args = parse_args()
    result = asyncio.run(main_async(args))
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

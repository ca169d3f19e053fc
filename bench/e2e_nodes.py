"""Helpers of `bench/e2e.py`: the broker, CPU accounting, and the nodes as real processes.

The nodes are observed only from outside, as an operator would: `exchange network init`
writes the network, each node is an `exchange node run --config FILE` process whose stderr
(JSON lines) goes to a file, and what happened to a message is read from its HTTP API, its
`/metrics` and its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import aiohttp

from exchange.demo.runner import free_base_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE_START_SECONDS = 60.0
INBOX_EVENT = "inbox.stored"  # the recipient's log line once the inbox row is committed
PROFILED_NODE = """
import cProfile, sys, time
from exchange.cli import main
out, argv = sys.argv[1], sys.argv[2:]
profile = cProfile.Profile(time.thread_time)  # the main thread's CPU time
profile.enable()
try:
    main(argv)
finally:
    profile.disable()
    profile.dump_stats(out)
"""
"""`exchange node run` under cProfile, its main thread's CPU clock; written at exit."""
_DELIVERED = re.compile(r"_messages_total\{([^}]*)\} ([0-9.e+]+)")


# --- the broker --------------------------------------------------------------------------


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


@contextlib.contextmanager
def fresh_vhost(base_url: str) -> Iterator[str]:
    """A throwaway virtual host, deleted afterwards, and the URL that points at it."""
    if shutil.which("rabbitmqctl") is None:
        raise SystemExit("rabbitmqctl is needed (a fresh vhost per run, the broker's pid)")
    vhost = f"bench-{uuid.uuid4()}"
    parts = urllib.parse.urlsplit(base_url)
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        path = "/" + urllib.parse.quote(vhost, safe="")
        yield urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    finally:
        rabbitmqctl("delete_vhost", vhost)


def broker_pid() -> int | None:
    """The pid of the broker's `beam.smp` (the Erlang VM), or None if it cannot be asked."""
    with contextlib.suppress(Exception):
        return int(rabbitmqctl("eval", "os:getpid().").strip('"'))
    return None


# --- CPU accounting (Linux /proc) ----------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_snapshot(pids: dict[str, int | None]) -> dict[str, float]:
    return {name: s for name, pid in pids.items() if pid and (s := cpu_seconds(pid)) is not None}


def cpu_per_message(
    before: dict[str, float], after: dict[str, float], wall: float, messages: int
) -> dict[str, dict[str, float]]:
    """Per process: CPU seconds used, share of one core, and ms of CPU per message."""
    out = {}
    for name, end in after.items():
        used = end - before.get(name, end)
        out[name] = {
            "cpu_s": round(used, 3),
            "pct_of_one_core": round(100 * used / wall, 1) if wall > 0 else 0.0,
            "cpu_ms_per_message": round(1000 * used / max(messages, 1), 3),
        }
    return out


# --- the network and its node processes ------------------------------------------------------


def exchange_command() -> list[str]:
    """The `exchange` CLI of this virtualenv."""
    script = Path(sys.executable).parent / "exchange"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from exchange.cli import main; sys.exit(main())"]


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    url: str
    config: Path
    token: str  # contact-point bearer token


def init_network(
    directory: Path, nodes: Iterable[str], url: str, prefix: str
) -> dict[str, NodeInfo]:
    """`exchange network init`, then its network.json read back."""
    nodes = list(nodes)
    subprocess.run(
        [
            *exchange_command(),
            *("network", "init", str(directory), "--nodes", ",".join(nodes)),
            *("--amqp-url", url, "--prefix", prefix),
            *("--base-port", str(free_base_port(len(nodes)))),
        ],
        check=True,
        capture_output=True,
        env=node_environment(),
    )
    layout = json.loads((directory / "network.json").read_text())["nodes"]
    return {
        n: NodeInfo(
            n, layout[n]["url"], Path(layout[n]["config"]), layout[n]["tokens"]["contact-point"]
        )
        for n in nodes
    }


def set_limit(config: Path, name: str, value: int) -> None:
    """Add `name = value` to the `[limits]` table of a node's TOML."""
    text = config.read_text()
    config.write_text(text.replace("[limits]\n", f"[limits]\n{name} = {value}\n", 1))


def node_environment() -> dict[str, str]:
    """This environment without `EXCHANGE_*`: each node's TOML alone configures it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}


class NodeProcess:
    """One `exchange node run --config FILE` process, its stderr and stdout to `log_path`."""

    def __init__(self, info: NodeInfo, log_path: Path, profile_to: Path | None = None) -> None:
        self.info, self.log_path, self.profile_to = info, log_path, profile_to
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        args = ["node", "run", "--config", str(self.info.config)]
        command = [*exchange_command(), *args]
        if self.profile_to is not None:
            command = [sys.executable, "-c", PROFILED_NODE, str(self.profile_to), *args]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=node_environment(),
        )

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + NODE_START_SECONDS
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(self.info.url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{self.info.node_id} did not become ready:\n" + "\n".join(tail))

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (a graceful shutdown; a profiled node writes its profile), then SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


# --- what the nodes say ------------------------------------------------------------------------


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def inbox_times_from_log(log_path: Path) -> dict[str, float]:
    """message id -> epoch seconds of the recipient's `inbox.stored` log line (row committed)."""
    found: dict[str, float] = {}
    with log_path.open("rb") as fh:
        for line in fh:
            if INBOX_EVENT.encode() not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                if entry.get("event") == INBOX_EVENT:
                    found.setdefault(str(entry["message_id"]), _epoch(entry["timestamp"]))
    return found


class Api:
    """A node's HTTP API as a contact point uses it (in the benchmark's main process)."""

    def __init__(self, http: aiohttp.ClientSession, info: NodeInfo) -> None:
        self.http, self.info = http, info
        self.headers = {"Authorization": f"Bearer {info.token}"}

    async def get(self, path: str) -> Any:
        async with self.http.get(self.info.url + path, headers=self.headers) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def counter(self, direction: str, outcome: str) -> int | None:
        """Sum of `*_messages_total{direction, outcome}` over types; None if not exported."""
        async with self.http.get(self.info.url + "/metrics") as resp:
            text = await resp.text()
        values = [
            int(float(count))
            for labels, count in _DELIVERED.findall(text)
            if f'direction="{direction}"' in labels and f'outcome="{outcome}"' in labels
        ]
        return sum(values) if values else None

    async def inbox_received_at(self) -> dict[str, float]:
        """message id -> the inbox's `received_at` (fallback when the log has no line)."""
        out: dict[str, float] = {}
        after = 0
        while True:
            page = await self.get(f"/v1/inbox?after={after}&limit=500")
            for item in page["items"]:
                out[str(item["id"])] = _epoch(item["received_at"])
            if not page["items"]:
                return out
            after = page["next"]

    async def messages(self, ids: list[str], concurrency: int = 8) -> dict[str, dict[str, Any]]:
        """GET /v1/messages/{id} for each id, a few at a time."""
        out: dict[str, dict[str, Any]] = {}
        todo = iter(ids)

        async def worker() -> None:
            for mid in todo:
                out[mid] = await self.get(f"/v1/messages/{mid}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out


def delivered_at(view: dict[str, Any]) -> float | None:
    """When the (single) recipient's receipt reached the sender, if the message is delivered."""
    if view.get("status") != "delivered":
        return None
    times = [
        _epoch(d["receipt"]["received_at"]) for d in view.get("deliveries", []) if d.get("receipt")
    ]
    return max(times) if times else None

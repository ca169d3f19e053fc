"""Nodes of a network as real processes (`exchange node run`), driven through their HTTP API.

`FaultNetwork` starts, kills (SIGKILL) and restarts each node of a network as its own
process, and talks to the nodes only as a contact point would; `tests/private_broker.py` gives
them a broker of their own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
from private_broker import tail as _tail

from exchange.client import GatewayClient, GatewayUnreachable, ProblemError
from exchange.demo.evidence import CASE
from exchange.demo.scenario import load_payload
from exchange.network import NetworkLayout

NODE_START_SECONDS = 30.0
FINAL_STATES = frozenset({"delivered", "rejected", "failed"})


def exchange_command() -> list[str]:
    """How to run the `exchange` CLI of this virtualenv."""
    script = Path(sys.executable).parent / "exchange"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from exchange.cli import main; sys.exit(main())"]


def node_environment() -> dict[str, str]:
    """The caller's environment without `EXCHANGE_*`: the node's TOML alone configures it
    (an `EXCHANGE_AMQP_URL` meant for other tests would send it to the shared broker)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}


@dataclass
class NodeProcess:
    """One `exchange node run --config FILE` process and the file its output goes to."""

    node_id: str
    config_path: Path
    url: str
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.node_id} is already running")
        self._close_log()
        self._log = self.log_path.open("ab")
        self._log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
        self._log.flush()
        self.process = await asyncio.create_subprocess_exec(
            *exchange_command(),
            "node",
            "run",
            "--config",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            env=node_environment(),
        )

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, no buffer is flushed."""
        if self.process is None or self.process.returncode is not None:
            raise RuntimeError(f"{self.node_id} is not running")
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        self._close_log()

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it does not end in time."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._close_log()
        return self.process.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)


@dataclass(frozen=True, slots=True)
class Sent:
    """One POST /v1/messages: who sent it, the HTTP status, the id (when 202), when."""

    sender: str
    status: int
    id: str | None
    at: float  # monotonic seconds
    error: str | None = None


class FaultNetwork:
    """The nodes of `layout` as processes, and clients of their HTTP APIs."""

    def __init__(self, layout: NetworkLayout, logs: Path) -> None:
        self.layout = layout
        logs.mkdir(parents=True, exist_ok=True)
        self.nodes = {
            node_id: NodeProcess(node_id, info.config_path, info.url, logs / f"{node_id}.log")
            for node_id, info in layout.nodes.items()
        }
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=20),
            connector=aiohttp.TCPConnector(limit=200),
        )
        self._clients: dict[tuple[str, str], GatewayClient] = {}

    async def close(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes.values()))
        await self._session.close()

    def client(self, node_id: str, role: str = "contact-point") -> GatewayClient:
        """A client of the node's gateway with its token for `role` (one connection pool)."""
        if (node_id, role) not in self._clients:
            token = self.layout.nodes[node_id].token(role)
            self._clients[node_id, role] = GatewayClient(
                self.nodes[node_id].url, token, session=self._session
            )
        return self._clients[node_id, role]

    # -- processes -----------------------------------------------------------------------

    async def start(self, *node_ids: str) -> None:
        """Start the nodes (all at once) and wait until each reports ready."""
        await asyncio.gather(*(self.nodes[n].start() for n in node_ids))
        await asyncio.gather(*(self.wait_ready(n) for n in node_ids))

    async def kill(self, node_id: str) -> None:
        await self.nodes[node_id].kill()

    async def readiness(self, node_id: str) -> tuple[bool, str]:
        """Whether `/readyz` answers 200, and what it said."""
        try:
            ready = await self.client(node_id).readiness()
        except ProblemError as refused:
            return False, f"{refused.status} {orjson.dumps(refused.body).decode()}"
        except GatewayUnreachable as exc:
            return False, exc.detail
        return True, f"200 {ready.model_dump_json()}"

    async def wait_ready(self, node_id: str, within: float = NODE_START_SECONDS) -> None:
        node = self.nodes[node_id]
        deadline = time.monotonic() + within
        answer = "no answer"
        while time.monotonic() < deadline:
            if node.process is not None and node.process.returncode is not None:
                raise AssertionError(
                    f"{node_id} exited with {node.process.returncode}:\n{node.tail()}"
                )
            ready, answer = await self.readiness(node_id)
            if ready:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{node_id} not ready within {within:.0f}s (/readyz: {answer}):\n{node.tail()}"
        )

    async def stop_all(self) -> None:
        """A graceful stop of every node still running (SIGTERM), all at once."""
        await asyncio.gather(*(n.stop() for n in self.nodes.values()))

    def diagnostics(self) -> str:
        return "\n".join(f"--- {n.node_id} ---\n{n.tail()}" for n in self.nodes.values())

    # -- HTTP ----------------------------------------------------------------------------

    async def submit(self, sender: str, body: Mapping[str, Any]) -> Sent:
        """POST a message; any answer (or none) is recorded, never raised."""
        at = time.monotonic()
        try:
            accepted = await self.client(sender).submit(body)
        except GatewayUnreachable as exc:
            return Sent(sender, 0, None, at, error=exc.detail)
        except ProblemError as refused:
            return Sent(sender, refused.status, None, at, error=str(refused.body)[:300])
        return Sent(sender, 202, str(accepted.id), at)

    async def send_inquiry(self, sender: str, recipients: Sequence[str]) -> Sent:
        """POST an asset inquiry; any answer (or none) is recorded, never raised."""
        body = {
            "type": "asset-inquiry",
            "recipients": list(recipients),
            "case": CASE,
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
            "payload": _INQUIRY,
        }
        return await self.submit(sender, body)

    async def stream(
        self,
        senders: Sequence[str],
        recipient: str,
        total: int,
        rate: float,
        sent: list[Sent] | None = None,
    ) -> list[Sent]:
        """POST `total` inquiries at a steady `rate` per second, round robin over the
        senders, each without waiting for earlier answers. `sent` fills as answers come."""
        out = sent if sent is not None else []
        loop = asyncio.get_running_loop()
        begin = loop.time()

        async def one(index: int) -> None:
            out.append(await self.send_inquiry(senders[index % len(senders)], [recipient]))

        tasks = []
        for index in range(total):
            await asyncio.sleep(max(0.0, begin + index / rate - loop.time()))
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
        return out

    async def status(self, sender: str, message_id: str) -> dict[str, Any]:
        """The message's view as JSON; `{"status": "HTTP 404"}` or `"unreachable: ..."` else."""
        try:
            view = await self.client(sender).message(message_id)
        except GatewayUnreachable as exc:
            return {"status": f"unreachable: {type(exc.error).__name__}"}
        except ProblemError as refused:
            return {"status": f"HTTP {refused.status}"}
        return view.model_dump(mode="json", by_alias=True)

    async def wait_settled(
        self, messages: Mapping[str, str], within: float, interval: float = 0.2
    ) -> dict[str, dict[str, Any]]:
        """Poll each sender (`messages`: id -> sender) until every message is delivered,
        rejected or failed, or the time is up; return the last view of each."""
        views: dict[str, dict[str, Any]] = {}
        pending = dict(messages)
        deadline = time.monotonic() + within
        while pending:
            got = await asyncio.gather(*(self.status(s, m) for m, s in pending.items()))
            for (message_id, _), view in zip(list(pending.items()), got, strict=True):
                views[message_id] = view
                if view.get("status") in FINAL_STATES:
                    del pending[message_id]
            if not pending or time.monotonic() >= deadline:
                break
            await asyncio.sleep(interval)
        return views

    async def wait_sent(self, messages: Mapping[str, str], within: float) -> int:
        """Poll until the broker confirmed every message (status past `accepted`); return
        how many it confirmed."""
        deadline = time.monotonic() + within
        while True:
            got = await asyncio.gather(*(self.status(s, m) for m, s in messages.items()))
            confirmed = sum(1 for v in got if v.get("status") in {"sent", *FINAL_STATES})
            if confirmed == len(messages) or time.monotonic() >= deadline:
                return confirmed
            await asyncio.sleep(0.1)

    async def received(self, node_id: str) -> int | None:
        """Messages the node stored in its inbox since its process started (its
        `xb_messages_total{direction="in",outcome="received"}`), None if it does not answer."""
        try:
            text = await self.client(node_id).metrics()
        except (GatewayUnreachable, ProblemError):
            return None
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("xb_messages_total{")
            and 'direction="in"' in line
            and 'outcome="received"' in line
        )

    async def wait_received(self, node_id: str, at_least: int, within: float) -> int:
        """Poll the node (tolerating one still starting) until it has stored `at_least`
        messages since it started; return how many it had at the last look."""
        deadline = time.monotonic() + within
        seen = 0
        while time.monotonic() < deadline:
            seen = await self.received(node_id) or 0
            if seen >= at_least:
                return seen
            await asyncio.sleep(0.01)
        raise AssertionError(
            f"{node_id} stored only {seen} messages in {within:.0f}s\n{self.diagnostics()}"
        )

    async def inbox_ids(self, node_id: str, after: int = 0) -> tuple[list[str], int]:
        """Every message id in the node's inbox after the cursor (in order), and the last cursor."""
        ids: list[str] = []
        while True:
            page = await self.client(node_id).inbox(after=after, limit=500)
            ids += [str(item.id) for item in page.items]
            if not page.items:
                return ids, after
            after = page.next

    # -- the audit log, read with the operators' own tool --------------------------------

    async def _cli(self, *args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *exchange_command(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=node_environment(),
        )
        out, _ = await process.communicate()
        return int(process.returncode or 0), out.decode(errors="replace")

    def _audit_path(self, node_id: str) -> str:
        return str(self.layout.config(node_id, environ={}).audit_path)

    async def audit_verify(self, node_id: str) -> tuple[bool, str]:
        """`exchange audit verify` of the node's log: entries, tree and checkpoints."""
        pki = self.layout.directory / "pki"
        code, out = await self._cli(
            "audit", "verify", "--db", self._audit_path(node_id), "--cert", str(pki), "--jobs", "1"
        )
        return code == 0, out

    async def audit_events(self, node_id: str, event: str) -> Counter[str]:
        """How many `event` entries the node's audit log holds for each message id."""
        code, out = await self._cli(
            "audit",
            "replay",
            "--db",
            self._audit_path(node_id),
            "--type",
            event,
            "--format",
            "json",
        )
        if code != 0:
            raise AssertionError(f"exchange audit replay failed ({code}): {out[-2000:]}")
        counts: Counter[str] = Counter()
        for line in out.splitlines():
            if line.startswith("{"):
                entry = orjson.loads(line)
                if entry.get("event") == event and entry.get("message_id"):
                    counts[str(entry["message_id"])] += 1
        return counts


_INQUIRY = load_payload("01-asset-inquiry.json")

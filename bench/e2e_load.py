"""The load client of `bench/e2e.py`, in a process of its own.

`LoadProcess` starts it (multiprocessing, spawn) and sends it commands over a pipe; it POSTs
the same asset inquiry (each POST becomes a new message) to the sender's gateway, closed loop
(`n` POSTs, `in_flight` at a time) or open loop (POSTs sent on a fixed schedule, whether or
not earlier ones were answered). Each POST is reported as (submitted, answered, id or None),
times in epoch seconds (`time.time`), the clock of the nodes' log lines and API timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "schemas/examples/asset-inquiry/valid/me-to-al-yacht-car-account.json"
CASE = "AL-2026-0042"

Post = tuple[float, float, str | None]  # submitted, answered, message id (None: refused)


def request_body(recipient: str) -> bytes:
    payload = json.loads(PAYLOAD.read_text("utf-8"))
    return orjson.dumps(
        {
            "type": "asset-inquiry",
            "recipients": [recipient],
            "case": CASE,
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
            "payload": payload,
        }
    )


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str, body: bytes) -> None:
        self.session, self.url, self.body = session, url + "/v1/messages", body
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.errors: list[str] = []

    async def post(self) -> Post:
        submitted = time.time()
        try:
            async with self.session.post(self.url, data=self.body, headers=self.headers) as resp:
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return submitted, time.time(), None
        answered = time.time()
        if resp.status != 202:
            self.errors.append(f"HTTP {resp.status}: {answer[:200]!r}")
            return submitted, answered, None
        return submitted, answered, str(orjson.loads(answer)["id"])

    async def closed_loop(self, n: int, in_flight: int) -> dict[str, Any]:
        posts: list[Post] = []
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                posts.append(await self.post())

        await asyncio.gather(*(worker() for _ in range(min(in_flight, n))))
        return {"posts": posts, "lags": []}

    async def open_loop(self, rate: float, seconds: float) -> dict[str, Any]:
        """POST on schedule; `lags` are how late each send was, behind its slot."""
        tasks: list[asyncio.Task[Post]] = []
        lags: list[float] = []
        start = time.perf_counter() + 0.01
        for i in range(round(rate * seconds)):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - due)
            tasks.append(asyncio.create_task(self.post()))
        return {"posts": list(await asyncio.gather(*tasks)), "lags": lags}


def serve(url: str, token: str, body: bytes, conn: Connection) -> None:
    """Child process: answer ("closed", n, in_flight) and ("open", rate, seconds) until "stop"."""
    asyncio.run(_serve(url, token, body, conn))


async def _serve(url: str, token: str, body: bytes, conn: Connection) -> None:
    connector = aiohttp.TCPConnector(limit=1024)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = Client(session, url, token, body)
        conn.send("ready")
        while (command := await asyncio.to_thread(conn.recv)) != "stop":
            kind, a, b = command
            result = await (
                client.closed_loop(a, b) if kind == "closed" else client.open_loop(a, b)
            )
            result["errors"], client.errors = client.errors[:10], []
            conn.send(result)


class LoadProcess:
    """The parent's handle on the load client's process."""

    def __init__(self, url: str, token: str, body: bytes) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=serve, args=(url, token, body, child), name="load-client", daemon=True
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def start(self) -> None:
        self.process.start()
        ready = await asyncio.to_thread(self._conn.poll, 60)
        if not ready or self._conn.recv() != "ready":
            raise RuntimeError("the load client's process did not start")

    async def run(self, kind: str, a: float, b: float) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            self._conn.send((kind, a, b))
            return self._conn.recv()  # type: ignore[no-any-return]

        return await asyncio.to_thread(call)

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                self._conn.send("stop")
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()

"""Importing a network's rendered definitions into a running RabbitMQ.

Two ways: `rabbitmqctl import_definitions` (on a broker host; the command returns before
the broker has finished, so `import_with_rabbitmqctl` waits until every binding, the last
part imported, is there), or the management HTTP API (`POST /api/definitions`, which
answers when the import is done). Both are blocking: they are for the CLI.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aio_pika

from exchange.errors import ExchangeError
from exchange.transport.topology import Topology

IMPORT_TIMEOUT_SECONDS = 60.0


class ProvisionError(ExchangeError):
    """The broker refused the definitions, could not be reached, or did not finish in time
    (the command exits 1: a check failed)."""

    code = "service.unavailable"


def import_with_rabbitmqctl(
    definitions: Mapping[str, Any],
    *,
    ctl: Sequence[str] = ("rabbitmqctl",),
    env: Mapping[str, str] | None = None,
    timeout: float = IMPORT_TIMEOUT_SECONDS,
) -> None:
    """`ctl import_definitions FILE`, then wait until the broker shows every binding.

    `ctl` is the command with its node options, e.g. `("rabbitmqctl", "-n", "rabbit@b1")`.
    The file is written world-readable under the system's temporary directory: Debian's
    `rabbitmqctl` wrapper runs as the `rabbitmq` user, from its own home directory.
    """
    fd, name = tempfile.mkstemp(prefix="xb-definitions-", suffix=".json")
    path = Path(name).resolve()
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(definitions, out)
        path.chmod(0o644)  # definitions hold no secret: node users have no password
        _run(ctl, ["import_definitions", str(path)], env, timeout)
        wait_until_imported(definitions, ctl=ctl, env=env, timeout=timeout)
    finally:
        path.unlink(missing_ok=True)


def wait_until_imported(
    definitions: Mapping[str, Any],
    *,
    ctl: Sequence[str] = ("rabbitmqctl",),
    env: Mapping[str, str] | None = None,
    timeout: float = IMPORT_TIMEOUT_SECONDS,
) -> None:
    """Poll `list_bindings` of each virtual host until every binding of `definitions` is
    there (bindings are imported last)."""
    columns = ["source_name", "routing_key", "destination_name", "destination_kind"]
    expected: dict[str, set[tuple[str, ...]]] = {}
    for b in definitions.get("bindings", []):
        key = (b["source"], b["routing_key"], b["destination"], b["destination_type"])
        expected.setdefault(b["vhost"], set()).add(key)
    deadline = time.monotonic() + timeout
    for vhost, wanted in expected.items():
        while True:
            try:
                listing = _run(
                    ctl,
                    ["list_bindings", "-p", vhost, *columns],
                    env,
                    max(deadline - time.monotonic(), 1.0),
                )
            except ProvisionError:
                listing = ""  # the virtual host may not exist yet
            present = {tuple(line.split("\t")) for line in listing.splitlines()}
            if wanted <= present:
                break
            if time.monotonic() > deadline:
                missing = len(wanted - present)
                raise ProvisionError(
                    f"{missing} binding(s) of virtual host {vhost} still missing after "
                    f"{timeout:.0f}s: the import failed or is still running (see the broker log)"
                )
            time.sleep(0.25)


def import_with_management_api(
    definitions: Mapping[str, Any],
    url: str,
    *,
    user: str,
    password: str,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = IMPORT_TIMEOUT_SECONDS,
) -> None:
    """`POST {url}/api/definitions`; the management plugin answers once it is imported."""
    target = url.rstrip("/") + "/api/definitions"
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        raise ProvisionError(f"{url!r} is not an http(s) URL of the management API")
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        target,
        data=json.dumps(definitions).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ssl_context) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")[:500]
        raise ProvisionError(
            f"the management API refused the definitions: {err.code} {body}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise ProvisionError(f"cannot reach the management API at {url}: {err}") from None


def _run(
    ctl: Sequence[str], args: Sequence[str], env: Mapping[str, str] | None, timeout: float
) -> str:
    command = [*ctl, "-q", *args]
    try:
        done = subprocess.run(
            command,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ProvisionError(f"{ctl[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ProvisionError(
            f"{' '.join(command[:3])} ... did not finish in {timeout:.0f}s"
        ) from None
    if done.returncode != 0:
        raise ProvisionError(
            f"{' '.join([*ctl, *args][:4])} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[:800]}"
        )
    return done.stdout


async def delete_topology(url: str, topology: Topology, nodes: Sequence[str]) -> None:
    """Best effort: remove the queues and exchanges a run made under `topology`'s prefix
    (the demo and benchmarks share a broker with others and leave nothing behind)."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            queues = [topology.audit_stream_queue, topology.directory_stream_queue]
            for node in nodes:
                queues += [
                    topology.inbox_queue(node),
                    topology.dead_queue(node),
                    topology.subscription_queue(node),
                ]
            for name in queues:
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
            for spec in (*topology.exchanges(), topology.directory):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(spec.name)

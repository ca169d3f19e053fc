"""`rabbitmqctl` for tests: on the shared broker (5672) or on a private node, and broker
definitions imported into a throwaway virtual host whose users are deleted afterwards.

Every call blocks: from a test's event loop run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.transport.topology import Topology

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class RabbitmqctlError(RuntimeError):
    """`rabbitmqctl` exited with an error; the message holds what it printed."""


def rabbitmqctl(
    *args: str,
    node: str | None = None,
    executable: str = "rabbitmqctl",
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    check: bool = True,
) -> str:
    """`rabbitmqctl -q [-n NODE] ARGS`, returning what it printed on standard output.

    Without `node`, the shared broker. A private node takes its `node` name, the script's
    path as `executable` and the `env` holding its Erlang cookie. A failure raises
    RabbitmqctlError with the tool's output, unless `check` is false.
    """
    command = [executable, "-q", *(("-n", node) if node else ()), *args]
    done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RabbitmqctlError(
            f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): "
            f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
        )
    return done.stdout.decode(errors="replace")


@dataclass(frozen=True, kw_only=True)
class ImportedVhost:
    """A virtual host of the shared broker, imported with `imported_definitions`, whose
    users share one password. A module adds its users' names as fields."""

    vhost: str
    topology: Topology
    password: str

    def url(self, user: str) -> str:
        """The shared broker's URL (EXCHANGE_AMQP_URL's host and port) for `user`."""
        base = urllib.parse.urlsplit(os.environ.get("EXCHANGE_AMQP_URL", DEFAULT_AMQP_URL))
        netloc = f"{user}:{self.password}@{base.hostname or '127.0.0.1'}:{base.port or 5672}"
        return urllib.parse.urlunsplit(
            (base.scheme, netloc, "/" + urllib.parse.quote(self.vhost, safe=""), "", "")
        )


@contextlib.contextmanager
def imported_definitions(
    vhost: str, definitions: dict[str, Any], users: Sequence[str]
) -> Iterator[None]:
    """Import `definitions` (the virtual host `vhost` and its `users`) into the shared broker
    and wait until their bindings exist; afterwards delete the users (they are global on a
    broker) and the virtual host, whatever happened."""
    # rabbitmqctl reads the file as the rabbitmq user: it must be readable by others
    fd, name = tempfile.mkstemp(prefix="xb-definitions-", suffix=".json")
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(definitions, out)
        path.chmod(0o644)
        rabbitmqctl("import_definitions", str(path))
        _wait_for_bindings(vhost, definitions["bindings"])
        path.unlink()
        yield
    finally:
        path.unlink(missing_ok=True)
        cleanup = [("delete_user", user) for user in users] + [("delete_vhost", vhost)]
        with ThreadPoolExecutor(max_workers=len(cleanup)) as pool:
            list(pool.map(lambda args: rabbitmqctl(*args, check=False), cleanup))


def _wait_for_bindings(vhost: str, bindings: list[dict[str, str]]) -> None:
    """`import_definitions` returns before the import is done: wait for its last part."""
    expected = {(b["source"], b["routing_key"], b["destination"]) for b in bindings}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            listing = rabbitmqctl(
                "list_bindings", "-p", vhost, "source_name", "routing_key", "destination_name"
            )
        except RabbitmqctlError:
            listing = ""
        if expected <= {tuple(line.split("\t")) for line in listing.splitlines()}:
            return
        time.sleep(0.2)
    raise AssertionError("the definitions were not imported within 30 s")

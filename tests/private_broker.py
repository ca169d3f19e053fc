"""Private RabbitMQ nodes for tests: own name, ports, Erlang cookie, data and configuration.

A `PrivateBroker` can be stopped, killed, clustered or reconfigured without touching the
shared broker on 5672 that other tests use. Fault tests run one plain node; the deployment
tests run TLS nodes (the configuration in `deploy/`), a three-node cluster and federated
brokers. Every method blocks: from a test's event loop call them with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rabbitmq_cli import rabbitmqctl

BROKER_START_SECONDS = 30.0
# Ports a local RabbitMQ or its CLI tools use by default: never pick them.
_RESERVED_PORTS = frozenset({4369, 5671, 5672, 15671, 15672, 15692, 25672, *range(35672, 35683)})


def free_port(avoid: Iterable[int] = ()) -> int:
    """A TCP port nobody listens on right now (not one RabbitMQ uses by default)."""
    taken = set(avoid) | _RESERVED_PORTS
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port
    raise RuntimeError("no free TCP port")


def free_base_port(count: int) -> int:
    """A base port with `count` consecutive free ports (the nodes' HTTP ports)."""
    for _ in range(100):
        base = free_port()
        if base + count >= 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free range of ports for the nodes")


def amqp_answers(port: int, timeout: float = 1.0, *, tls: ssl.SSLContext | None = None) -> bool:
    """True when an AMQP 0-9-1 server on 127.0.0.1:`port` opens with connection.start.

    With `tls`, the probe completes a TLS handshake first (with the context's client
    certificate, if the listener demands one).
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            s = tls.wrap_socket(raw, server_hostname="localhost") if tls is not None else raw
            s.sendall(b"AMQP\x00\x00\x09\x01")
            frame = b""
            while len(frame) < 7:
                chunk = s.recv(7 - len(frame))
                if not chunk:
                    return False
                frame += chunk
            return frame[0] == 1  # a method frame on channel 0: connection.start
    except OSError:  # ssl.SSLError is an OSError
        return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def rabbitmq_sbin() -> Path:
    """The directory of the real `rabbitmq-server` and `rabbitmqctl` scripts.

    Debian's /usr/sbin wrappers switch to the `rabbitmq` user with `su`, which would need
    the data directories to belong to that user; the scripts they wrap run as anyone.
    """
    given = os.environ.get("XBFAULT_RABBITMQ_SBIN")
    if given:
        return Path(given)
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise RuntimeError("rabbitmqctl not found: these tests need RabbitMQ installed")
    return Path(ctl).resolve().parent


def plain_config(broker: PrivateBroker) -> str:
    """A plain AMQP listener on the loopback interface (guest may log in)."""
    return f"listeners.tcp.1 = 127.0.0.1:{broker.port}\n"


ConfigText = Callable[["PrivateBroker"], str]


class PrivateBroker:
    """A RabbitMQ node of its own: `start()`, `stop_app()`, `start_app()`, `restart()`,
    `kill()`, `join_cluster(other)`, `close()`.

    `config` writes the node's rabbitmq.conf from the node (its ports and paths are known
    by then); logging settings are added. `plugins` go into its own enabled_plugins file,
    never the system's. `cookie`: the Erlang cookie, shared by the nodes of one cluster.
    `probe_tls`: the client context that checks a TLS listener answers at `port`.
    """

    def __init__(
        self,
        base: Path,
        sbin: Path | None = None,
        *,
        name: str = "xbfault",
        config: ConfigText = plain_config,
        plugins: Sequence[str] = (),
        cookie: str | None = None,
        probe_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.base = base
        self.sbin = sbin or rabbitmq_sbin()
        self.nodename = f"{name}-{uuid.uuid4().hex[:10]}@localhost"
        self.port = free_port()
        self.dist_port = free_port(avoid={self.port})
        self.home = base / "home"
        self.log_path = base / "server.out"
        self.plugins = tuple(plugins)
        self.cookie = cookie or uuid.uuid4().hex.upper()
        self.probe_tls = probe_tls
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._prepare()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def config_path(self) -> Path:
        return self.base / "rabbitmq.conf"

    def _prepare(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(self.cookie, encoding="ascii")
        cookie.chmod(0o400)
        plugins = ",".join(self.plugins)
        (self.base / "enabled_plugins").write_text(f"[{plugins}].\n", encoding="ascii")
        self.config_path.write_text(
            self._config(self) + "log.console = false\nlog.file.level = info\n",
            encoding="utf-8",
        )

    def _env(self, *, server: bool) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RABBITMQ_", "EXCHANGE_", "ERL_CRASH_DUMP"))
        }
        env["HOME"] = str(self.home)  # the private Erlang cookie
        env["ERL_CRASH_DUMP"] = str(self.base / "erl_crash.dump")
        env.setdefault("LC_ALL", "C.UTF-8")
        # the CLI offers the commands of the plugins this node enables (federation_status)
        env["RABBITMQ_ENABLED_PLUGINS_FILE"] = str(self.base / "enabled_plugins")
        if server:
            env.update(
                RABBITMQ_NODENAME=self.nodename,
                RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                RABBITMQ_NODE_PORT=str(self.port),
                RABBITMQ_DIST_PORT=str(self.dist_port),
                RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
                RABBITMQ_LOG_BASE=str(self.base / "log"),
                RABBITMQ_CONFIG_FILE=str(self.config_path),
                RABBITMQ_PID_FILE=str(self.base / "rabbitmq.pid"),
            )
        return env

    @property
    def ctl_command(self) -> list[str]:
        """`rabbitmqctl -n NODE` for this node (run it with `ctl_env`)."""
        return [str(self.sbin / "rabbitmqctl"), "-n", self.nodename]

    @property
    def ctl_env(self) -> dict[str, str]:
        """The environment `rabbitmqctl` needs to reach this node (its cookie)."""
        return self._env(server=False)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """`rabbitmqctl -q -n NODE ARGS`; raises RabbitmqctlError with its output when it fails."""
        return rabbitmqctl(
            *args,
            node=self.nodename,
            executable=str(self.sbin / "rabbitmqctl"),
            env=self.ctl_env,
            timeout=timeout,
        )

    # -- the node process ----------------------------------------------------------------

    def start(self) -> float:
        """Boot the node and wait until it answers AMQP; return the seconds it took.

        Run in the foreground (not `-detached`), so that this object holds the node's
        process: a failed boot is seen at once, and a node that will not stop can be
        killed by its own pid.
        """
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"{self.nodename} is already running")
        started = time.monotonic()
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                [str(self.sbin / "rabbitmq-server")],
                env=self._env(server=True),
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest only
            )
        self.wait_amqp(BROKER_START_SECONDS, process=True)
        self.ctl("await_startup", "--timeout", "30")
        return time.monotonic() - started

    def wait_amqp(self, timeout: float, *, process: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process and self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"RabbitMQ node {self.nodename} exited with {self._process.returncode} "
                    f"while booting:\n{tail(self.log_path)}\n{self.server_log()}"
                )
            if amqp_answers(self.port, tls=self.probe_tls):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"RabbitMQ node {self.nodename} did not answer AMQP on {self.port} "
            f"within {timeout:.0f}s:\n{tail(self.log_path)}\n{self.server_log()}"
        )

    def server_log(self, lines: int = 40) -> str:
        """The end of the node's own log file (TLS and authentication errors land there)."""
        logs = sorted((self.base / "log").glob("*.log"))
        return "\n".join(tail(p, lines) for p in logs if "upgrade" not in p.name)

    def stop(self) -> None:
        """Stop the node (`rabbitmqctl stop`), or kill its processes if it does not stop."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=30)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill_group(process)

    def kill(self) -> None:
        """SIGKILL the node's whole process group: no shutdown, no goodbye to its peers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._kill_group(process)

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        # `rabbitmq-server` is a shell that waits for the Erlang VM it started: kill the
        # process group this object created (its own session), the VM with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, *, full: bool = True) -> float:
        """Stop and start again (the whole node, or with `full=False` only the app)."""
        started = time.monotonic()
        if full:
            self.stop()
            self.start()
        else:
            self.stop_app()
            self.start_app()
        return time.monotonic() - started

    def stop_app(self) -> None:
        """Stop the RabbitMQ application: every connection closes, the port stops answering."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_amqp(BROKER_START_SECONDS)

    def join_cluster(self, seed: PrivateBroker) -> None:
        """Make this (running, empty) node a member of `seed`'s cluster."""
        if seed.cookie != self.cookie:
            raise ValueError("nodes of one cluster need the same Erlang cookie")
        self.ctl("stop_app")
        self.ctl("join_cluster", seed.nodename)
        self.start_app()

    def close(self) -> None:
        """Stop the node and delete its data."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_all(brokers: Sequence[PrivateBroker]) -> list[float]:
    """Boot the nodes at once (each boot mostly waits); their boot times in seconds."""
    with ThreadPoolExecutor(max_workers=max(len(brokers), 1)) as pool:
        return list(pool.map(lambda b: b.start(), brokers))


def close_all(brokers: Sequence[PrivateBroker]) -> None:
    with ThreadPoolExecutor(max_workers=max(len(brokers), 1)) as pool:
        list(pool.map(lambda b: b.close(), brokers))

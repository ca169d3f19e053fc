"""Shared fixtures: the real RabbitMQ in a throwaway virtual host, unique names per test,
test networks (a CA, node keys, certificates, TOML files and tokens) made on demand."""

from __future__ import annotations

import os
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from networks import NetworkFactory
from rabbitmq_cli import DEFAULT_AMQP_URL, rabbitmqctl

from exchange.network import NetworkLayout, init_network_dir


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[str]:
    """A fresh virtual host for this test session, deleted afterwards."""
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl not found: integration tests need the real RabbitMQ")
    vhost = f"xbtest-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    user = urllib.parse.urlsplit(os.environ.get("EXCHANGE_AMQP_URL", DEFAULT_AMQP_URL)).username
    rabbitmqctl("set_permissions", "-p", vhost, user or "guest", ".*", ".*", ".*")
    yield vhost
    rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def amqp_url(amqp_vhost: str) -> str:
    """EXCHANGE_AMQP_URL pointed at the session's own virtual host."""
    base = urllib.parse.urlsplit(os.environ.get("EXCHANGE_AMQP_URL", DEFAULT_AMQP_URL))
    return urllib.parse.urlunsplit(
        (base.scheme, base.netloc, "/" + urllib.parse.quote(amqp_vhost, safe=""), base.query, "")
    )


@pytest.fixture
def prefix() -> str:
    """A unique topology prefix, so tests sharing the vhost never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_network(tmp_path: Path) -> NetworkFactory:
    """`make_network(nodes, networks={name: members}, ...)`: a new test network of this test,
    in its tmp_path (`net`, then `net-2`, ...). On the in-memory bus unless `bus="amqp"`; the
    other options are those of `init_network_dir` (amqp_url, base_port, prefix, ...)."""
    made = 0

    def make(nodes: Sequence[str], *, bus: str = "memory", **options: Any) -> NetworkLayout:
        nonlocal made
        made += 1
        directory = tmp_path / ("net" if made == 1 else f"net-{made}")
        return init_network_dir(directory, nodes, bus=bus, **options)

    return make


@pytest.fixture(autouse=True)
def _restore_log_config() -> Iterator[None]:
    """Undo `log.configure` done by a CLI test: it binds the log stream of that moment
    (a capture that pytest closes afterwards), which would break every later log call."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)

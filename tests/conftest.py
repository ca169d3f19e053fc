"""Shared fixtures: the real RabbitMQ in a throwaway virtual host, unique names per test."""

from __future__ import annotations

import os
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest
import structlog
from rabbitmq_cli import DEFAULT_AMQP_URL, rabbitmqctl


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


@pytest.fixture(autouse=True)
def _restore_log_config() -> Iterator[None]:
    """Undo `log.configure` done by a CLI test: it binds the log stream of that moment
    (a capture that pytest closes afterwards), which would break every later log call."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)

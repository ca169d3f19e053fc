"""The console in a real browser: three gateways on the real RabbitMQ, Debian's chromium.

One network for the session (AL-ARO, RS-PPO and MD-ARO, members of the prosecutor network
see-pcn) runs in a background event loop of this process, so tests also reach into a node
(its audit log, its sessions) where a check needs to. One browser per module; each
user (node, role) signs in once per module in a context of their own and keeps its page.
Screenshots go to a session directory, or to CONSOLE_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from console_pages import (
    CHROMIUM,
    NETWORK,
    NODES,
    BackgroundNetwork,
    User,
    open_context,
    sign_in,
)
from playwright.sync_api import Browser, Playwright, sync_playwright

from exchange.demo.runner import free_base_port
from exchange.network import init_network_dir


@pytest.fixture(scope="session")
def console_network(
    amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundNetwork]:
    layout = init_network_dir(
        tmp_path_factory.mktemp("console") / "net",
        NODES,
        bus="amqp",
        amqp_url=amqp_url,
        base_port=free_base_port(len(NODES)),
        prefix=f"c{uuid.uuid4().hex[:10]}",
        networks={NETWORK: NODES},
    )
    network = BackgroundNetwork(layout)
    network.start()
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API, for one module at a time: while it runs, the thread has a
    running event loop that no asyncio test after the browser tests could share."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: .ci/ensure-browser installs Debian's chromium")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def user(
    browser: Browser, console_network: BackgroundNetwork
) -> Iterator[Callable[[str, str], User]]:
    """`user(node, role)`: that user signed in, in a context of their own (made once)."""
    made: dict[tuple[str, str], User] = {}

    def get(node: str, role: str) -> User:
        if (node, role) not in made:
            context, observed = open_context(browser, console_network)
            page = context.new_page()
            base = console_network.url(node)
            sign_in(page, base, console_network.token(node, role))
            made[node, role] = User(node, role, context, page, observed, base)
        return made[node, role]

    yield get
    for one in made.values():
        one.context.close()

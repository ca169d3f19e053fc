"""What the console's browser tests share: the nodes in a background loop, users signed in
in contexts that record what their pages did, axe-core, screenshots.

One network for the session (AL-ARO, RS-PPO and MD-ARO, members of the prosecutor network
see-pcn) runs in a background event loop of this process, so tests also reach into a node
(its audit log, its sessions) where a check needs to. One browser for the session; each
user (node, role) signs in once in a context of their own and keeps its page. Every
context records what a page tried: dialogs (dismissed), requests to any other origin
(aborted), and console errors, which include the browser's reports of anything the
Content-Security-Policy blocked. `axe_violations` injects axe-core (from npm, under
tests/browser/node_modules) and returns the serious and critical violations.
Screenshots go to a session directory, or to CONSOLE_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    Route,
)

from exchange.console.web import CONSOLE, COOKIE
from exchange.demo.runner import DemoNetwork
from exchange.gateway import keys
from exchange.network import NetworkLayout

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
NODES = ("AL-ARO", "RS-PPO", "MD-ARO")
NETWORK = "see-pcn"
TIMEOUT_MS = 15_000

T = TypeVar("T")


class BackgroundNetwork:
    """The nodes' gateways in an event loop of their own thread."""

    def __init__(self, layout: NetworkLayout) -> None:
        self.layout = layout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.network: DemoNetwork

    def start(self) -> None:
        self.thread.start()

        async def start() -> DemoNetwork:
            network = DemoNetwork(self.layout, None)  # its HTTP session belongs to this loop
            await network.start()
            return network

        self.network = self.call(start(), timeout=60)

    def stop(self) -> None:
        self.call(self.network.stop(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `work` in the nodes' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def url(self, node: str) -> str:
        return self.layout.nodes[node].url

    def token(self, node: str, role: str) -> str:
        return self.layout.nodes[node].token(role)

    def app(self, node: str) -> Any:
        return self.network.apps[node]


@dataclass
class Observed:
    """What the pages of one browser context did that a test may want to see."""

    origins: set[str]
    dialogs: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        self.requests.append(route.request.url)
        parts = urlsplit(route.request.url)
        if f"{parts.scheme}://{parts.netloc}" in self.origins:
            route.continue_()
            return
        self.foreign.append(route.request.url)
        route.abort()

    def dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@dataclass
class User:
    node: str
    role: str
    context: BrowserContext
    page: Page
    observed: Observed
    base: str

    def goto(self, path: str) -> Page:
        self.page.goto(f"{self.base}{path}")
        return self.page

    @property
    def session_cookie(self) -> str:
        return next(c["value"] for c in self.context.cookies() if c["name"] == COOKIE)


def open_context(browser: Browser, network: BackgroundNetwork) -> tuple[BrowserContext, Observed]:
    """A fresh context (no cookies) that records dialogs, foreign requests and errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    observed = Observed({network.url(node) for node in NODES})
    context.route("**/*", observed.route)

    def watch(page: Page) -> None:
        page.on("dialog", observed.dialog)
        page.on(
            "console",
            lambda message: (
                observed.errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.on("pageerror", lambda error: observed.errors.append(str(error)))

    context.on("page", watch)
    return context, observed


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/console/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/console/login" not in url)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))"
    )
    return found


def shoot(page: Page, screens: Path, name: str) -> None:
    page.screenshot(path=screens / f"{name}.png")


def no_horizontal_overflow(page: Page) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def sessions_of(network: BackgroundNetwork, node: str) -> Any:
    return network.app(node)[CONSOLE].sessions


def audit_tail(network: BackgroundNetwork, node: str, count: int = 5) -> list[dict[str, Any]]:
    """The last `count` entries of a node's audit log: event, code, actor and detail."""
    log = network.app(node)[keys.AUDIT]

    async def tail() -> list[dict[str, Any]]:
        entries = await log.entries(max(0, log.head.size - count), count)
        return [
            {"event": e.event.value, "code": e.code, "actor": e.actor, "detail": e.detail}
            for e in entries
        ]

    return network.call(tail())

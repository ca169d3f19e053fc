"""Hostile content from another node renders inert.

Chișinău (MD-ARO) sends Tirana an asset inquiry through the real broker whose names and free
text hold `<script>`, `"><img src=x onerror=...>`, `javascript:` links, right-to-left
overrides and strings as long as the schema allows, without a space; it publishes a case
update with the same to the prosecutor network while Tirana's prosecutor watches the live
feed; and a message signed by Chișinău with 10,000-character strings (longer than any
schema allows: what a node would hold of a later schema version) sits in Tirana's inbox.
On every page that shows them: no dialog opens, nothing is requested from another origin
nor by any injected element, no element the content describes exists, the text is shown
as text with the overrides made visible, nothing the Content-Security-Policy had to block
was attempted, and the page does not scroll sideways.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from console_pages import BackgroundNetwork, User, axe_violations, no_horizontal_overflow, shoot
from http_helpers import example_payload
from playwright.sync_api import Page, expect

from exchange.client import GatewayClient
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.gateway import keys
from exchange.model.case_update import CaseUpdate
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.storage.messages import insert_inbox
from exchange.storage.records import IncomingMessage

pytestmark = pytest.mark.integration

CASE = "MD-2026-0666"
SCRIPT = "<script>alert('given')</script>"
IMAGE = "\"><img src=x onerror=alert('family')>"
LINK = "javascript:alert('occupation')"
ANCHOR = "<a href=\"javascript:alert('question')\">open</a>"
RLO = "Hoxha\u202egnp.exe"
LINE = "Ш" * 300  # the longest one-line value a schema allows, without a space
TEXT = "W" * 4000  # the longest free text
HUGE = "Ж" * 10_000


def hostile_inquiry() -> dict[str, Any]:
    payload = example_payload("asset-inquiry")
    payload["requesting_authority"]["name"] = LINE
    subject = payload["subjects"][0]
    subject["kind"] = "natural-person"
    subject["name"] = {"given_names": SCRIPT, "family_name": IMAGE}
    subject["aliases"] = [{"kind": "other-spelling", "family_name": RLO, "given_names": LINK}]
    subject["occupation"] = LINK
    payload["questions"][0]["text"] = ANCHOR
    payload["link_to_requested_state"] = TEXT
    return payload


def send_hostile(network: BackgroundNetwork) -> str:
    body = {
        "type": "asset-inquiry",
        "recipients": ["AL-ARO"],
        "case": CASE,
        "priority": "urgent",
        "handling": {"tlp": "RED", "code": "H3"},
        "payload": hostile_inquiry(),
    }

    async def send() -> str:
        token = network.token("MD-ARO", "contact-point")
        async with GatewayClient(network.url("MD-ARO"), token) as node:
            accepted = await node.submit(body)
            view = await node.wait_settled(accepted.id, within=20)
            assert view.status == "delivered", view
            return str(accepted.id)

    return network.call(send())


def store_oversized(network: BackgroundNetwork) -> str:
    """A message signed by MD-ARO, stored in AL-ARO's inbox as the relay stores one."""
    pki = network.layout.directory / "pki"
    signer = NodeSigner.from_files(pki / "MD-ARO.key", pki / "MD-ARO.pem")
    now = utc_now()
    header = Header.model_validate(
        {
            "id": uuid.uuid4(),
            "type": "asset-inquiry",
            "schema": "asset-inquiry/1",
            "sender": "MD-ARO",
            "recipients": ["AL-ARO"],
            "case": CASE,
            "created_at": now,
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    payload = {
        "requesting_authority": {"name": HUGE, "kind": SCRIPT, "country": IMAGE},
        "subjects": [{"kind": "natural-person", "name": {"given_names": HUGE + RLO}}],
        "link_to_requested_state": LINK,
        HUGE[:40]: [HUGE, {"deep": {"deeper": [HUGE]}}],
    }
    envelope, digest = signer.sign_envelope_with_digest(header, payload)
    message = IncomingMessage(
        header.id, "asset-inquiry", CASE, "MD-ARO", None, digest,
        encode_envelope(envelope), now, None,
    )  # fmt: skip
    app = network.app("AL-ARO")
    network.call(app[keys.DATABASE].call(lambda conn: insert_inbox(conn, message)))
    return str(header.id)


def publish_update(network: BackgroundNetwork) -> None:
    update = CaseUpdate.model_validate(
        {
            "case": CASE,
            "network": "see-pcn",
            "event": "note",
            "summary": f"{SCRIPT} {IMAGE} {LINK} {RLO} {'Ж' * 3000}",
        }
    )

    async def publish() -> None:
        token = network.token("MD-ARO", "contact-point")
        async with GatewayClient(network.url("MD-ARO"), token) as node:
            await node.submit_case_update(update, recipients=["AL-ARO", "RS-PPO"])

    network.call(publish())


def inert(page: Page, user: User, *texts: str) -> None:
    """Nothing the hostile strings describe exists or ran; they are there, as text."""
    assert user.observed.dialogs == []
    assert user.observed.foreign == []
    assert not [url for url in user.observed.requests if url.rstrip("/").endswith("/x")]
    assert not [e for e in user.observed.errors if "Content Security Policy" in e]
    assert page.locator("img, iframe, object, embed").count() == 0
    assert page.locator("[onerror], [onclick], [onload]").count() == 0
    assert page.locator('a[href^="javascript:"]').count() == 0
    scripts = page.locator("script").evaluate_all("all => all.map(s => s.src)")
    assert scripts == [f"{user.base}/console/static/console.js"]
    body = page.locator("body").inner_text()
    for text in texts:
        assert text in body, text[:60]
    assert no_horizontal_overflow(page)


def test_a_peers_hostile_content_renders_inert(
    user: Callable[[str, str], User], console_network: BackgroundNetwork, screens: Path
) -> None:
    prosecutor = user("AL-ARO", "subscriber")
    feed = prosecutor.goto("/console/feed")
    expect(feed.locator("#feed-status")).to_contain_text("Live", timeout=10_000)
    hostile = send_hostile(console_network)
    oversized = store_oversized(console_network)
    publish_update(console_network)

    # the live feed (built by the script, with text nodes only) and the page as served
    item = feed.locator("#feed li.fresh").filter(has_text="[U+202E]")
    expect(item).to_be_visible(timeout=20_000)
    inert(feed, prosecutor, SCRIPT, IMAGE, LINK, "[U+202E]")
    prosecutor.goto("/console/feed")
    inert(prosecutor.page, prosecutor, SCRIPT, IMAGE, LINK, "[U+202E]")

    officer = user("AL-ARO", "contact-point")
    inbox = officer.goto(f"/console/inbox?case={CASE}")
    expect(inbox.locator(f'tr[data-id="{hostile}"]')).to_be_visible()
    inert(inbox, officer)
    page = officer.goto(f"/console/inbox/{hostile}")
    expect(page.locator(".tlp")).to_have_text(
        "TLP:RED For the eyes and ears of individual recipients only, no further disclosure."
    )
    inert(page, officer, SCRIPT, IMAGE, LINK, ANCHOR, "Hoxha[U+202E]gnp.exe", LINE, TEXT)
    assert axe_violations(page) == []
    shoot(page, screens, "13-hostile-message")
    page = officer.goto(f"/console/inbox/{oversized}")
    inert(page, officer, HUGE, SCRIPT, IMAGE, LINK)
    inert(officer.goto(f"/console/cases/{CASE}"), officer)

    # the audit entries that keep the envelope, shown whole to an administrator
    admin = user("AL-ARO", "admin")
    listing = admin.goto(f"/console/audit/entries?message={hostile}")
    inert(listing, admin)
    links = [str(a.get_attribute("href")) for a in listing.locator("tbody td.num a").all()]
    shown = []
    for href in links[-4:]:  # the oldest: received, verified and stored with the envelope
        page = admin.goto(href)
        inert(page, admin)
        shown.append("Hoxha[U+202E]gnp.exe" in page.locator("pre").inner_text())
    assert any(shown)

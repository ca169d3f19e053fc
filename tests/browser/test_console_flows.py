"""The console's flows in Chromium, over three gateways on the real RabbitMQ.

1. sign in (each user below signs in through the form);
2. Tirana composes an urgent asset inquiry with two subjects and a wallet (adding the
   second subject from the keyboard), gets the server's field error next to the wallet's
   address, corrects it and sends;
3. it appears in Belgrade's console inbox, and Tirana's view shows Belgrade's signed receipt;
4. Belgrade replies (the form pre-filled with the case and `in_reply_to`), and the reply
   shows in Tirana's case view;
5. Chișinău's prosecutor sees a case update arrive on the feed, live, without reloading;
6. Tirana's auditor verifies the log and checks a message's inclusion, and sees no payload.
Names in Cyrillic, Albanian and Romanian come out as they went in. Every page visited is
checked with axe-core and photographed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from console_pages import BackgroundNetwork, User, axe_violations, no_horizontal_overflow, shoot
from http_helpers import example_payload
from playwright.sync_api import Page, expect

from exchange.client import GatewayClient

pytestmark = pytest.mark.integration

CASE = "AL-2026-0777"
CYRILLIC = ("Љубомир", "Јовановић")
ROMANIAN = ("Ștefan", "Țurcanu")  # comma below, U+0218 and U+021A
ALBANIAN = "Zyra e Rikuperimit të Aseteve, Policia e Shtetit"
WALLET = "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7"


def fill(page: Page, name: str, value: str) -> None:
    page.locator(f'[name="{name}"]').fill(value)


def choose(page: Page, name: str, value: str) -> None:
    page.locator(f'[name="{name}"]').select_option(value)


def sent(page: Page, where: str = "/console/sent/") -> None:
    """The form was accepted: the browser went on to `where` (else say what the node said)."""
    page.wait_for_load_state()
    summary = page.locator("#error-summary")
    if where not in page.url and summary.count():
        raise AssertionError(summary.inner_text())
    expect(page).to_have_url(re.compile(where))


def checked(page: Page, screens: Path, name: str) -> None:
    """The page has no serious accessibility violation and no sideways scroll; photograph it."""
    import time

    t = time.time()
    assert axe_violations(page) == [], name
    print("AXE", name, round(time.time() - t, 2))
    assert no_horizontal_overflow(page), name
    shoot(page, screens, name)


def clean(*users: User) -> None:
    for one in users:
        assert one.observed.dialogs == [], one.observed.dialogs
        assert one.observed.foreign == [], one.observed.foreign
        assert not [e for e in one.observed.errors if "Content Security Policy" in e], (
            one.observed.errors
        )


def compose_inquiry(page: Page) -> None:
    page.get_by_label("RS-PPO").check()
    page.get_by_label("Case reference").fill(CASE)
    page.get_by_label("urgent").check()
    urgency = page.locator('[name="payload.urgency_grounds"]')
    expect(urgency).to_be_visible()  # a field that applies to urgent requests only
    fill(page, "payload.requesting_authority.name", ALBANIAN)
    choose(page, "payload.requesting_authority.kind", "asset-recovery-office")
    fill(page, "payload.requesting_authority.country", "AL")
    fill(page, "payload.contact.name", "Elira Dervishi")
    fill(page, "payload.contact.email", "e.dervishi@asp.gov.al")
    fill(page, "payload.legal_basis.0.instrument", "Council of Europe Convention CETS No. 198")
    choose(page, "payload.proceedings.kind", "criminal-investigation")
    fill(page, "payload.proceedings.reference", "Nr. 214/2025")
    fill(page, "payload.offence.description", "Laundering of bribes through crypto-assets.")
    choose(page, "payload.subjects.0.role", "suspect")
    fill(page, "payload.subjects.0.name.given_names", CYRILLIC[0])
    fill(page, "payload.subjects.0.name.family_name", CYRILLIC[1])
    add_subject = page.get_by_role("button", name="Add subject")
    add_subject.focus()
    page.keyboard.press("Enter")
    expect(page.locator('[name="payload.subjects.1.kind"]')).to_be_focused()
    expect(page.get_by_role("group", name="Subject 2")).to_be_visible()
    choose(page, "payload.subjects.1.role", "nominee")
    fill(page, "payload.subjects.1.name.given_names", ROMANIAN[0])
    fill(page, "payload.subjects.1.name.family_name", ROMANIAN[1])
    page.get_by_role("button", name="Add asset").click()
    choose(page, "payload.assets_sought.0.kind", "virtual-asset")
    expect(page.locator('[name="payload.assets_sought.0.chain"]')).to_be_visible()
    expect(page.locator('[name="payload.assets_sought.0.iban"]')).to_have_count(0)
    fill(page, "payload.assets_sought.0.chain", "tron")
    fill(page, "payload.assets_sought.0.symbol", "USDT")
    fill(page, "payload.assets_sought.0.address", "0xnot-a-tron-address")
    choose(page, "payload.questions.0.topic", "virtual-assets")
    fill(page, "payload.questions.0.text", "Who holds the wallet, and where did its USDT go?")
    fill(page, "payload.link_to_requested_state", "The wallet belongs to a Belgrade exchange.")
    urgency.fill("The funds may be moved within days.")


def test_an_urgent_inquiry_goes_to_belgrade_and_its_answer_comes_back(
    user: Callable[[str, str], User], screens: Path
) -> None:
    tirana, belgrade = user("AL-ARO", "contact-point"), user("RS-PPO", "contact-point")
    inbox = belgrade.goto("/console/inbox")  # open before anything is sent: it refreshes
    page = tirana.goto("/console/compose/asset-inquiry")
    shoot(page, screens, "04-compose")  # checked below, with its errors shown
    compose_inquiry(page)
    page.get_by_role("button", name="Sign and send").click()

    # the node refused it: the error is next to the address, and the rest is as typed
    address = page.locator('[name="payload.assets_sought.0.address"]')
    expect(address).to_have_attribute("aria-invalid", "true")
    error = page.locator('[id="e.payload.assets_sought.0.address"]')
    expect(error).to_contain_text("should match pattern")
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator('[name="payload.subjects.1.name.family_name"]')).to_have_value(ROMANIAN[1])
    checked(page, screens, "05-compose-field-error")
    address.fill(WALLET)
    page.get_by_role("button", name="Sign and send").click()

    # 2-3: accepted, delivered, with Belgrade's signed receipt naming what was sent
    sent(page)
    message_id = page.url.split("/console/sent/")[1].split("?")[0]
    expect(page.get_by_role("status")).to_contain_text("Accepted")
    receipts = page.locator("#deliveries")
    expect(receipts).to_contain_text("delivered", timeout=20_000)
    expect(receipts).to_contain_text("matches")
    expect(page.locator(".tlp")).to_contain_text("TLP:AMBER")
    checked(page, screens, "06-message-sent")

    row = inbox.locator(f'tr[data-id="{message_id}"]')
    expect(row).to_contain_text(CASE, timeout=15_000)  # arrived while the page was open
    expect(row.locator(".badge.urgent")).to_be_visible()
    expect(row).to_contain_text("open")
    checked(inbox, screens, "02-inbox")
    row.get_by_role("link", name="asset-inquiry").click()
    view = belgrade.page
    expect(view.get_by_role("heading", name="asset-inquiry from AL-ARO")).to_be_visible()
    expect(view.get_by_text("Signature verified on arrival")).to_contain_text("AL-ARO")
    text = view.locator(".payload").inner_text()
    for name in (*CYRILLIC, *ROMANIAN, ALBANIAN, WALLET):
        assert name in text, name
    assert "\u0218tefan" in text and "\u015etefan" not in text  # comma below, not cedilla
    assert view.evaluate("document.characterSet") == "UTF-8"
    checked(view, screens, "03-message-received")

    # 4: Belgrade replies; the form knows the case, the message answered and its sender
    view.get_by_role("link", name="Reply with asset-inquiry-response").click()
    reply = belgrade.page
    expect(reply.get_by_label("Case reference")).to_have_value(CASE)
    expect(reply.get_by_label("In reply to")).to_have_value(message_id)
    expect(reply.get_by_label("AL-ARO")).to_be_checked()
    findings = reply.locator('[data-list="payload.findings"]')
    choose(reply, "payload.outcome", "found")
    expect(findings).to_be_visible()  # required when something was found
    choose(reply, "payload.outcome", "not-found")
    expect(findings).to_be_hidden()
    fill(reply, "payload.responding_authority.name", "Jedinica za finansijske istrage")
    choose(reply, "payload.responding_authority.kind", "asset-recovery-office")
    fill(reply, "payload.responding_authority.country", "RS")
    reply.get_by_role("button", name="Sign and send").click()
    sent(reply)
    expect(reply.locator("#deliveries")).to_contain_text("delivered", timeout=20_000)

    case = tirana.goto(f"/console/cases/{CASE}")
    timeline = case.locator("#case-timeline")
    expect(timeline).to_contain_text("asset-inquiry-response")
    expect(timeline).to_contain_text("received from RS-PPO")
    checked(case, screens, "07-case")
    clean(tirana, belgrade)


def send_case_update(page: Page, summary: str) -> None:
    page.get_by_label("Case reference").fill(CASE)
    choose(page, "payload.network", "see-pcn")
    choose(page, "payload.event", "assets-identified")
    fill(page, "payload.summary", summary)
    page.get_by_role("button", name="Sign and send").click()
    sent(page, f"/console/cases/{CASE}")


def test_a_prosecutor_sees_a_case_update_arrive_live(
    user: Callable[[str, str], User], screens: Path
) -> None:
    prosecutor, tirana = user("MD-ARO", "subscriber"), user("AL-ARO", "contact-point")
    feed = prosecutor.goto("/console/feed")
    expect(feed.locator("#feed-status")).to_contain_text("Live", timeout=10_000)
    feed.evaluate("window.stillTheSamePage = true")
    summary = "Belgrade identified the wallet's owner and two accounts (Ștefan Țurcanu)."
    send_case_update(tirana.goto("/console/compose/case-update"), summary)
    item = feed.locator("#feed li.fresh").filter(has_text=summary)
    expect(item).to_be_visible(timeout=20_000)
    expect(item).to_contain_text("assets-identified")
    assert feed.evaluate("window.stillTheSamePage") is True  # arrived without a reload
    checked(feed, screens, "08-feed")
    item.get_by_role("link", name=CASE).click()
    expect(prosecutor.page.locator("#case-timeline")).to_contain_text(summary)
    clean(prosecutor, tirana)


def test_an_auditor_verifies_the_log_and_a_messages_inclusion(
    user: Callable[[str, str], User], console_network: BackgroundNetwork, screens: Path
) -> None:
    payload = example_payload("asset-inquiry")
    body: dict[str, Any] = {
        "type": "asset-inquiry",
        "recipients": ["RS-PPO"],
        "case": "AL-2026-0901",
        "priority": "normal",
        "handling": {"tlp": "AMBER", "code": "H2"},
        "payload": payload,
    }

    async def send() -> str:
        token = console_network.token("AL-ARO", "contact-point")
        async with GatewayClient(console_network.url("AL-ARO"), token) as node:
            accepted = await node.submit(body)
            await node.wait_settled(accepted.id, within=20)
            return str(accepted.id)

    message_id = console_network.call(send())
    auditor = user("AL-ARO", "auditor")
    page = auditor.goto("/console/audit")
    expect(page.get_by_text("verifies with the node's certificate")).to_be_visible()
    checked(page, screens, "09-audit")
    page.get_by_role("button", name="Verify the log").click()
    expect(page.locator("#verify-progress")).to_be_attached()
    expect(page.get_by_role("heading", name="The log is intact")).to_be_visible(timeout=30_000)
    expect(page.locator("#verify-progress")).to_have_attribute("value", "100")
    checked(page, screens, "10-verification")

    page = auditor.goto("/console/audit/inclusion")
    page.get_by_label("Message id").fill(message_id)
    page.get_by_role("button", name="Check inclusion").click()
    expect(page.get_by_role("heading", name="Every entry about this message")).to_be_visible()
    expect(page.locator("td .badge.ok").first).to_have_text("included")
    checked(page, screens, "11-inclusion")

    # auditors never see payloads: not on the message, not in the entries
    page = auditor.goto(f"/console/sent/{message_id}")
    expect(page.get_by_text("The content is withheld from your role")).to_be_visible()
    requesting = payload["requesting_authority"]["name"]
    assert requesting not in page.content()
    page = auditor.goto(f"/console/audit/entries?message={message_id}")
    expect(page.locator("tbody tr").first).to_be_visible()
    checked(page, screens, "12-entries")
    links = [str(a.get_attribute("href")) for a in page.locator("tbody td.num a").all()]
    assert links
    for href in links:
        assert requesting not in auditor.goto(href).content()
    clean(auditor)

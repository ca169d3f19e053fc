"""Signing in and out, sessions and forgery, in the browser.

A token signs in (flow 1); a wrong one is refused on the page and audited as counted; every
page answers with the strict headers; a POST without the session's CSRF token, or with
another's, is refused and audited with the signed-in token's id; a session that outlived
its idle time sends the next page to the sign-in; a signed-out session opens nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from console_pages import (
    BackgroundNetwork,
    User,
    audit_tail,
    axe_violations,
    open_context,
    sessions_of,
    shoot,
    sign_in,
)
from playwright.sync_api import Browser, expect

from exchange.console.web import CSP

pytestmark = pytest.mark.integration


def test_a_token_signs_in_and_out(
    browser: Browser, console_network: BackgroundNetwork, screens: Path
) -> None:
    context, observed = open_context(browser, console_network)
    page = context.new_page()
    base = console_network.url("AL-ARO")
    answer = page.goto(f"{base}/console/inbox")
    assert answer is not None
    expect(page).to_have_url(f"{base}/console/login?next=/console/inbox")
    headers = answer.all_headers()
    assert headers["content-security-policy"] == CSP
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    expect(page.get_by_label("Token")).to_have_attribute("type", "password")
    assert axe_violations(page) == []
    shoot(page, screens, "01-sign-in")

    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("This token is not valid")

    page.get_by_label("Token").fill(console_network.token("AL-ARO", "contact-point"))
    page.keyboard.press("Enter")  # the form works from the keyboard
    expect(page).to_have_url(f"{base}/console/inbox")
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "xb-console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    page.goto(f"{base}/console/inbox")
    expect(page).to_have_url(f"{base}/console/login?next=/console/inbox")
    assert sessions_of(console_network, "AL-ARO").peek(cookie["value"]) is None
    assert observed.dialogs == [] and observed.foreign == []
    context.close()


def test_a_post_without_the_forms_token_is_refused(
    user: Callable[[str, str], User], console_network: BackgroundNetwork
) -> None:
    officer = user("RS-PPO", "contact-point")
    target = f"{officer.base}/console/compose/asset-inquiry"
    form = {"case": "RS-2026-0001", "recipients": "AL-ARO", "priority": "normal"}
    missing = officer.page.request.post(target, form=form)
    wrong = officer.page.request.post(target, form={**form, "csrf": "x" * 43})
    for answer in (missing, wrong):
        assert answer.status == 403
        assert "console.csrf" in answer.text()
    refusals = [e for e in audit_tail(console_network, "RS-PPO") if e["code"] == "console.csrf"]
    assert len(refusals) == 2
    assert all(e["event"] == "refused" and e["actor"] == "contact-point" for e in refusals)
    # nothing was sent
    officer.goto("/console/sent")
    expect(officer.page.get_by_text("RS-2026-0001")).to_have_count(0)


def test_an_expired_session_goes_back_to_the_sign_in(
    browser: Browser, console_network: BackgroundNetwork
) -> None:
    context, _ = open_context(browser, console_network)
    page = context.new_page()
    base = console_network.url("MD-ARO")
    sign_in(page, base, console_network.token("MD-ARO", "contact-point"))
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "xb-console")
    sessions = sessions_of(console_network, "MD-ARO")

    async def age() -> None:
        session = sessions.peek(cookie)
        session.last_seen -= sessions.idle_seconds + 1

    console_network.call(age())
    page.goto(f"{base}/console/sent")
    expect(page).to_have_url(f"{base}/console/login?next=/console/sent")
    assert sessions.peek(cookie) is None  # and it is gone, not just refused
    context.close()

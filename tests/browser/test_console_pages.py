"""The console's other pages in Chromium: each passes axe-core with no serious or critical
violation, does not scroll sideways, and is photographed; the deadline report draws its
chart as SVG and exports CSV; a refused page says why, in HTML."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from console_pages import BackgroundNetwork, User, axe_violations, no_horizontal_overflow, shoot
from playwright.sync_api import expect

from exchange.gateway import keys

pytestmark = pytest.mark.integration

PAGES = (
    ("AL-ARO", "admin", "/console/admin", "14-admin"),
    ("AL-ARO", "admin", "/console/audit/deadlines", "15-deadlines"),
    ("AL-ARO", "admin", "/console/audit/entries/0", "16-entry"),
    ("AL-ARO", "contact-point", "/console/sent", "17-sent"),
    ("AL-ARO", "contact-point", "/console/cases", "18-cases"),
    ("AL-ARO", "contact-point", "/console/compose", "19-compose-types"),
    ("AL-ARO", "contact-point", "/console/audit", "22-refused"),
)


def test_every_other_page_is_accessible(user: Callable[[str, str], User], screens: Path) -> None:
    for node, role, path, name in PAGES:
        visitor = user(node, role)
        page = visitor.goto(path)
        assert axe_violations(page) == [], path
        assert no_horizontal_overflow(page), path
        shoot(page, screens, name)
        assert visitor.observed.dialogs == [] and visitor.observed.foreign == []
    refused = user("AL-ARO", "contact-point").page
    expect(refused.get_by_role("alert")).to_contain_text("role 'contact-point' may not audit")


def test_the_node_page_shows_health_peers_and_certificates(
    user: Callable[[str, str], User], console_network: BackgroundNetwork
) -> None:
    page = user("AL-ARO", "admin").goto("/console/admin")
    expect(page.get_by_text("connected and consuming")).to_be_visible()
    serial = console_network.app("AL-ARO")[keys.DIRECTORY].serial
    directory = page.locator("dt:text-is('Network directory serial') + dd")
    expect(directory).to_contain_text(f"{serial}, next update due")
    certificates = page.locator("table").last
    expect(certificates).to_contain_text("network CA")
    expect(certificates).to_contain_text("this node (its signing key)")
    expect(certificates).to_contain_text("member RS-PPO")


def test_the_deadline_report_draws_svg_and_exports_csv(
    user: Callable[[str, str], User],
) -> None:
    auditor = user("AL-ARO", "auditor")
    page = auditor.goto("/console/audit/deadlines")
    chart = page.locator("svg.chart")
    expect(chart).to_have_attribute("role", "img")
    expect(chart.locator("title").first).to_have_text(
        "Requests by recipient node and how they stand"
    )
    answer = page.request.get(f"{auditor.base}/console/audit/deadlines.csv")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith(
        'attachment; filename="deadlines-AL-ARO-'
    )
    rows = list(csv.reader(io.StringIO(answer.text())))
    assert rows[0][:3] == ["message_id", "type", "case"]
    assert all(len(row) == len(rows[0]) for row in rows)

"""The console over HTTP, without a browser: sessions, forgery, roles, headers, what each role
may read, submissions through the API's own checks and audit, and the forms without script.

Each test signs in through the sign-in form as a browser would; the gateway runs without a
relay (nothing leaves it), its console as `create_app` mounts it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from http_helpers import example_payload

from exchange.audit.entries import AuditEntry
from exchange.console.app import ROUTES
from exchange.console.web import CONSOLE, CSP, SECURITY_HEADERS
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.demo.runner import _serve
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.network import NetworkLayout
from tests.seeding import seed_inbox

pytestmark = pytest.mark.network(networks={"see-pcn": ["AL-ARO", "RS-PPO", "MD-ARO"]})

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ROLE_PAGES = {
    "contact-point": ["/console/inbox", "/console/sent", "/console/compose", "/console/cases"],
    "subscriber": ["/console/feed", "/console/cases"],
    "auditor": ["/console/inbox", "/console/audit", "/console/audit/entries"],
    "admin": ["/console/admin", "/console/audit/deadlines", "/console/compose/freeze-notice"],
}
FORBIDDEN = {
    "contact-point": ["/console/audit", "/console/feed", "/console/admin"],
    "subscriber": ["/console/inbox", "/console/compose", "/console/audit/entries"],
    "auditor": ["/console/compose", "/console/feed", "/console/admin"],
}


@dataclass
class Console:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    tokens: dict[str, str]
    csrf: str = ""

    async def sign_in(self, role: str, next_path: str = "/console/") -> Any:
        self.client.session.cookie_jar.clear()  # a new browser
        page = await self.client.get("/console/login")
        token = CSRF.search(await page.text())
        assert token is not None
        answer = await self.client.post(
            "/console/login",
            data={"csrf": token.group(1), "token": self.tokens[role], "next": next_path},
            allow_redirects=False,
        )
        assert answer.status == 303, await answer.text()
        home = await self.client.get("/console/", allow_redirects=True)
        found = CSRF.search(await home.text())
        self.csrf = found.group(1) if found else ""
        return answer

    async def audit(self) -> list[AuditEntry]:
        return await self.app[keys.AUDIT].entries(0, 10_000)


@pytest.fixture
async def console(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Console]:
    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    app = create_app(config, start_relay=False)
    async with TestClient(TestServer(app)) as client:
        yield Console(client, app, dict(network.nodes["AL-ARO"].tokens))


async def test_no_page_opens_without_a_session(console: Console) -> None:
    for method, path, _, _ in ROUTES:
        concrete = re.sub(r"\{[a-z]+\}", "x", path)
        if path.endswith("/login") or path == "/console":
            continue
        answer = await console.client.request(method, concrete, allow_redirects=False)
        if path.endswith("/feed/stream"):
            assert answer.status == 401, path
        else:
            assert answer.status == 303, path
            assert answer.headers["Location"].startswith("/console/login"), path
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (path, name)


async def test_the_console_answers_with_strict_headers(console: Console) -> None:
    await console.sign_in("admin")
    missing = await console.client.get("/console/no/such/page")
    assert missing.status == 404 and missing.content_type == "text/html"
    for path in ("/console/login", "/console/inbox", "/console/admin", "/console/inbox/x"):
        answer = await console.client.get(path)
        assert answer.headers["Content-Security-Policy"] == CSP
        assert "unsafe" not in CSP and "frame-ancestors 'none'" in CSP
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"] == "no-store", path
        body = await answer.text()
        assert "<script>" not in body and " style=" not in body and "<style" not in body
    static = await console.client.get("/console/static/console.js")
    assert static.headers["Content-Type"].startswith("text/javascript")
    assert (await console.client.get("/console/static/../app.py")).status == 404
    api = await console.client.get("/healthz")  # the API keeps its own headers
    assert "Content-Security-Policy" not in api.headers


async def test_every_form_that_posts_carries_the_sessions_token(console: Console) -> None:
    await console.sign_in("admin")
    pages = [p for pages in ROLE_PAGES.values() for p in pages]
    pages += ["/console/compose/asset-inquiry", "/console/compose/case-update", "/console/audit"]
    for path in pages:
        body = await (await console.client.get(path)).text()
        forms = re.findall(r"<form[^>]*>.*?</form>", body, re.S)
        posting = [f for f in forms if 'method="post"' in f]
        assert posting, path  # sign-out at least
        for form in posting:
            assert f'name="csrf" value="{console.csrf}"' in form, (path, form[:200])


async def test_a_post_without_the_token_is_refused_and_audited(console: Console) -> None:
    await console.sign_in("contact-point")
    body = {"case": "AL-2026-0001", "recipients": "RS-PPO", "priority": "normal"}
    for form in (body, {**body, "csrf": "forged"}):
        answer = await console.client.post("/console/compose/asset-inquiry", data=form)
        assert answer.status == 403
        assert "console.csrf" in await answer.text()
    cross = await console.client.post(
        "/console/compose/asset-inquiry",
        data={**body, "csrf": console.csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status == 403
    refused = [e for e in await console.audit() if e.code == "console.csrf"]
    assert len(refused) == 3 and {e.actor for e in refused} == {"contact-point"}
    assert await console.app[keys.STORE].outbox_depth() == 0
    sign_out = await console.client.post("/console/logout", data={}, allow_redirects=False)
    assert sign_out.status == 403  # signing out is a form like any other


async def test_each_role_opens_its_pages_and_no_other(console: Console) -> None:
    for role, pages in ROLE_PAGES.items():
        await console.sign_in(role)
        for path in pages:
            answer = await console.client.get(path)
            assert answer.status == 200, (role, path, await answer.text())
        for path in FORBIDDEN.get(role, []):
            answer = await console.client.get(path)
            assert answer.status == 403, (role, path)
            assert "auth.forbidden" in await answer.text()
    forbidden = [e for e in await console.audit() if e.code == "auth.forbidden"]
    assert {(e.actor, e.detail["path"]) for e in forbidden if e.detail} == {
        (role, path) for role, paths in FORBIDDEN.items() for path in paths
    }


async def test_signing_in_goes_only_to_a_console_page(console: Console) -> None:
    for target in ("//evil.example/", "https://evil.example/console/", "/v1/inbox", "/\\evil"):
        answer = await console.sign_in("contact-point", target)
        assert answer.headers["Location"] == "/console/", target
    answer = await console.sign_in("contact-point", "/console/sent?case=AL-1")
    assert answer.headers["Location"] == "/console/sent?case=AL-1"


async def test_a_wrong_token_is_refused_and_counted(console: Console) -> None:
    page = await console.client.get("/console/login")
    token = CSRF.search(await page.text())
    assert token is not None
    answer = await console.client.post(
        "/console/login", data={"csrf": token.group(1), "token": "guess"}
    )
    assert answer.status == 401
    assert "This token is not valid" in await answer.text()
    assert len(console.app[CONSOLE].sessions) == 0
    refused = [e for e in await console.audit() if e.code == "auth.invalid"]
    assert len(refused) == 1 and refused[0].actor is None


async def seed_message(console: Console, network: NetworkLayout) -> tuple[str, dict[str, Any]]:
    """An asset inquiry from RS-PPO in AL-ARO's inbox, signed by RS-PPO."""
    pki = network.directory / "pki"
    signer = NodeSigner.from_files(pki / "RS-PPO.key", pki / "RS-PPO.pem")
    payload = example_payload("asset-inquiry")
    now = utc_now()
    header = Header.model_validate(
        {
            "id": uuid.uuid4(),
            "type": "asset-inquiry",
            "schema": "asset-inquiry/1",
            "sender": "RS-PPO",
            "recipients": ["AL-ARO"],
            "case": "RS-2026-0042",
            "created_at": now,
            "priority": "urgent",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    envelope, digest = signer.sign_envelope_with_digest(header, payload)
    await seed_inbox(
        console.app,
        header.id,
        "asset-inquiry",
        "RS-2026-0042",
        "RS-PPO",
        None,
        digest,
        encode_envelope(envelope),
        now,
        None,
    )
    return str(header.id), payload


async def test_an_auditor_reads_the_message_without_its_payload(
    console: Console, network: NetworkLayout
) -> None:
    message_id, payload = await seed_message(console, network)
    name = payload["requesting_authority"]["name"]
    await console.sign_in("contact-point")
    page = await (await console.client.get(f"/console/inbox/{message_id}")).text()
    assert name in page and "Reply with asset-inquiry-response" in page
    await console.sign_in("auditor")
    page = await (await console.client.get(f"/console/inbox/{message_id}")).text()
    assert name not in page and "withheld from your role" in page
    assert "Reply with" not in page
    delivered = [e for e in await console.audit() if e.event.value == "delivered"]
    assert [(e.actor, e.message_id) for e in delivered] == [
        ("contact-point", message_id),
        ("auditor", message_id),
    ]


async def test_a_refused_message_is_audited_as_the_api_audits_it(console: Console) -> None:
    await console.sign_in("contact-point")
    form = {
        "csrf": console.csrf,
        "recipients": "RS-PPO",
        "case": "AL-2026-0002",
        "priority": "urgent",
        "handling.tlp": "AMBER",
        "handling.code": "H2",
        "payload.requesting_authority.name": "Zyra e Rikuperimit të Aseteve",
        "_send": "1",
    }
    answer = await console.client.post("/console/compose/asset-inquiry", data=form)
    assert answer.status == 422
    page = await answer.text()
    assert 'id="e.payload.requesting_authority.kind"' in page  # next to its input
    assert 'value="Zyra e Rikuperimit të Aseteve"' in page  # what was typed stays
    refused = [e for e in await console.audit() if e.event.value == "refused"]
    assert [(e.code, e.actor) for e in refused] == [("schema.invalid", "contact-point")]
    assert await console.app[keys.STORE].outbox_depth() == 0


async def test_list_items_are_added_and_removed_without_script(console: Console) -> None:
    await console.sign_in("contact-point")
    form = {"csrf": console.csrf, "payload.subjects.0.kind": "natural-person"}
    added = await console.client.post(
        "/console/compose/asset-inquiry", data={**form, "_action": "add:payload.subjects"}
    )
    page = await added.text()
    assert 'name="payload.subjects.1.kind"' in page
    removed = await console.client.post(
        "/console/compose/asset-inquiry",
        data={
            **form,
            "payload.subjects.1.kind": "legal-person",
            "payload.subjects.1.name": "Balkan Trans Logistika d.o.o.",
            "_action": "remove:payload.subjects.0",
        },
    )
    page = await removed.text()
    assert 'name="payload.subjects.1.kind"' not in page
    assert 'value="Balkan Trans Logistika d.o.o."' in page  # the second is now the first
    assert 'name="payload.subjects.0.name" value="Balkan' in page
    assert await console.app[keys.STORE].outbox_depth() == 0  # nothing was sent


async def test_a_sent_message_goes_through_the_apis_acceptance(console: Console) -> None:
    await console.sign_in("contact-point")
    form = {
        "csrf": console.csrf,
        "type": "ignored",
        "recipients": "RS-PPO",
        "case": "AL-2026-0003",
        "priority": "normal",
        "handling.tlp": "GREEN",
        "handling.code": "H0",
        "payload.case": "AL-2026-0003",
        "payload.network": "see-pcn",
        "payload.event": "opened",
        "payload.summary": "Opened: Љубомир Јовановић, Arbër Çela, Ștefan Țurcanu.",
        "_send": "1",
    }
    answer = await console.client.post(
        "/console/compose/case-update", data=form, allow_redirects=False
    )
    assert answer.status == 303, await answer.text()
    assert answer.headers["Location"].startswith("/console/cases/AL-2026-0003")
    accepted = [e for e in await console.audit() if e.event.value == "accepted"]
    assert [(e.actor, e.case) for e in accepted] == [("contact-point", "AL-2026-0003")]
    assert accepted[0].envelope is not None
    header = accepted[0].envelope["header"]
    assert sorted(header["recipients"]) == ["MD-ARO", "RS-PPO"]  # every other member
    summary = accepted[0].envelope["payload"]["summary"]
    assert summary == "Opened: Љубомир Јовановић, Arbër Çela, Ștefan Țurcanu."


async def test_the_feed_stream_ends_with_the_session(console: Console) -> None:
    await console.sign_in("subscriber")
    stream = await console.client.get("/console/feed/stream")
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert (await stream.content.readline()).startswith(b"retry:")
    signed_out = await console.client.post(
        "/console/logout", data={"csrf": console.csrf}, allow_redirects=False
    )
    assert signed_out.status == 303
    rest = await asyncio.wait_for(stream.content.read(), 5)  # the server ended it
    assert b"case-update" not in rest
    again = await console.client.get("/console/feed/stream")
    assert again.status == 401


async def test_background_refreshes_do_not_keep_a_session_alive(console: Console) -> None:
    await console.sign_in("contact-point")
    sessions = console.app[CONSOLE].sessions
    cookie = next(c.value for c in console.client.session.cookie_jar if c.key == "xb-console")
    session = sessions.peek(cookie)
    assert session is not None
    session.last_seen -= sessions.idle_seconds - 30  # 30 s of idle time left
    before = session.last_seen
    refresh = await console.client.get("/console/inbox", headers={"X-Console-Refresh": "1"})
    assert refresh.status == 200 and session.last_seen == before
    page = await console.client.get("/console/inbox")
    assert page.status == 200 and session.last_seen > before
    session.last_seen -= sessions.idle_seconds + 1
    refresh = await console.client.get("/console/inbox", headers={"X-Console-Refresh": "1"})
    assert refresh.status == 401  # a refresh is told, not redirected to the sign-in


async def test_the_demo_prints_each_consoles_address(network: NetworkLayout) -> None:
    printed: list[str] = []

    class Serving:
        layout = network

    serving = asyncio.create_task(_serve(Serving(), printed.append))
    await asyncio.sleep(0.05)
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    for node, info in network.nodes.items():
        assert f"  {node} {info.url}  console: {info.url}/console/" in printed

"""The gateway's HTTP API as a local client sees it: every refusal is a problem document with a
stable code, is audited as `refused`, and leaves nothing in the outbox; a valid request is
signed, stored once per recipient and answered 202."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import http_helpers
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from http_helpers import bearer, example_payload
from openapi_spec_validator import validate as validate_openapi

from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.audit.replay import TimelineFilter
from exchange.crypto.verify import VerificationPolicy, verify_envelope
from exchange.directory.view import load_view
from exchange.gateway import keys
from exchange.gateway.api_models import (
    CaseView,
    InboxItem,
    InboxPage,
    MessageView,
    OverdueView,
    ProblemDetails,
)
from exchange.gateway.app import create_app
from exchange.gateway.routes import ROUTES
from exchange.model.common import utc_now
from exchange.network import NetworkLayout
from tests.seeding import seed_inbox


def submission(**overrides: Any) -> dict[str, Any]:
    """An urgent asset inquiry to RS-PPO and MD-ARO, with `overrides` in its body."""
    return http_helpers.submission(**{"recipients": ["RS-PPO", "MD-ARO"], **overrides})


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    tokens: dict[str, str]

    def auth(self, role: str = "contact-point") -> dict[str, str]:
        return bearer(self.tokens[role])

    async def post(self, body: Any, role: str = "contact-point", **kwargs: Any) -> Any:
        return await self.client.post("/v1/messages", json=body, headers=self.auth(role), **kwargs)

    async def get(self, path: str, role: str = "contact-point") -> Any:
        return await self.client.get(path, headers=self.auth(role))

    async def audit(self) -> list[AuditEntry]:
        entries = await self.app[keys.AUDIT].entries(0, 1000)
        # without the entry of the directory the node started on
        return [e for e in entries if e.event is not AuditEvent.DIRECTORY_UPDATED]

    async def outbox_depth(self) -> int:
        return await self.app[keys.STORE].outbox_depth()


@pytest.fixture
async def gateway(network: NetworkLayout, tmp_path: Path) -> AsyncIterator[Gateway]:
    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    app = create_app(config, start_relay=False)
    async with TestClient(TestServer(app)) as client:
        yield Gateway(client, app, dict(network.nodes["AL-ARO"].tokens))


async def problem_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    problem: dict[str, Any] = await response.json()
    ProblemDetails.model_validate(problem)
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"] == f"urn:xb:error:{code}"
    return problem


async def assert_refused_and_nothing_stored(gw: Gateway, code: str) -> None:
    entries = await gw.audit()
    assert [(e.event, e.code) for e in entries] == [("refused", code)]
    assert await gw.outbox_depth() == 0


# --- a valid request ----------------------------------------------------------------------


async def test_a_valid_message_is_signed_stored_per_recipient_audited_and_answered_202(
    gateway: Gateway, network: NetworkLayout
) -> None:
    response = await gateway.post(submission())
    assert response.status == 202
    answer = await response.json()
    assert answer["status"] == "accepted"
    message_id = UUID(answer["id"])
    assert await gateway.outbox_depth() == 2

    (entry,) = await gateway.audit()
    assert (entry.event, entry.actor, entry.role) == ("accepted", "contact-point", "contact-point")
    assert entry.message_id == str(message_id)
    assert entry.case == "AL-2026-0042"

    view = await (await gateway.get(f"/v1/messages/{message_id}")).json()
    MessageView.model_validate(view)
    assert view["status"] == "accepted" and view["sender"] == "AL-ARO"
    assert [d["recipient"] for d in view["deliveries"]] == ["RS-PPO", "MD-ARO"]
    assert {d["state"] for d in view["deliveries"]} == {"pending"}
    assert view["digest"] == entry.digest
    # Urgent asset inquiry: a response is due within days, not the normal week.
    created = view["envelope"]["header"]["created_at"]
    assert view["respond_by"] is not None and view["respond_by"] > created

    # What the gateway signed verifies for a partner holding the network's certificates.
    config = gateway.app[keys.CONFIG]
    trust = load_view(config).trust
    verified = verify_envelope(
        json.dumps(view["envelope"]).encode(), VerificationPolicy(trust=trust)
    )
    header = verified.envelope.header
    assert (header.id, header.sender, header.schema_) == (message_id, "AL-ARO", "asset-inquiry/1")
    assert verified.digest == view["digest"]
    assert verified.raw["payload"] == submission()["payload"]


async def test_a_reply_carries_in_reply_to_and_expires_at(gateway: Gateway) -> None:
    original = uuid4()
    expires = (utc_now() + timedelta(days=2)).isoformat()
    response = await gateway.post(
        submission(
            type="asset-inquiry-response",
            recipients=["RS-PPO"],
            in_reply_to=str(original),
            expires_at=expires,
            payload=example_payload("asset-inquiry-response"),
        )
    )
    assert response.status == 202, await response.text()
    view = await (await gateway.get(f"/v1/messages/{(await response.json())['id']}")).json()
    assert view["in_reply_to"] == str(original)
    assert view["expires_at"] is not None
    assert view["respond_by"] is None  # a response is not itself awaiting one
    assert await gateway.outbox_depth() == 1


# --- refusals -----------------------------------------------------------------------------


def raw_post(body: bytes, content_type: str = "application/json") -> Callable[[Gateway], Any]:
    async def send(gw: Gateway) -> Any:
        headers = {**gw.auth(), "Content-Type": content_type}
        return await gw.client.post("/v1/messages", data=body, headers=headers)

    return send


def json_post(body: Any) -> Callable[[Gateway], Any]:
    async def send(gw: Gateway) -> Any:
        return await gw.post(body)

    return send


def valid_bytes() -> bytes:
    return json.dumps(submission()).encode()


@pytest.mark.parametrize(
    ("send", "status", "code", "paths"),
    [
        pytest.param(raw_post(b'{"type": "asset-inquiry",'), 400, "request.malformed_json", [],
                     id="truncated-json"),
        pytest.param(raw_post(b'{"case": "A", "case": "B"}'), 400, "request.malformed_json", [],
                     id="duplicate-keys"),
        pytest.param(raw_post(valid_bytes()[:-1] + b', "x": NaN}'), 400,
                     "request.malformed_json", [], id="nan"),
        pytest.param(raw_post(b'{"a": -Infinity}'), 400, "request.malformed_json", [],
                     id="infinity"),
        pytest.param(raw_post(b'{"a": 1e400}'), 400, "request.malformed_json", [],
                     id="overflowing-number"),
        pytest.param(raw_post(b'{"a": 9007199254740993}'), 400, "request.malformed_json", [],
                     id="inexact-integer"),
        pytest.param(raw_post(b'{"a": "\\ud800"}'), 400, "request.malformed_json", [],
                     id="lone-surrogate"),
        pytest.param(raw_post(b'{"a": "\xff"}'), 400, "request.malformed_json", [],
                     id="not-utf8"),
        pytest.param(raw_post(valid_bytes(), "text/plain"), 415,
                     "request.unsupported_media_type", [], id="text-plain"),
        pytest.param(raw_post(valid_bytes(), "application/json; charset=latin-1"), 415,
                     "request.unsupported_media_type", [], id="latin-1"),
        pytest.param(raw_post(b"[1, 2]"), 422, "request.invalid", ["/"], id="not-an-object"),
        pytest.param(json_post({k: v for k, v in submission().items() if k != "case"}), 422,
                     "request.invalid", ["/case"], id="missing-case"),
        pytest.param(json_post(submission(recipients=["rs-ppo"])), 422, "request.invalid",
                     ["/recipients/0"], id="bad-recipient-id"),
        pytest.param(json_post(submission(handling={"tlp": "PURPLE", "code": "H2"})), 422,
                     "request.invalid", ["/handling/tlp"], id="bad-tlp"),
        pytest.param(json_post(submission(priority="asap", colour="red")), 422, "request.invalid",
                     ["/priority", "/colour"], id="bad-priority-and-unknown-field"),
        pytest.param(json_post(submission(recipients=["RS-PPO", "RS-PPO"])), 422,
                     "request.invalid", ["/recipients"], id="repeated-recipient"),
        pytest.param(json_post(submission(type="receipt")), 422, "request.invalid", ["/type"],
                     id="receipt-from-a-client"),
        pytest.param(json_post(submission(expires_at="2020-01-01T00:00:00Z")), 422,
                     "request.invalid", ["/expires_at"], id="already-expired"),
        pytest.param(json_post(submission(sender="RS-PPO")), 422, "request.invalid", ["/sender"],
                     id="sender-in-body"),
        pytest.param(json_post(submission(id=str(uuid4()), created_at="2026-01-01T00:00:00Z")),
                     422, "request.invalid", ["/id", "/created_at"], id="id-in-body"),
        pytest.param(json_post(submission(recipients=["RS-PPO", "KZ-ARC"])), 422,
                     "recipient.unknown", ["/recipients/1"], id="unknown-recipient"),
        pytest.param(json_post(submission(recipients=["AL-ARO"])), 422, "recipient.unknown",
                     ["/recipients/0"], id="to-itself"),
        pytest.param(json_post(submission(payload={"unexpected": True})), 422, "schema.invalid",
                     None, id="payload-schema"),
    ],
)  # fmt: skip
async def test_a_bad_request_is_refused_with_its_code_audited_and_stores_nothing(
    gateway: Gateway,
    send: Callable[[Gateway], Any],
    status: int,
    code: str,
    paths: list[str] | None,
) -> None:
    problem = await problem_of(await send(gateway), status, code)
    assert problem["detail"]
    if paths is None:  # schema errors: every path points into the payload
        assert problem["errors"] and all(
            e["path"].startswith("/payload") for e in problem["errors"]
        )
    elif paths:
        assert sorted(e["path"] for e in problem["errors"]) == sorted(paths)
    await assert_refused_and_nothing_stored(gateway, code)
    (entry,) = await gateway.audit()
    assert entry.actor == "contact-point"


async def test_a_body_over_the_limit_is_refused_413_by_its_announced_length(
    gateway: Gateway,
) -> None:
    limit = gateway.app[keys.CONFIG].limits.max_body_bytes
    body = b'{"pad": "' + b"x" * limit + b'"}'
    response = await raw_post(body)(gateway)
    await problem_of(response, 413, "request.too_large")
    await assert_refused_and_nothing_stored(gateway, "request.too_large")


async def test_a_chunked_body_over_the_limit_is_refused_413_while_reading(
    gateway: Gateway,
) -> None:
    limit = gateway.app[keys.CONFIG].limits.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    headers = {**gateway.auth(), "Content-Type": "application/json"}
    response = await gateway.client.post("/v1/messages", data=chunks(), headers=headers)
    await problem_of(response, 413, "request.too_large")
    await assert_refused_and_nothing_stored(gateway, "request.too_large")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "auth.missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "auth.missing"),
        ({"Authorization": "Bearer "}, "auth.missing"),
        ({"Authorization": "Bearer not-a-token-of-this-node"}, "auth.invalid"),
        ({"Authorization": "Bearer " + "x" * 5000}, "auth.invalid"),
    ],
)
async def test_a_missing_or_wrong_token_is_refused_401_before_the_body_is_read(
    gateway: Gateway, headers: dict[str, str], code: str
) -> None:
    response = await gateway.client.post("/v1/messages", json=submission(), headers=headers)
    await problem_of(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    await assert_refused_and_nothing_stored(gateway, code)
    (entry,) = await gateway.audit()
    assert entry.actor is None


async def test_a_token_of_another_node_is_refused(gateway: Gateway, network: NetworkLayout) -> None:
    other = network.nodes["RS-PPO"].tokens["contact-point"]
    response = await gateway.client.post("/v1/messages", json=submission(), headers=bearer(other))
    await problem_of(response, 401, "auth.invalid")
    await assert_refused_and_nothing_stored(gateway, "auth.invalid")


@pytest.mark.parametrize("role", ["auditor", "subscriber"])
async def test_a_role_that_may_not_send_is_refused_403_and_audited_with_its_token(
    gateway: Gateway, role: str
) -> None:
    await problem_of(await gateway.post(submission(), role=role), 403, "auth.forbidden")
    await assert_refused_and_nothing_stored(gateway, "auth.forbidden")
    (entry,) = await gateway.audit()
    assert (entry.actor, entry.role) == (role, role)


async def test_the_admin_may_send(gateway: Gateway) -> None:
    response = await gateway.post(submission(recipients=["RS-PPO"]), role="admin")
    assert response.status == 202
    assert await gateway.outbox_depth() == 1


# --- reads --------------------------------------------------------------------------------


async def _receive(gateway: Gateway, *, case: str = "AL-2026-0042", **kw: Any) -> UUID:
    """Put a verified incoming message into the inbox, as the relay does."""
    message_id = uuid4()
    envelope = {"header": {"id": str(message_id)}, "payload": {}, "signature": {}}
    await seed_inbox(
        gateway.app,
        message_id,
        kw.get("type", "asset-inquiry-response"),
        case,
        kw.get("sender", "RS-PPO"),
        kw.get("in_reply_to"),
        "cd" * 32,
        json.dumps(envelope).encode(),
        kw.get("received_at", utc_now()),
        kw.get("respond_by"),
    )
    return message_id


async def test_the_inbox_pages_by_cursor_and_each_read_is_audited_once_as_delivered(
    gateway: Gateway,
) -> None:
    ids = [await _receive(gateway) for _ in range(3)]
    page = await (await gateway.get("/v1/inbox?limit=2")).json()
    assert [i["id"] for i in page["items"]] == [str(i) for i in ids[:2]]
    assert page["next"] == page["items"][-1]["cursor"]
    rest = await (await gateway.get(f"/v1/inbox?after={page['next']}")).json()
    assert [i["id"] for i in rest["items"]] == [str(ids[2])]
    empty = await (await gateway.get(f"/v1/inbox?after={rest['next']}")).json()
    assert empty == {"items": [], "next": rest["next"]}

    one = await gateway.get(f"/v1/inbox/{ids[0]}", role="auditor")
    assert one.status == 200
    delivered = [e for e in await gateway.audit() if e.event == "delivered"]
    # One entry per call that handed messages out (none for the empty page), listing them.
    assert [(e.actor, (e.detail or {}).get("ids"), e.message_id) for e in delivered] == [
        ("contact-point", [str(ids[0]), str(ids[1])], None),
        ("contact-point", [str(ids[2])], None),
        ("auditor", None, str(ids[0])),
    ]
    assert delivered[0].detail is not None and delivered[0].detail["count"] == 2


async def test_a_case_timeline_shows_the_reads_that_handed_out_its_messages(
    gateway: Gateway,
) -> None:
    mine = await _receive(gateway, case="AL-2026-0042")
    await _receive(gateway, case="AL-2026-0077")
    assert (await gateway.get("/v1/inbox")).status == 200
    (read,) = [e for e in await gateway.audit() if e.event == "delivered"]
    assert read.detail is not None and str(mine) in read.detail["ids"]
    assert TimelineFilter(case="AL-2026-0042").matches(read)  # `exchange audit replay --case`
    assert TimelineFilter(case="AL-2026-0077").matches(read)
    assert not TimelineFilter(case="AL-2026-0099").matches(read)


async def test_inbox_reads_refuse_bad_parameters_unknown_ids_and_the_subscriber_role(
    gateway: Gateway,
) -> None:
    for query in ("after=-1", "after=x", "limit=0", "limit=501"):
        await problem_of(await gateway.get(f"/v1/inbox?{query}"), 400, "request.bad_parameter")
    await problem_of(await gateway.get("/v1/inbox/not-a-uuid"), 400, "request.bad_parameter")
    await problem_of(await gateway.get(f"/v1/inbox/{uuid4()}"), 404, "not_found")
    await problem_of(await gateway.get(f"/v1/messages/{uuid4()}"), 404, "not_found")
    await problem_of(await gateway.get("/v1/inbox", role="subscriber"), 403, "auth.forbidden")
    # Failed reads are not refusals of anything: only the failed authorization is audited.
    assert [(e.event, e.code) for e in await gateway.audit()] == [("refused", "auth.forbidden")]


async def test_a_case_shows_both_directions_in_time_order(gateway: Gateway) -> None:
    sent = await gateway.post(submission(recipients=["RS-PPO"]))
    sent_id = (await sent.json())["id"]
    reply = await _receive(gateway, in_reply_to=UUID(sent_id))
    await _receive(gateway, case="OTHER-CASE")
    view = await (await gateway.get("/v1/cases/AL-2026-0042")).json()
    CaseView.model_validate(view)
    assert [(m["direction"], m["id"], m["sender"]) for m in view["messages"]] == [
        ("out", sent_id, "AL-ARO"),
        ("in", str(reply), "RS-PPO"),
    ]
    assert view["messages"][1]["in_reply_to"] == sent_id
    await problem_of(await gateway.get("/v1/cases/bad.case"), 400, "request.bad_parameter")


async def test_overdue_lists_what_we_owe(gateway: Gateway) -> None:
    past = utc_now() - timedelta(hours=1)
    owed = await _receive(gateway, type="freeze-notice", sender="MD-ARO", respond_by=past)
    await _receive(gateway, type="freeze-notice", respond_by=utc_now() + timedelta(hours=1))
    view = await (await gateway.get("/v1/overdue", role="auditor")).json()
    OverdueView.model_validate(view)
    assert [(i["message_id"], i["counterpart"]) for i in view["we_owe"]] == [(str(owed), "MD-ARO")]
    assert view["we_owe"][0]["overdue_seconds"] >= 3599
    assert view["owed_to_us"] == []


async def test_inbox_items_and_pages_match_the_documented_models(gateway: Gateway) -> None:
    response = await gateway.post(submission(recipients=["RS-PPO"]))
    sent = await (await gateway.get(f"/v1/messages/{(await response.json())['id']}")).json()
    # A realistic inbox entry: the signed envelope we just produced, as a partner receives it.
    await seed_inbox(
        gateway.app,
        uuid4(),
        "asset-inquiry",
        "AL-2026-0042",
        "RS-PPO",
        None,
        sent["digest"],
        json.dumps(sent["envelope"]).encode(),
        utc_now(),
        None,
    )
    page = await (await gateway.get("/v1/inbox")).json()
    InboxPage.model_validate(page)
    InboxItem.model_validate(page["items"][0])


# --- operations ---------------------------------------------------------------------------


async def test_health_readiness_and_metrics(gateway: Gateway) -> None:
    health = await gateway.client.get("/healthz")
    assert (await health.json()) == {"status": "ok", "node": "AL-ARO"}
    # Without a relay the broker is not ready; the store is.
    problem = await problem_of(await gateway.client.get("/readyz"), 503, "service.unavailable")
    assert problem["checks"] == {"broker": False, "store": True, "directory": True}

    await gateway.post(submission())
    await gateway.post(submission(recipients=["KZ-ARC"]))
    metrics = await gateway.client.get("/metrics")
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = http_helpers.metric_samples(await metrics.text())
    accepted = {"direction": "out", "type": "asset-inquiry", "outcome": "accepted"}
    assert samples[("xb_messages_total", frozenset(accepted.items()))] == 1
    assert samples[("xb_http_refusals_total", frozenset({("code", "recipient.unknown")}))] == 1
    assert samples[("xb_outbox_depth", frozenset())] == 2
    openmetrics = await gateway.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.content_type == "application/openmetrics-text"
    assert (await openmetrics.text()).endswith("# EOF\n")


async def test_unknown_paths_and_methods_are_problems_too(gateway: Gateway) -> None:
    await problem_of(await gateway.client.get("/v1/nothing-here"), 404, "not_found")
    response = await gateway.client.delete("/v1/messages", headers=gateway.auth())
    await problem_of(response, 405, "method.not_allowed")
    assert "POST" in response.headers["Allow"]


async def test_an_unexpected_failure_is_a_500_that_reveals_nothing(gateway: Gateway) -> None:
    await gateway.app[keys.DATABASE].close()  # the database is gone under the running app
    problem = await problem_of(await gateway.get("/v1/overdue"), 500, "internal")
    assert "sqlite" not in json.dumps(problem).lower()
    assert "store" not in problem["detail"]


async def test_the_openapi_document_is_valid_3_1_and_covers_every_route(gateway: Gateway) -> None:
    response = await gateway.client.get("/openapi.json")
    assert response.status == 200
    spec = await response.json()
    validate_openapi(spec)
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {route.path for route in ROUTES}  # every route, documented
    assert {
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/inbox",
        "/v1/inbox/{id}",
        "/v1/cases/{case}",
        "/v1/overdue",
        "/v1/audit/checkpoint",
        "/v1/audit/proof/inclusion",
        "/v1/audit/proof/consistency",
        "/v1/audit/entries",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    } <= set(spec["paths"])
    post = spec["paths"]["/v1/messages"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert {"202", "400", "401", "403", "413", "415", "422", "500"} <= set(post["responses"])
    assert "recipient.unknown" in post["responses"]["422"]["description"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    submit_schema = spec["components"]["schemas"]["SubmitMessage"]
    assert {"type", "recipients", "case", "priority", "handling", "payload"} <= set(
        submit_schema["required"]
    )
    # Each payload type's schema is in the document, for client engineers abroad.
    payload_refs = {s["$ref"] for s in submit_schema["properties"]["payload"]["anyOf"]}
    assert "#/components/schemas/AssetInquiry" in payload_refs
    assert "#/components/schemas/FreezeNotice" in payload_refs
    assert "#/components/schemas/Receipt" not in payload_refs

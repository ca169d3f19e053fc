"""Playing an HTTP corpus case against a running gateway, and checking that it changed nothing.

A case names the request (method, raw path, credentials, headers, content type, body) and
what the gateway must answer: the status, the problem `code`, optionally the failing field
paths, and whether the refusal is audited. `run_http_case` sends it and checks the answer,
the audit entries it added and the store's row counts (which must not move).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from hostile_corpus import Case, body_bytes
from hostile_node import audit_since, snapshot
from http_helpers import submission
from yarl import URL

from exchange.errors import ERROR_TABLE
from exchange.gateway import keys
from exchange.gateway.api_models import ProblemDetails
from exchange.gateway.auth import hash_token
from exchange.network import NetworkLayout

NODE = "AL-ARO"
ROLES = ("contact-point", "auditor", "subscriber", "admin")


def valid_submission(message_type: str = "asset-inquiry") -> dict[str, Any]:
    """A request body the gateway accepts: the base that HTTP cases edit."""
    return submission(message_type)


@dataclass
class HttpTarget:
    """The gateway under attack: its test client, application and the network's tokens."""

    client: TestClient[web.Request, web.Application]
    app: web.Application
    network: NetworkLayout


def authorization(spec: Any, network: NetworkLayout) -> str | None:
    """The Authorization header a case asks for (None: send none)."""
    own = network.nodes[NODE].tokens
    if spec is None or spec == "none":
        return None
    if isinstance(spec, str):
        return f"Bearer {own[spec]}"
    if "foreign_node" in spec:
        return f"Bearer {network.nodes[spec['foreign_node']].tokens[spec['role']]}"
    if "authorization" in spec:
        token = own["contact-point"]
        return (
            str(spec["authorization"])
            .replace("{token}", token)
            .replace("{token_sha256}", hash_token(token))
        )
    raise ValueError(f"unknown auth spec {spec!r}")


async def _chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def send(target: HttpTarget, request: Mapping[str, Any]) -> Any:
    method = request.get("method", "POST")
    path = request.get("path", "/v1/messages")
    headers: dict[str, str] = dict(request.get("headers", {}))
    auth = authorization(request.get("auth", "contact-point"), target.network)
    if auth is not None:
        headers["Authorization"] = auth
    skip: list[str] = []
    content_type = request.get("content_type", "application/json")
    if content_type is None:
        skip.append("Content-Type")
    else:
        headers["Content-Type"] = content_type
    base = valid_submission(request.get("submission_type", "asset-inquiry"))
    body = body_bytes(request.get("body"), base)
    data: Any = body
    if body is not None and request.get("chunked", False):
        data = _chunks(body)
    return await target.client.request(
        method,
        URL(path, encoded=True),
        data=data,
        headers=headers,
        skip_auto_headers=skip,
    )


async def run_http_case(target: HttpTarget, case: Case) -> None:
    """Send the case's request; check the problem, the audit entry, and that nothing else moved."""
    expect = case.expect
    # Each case opens a new counting interval, so that a refusal of a client without a valid
    # token is its source's first, which is written in full (the rest of an interval are
    # counted: tests/hostile/test_floods.py).
    await target.app[keys.REFUSALS].flush(target.app[keys.AUDIT])
    before = await snapshot(target.app)
    response = await send(target, case.doc["request"])
    text = await response.text()
    status, code = expect["status"], expect["code"]
    assert response.status == status, f"{case.id}: {response.status} {text[:500]}"
    assert response.content_type == "application/problem+json", f"{case.id}: {text[:200]}"
    problem = ProblemDetails.model_validate_json(text)
    assert (problem.code, problem.status) == (code, status), f"{case.id}: {text[:500]}"
    assert ERROR_TABLE[code].status == status
    assert problem.type == f"urn:xb:error:{code}"
    assert problem.detail
    paths = sorted(e.path for e in problem.errors or [])
    if "error_paths" in expect:
        assert paths == sorted(expect["error_paths"]), f"{case.id}: {paths}"
    if "error_path_prefix" in expect:
        assert paths and all(p.startswith(expect["error_path_prefix"]) for p in paths), paths
    if "max_errors" in expect:
        # One bad document must not make a huge answer (the schema registry caps it too).
        assert 0 < len(paths) <= expect["max_errors"], f"{case.id}: {len(paths)} field errors"
    if status == 401:
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")

    after = await snapshot(target.app)
    # Compared with the counts before the case (not with zero), so that a case that wrongly
    # stores something fails alone instead of failing every case after it.
    assert after.counts == before.counts, f"{case.id}: the store changed: {after.counts}"
    added = await audit_since(target.app, before.audit_size)
    if expect.get("audit", True):
        assert [(e.event.value, e.code) for e in added] == [("refused", code)], case.id
        (entry,) = added
        assert entry.detail is not None and entry.detail["status"] == status
        assert entry.envelope is None and entry.message_id is None
        actor = expect.get("actor", _expected_actor(case.doc["request"], code))
        assert entry.actor == actor, f"{case.id}: actor {entry.actor!r}"
        # Who is not known by a token is known by the address it came from.
        assert (entry.detail.get("source") == "127.0.0.1") is (actor is None), case.id
    else:
        # Failed reads are not refusals of anything the node was asked to do.
        assert added == [], f"{case.id}: {[(e.event, e.code) for e in added]}"


def _expected_actor(request: Mapping[str, Any], code: str) -> str | None:
    """Who the audit names: the token's id once it authenticated, else nobody."""
    auth = request.get("auth", "contact-point")
    if code in ("auth.missing", "auth.invalid") or not isinstance(auth, str) or auth == "none":
        return None
    return auth if _authenticates_before_failing(code) else None


def _authenticates_before_failing(code: str) -> bool:
    # Routing failures (unknown path, wrong method) happen before authentication.
    return code not in ("not_found", "method.not_allowed")

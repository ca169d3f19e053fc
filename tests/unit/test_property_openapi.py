"""The served `/openapi.json` against what the gateway does, checked by schemathesis as an outside
client with each role's token in turn (contact point, subscriber, auditor, admin).

Every documented operation is explored with schema-conforming and schema-violating parameters
and bodies, with schemathesis' checks on: documented statuses, content types, headers and
response schemas (each event of the event stream included); schema-violating requests refused;
schema-conforming ones accepted, save for the rules JSON Schema cannot state (UNSTATED_RULES,
which the document describes); authentication not ignored. Our own checks add that a role
never succeeds where it has no permission and that every refusal is a problem document. How
many requests ran is printed with `-s`.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import schemathesis
from http_helpers import bearer
from hypothesis import given
from live_gateway import LiveGateway, budget, check_answer
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, CheckContext, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from exchange.config import Role
from exchange.gateway.auth import PERMISSIONS
from exchange.gateway.routes import ROUTES

STREAM = "/v1/subscriptions/stream"
RUNS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    gateway = LiveGateway(tmp_path_factory.mktemp("property-openapi"))
    gateway.start()
    yield gateway
    gateway.stop()
    print(f"\nschemathesis requests: {dict(RUNS)}")


OPERATIONS = [(route.method, route.path) for route in ROUTES]
ROLES = [role.value for role in Role]
SSE_SECONDS = 0.5  # a stream is read this long (or for MAX_STREAM_EVENTS events)
MAX_STREAM_EVENTS = 2
load_all_checks()
BUILT_IN_CHECKS = CHECKS.get_by_names(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    ]
)
UNSTATED_RULES = (
    # Refusals of a request body that is valid against the document, for rules that JSON Schema
    # cannot state and the document describes instead: (field, message).
    ("/expires_at", re.compile(r"must be in the future")),  # compared with the time of arrival
    ("/payload/case", re.compile(r"must be the message's case")),  # two fields equal
    # a payload part's rules, listed as "Not expressible in JSON Schema" in its description
    ("/payload", re.compile(r"\S+ \S+ is before \S+ \S+")),  # NotBefore
    ("/payload", re.compile(r"names no subject|ref '[^']*' is used twice")),  # ReferencesResolve
    # PartialDate: a full date must exist in the calendar (its pattern allows e.g. 9045-11-31)
    ("/payload", re.compile(r"is not a day of the calendar")),
)


def problem_documents(ctx: CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Our own check: no 5xx, and a refusal is a problem document with its table status."""
    content_type = response.headers.get("content-type", [""])[0]
    check_answer(case.method, response.status_code, content_type, response.content)


def positive_data_acceptance_but_for_unstated_rules(
    ctx: CheckContext, response: schemathesis.Response, case: Any
) -> None:
    """Schemathesis' positive_data_acceptance, except for a 422 that names only rules of
    UNSTATED_RULES (each of those refusals is counted, so the run shows how often)."""
    try:
        positive_data_acceptance(ctx, response, case)
    except AssertionError:
        problem = json.loads(response.content) if response.status_code == 422 else {}
        if not _only_unstated(problem):
            raise
        for path in sorted({e["path"] for e in problem["errors"]}):
            RUNS[f"schemathesis positive refused by an unstated rule at {path}"] += 1


def _only_unstated(problem: dict[str, Any]) -> bool:
    errors = problem.get("errors") or []
    return bool(errors) and all(
        any(
            e["path"].startswith(prefix) and all(rule.search(m) for m in e["message"].split("; "))
            for prefix, rule in UNSTATED_RULES
        )
        for e in errors
    )


CONTRACT_CHECKS = [
    *BUILT_IN_CHECKS,
    positive_data_acceptance_but_for_unstated_rules,
    problem_documents,
]


def may(role: str, method: str, path: str) -> bool:
    route = next(r for r in ROUTES if (r.method, r.path) == (method, path))
    return route.permission is None or route.permission in PERMISSIONS[Role(role)]


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [(m, p, role) for m, p in OPERATIONS for role in ROLES],
    ids=[f"{r.operation_id}-{role}" for r in ROUTES for role in ROLES],
)
def test_every_operation_keeps_its_documented_contract_for_every_role(
    live: LiveGateway, method: str, path: str, role: str
) -> None:
    """Schemathesis, as an outside client with this role's token: what the document allows is
    accepted (or refused for a documented reason), what it does not allow is refused, and
    every answer, event streams' events included, matches its documented status and schema."""
    # The token as the document's bearer scheme: negative cases may then leave it out.
    config = {
        "auth": {"openapi": {"bearer": {"bearer": live.token(role)}}},
        "max-stream-events": MAX_STREAM_EVENTS,
    }
    schema = schemathesis.openapi.from_dict(
        live.openapi, config=schemathesis.Config.from_dict(config)
    )
    operation = schema[path][method]
    allowed = may(role, method, path)
    # A role without the permission gets 403 whatever it sends: a few requests show it.
    examples = 6 if allowed else 2
    modes = [GenerationMode.POSITIVE]
    if _has_inputs(live.openapi, method, path):  # otherwise there is nothing to violate
        modes.append(GenerationMode.NEGATIVE)
    if method == "POST" and allowed:
        examples = 5  # generating from the submission's large schema costs ~0.3 s a case
    for mode in modes:
        _explore(live, operation, method, mode, examples, allowed)()


def _explore(
    live: LiveGateway,
    operation: Any,
    method: str,
    mode: GenerationMode,
    examples: int,
    allowed: bool,
) -> Any:
    """A hypothesis test that sends `examples` generated cases of `operation` in `mode` and
    runs CONTRACT_CHECKS on each answer; a role that is not `allowed` never succeeds. An
    event stream is read for at most SSE_SECONDS."""
    timeout = SSE_SECONDS if operation.path.endswith("/stream") else 30

    @budget(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(
            base_url=live.base_url, timeout=timeout, checks=CONTRACT_CHECKS
        )
        RUNS[f"schemathesis {mode.value}"] += 1
        assert allowed or response.status_code in (401, 403, 404), response.status_code
        if response.status_code < 300 and operation.path.endswith("/stream"):
            RUNS["schemathesis stream events"] += response.content.count(b"\nevent: ")
        if response.status_code < 300 and mode is GenerationMode.POSITIVE and method == "POST":
            RUNS["schemathesis positive submissions accepted"] += 1

    return run


def test_each_event_of_the_stream_is_checked_against_its_documented_schema(
    live: LiveGateway,
) -> None:
    config = schemathesis.Config.from_dict({"max-stream-events": 3})
    operation = schemathesis.openapi.from_dict(live.openapi, config=config)[STREAM]["GET"]
    auth = bearer(live.token("subscriber"))
    response = operation.Case(query={"after": 0}).call_and_validate(
        base_url=live.base_url, headers=auth, timeout=5, checks=CONTRACT_CHECKS
    )
    assert response.content.count(b"\nevent: case-update\n") == 3
    # As the document described the stream before (a plain string), each event was refused.
    before = copy.deepcopy(live.openapi)
    media = before["paths"][STREAM]["get"]["responses"]["200"]["content"]["text/event-stream"]
    media["schema"] = {"type": "string"}
    operation = schemathesis.openapi.from_dict(before, config=config)[STREAM]["GET"]
    with pytest.raises(BaseExceptionGroup, match="SSE event violates schema"):
        operation.Case(query={"after": 0}).call_and_validate(
            base_url=live.base_url, headers=auth, timeout=5, checks=CONTRACT_CHECKS
        )


def _has_inputs(spec: Mapping[str, Any], method: str, path: str) -> bool:
    operation = spec["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody"))

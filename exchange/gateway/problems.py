"""RFC 9457 problem details for every error the gateway answers, and the audit of refusals.

`problem()` is the one builder of a problem document: the middleware uses it for an
`ExchangeError` or an aiohttp HTTP error, and handlers for answers such as readiness. Each
has a stable `code`, a `detail` a person understands and, for request errors, the failing
field paths; it is built through `ProblemDetails`, the model the OpenAPI document publishes.
Anything unexpected becomes a 500 `internal` that reveals nothing of the cause (it is
logged). Refused writes and failed authentication are audited as `refused` with their
code by `refusals.RefusalAudit`: one by one for a client with a valid token, counted per
source and interval for everyone else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from exchange.errors import ERROR_TABLE, ExchangeError, FieldError, code_of_status
from exchange.gateway import keys
from exchange.gateway.api_models import ProblemDetails
from exchange.log import get_logger

PROBLEM_CONTENT_TYPE = "application/problem+json"

_log = get_logger(__name__)


def problem(
    code: str,
    detail: str,
    *,
    status: int | None = None,
    errors: Sequence[FieldError] = (),
    checks: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """The problem document of `code` (a key of `ERROR_TABLE`, whose status it takes unless
    `status` says otherwise), with the failing fields `errors` and readiness `checks`."""
    spec = ERROR_TABLE[code]
    document = ProblemDetails(
        type=f"urn:xb:error:{code}",
        title=spec.title,
        status=spec.status if status is None else status,
        code=code,
        detail=detail,
        errors=[e.as_dict() for e in errors] or None,
        checks=checks,
    )
    return document.model_dump(mode="json", exclude_none=True)


def problem_response(
    document: dict[str, Any], *, headers: dict[str, str] | None = None
) -> web.Response:
    """`document` (built by `problem`) as `application/problem+json` with its status."""
    response = web.json_response(document, status=int(document["status"]), headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def error_problem(err: ExchangeError) -> dict[str, Any]:
    """The problem document of an `ExchangeError`."""
    return problem(err.code, err.detail, errors=err.errors)


def _http_problem(exc: web.HTTPException) -> dict[str, Any]:
    code = code_of_status(exc.status)
    detail = {
        404: "there is no resource at this path",
        405: f"{exc.status} {exc.reason}",
    }.get(exc.status, ERROR_TABLE[code].title)
    return problem(code, detail, status=exc.status)


async def _record_refusal(request: web.Request, document: dict[str, Any]) -> None:
    code = str(document["code"])
    metrics = request.app.get(keys.METRICS)
    if metrics is not None:
        metrics.refused(code)
    refusals = request.app.get(keys.REFUSALS)
    if refusals is not None:
        await refusals.record(request, code, int(document["status"]))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    headers: dict[str, str] = {}
    try:
        return await handler(request)
    except ExchangeError as err:
        document = error_problem(err)
        if err.http_status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="exchange"'
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        document = _http_problem(exc)
        if exc.status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
    except Exception:
        with contextlib.suppress(Exception):  # the answer must not depend on the log stream
            _log.exception("request_failed", method=request.method, path=request.path)
        document = problem(
            "internal", "the node could not complete the request; the error has been logged"
        )
    await _record_refusal(request, document)
    return problem_response(document, headers=headers or None)

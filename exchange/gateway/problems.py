"""RFC 9457 problem details for every error the gateway answers, and the audit of refusals.

The middleware turns an `ExchangeError` or an aiohttp HTTP error into
`application/problem+json` with a stable `code`, a `detail` a person understands and, for
schema errors, the failing field paths. Anything unexpected becomes a 500 `internal` that
reveals nothing of the cause (it is logged). Refused writes and failed authentication are
appended to the audit log as `refused` with their code.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from exchange.errors import ERROR_TABLE, ExchangeError, Problem, code_of_status
from exchange.gateway import keys
from exchange.log import get_logger

PROBLEM_CONTENT_TYPE = "application/problem+json"

_log = get_logger(__name__)


def problem_response(
    problem: dict[str, Any], *, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.json_response(problem, status=int(problem["status"]), headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def error_problem(err: ExchangeError) -> dict[str, Any]:
    """The problem document of an `ExchangeError`."""
    return Problem.from_error(err).as_dict()


def _http_problem(exc: web.HTTPException) -> dict[str, Any]:
    code = code_of_status(exc.status)
    spec = ERROR_TABLE[code]
    detail = {
        404: "there is no resource at this path",
        405: f"{exc.status} {exc.reason}",
    }.get(exc.status, spec.title)
    return {
        "type": f"urn:xb:error:{code}",
        "title": spec.title,
        "status": exc.status,
        "code": code,
        "detail": detail,
    }


def _should_audit(request: web.Request, code: str) -> bool:
    # A refused write is a refusal of something a client wanted the node to do; failed
    # authentication is worth a trace wherever it happens. Failed reads are not.
    return request.method not in ("GET", "HEAD", "OPTIONS") or code.startswith("auth.")


async def _record_refusal(request: web.Request, problem: dict[str, Any]) -> None:
    code = str(problem["code"])
    metrics = request.app.get(keys.METRICS)
    if metrics is not None:
        metrics.refused(code)
    if not _should_audit(request, code):
        return
    audit = request.app.get(keys.AUDIT)
    if audit is None:
        return
    principal = request.get(keys.PRINCIPAL)
    try:
        await audit.append(
            "refused",
            actor=principal.token_id if principal else None,
            role=principal.role.value if principal else None,
            code=code,
            detail={"method": request.method, "path": request.path, "status": problem["status"]},
        )
    except Exception:
        with contextlib.suppress(Exception):
            _log.exception("audit_append_failed", event_kind="refused", code=code)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    headers: dict[str, str] = {}
    try:
        return await handler(request)
    except ExchangeError as err:
        problem = error_problem(err)
        if err.http_status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="exchange"'
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = _http_problem(exc)
        if exc.status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
    except Exception:
        with contextlib.suppress(Exception):  # the answer must not depend on the log stream
            _log.exception("request_failed", method=request.method, path=request.path)
        problem = {
            "type": "urn:xb:error:internal",
            "title": ERROR_TABLE["internal"].title,
            "status": 500,
            "code": "internal",
            "detail": "the node could not complete the request; the error has been logged",
        }
    await _record_refusal(request, problem)
    return problem_response(problem, headers=headers or None)

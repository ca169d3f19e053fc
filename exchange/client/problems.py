"""What a gateway client raises: `ProblemError` for an answer other than 2xx, with its
RFC 9457 problem document, and `GatewayUnreachable` when there was no answer at all."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import orjson
from pydantic import ValidationError

from exchange.errors import ERROR_TABLE, ErrorSpec, ExchangeError, FieldError, code_of_status
from exchange.gateway.api_models import ProblemDetails


class ProblemError(ExchangeError):
    """The gateway refused: an answer other than 2xx.

    `problem` is its RFC 9457 document (`code`, `detail`, `errors`; for readiness also
    `checks`), made up from the status when the answer was not one; `body` is the answer
    as sent (decoded JSON, or text). A code this client does not know is kept as sent.
    """

    def __init__(self, status: int, body: Any) -> None:
        problem = _problem_of(status, body)
        super().__init__(
            problem.detail,
            code=problem.code if problem.code in ERROR_TABLE else "internal",
            errors=[FieldError(e.path, e.message) for e in problem.errors or ()],
        )
        self.code = problem.code
        self.status = status
        self.problem = problem
        self.body = body

    @property
    def spec(self) -> ErrorSpec:
        return ERROR_TABLE.get(self.code) or ErrorSpec(self.status, self.problem.title)

    @property
    def http_status(self) -> int:
        return self.status

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.detail}"


class GatewayUnreachable(ExchangeError):
    """No answer: the connection was refused or lost, TLS failed, or the request timed out.

    When `connected` is False no connection was made, so the gateway never saw the
    request; otherwise it may have acted on it (a submitted message may be accepted).
    """

    code = "service.unavailable"

    def __init__(self, url: str, error: BaseException) -> None:  # the URL asked for
        super().__init__(f"{type(error).__name__}: {error}", extra={"url": url})
        self.url = url
        self.error = error
        self.connected = not isinstance(error, aiohttp.ClientConnectorError)


def _problem_of(status: int, body: Any) -> ProblemDetails:
    if isinstance(body, dict):
        known = {k: v for k, v in body.items() if k in ProblemDetails.model_fields}
        with contextlib.suppress(ValidationError):
            return ProblemDetails.model_validate(known)
    code = code_of_status(status)
    title = ERROR_TABLE[code].title
    text = body if isinstance(body, str) else "" if body is None else orjson.dumps(body).decode()
    return ProblemDetails(
        type=f"urn:xb:error:{code}", title=title, status=status, code=code, detail=text or title
    )

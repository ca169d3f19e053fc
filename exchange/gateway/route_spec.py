"""What a route is: its method, path, handler, the permission it needs, and its documentation.

The route table built from these is the single source of both the aiohttp router (with
authentication in front of every guarded handler) and the served OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from exchange.gateway.auth import Permission

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AUTH_CODES = ("auth.missing", "auth.invalid", "auth.forbidden")


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter, with its JSON Schema."""

    name: str
    location: str  # "path" | "query" | "header"
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: RouteHandler
    operation_id: str
    summary: str
    permission: Permission | None  # None: no token needed
    status: int = 200
    response: type[BaseModel] | None = None
    response_media: str = "application/json"
    response_schema: dict[str, Any] | None = None  # when there is no model
    request: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""

    @property
    def error_codes(self) -> tuple[str, ...]:
        """Every error code this route may answer, authentication included."""
        auth = AUTH_CODES if self.permission is not None else ()
        return (*auth, *self.errors, "internal")

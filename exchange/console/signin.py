"""Signing in and out of the console: a token (or a client certificate) for a session cookie.

The token is checked by the gateway's own `Authenticator`, so it signs in exactly the
principal it would be on the API; a wrong one is refused (`auth.invalid`) and counted like
any unauthenticated refusal. The sign-in form has its own anti-forgery token, bound to the
browser by a short-lived cookie (a session's forms use the session's token). Under mutual
TLS, a client certificate whose subject CN is a configured token's id signs in as that
token, without typing it. A new session id is issued at every sign-in.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from exchange.config import TokenConfig
from exchange.console.web import (
    CONSOLE,
    LOGIN,
    LOGIN_COOKIE,
    PREFIX,
    SECURE_LOGIN_COOKIE,
    SESSION,
    clear_cookie,
    cookie_name,
    navigation,
    new_token,
    page,
    record_refusal,
    render,
    safe_next,
    same_origin,
    secure,
    set_cookie,
)
from exchange.errors import AuthError
from exchange.gateway import keys
from exchange.gateway.auth import MAX_TOKEN_LENGTH, Principal
from exchange.log import get_logger

_log = get_logger(__name__)


def _login_cookie(request: web.Request) -> str:
    return SECURE_LOGIN_COOKIE if secure(request) else LOGIN_COOKIE


def certificate_principal(request: web.Request) -> Principal | None:
    """The principal of the verified client certificate, when its subject CN is a token id."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not isinstance(peer, dict):
        return None
    names = [
        value
        for rdn in peer.get("subject", ())
        for key, value in rdn
        if key == "commonName" and isinstance(value, str)
    ]
    tokens: tuple[TokenConfig, ...] = request.app[keys.CONFIG].tokens
    for token in tokens:
        if names == [token.id]:
            return Principal(token.id, token.role)
    return None


def _form(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    token = new_token()
    certificate = certificate_principal(request)
    context: dict[str, Any] = {
        "login_csrf": token,
        "next": safe_next(request.query.get("next")),
        "error": error,
        "signed_out": request.query.get("signed_out") == "1" and error is None,
        "certificate": certificate.token_id if certificate is not None else None,
        "title": "Sign in",
    }
    response = render(request, "login.html", context, status=status)
    set_cookie(response, request, _login_cookie(request), token)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    sessions = request.app[CONSOLE].sessions
    if sessions.get(request.cookies.get(cookie_name(request))) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return _form(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    given, expected = form.get("csrf"), request.cookies.get(_login_cookie(request))
    if (
        not isinstance(given, str)
        or not expected
        or not same_origin(request)
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        await record_refusal(request, "console.csrf", 403)
        return _form(
            request,
            error="The sign-in form had expired or did not come from this console: try again.",
            status=403,
        )
    principal = certificate_principal(request) if form.get("certificate") == "1" else None
    if principal is None:
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        try:
            if not token:
                raise AuthError("enter your token", code="auth.missing")
            if len(token) > MAX_TOKEN_LENGTH:
                raise AuthError("the token is not valid", code="auth.invalid")
            principal = request.app[keys.AUTHENTICATOR].authenticate(f"Bearer {token}")
        except AuthError as refused:
            await record_refusal(request, refused.code, refused.http_status)
            message = "Enter your token." if refused.code == "auth.missing" else None
            return _form(request, error=message or "This token is not valid.", status=401)
    sessions = request.app[CONSOLE].sessions
    sessions.drop(request.cookies.get(cookie_name(request)))
    session_id, _ = sessions.create(principal)
    target = form.get("next")
    response = web.HTTPSeeOther(safe_next(target if isinstance(target, str) else None))
    set_cookie(response, request, cookie_name(request), session_id)
    clear_cookie(response, request, _login_cookie(request))
    _log.info("console.signed_in", actor=principal.token_id, role=principal.role.value)
    raise response


@page()
async def logout(request: web.Request) -> web.StreamResponse:
    sessions = request.app[CONSOLE].sessions
    sessions.drop(request.cookies.get(cookie_name(request)))
    response = web.HTTPSeeOther(f"{LOGIN}?signed_out=1")
    clear_cookie(response, request, cookie_name(request))
    raise response


@page()
async def home(request: web.Request) -> web.StreamResponse:
    """The first page of the signed-in role's menu."""
    items = navigation(request[SESSION].principal)
    raise web.HTTPSeeOther(items[0][0] if items else LOGIN)


async def bare_prefix(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently(f"{PREFIX}/")

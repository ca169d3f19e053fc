"""The console's request plumbing: sessions in front of every page, CSRF on every form, the
same permission checks and refusal audit as the API, templates, and the security headers.

`page(...)` wraps a handler: without a live session a page redirects to the sign-in (a
background request gets 401 `console.session`); a POST must carry the session's CSRF token
(else 403 `console.csrf`); then the role must grant the page's permission, exactly as
`PERMISSIONS` decides for the API (else 403 `auth.forbidden`). Each refusal is recorded as
the API's are (`refused` with the token's id; counted per source when nobody signed in).
Every response under /console gets the headers of `SECURITY_HEADERS` (a strict CSP without
inline script or style, no referrer, no framing) and, but for static files, `no-store`.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from exchange.config import Role
from exchange.console.sessions import Session, Sessions
from exchange.console.text import FILTERS
from exchange.errors import ERROR_TABLE, AuthError, ExchangeError
from exchange.gateway import keys
from exchange.gateway.auth import Authenticator, Permission, Principal
from exchange.log import get_logger

PREFIX = "/console"
STATIC = f"{PREFIX}/static/"
LOGIN = f"{PREFIX}/login"
COOKIE = "xb-console"
SECURE_COOKIE = "__Host-xb-console"
LOGIN_COOKIE = "xb-console-login"
SECURE_LOGIN_COOKIE = "__Host-xb-console-login"
REFRESH_HEADER = "X-Console-Refresh"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_log = get_logger(__name__)


@dataclass
class Console:
    """The console's state in one gateway: templates, sessions, static files, running jobs."""

    env: jinja2.Environment
    sessions: Sessions
    static: dict[str, tuple[bytes, str]]
    jobs: dict[str, Any] = field(default_factory=dict)


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("console_session", Session)
PREPARED = web.RequestKey("console_prepared", web.StreamResponse)

_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def make_console(sessions: Sessions | None = None) -> Console:
    """Templates (autoescaped, undefined names are errors) and static files from the package."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("exchange.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    folder = Path(__file__).resolve().parent / "static"
    static = {
        path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
        for path in sorted(folder.iterdir())
        if path.suffix in _STATIC_TYPES
    }
    return Console(env=env, sessions=sessions or Sessions(), static=static)


def secure(request: web.Request) -> bool:
    return request.secure


def cookie_name(request: web.Request) -> str:
    """`__Host-` cookies (Secure, Path=/, no Domain) under HTTPS; a plain name otherwise."""
    return SECURE_COOKIE if secure(request) else COOKIE


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/" if secure(request) else PREFIX,
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    response.del_cookie(name, path="/" if secure(request) else PREFIX)


def navigation(principal: Principal) -> list[tuple[str, str]]:
    """The pages a role may open, in the order of the menu: (path, title)."""
    items: list[tuple[str, str]] = []
    if principal.may(Permission.READ):
        items += [(f"{PREFIX}/inbox", "Inbox"), (f"{PREFIX}/sent", "Sent")]
    if principal.may(Permission.SEND):
        items.append((f"{PREFIX}/compose", "Compose"))
    if principal.may(Permission.READ) or principal.may(Permission.SUBSCRIBE):
        items.append((f"{PREFIX}/cases", "Cases"))
    if principal.may(Permission.SUBSCRIBE):
        items.append((f"{PREFIX}/feed", "Case feed"))
    if principal.may(Permission.AUDIT):
        items += [
            (f"{PREFIX}/audit", "Audit log"),
            (f"{PREFIX}/audit/entries", "Entries"),
            (f"{PREFIX}/audit/inclusion", "Inclusion"),
            (f"{PREFIX}/audit/deadlines", "Deadlines"),
        ]
    if principal.role is Role.ADMIN:
        items.append((f"{PREFIX}/admin", "Node"))
    return items


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    """An HTML page from `template`, with the signed-in principal, its menu and CSRF token."""
    console = request.app[CONSOLE]
    session = request.get(SESSION)
    principal = session.principal if session is not None else None
    nav = navigation(principal) if principal is not None else []
    here = [href for href, _ in nav if request.path == href or request.path.startswith(f"{href}/")]
    values: dict[str, Any] = {
        "active": max(here, key=len, default=None),
        "node": request.app[keys.CONFIG].node_id,
        "network": request.app[keys.CONFIG].network,
        "principal": principal,
        "csrf": session.csrf if session is not None else "",
        "nav": nav,
        "path": request.path,
        "Permission": Permission,
    }
    values.update(context or {})
    body = console.env.get_template(template).render(values)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    target = request.path_qs if request.method == "GET" else f"{PREFIX}/"
    return web.HTTPSeeOther(f"{LOGIN}?next={quote(target, safe='/')}")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this site, else the console's home."""
    if not target or not target.startswith(f"{PREFIX}/") or "\\" in target:
        return f"{PREFIX}/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return f"{PREFIX}/"
    return target


async def record_refusal(request: web.Request, code: str, status: int) -> None:
    """Count and audit a refusal exactly as the API's problem middleware does."""
    metrics = request.app.get(keys.METRICS)
    if metrics is not None:
        metrics.refused(code)
    refusals = request.app.get(keys.REFUSALS)
    if refusals is not None:
        await refusals.record(request, code, status)


def refused_page(request: web.Request, code: str, detail: str, status: int) -> web.Response:
    title = ERROR_TABLE[code].title if code in ERROR_TABLE else "Refused"
    context = {"code": code, "title": title, "detail": detail, "status": status}
    return render(request, "error.html", context, status=status)


def same_origin(request: web.Request) -> bool:
    """What the browser says of where a form comes from does not name another site
    (defence in depth: the cookie is SameSite=Strict and every form carries a token).
    `Sec-Fetch-Site` when sent; `Origin` when it names a site (under `Referrer-Policy:
    no-referrer` browsers send `Origin: null` for the console's own forms)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    return urlsplit(origin).netloc == request.host


async def check_form_token(request: web.Request, expected: str) -> None:
    """The form's `csrf` field must be `expected` (compared in constant time)."""
    form = await request.post()
    given = form.get("csrf")
    if (
        not isinstance(given, str)
        or not expected
        or not same_origin(request)
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        raise ExchangeError(
            "the form was not sent from a page of this console (its anti-forgery token is "
            "missing or wrong): reload the page and try again",
            code="console.csrf",
        )


Needs = Permission | tuple[Permission, ...] | None


def authorize(principal: Principal, permission: Needs, admin: bool) -> None:
    """The API's check (`Authenticator.authorize`) for `permission`, or for the first of
    several of which the role grants none; `admin`: the admin role only."""
    if isinstance(permission, tuple):
        granted = [p for p in permission if principal.may(p)]
        permission = granted[0] if granted else permission[0]
    if permission is not None:
        Authenticator.authorize(principal, permission)
    if admin and principal.role is not Role.ADMIN:
        raise AuthError(
            f"role {principal.role.value!r} may not administer the node", code="auth.forbidden"
        )


def page(
    permission: Needs = None, *, admin: bool = False, background: bool = False
) -> Callable[[Handler], Handler]:
    """Put a handler behind the session, CSRF and permission checks (see the module).

    `background`: a stream or refresh that the browser opens by itself; it never counts as
    the user's activity and is refused with 401 rather than redirected.
    """

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            console = request.app[CONSOLE]
            quiet = background or request.headers.get(REFRESH_HEADER) == "1"
            session = console.sessions.get(
                request.cookies.get(cookie_name(request)), touch=not quiet
            )
            if session is None:
                if quiet:
                    await record_refusal(request, "console.session", 401)
                    return web.Response(status=401, text="console.session: sign in again")
                raise login_redirect(request)
            request[keys.PRINCIPAL] = session.principal
            request[SESSION] = session
            return await run_guarded(request, handler, session, permission, admin)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return wrap


async def run_guarded(
    request: web.Request,
    handler: Handler,
    session: Session,
    permission: Needs,
    admin: bool,
) -> web.StreamResponse:
    try:
        if request.method == "POST":
            await check_form_token(request, session.csrf)
        authorize(session.principal, permission, admin)
        return await handler(request)
    except web.HTTPException:
        raise
    except ExchangeError as err:
        await record_refusal(request, err.code, err.http_status)
        return refused_page(request, err.code, err.detail, err.http_status)
    except Exception:
        with contextlib.suppress(Exception):
            _log.exception("console.request_failed", method=request.method, path=request.path)
        await record_refusal(request, "internal", 500)
        detail = "the node could not complete the request; the error has been logged"
        return refused_page(request, "internal", detail, 500)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the console's headers on every response under /console."""
    if request.path != PREFIX and not request.path.startswith(f"{PREFIX}/"):
        return
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith(STATIC):
        response.headers["Cache-Control"] = "no-cache"
    else:
        response.headers["Cache-Control"] = "no-store"
    if secure(request):
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    request[PREPARED] = response


def new_token() -> str:
    return secrets.token_urlsafe(32)

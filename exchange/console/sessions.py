"""The console's sign-in sessions: a random id in a cookie, everything else in this process.

A session is made when a token (or, under mutual TLS, a client certificate) signs in: it
holds the principal the token authenticated as and the CSRF token of its forms. It ends
on sign-out, after `idle_seconds` without a page being opened (background refreshes and
streams do not count as activity), after `max_age_seconds` whatever happens, or when the
node restarts. Only the SHA-256 of each id is kept, and at most `max_sessions` of them
(the oldest goes first). Streams a session opened are cancelled when it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from exchange.gateway.auth import Principal

DEFAULT_IDLE_SECONDS = 30 * 60
DEFAULT_MAX_AGE_SECONDS = 12 * 3600
DEFAULT_MAX_SESSIONS = 1000
ID_BYTES = 32


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(slots=True)
class Session:
    """One signed-in browser."""

    principal: Principal
    csrf: str
    created: float
    last_seen: float
    streams: set[asyncio.Task[object]] = field(default_factory=set)

    def cancel_streams(self) -> None:
        for task in list(self.streams):
            task.cancel()
        self.streams.clear()


class Sessions:
    """The sessions of one gateway, by the hash of their id."""

    def __init__(
        self,
        *,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_seconds <= 0 or max_age_seconds <= 0 or max_sessions < 1:
            raise ValueError("sessions need a positive idle time, age and capacity")
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_key)

    def create(self, principal: Principal) -> tuple[str, Session]:
        """A new session for `principal`: its id (for the cookie) and the session."""
        while len(self._by_key) >= self.max_sessions:
            _, oldest = self._by_key.popitem(last=False)
            oldest.cancel_streams()
        session_id = secrets.token_urlsafe(ID_BYTES)
        now = self._clock()
        session = Session(principal, secrets.token_urlsafe(ID_BYTES), now, now)
        self._by_key[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The live session of `session_id`, or None (unknown, or it just expired and is
        dropped). `touch`: this request is the user's activity (a page), which keeps it."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._by_key.get(key)
        if session is None:
            return None
        now = self._clock()
        if self.remaining(session, now) <= 0:
            self._drop(key)
            return None
        if touch:
            session.last_seen = now
        return session

    def peek(self, session_id: str) -> Session | None:
        """The session of `session_id` as it is, expired or not (nothing changes)."""
        return self._by_key.get(_key(session_id))

    def remaining(self, session: Session, now: float | None = None) -> float:
        """Seconds until `session` expires, unless it is used again before."""
        now = self._clock() if now is None else now
        idle_end = session.last_seen + self.idle_seconds
        age_end = session.created + self.max_age_seconds
        return min(idle_end, age_end) - now

    def drop(self, session_id: str | None) -> None:
        """End a session (sign-out): it no longer opens any page, its streams end."""
        if session_id:
            self._drop(_key(session_id))

    def _drop(self, key: str) -> None:
        session = self._by_key.pop(key, None)
        if session is not None:
            session.cancel_streams()

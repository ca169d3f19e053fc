"""Local client authentication: a bearer token maps to a token id (the audit actor) and a role.

Tokens are configured as SHA-256 hashes only. A presented token is hashed and compared with
every configured hash in constant time. What each role may do is one table: `PERMISSIONS`.
An auditor reads headers, digests, receipts and proofs but no payload: routes that return
envelopes or audit entries redact them for a role without `PAYLOADS` (THREAT_MODEL.md has
the table of who may read what).
Missing or unknown token: 401 (`auth.missing`, `auth.invalid`); wrong role: 403 (`auth.forbidden`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from exchange.config import NodeConfig, Role, TokenConfig
from exchange.errors import AuthError

MAX_TOKEN_LENGTH = 512


class Permission(StrEnum):
    SEND = "send"  # submit messages
    READ = "read"  # messages, inbox, cases, overdue
    AUDIT = "audit"  # audit endpoints
    SUBSCRIBE = "subscribe"  # case-update subscriptions
    PAYLOADS = "payloads"  # see the payloads of what it may read (else they are redacted)


PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.CONTACT_POINT: frozenset({Permission.SEND, Permission.READ, Permission.PAYLOADS}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT}),
    Role.SUBSCRIBER: frozenset({Permission.SUBSCRIBE}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token id (recorded as the audit actor) and its role."""

    token_id: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]


def hash_token(token: str) -> str:
    """The hex SHA-256 under which a token is configured."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Authenticator:
    """Checks `Authorization: Bearer <token>` headers against the configured hashes."""

    def __init__(self, tokens: tuple[TokenConfig, ...]) -> None:
        self._tokens = tuple((bytes.fromhex(t.sha256), Principal(t.id, t.role)) for t in tokens)

    @classmethod
    def from_config(cls, config: NodeConfig) -> Authenticator:
        return cls(config.tokens)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an Authorization header value, or AuthError (401)."""
        if not authorization:
            raise AuthError("send 'Authorization: Bearer <token>'", code="auth.missing")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                "the Authorization header must be 'Bearer <token>'", code="auth.missing"
            )
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("the bearer token is not valid", code="auth.invalid")
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for digest, principal in self._tokens:
            # Compare against every entry so the time taken does not depend on which matched.
            if hmac.compare_digest(digest, presented):
                found = principal
        if found is None:
            raise AuthError("the bearer token is not valid", code="auth.invalid")
        return found

    @staticmethod
    def authorize(principal: Principal, permission: Permission) -> None:
        """AuthError (403) when the principal's role does not grant `permission`."""
        if not principal.may(permission):
            raise AuthError(
                f"role {principal.role.value!r} may not {permission.value}",
                code="auth.forbidden",
            )

"""One error hierarchy with stable machine codes.

Every refusal the exchange makes carries a code from `ERROR_TABLE`. The same table maps
each code to an HTTP status (for local clients) and says whether the code may appear as
the reason of a negative receipt (for partner nodes). The CLI prints `diagnostics()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """What a code means: its HTTP status, a short title, and whether receipts use it."""

    status: int
    title: str
    receipt_reason: bool = False


ERROR_TABLE: dict[str, ErrorSpec] = {
    # verification of an envelope (order of verify_envelope's policy)
    "envelope.malformed": ErrorSpec(400, "The envelope is not well formed", True),
    "envelope.too_large": ErrorSpec(413, "The envelope is larger than allowed", True),
    "cert.untrusted": ErrorSpec(422, "The certificate does not chain to the network CA", True),
    "cert.unknown": ErrorSpec(422, "No certificate is known for the signature's kid", True),
    "cert.expired": ErrorSpec(422, "The certificate is outside its validity period", True),
    "cert.revoked": ErrorSpec(422, "The certificate has been revoked", True),
    "sender.mismatch": ErrorSpec(422, "The certificate belongs to another node", True),
    "sender.unknown": ErrorSpec(
        422, "The sender is not a member of the network's current directory", True
    ),
    "signature.invalid": ErrorSpec(422, "The signature does not verify", True),
    "message.expired": ErrorSpec(422, "The message is past its expiry time", True),
    "clock.skew": ErrorSpec(422, "The message's creation time is too far from now", True),
    "message.replayed": ErrorSpec(409, "A message with this id was already seen", True),
    "recipient.mismatch": ErrorSpec(422, "The message is not addressed to this node", True),
    "exchange.mismatch": ErrorSpec(
        422, "The message type travels on another exchange than the one it came on", False
    ),
    "receipt.mismatch": ErrorSpec(
        422,
        "A receipt names a digest other than that of the message sent (its signed bytes, or "
        "for a refusal the exact bytes published)",
        False,
    ),
    "checkpoint.invalid": ErrorSpec(
        422,
        "A checkpoint header is malformed, misattributed or not validly signed (the header "
        "is unsigned: a transport problem, not the sender's)",
        False,
    ),
    "checkpoint.conflict": ErrorSpec(
        409, "A node's checkpoint contradicts one it signed before (a forked or rewound log)", False
    ),
    # the network's CRL (a node's own file, never a receipt reason)
    "crl.invalid": ErrorSpec(
        422, "The CRL file is missing, unreadable or not signed by the network CA", False
    ),
    "crl.rollback": ErrorSpec(
        409, "A CRL not newer than the newest this node has used was refused", False
    ),
    # enrollment: a node's certification request, as the CA checks it (never a receipt reason)
    "csr.malformed": ErrorSpec(422, "The certification request is not a PKCS#10 request"),
    "csr.key_type": ErrorSpec(422, "The certification request's key is not Ed25519"),
    "csr.signature": ErrorSpec(422, "The certification request's signature does not verify"),
    "csr.name_mismatch": ErrorSpec(
        422, "The certification request names another node, or more than the node"
    ),
    "csr.duplicate": ErrorSpec(
        409,
        "The node already has a certificate for another key (and the request is no rotation), "
        "or the key is certified for another node",
    ),
    # a node's own signing key, in a file or in a PKCS#11 token
    "key.mismatch": ErrorSpec(400, "The signing key is not the one its certificate certifies"),
    "pkcs11.uri": ErrorSpec(400, "The PKCS#11 key URI is not valid"),
    "pkcs11.unavailable": ErrorSpec(503, "The PKCS#11 module cannot be used, or the token failed"),
    "pkcs11.token": ErrorSpec(400, "No PKCS#11 token matches the key URI"),
    "pkcs11.pin": ErrorSpec(400, "The token refused the PIN, or the PIN file cannot be read"),
    "pkcs11.key": ErrorSpec(400, "The token holds no single Ed25519 key by that name"),
    # the signed network directory (a node's own input, never a receipt reason)
    "directory.malformed": ErrorSpec(422, "The network directory is not a well-formed document"),
    "directory.untrusted": ErrorSpec(
        422, "The network directory is not validly signed by the network CA"
    ),
    "directory.invalid": ErrorSpec(
        422, "The network directory contradicts itself or the network's PKI"
    ),
    "directory.expired": ErrorSpec(422, "The network directory is past its next update"),
    "directory.rollback": ErrorSpec(
        409, "A network directory not newer than the one in use was refused"
    ),
    "role.forbidden": ErrorSpec(
        403, "A member's role may not send or receive this message type", True
    ),
    # sealed payloads (after the signature verified: the sender's seal, not the transport)
    "seal.malformed": ErrorSpec(
        422, "The sealed payload is not well formed (structure, lengths, kem, plaintext)", True
    ),
    "seal.not_for_me": ErrorSpec(422, "The sealed payload has no entry for this node", True),
    "seal.key_unknown": ErrorSpec(
        422, "This node holds no decryption key with the kid its entry names", True
    ),
    "seal.invalid": ErrorSpec(
        422, "The sealed payload does not open (HPKE, AES-GCM or key commitment)", True
    ),
    "seal.required": ErrorSpec(
        422, "A clear payload where the network requires sealed payloads", True
    ),
    # payload schemas
    "schema.invalid": ErrorSpec(422, "The payload does not match its schema", True),
    "schema.unknown": ErrorSpec(422, "The message type or schema version is not supported", True),
    # network membership (case updates)
    "network.forbidden": ErrorSpec(403, "This node is not a member of that network", True),
    "handling.restricted": ErrorSpec(
        422,
        "TLP:RED and TLP:AMBER+STRICT information never goes beyond its named recipients",
        True,
    ),
    # HTTP requests from local clients
    "request.malformed_json": ErrorSpec(400, "The request body is not valid JSON"),
    "request.unsupported_media_type": ErrorSpec(415, "The request must be application/json"),
    "request.too_large": ErrorSpec(413, "The request body is larger than allowed"),
    "request.invalid": ErrorSpec(422, "The request does not match the API's schema"),
    "request.bad_parameter": ErrorSpec(400, "A query parameter is not valid"),
    "recipient.unknown": ErrorSpec(422, "A recipient is not a node of this network"),
    "auth.missing": ErrorSpec(401, "A bearer token is required"),
    "auth.invalid": ErrorSpec(401, "The bearer token is not valid"),
    "auth.forbidden": ErrorSpec(403, "The token's role may not do this"),
    "not_found": ErrorSpec(404, "No such resource"),
    # the console (browser sessions)
    "console.csrf": ErrorSpec(403, "The form's anti-forgery token is missing or wrong"),
    "console.session": ErrorSpec(401, "No console session, or it expired: sign in"),
    "method.not_allowed": ErrorSpec(405, "This method is not allowed here"),
    "service.unavailable": ErrorSpec(503, "The service is not ready"),
    # audit
    "audit.invalid": ErrorSpec(422, "The audit log does not verify"),
    # the message broker (never a receipt reason: the sender's bus, not its message)
    "bus.failed": ErrorSpec(503, "The message broker failed the operation"),
    "bus.publish_failed": ErrorSpec(503, "The broker did not confirm a publish"),
    "bus.consume_failed": ErrorSpec(503, "A queue cannot be consumed"),
    # documents
    "json.not_canonical": ErrorSpec(422, "The document has no RFC 8785 canonical form"),
    # configuration and usage
    "config.invalid": ErrorSpec(400, "The configuration is not valid"),
    "usage": ErrorSpec(400, "Bad usage"),
    "internal": ErrorSpec(500, "Internal error"),
}

RECEIPT_REASONS: frozenset[str] = frozenset(c for c, s in ERROR_TABLE.items() if s.receipt_reason)

_STATUS_CODES = {
    400: "request.malformed_json",
    401: "auth.missing",
    403: "auth.forbidden",
    404: "not_found",
    405: "method.not_allowed",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    503: "service.unavailable",
}


def code_of_status(status: int) -> str:
    """The code of an HTTP error that names none itself (aiohttp's own, or a proxy's)."""
    return _STATUS_CODES.get(status, "internal" if status >= 500 else "request.invalid")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One failing field of a validated document: a JSON-pointer-like path and why."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ExchangeError(Exception):
    """Root of every refusal. `code` is stable and listed in `ERROR_TABLE`."""

    code: str = "internal"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: Sequence[FieldError] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        if self.code not in ERROR_TABLE:
            raise ValueError(f"unknown error code {self.code!r}")
        self.detail = detail
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def spec(self) -> ErrorSpec:
        return ERROR_TABLE[self.code]

    @property
    def http_status(self) -> int:
        return self.spec.status

    def diagnostics(self) -> str:
        """A person-readable explanation, one line per failing field."""
        lines = [f"{self.code}: {self.detail}"]
        lines.extend(f"  {e.path or '/'}: {e.message}" for e in self.errors)
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class ExchangeValueError(ExchangeError, ValueError):
    """An `ExchangeError` that older callers still catch as a `ValueError`; its `str()` is
    the detail alone, as a ValueError's message is (callers quote it in their own text)."""

    def __str__(self) -> str:
        return self.detail


class VerificationError(ExchangeError):
    """An envelope failed the verification policy; the code says which check."""

    code = "signature.invalid"


class MisroutedError(VerificationError):
    """A correctly signed envelope that the transport delivered where it does not belong: a
    routing key or an exchange that disagrees with the signed header. Whoever published it
    there (the broker's operator, a co-recipient) is not the signer, so the refusal is
    audited and dead-lettered but answers the signer with no receipt."""

    code = "sender.mismatch"


class SealError(VerificationError):
    """A signed sealed payload does not open for this node; the code says why. A kind of
    `VerificationError`: receiving a message verifies its signature, then opens its seal,
    and either refusal is audited and answered alike."""

    code = "seal.invalid"


class SchemaError(ExchangeError):
    """A payload or request does not match its schema; `errors` lists the fields."""

    code = "schema.invalid"


class RequestError(ExchangeError):
    """A local HTTP client's request was refused before reaching the domain."""

    code = "request.invalid"


class AuthError(ExchangeError):
    code = "auth.invalid"


class AuditError(ExchangeError):
    """The audit log or a checkpoint does not verify; `extra['index']` locates it."""

    code = "audit.invalid"


class ConfigError(ExchangeError):
    code = "config.invalid"

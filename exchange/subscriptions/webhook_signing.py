"""Standard Webhooks signatures (https://www.standardwebhooks.com) of the updates a node POSTs.

Each request carries `webhook-id` (the update's id, the same on every retry, so a receiver
drops repeats), `webhook-timestamp` (Unix seconds of the attempt, so a captured request
cannot be replayed later) and `webhook-signature`: `v1,` + base64 HMAC-SHA256 of
`<id>.<timestamp>.<body>`, one per configured secret, space-separated, newest first. During
a rotation a receiver accepts any signature made with a secret it holds. Secrets are
`whsec_` + base64 of 24 to 64 random bytes, the form the specification's libraries read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from exchange.errors import ConfigError

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the form of a secret, not one)
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
DEFAULT_TOLERANCE_SECONDS = 300
VERSION = "v1"


def sign(secret: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """One signature: `v1,` + base64 HMAC-SHA256 of `<msg_id>.<timestamp>.<body>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(mac).decode('ascii')}"


def signed_headers(
    keys: Sequence[bytes], msg_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """The three headers of a delivery of `body`, signed with every key (newest first)."""
    if not keys:
        raise ValueError("a webhook needs at least one secret")
    timestamp = str(int(time.time() if now is None else now))
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: " ".join(sign(key, msg_id, timestamp, body) for key in keys),
    }


def verify(
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver checks: one of the signatures is `secret`'s over id, time and body,
    and the time is fresh. `headers` may be any case-insensitive mapping or a plain dict."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(ID_HEADER, "")
    timestamp = lowered.get(TIMESTAMP_HEADER, "")
    given = lowered.get(SIGNATURE_HEADER, "").split(" ")
    if not msg_id or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, msg_id, timestamp, body).encode()
    # compare with every one, so the time taken does not say which matched
    matches = [hmac.compare_digest(expected, candidate.encode()) for candidate in given]
    return any(matches)


def new_secret() -> str:
    """A fresh secret in the file form: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def read_secret(path: Path) -> bytes:
    """The HMAC key in `path` (`whsec_<base64>`, surrounding whitespace ignored); a
    ConfigError that says how to make one when the file is missing or not of that form."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the webhook secret {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        text = ""
    how = (
        f"write `{SECRET_PREFIX}` and base64 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random "
        f'bytes, e.g. echo "{SECRET_PREFIX}$(openssl rand -base64 32)"'
    )
    if not text.startswith(SECRET_PREFIX):
        raise ConfigError(
            f"the webhook secret in {path} does not start with {SECRET_PREFIX}: {how}"
        )
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the webhook secret in {path} is not base64: {how}") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ConfigError(f"the webhook secret in {path} holds {len(key)} bytes: {how}")
    return key

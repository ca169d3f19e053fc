"""Verifying a kept envelope again, as an auditor does long after it was exchanged.

The signature, certificate chain and sender are checked as at the moment the envelope was
signed (its `created_at`), so freshness cannot fail afterwards and no replay state is
needed; then the digest recorded beside it, and its payload against the shared schema (a
sealed payload: its structure only, since only its recipients hold the key).
With the network's CRL, an envelope whose signer's certificate was revoked before the node
logged it is flagged: the entry's time is the node's, the `created_at` the signer's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from exchange.audit.entries import AuditEntry
from exchange.audit.revocations import Revocations
from exchange.crypto.sealing import parse_sealed
from exchange.crypto.verify import TrustStore, VerificationPolicy, VerifiedEnvelope, verify_envelope
from exchange.errors import ExchangeError, SealError
from exchange.model.common import MessageType
from exchange.schemas import validate_payload

SchemaCheck = Callable[[str, str, Mapping[str, Any]], object]


class EnvelopeChecker:
    """Checks the envelopes kept in audit entries against the network's trust store."""

    def __init__(
        self,
        trust: TrustStore,
        schema_check: SchemaCheck = validate_payload,
        revocations: Revocations | None = None,
    ) -> None:
        # No replay guard: an archive holds each message as often as it was logged.
        self._trust = trust
        self._policy = VerificationPolicy(trust, replay=None)
        self._schema_check = schema_check
        self._revocations = revocations

    @classmethod
    def from_files(
        cls, ca_path: Path, cert_paths: Sequence[Path], crl_path: Path | None = None
    ) -> EnvelopeChecker:
        """The network CA, the node certificates whose signatures the log may hold, and the
        network's CRL if given."""
        trust = TrustStore.from_files(ca_path, None, cert_paths)
        revocations = Revocations.from_file(crl_path, trust.ca) if crl_path is not None else None
        return cls(trust, revocations=revocations)

    def check(self, entry: AuditEntry) -> str | None:
        """Why the entry's envelope does not verify again, or None when it does."""
        assert entry.envelope is not None
        try:
            verified = verify_envelope(entry.envelope, self._policy, now=signed_at(entry))
        except ExchangeError as err:
            return f"its envelope does not verify again: {err.code}: {err.detail}"
        header = verified.envelope.header
        payload = verified.payload
        revoked = self._revoked(verified.envelope.signature.kid, entry)
        if revoked is not None:
            return revoked
        if payload is None:
            return _sealed_problem(verified, entry)
        if entry.message_id is None or entry.message_id == str(header.id):
            if entry.digest is not None and entry.digest != verified.digest:
                return "the digest it records is not its envelope's"
        elif header.type is MessageType.RECEIPT:
            # A receipt is kept in the entry of the message it acknowledges.
            if payload.get("message_id") != entry.message_id:
                return f"its receipt acknowledges {payload.get('message_id')}, not the entry's"
            if entry.digest is not None and payload.get("digest") != entry.digest:
                return "its receipt acknowledges another digest than the entry records"
        else:
            return f"it names message {entry.message_id} but keeps envelope {header.id}"
        try:
            self._schema_check(header.type.value, header.schema_, payload)
        except ExchangeError as err:
            fields = "; ".join(f"{e.path}: {e.message}" for e in err.errors[:3])
            return f"its payload does not match {header.schema_}: {err.code} {fields}"
        return None

    def _revoked(self, kid: str, entry: AuditEntry) -> str | None:
        trusted = self._trust.get(kid)
        if self._revocations is None or trusted is None:
            return None
        since = self._revocations.revoked_before(trusted.serial, entry.time)
        if since is None:
            return None
        return (
            f"its envelope does not verify again: cert.revoked: certificate {trusted.serial:x} "
            f"of {trusted.node_id} was revoked at {since:%Y-%m-%dT%H:%M:%SZ}, before this entry"
        )


def signed_at(entry: AuditEntry) -> datetime:
    """When the entry's envelope says it was signed (else when the entry was written)."""
    header = entry.header or {}
    created = header.get("created_at")
    if isinstance(created, str):
        try:
            when = datetime.fromisoformat(created)
        except ValueError:
            return entry.time
        if when.tzinfo is not None:
            return when
    return entry.time


def _sealed_problem(verified: VerifiedEnvelope, entry: AuditEntry) -> str | None:
    """A sealed envelope's check: only its recipients hold the key, so the archive checks
    the seal's structure, not the payload's schema."""
    header = verified.envelope.header
    if header.type is MessageType.RECEIPT:
        return "its receipt is sealed, and receipts travel in clear"
    if entry.message_id is not None and entry.message_id != str(header.id):
        return f"it names message {entry.message_id} but keeps envelope {header.id}"
    if entry.digest is not None and entry.digest != verified.digest:
        return "the digest it records is not its envelope's"
    try:
        parse_sealed(verified.sealed)
    except SealError as err:
        return f"its sealed payload is malformed: {err.code}: {err.detail}"
    return None

"""What a role without access to payloads (an auditor) sees of an envelope or an audit entry.

An auditor checks that nothing was altered, removed or forged and that deadlines were kept:
headers, digests, signatures, receipts and proofs serve that; payloads (personal data and
investigative detail) do not. `redact_envelope` keeps `header` and `signature` and replaces
every other member (the payload) by the hex SHA-256 of its RFC 8785 canonical form, under
`withheld`. Receipts stay whole: their payload is the proof of receipt and names no person.

`redact_entry` does the same to the envelope an audit entry keeps; an entry without one is
not changed. The redaction is undone by anyone who holds the payload: `restore_entry` puts
it back, checks it against the digest and returns the exact bytes that were hashed, so the
entry's Merkle leaf can be recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exchange.crypto.canonical import canonicalize, sha256_hex
from exchange.model.common import MessageType

WITHHELD = "withheld"
"""The member of a redacted envelope that maps each withheld member to its digest."""
KEPT = ("header", "signature")


def member_digest(value: Any) -> str:
    """Hex SHA-256 of a JSON value's RFC 8785 canonical form."""
    return sha256_hex(canonicalize(value))


def is_receipt(envelope: Mapping[str, Any]) -> bool:
    header = envelope.get("header")
    return isinstance(header, Mapping) and header.get("type") == MessageType.RECEIPT.value


def redact_envelope(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope without its payload (and any other member but header and signature),
    each replaced by its digest under `withheld`; a receipt is returned whole."""
    if is_receipt(envelope):
        return dict(envelope)
    kept = {k: v for k, v in envelope.items() if k in KEPT}
    withheld = {k: member_digest(v) for k, v in envelope.items() if k not in KEPT}
    if withheld:
        kept[WITHHELD] = withheld
    return kept


def redact_entry(document: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """An audit entry document with its envelope redacted, and whether anything was."""
    envelope = document.get("envelope")
    if not isinstance(envelope, Mapping):
        return dict(document), False
    redacted = redact_envelope(envelope)
    if WITHHELD not in redacted:
        return dict(document), False
    return {**document, "envelope": redacted}, True


def restore_envelope(redacted: Mapping[str, Any], members: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope as it was, given the withheld `members` (e.g. `{"payload": ...}`);
    ValueError when one is missing or does not match its digest."""
    withheld = redacted.get(WITHHELD)
    if not isinstance(withheld, Mapping):
        return dict(redacted)
    restored = {k: v for k, v in redacted.items() if k != WITHHELD}
    for name, digest in withheld.items():
        if name not in members:
            raise ValueError(f"the envelope's {name} was withheld; give it to restore the entry")
        if member_digest(members[name]) != digest:
            raise ValueError(f"this {name} is not the one the entry holds (its digest differs)")
        restored[name] = members[name]
    return restored


def restore_entry(document: Mapping[str, Any], members: Mapping[str, Any]) -> bytes:
    """The exact bytes of a redacted entry, given what was withheld: leaf = SHA-256(0x00 ||
    these bytes)."""
    envelope = document.get("envelope")
    if isinstance(envelope, Mapping):
        document = {**document, "envelope": restore_envelope(envelope, members)}
    return canonicalize(dict(document))

"""What an auditor sees of an envelope or an audit entry: the header and signature, each
other member replaced by its digest; receipts whole; and the bytes that were hashed can be
restored by whoever holds what was withheld, and by nobody else."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.merkle import leaf_hash
from exchange.audit.redaction import (
    member_digest,
    redact_entry,
    redact_envelope,
    restore_entry,
)
from exchange.crypto.canonical import canonicalize

SIGNATURE = {"alg": "Ed25519", "kid": "a" * 64, "value": "b" * 86}
PAYLOAD = {"subject": {"name": "Љубомир Јовановић"}, "amount": "1000.00"}


def envelope(kind: str = "freeze-notice", **extra: Any) -> dict[str, Any]:
    header = {"id": "1", "type": kind, "sender": "AL-ARO", "recipients": ["RS-PPO"]}
    return {"header": header, "payload": PAYLOAD, "signature": SIGNATURE, **extra}


def test_an_envelope_keeps_its_header_and_signature_and_withholds_the_rest() -> None:
    seen = redact_envelope(envelope(smuggled={"note": "a name"}))
    assert seen == {
        "header": envelope()["header"],
        "signature": SIGNATURE,
        "withheld": {
            "payload": member_digest(PAYLOAD),
            "smuggled": member_digest({"note": "a name"}),
        },
    }


def test_a_receipt_is_proof_of_receipt_and_stays_whole() -> None:
    receipt = envelope("receipt")
    assert redact_envelope(receipt) == receipt


def test_an_entry_is_redacted_only_where_it_keeps_a_payload() -> None:
    with_envelope = EntryFields.build(AuditEvent.ACCEPTED, envelope=envelope())
    doc = with_envelope.document(0, "2026-01-01T00:00:00Z", "AL-ARO")
    redacted, changed = redact_entry(doc)
    assert changed and "payload" not in redacted["envelope"]
    assert {k: v for k, v in redacted.items() if k != "envelope"} == {
        k: v for k, v in doc.items() if k != "envelope"
    }
    plain = EntryFields.build(AuditEvent.DELIVERED, message_id=None).document(1, "t", "AL-ARO")
    assert redact_entry(plain) == (plain, False)
    receipt = EntryFields.build(AuditEvent.RECEIPT_RECEIVED, envelope=envelope("receipt"))
    receipt_doc = receipt.document(2, "t", "AL-ARO")
    assert redact_entry(receipt_doc) == (receipt_doc, False)


def test_the_hashed_bytes_come_back_only_with_the_payload_that_was_withheld() -> None:
    doc = EntryFields.build(AuditEvent.ACCEPTED, envelope=envelope()).document(0, "t", "AL-ARO")
    leaf = leaf_hash(canonicalize(doc))
    redacted, _ = redact_entry(doc)
    assert leaf_hash(restore_entry(redacted, {"payload": PAYLOAD})) == leaf
    with pytest.raises(ValueError, match="digest differs"):
        restore_entry(redacted, {"payload": {**PAYLOAD, "amount": "1.00"}})
    with pytest.raises(ValueError, match="was withheld"):
        restore_entry(redacted, {})

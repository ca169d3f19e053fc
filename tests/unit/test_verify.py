"""Verification: every attack on an envelope is refused with its own stable code, in order."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.crypto.canonical import canonicalize, sha256_hex
from exchange.crypto.pki import (
    create_ca,
    create_crl,
    create_node_certificate,
    issue_node_certificate,
    load_certificate,
    load_crl,
    load_private_key,
    revoke_node,
)
from exchange.crypto.signing import NodeSigner, encode_envelope, signing_input
from exchange.crypto.verify import (
    MemoryReplayGuard,
    TrustStore,
    VerificationPolicy,
    verify_detached,
    verify_envelope,
)
from exchange.errors import ConfigError, VerificationError
from exchange.model.common import utc_now
from exchange.model.envelope import MAX_ENVELOPE_BYTES, Header

SignerFactory = Callable[..., NodeSigner]  # the `signer` fixture
HeaderFactory = Callable[..., Header]  # the `make_header` fixture

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def sign(signer: NodeSigner, header: Header, payload: dict[str, Any]) -> bytes:
    return encode_envelope(signer.sign_envelope(header, payload))


def forge(signer: NodeSigner, header: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """An envelope signed by `signer` over exactly these raw dicts, whatever they claim."""
    return {
        "header": header,
        "payload": payload,
        "signature": {
            "alg": "Ed25519",
            "kid": signer.kid,
            "value": signer.sign_bytes(signing_input(header, payload)),
        },
    }


def refused(
    data: bytes | dict[str, Any], policy: VerificationPolicy, *, now: datetime | None = None
) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify_envelope(data, policy, now=now)
    return caught.value


@pytest.fixture
def envelope(
    signer: SignerFactory, make_header: HeaderFactory, sample_payload: dict[str, Any]
) -> bytes:
    """A valid envelope from AL-ARO to RS-PPO, created now."""
    return sign(signer("AL-ARO"), make_header(), sample_payload)


# --- the envelope that passes ---------------------------------------------------------------


def test_a_genuine_envelope_verifies(
    envelope: bytes, policy: VerificationPolicy, signer: SignerFactory
) -> None:
    verified = verify_envelope(envelope, policy)
    raw = orjson.loads(envelope)
    assert verified.raw == raw
    assert verified.envelope.header.sender == "AL-ARO"
    assert verified.envelope.payload == raw["payload"]
    signed = canonicalize({"header": raw["header"], "payload": raw["payload"]})
    assert verified.digest == sha256_hex(signed)
    assert verified.signer == signer("AL-ARO").certificate


def test_the_parsed_dict_verifies_like_the_bytes(
    envelope: bytes, policy: VerificationPolicy
) -> None:
    assert verify_envelope(orjson.loads(envelope), policy).digest == (
        verify_envelope(envelope, policy).digest
    )


def test_the_signature_covers_the_header_as_received_not_as_we_would_write_it(
    signer: SignerFactory, policy: VerificationPolicy
) -> None:
    # Another implementation may omit null fields and write times without milliseconds;
    # a verifier that re-serialized the header would reject its envelopes.
    now = utc_now().replace(microsecond=0)
    header = {
        "id": str(uuid.uuid4()),
        "type": "freeze-notice",
        "schema": "freeze-notice/1",
        "sender": "AL-ARO",
        "recipients": ["RS-PPO", "MD-ARO"],
        "case": "AL-2026-0042",
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "priority": "urgent",
        "handling": {"tlp": "RED", "code": "H3"},
    }
    wire = forge(signer("AL-ARO"), header, {"amount": "1250000.00", "ratio": 0.5})
    verified = verify_envelope(encode_envelope(wire), policy)
    assert verified.envelope.header.created_at == now
    assert verified.envelope.signed_part()["header"] != header


# --- tampering and impersonation ----------------------------------------------------------


def test_a_flipped_payload_byte_breaks_the_signature(
    envelope: bytes, policy: VerificationPolicy
) -> None:
    tampered = envelope.replace(b"1250000.00", b"1250001.00")
    assert tampered != envelope
    assert refused(tampered, policy).code == "signature.invalid"


def test_a_flipped_header_byte_breaks_the_signature(
    envelope: bytes, policy: VerificationPolicy
) -> None:
    assert refused(envelope.replace(b'"AMBER"', b'"GREEN"'), policy).code == "signature.invalid"


def test_a_refusal_names_the_signed_digest_only_once_the_signature_verified(
    envelope: bytes,
    signer: SignerFactory,
    make_header: HeaderFactory,
    policy: VerificationPolicy,
    pki_dir: Path,
) -> None:
    """A copy with its signature value changed carries the genuine message's signed bytes:
    naming their digest in a refusal would refuse the genuine message in its name."""
    doc = orjson.loads(envelope)
    value = bytearray(base64.urlsafe_b64decode(doc["signature"]["value"] + "=="))
    value[0] ^= 1
    doc["signature"]["value"] = base64.urlsafe_b64encode(bytes(value)).decode().rstrip("=")
    assert "digest" not in refused(encode_envelope(doc), policy).extra
    unknown = VerificationPolicy(trust=TrustStore.from_files(pki_dir / "ca.pem"))
    assert "digest" not in refused(envelope, unknown).extra  # before the signature, too
    now = utc_now()
    expired = make_header(
        created_at=now - timedelta(minutes=2), expires_at=now - timedelta(seconds=1)
    )
    data = sign(signer("AL-ARO"), expired, {"q": 1})
    late = refused(data, policy, now=now)
    assert late.code == "message.expired"
    assert (
        late.extra["digest"] == verify_envelope(data, policy, now=now - timedelta(seconds=2)).digest
    )


def test_a_non_canonical_spelling_of_the_signature_is_refused(
    envelope: bytes, policy: VerificationPolicy
) -> None:
    wire = orjson.loads(envelope)
    value = wire["signature"]["value"]
    respelled = value[:-1] + B64URL[B64URL.index(value[-1]) | 1]  # same 64 bytes, other bits
    assert base64.urlsafe_b64decode(respelled + "==") == base64.urlsafe_b64decode(value + "==")
    wire["signature"]["value"] = respelled
    assert refused(wire, policy).code == "signature.invalid"


def test_a_swapped_kid_naming_another_nodes_certificate_is_a_sender_mismatch(
    envelope: bytes, policy: VerificationPolicy, signer: SignerFactory
) -> None:
    wire = orjson.loads(envelope)
    wire["signature"]["kid"] = signer("RS-PPO").kid
    assert refused(wire, policy).code == "sender.mismatch"


def test_claiming_to_be_another_node_with_its_kid_breaks_the_signature(
    signer: SignerFactory, make_header: HeaderFactory, policy: VerificationPolicy
) -> None:
    wire = signer("AL-ARO").sign_envelope(make_header(recipients=["MD-ARO"]), {"q": 1})
    wire["header"]["sender"] = "RS-PPO"
    wire["signature"]["kid"] = signer("RS-PPO").kid
    assert refused(wire, policy).code == "signature.invalid"


def test_a_node_signing_in_another_nodes_name_is_a_sender_mismatch(
    signer: SignerFactory, make_header: HeaderFactory, policy: VerificationPolicy
) -> None:
    header = make_header(sender="AL-ARO", recipients=["MD-ARO"])
    wire = forge(signer("RS-PPO"), header.model_dump(mode="json", by_alias=True), {"q": 1})
    error = refused(wire, policy)
    assert error.code == "sender.mismatch"
    assert "RS-PPO" in error.detail


# --- certificates -------------------------------------------------------------------------


def test_an_unknown_kid_is_refused(envelope: bytes, pki_dir: Path) -> None:
    empty = VerificationPolicy(trust=TrustStore.from_files(pki_dir / "ca.pem"))
    error = refused(envelope, empty)
    assert error.code == "cert.unknown"
    assert error.extra["sender"] == "AL-ARO"


def test_a_certificate_from_a_foreign_ca_is_never_trusted(
    foreign_pki_dir: Path,
    pki_dir: Path,
    signer: SignerFactory,
    make_header: HeaderFactory,
    trust_store: TrustStore,
    policy: VerificationPolicy,
) -> None:
    # Same network name and node ids: only the CA's signature tells them apart.
    impostor = signer("AL-ARO", foreign_pki_dir)
    assert impostor.certificate.issuer == load_certificate(pki_dir / "ca.pem").subject
    data = sign(impostor, make_header(), {"q": 1})
    assert refused(data, policy).code == "cert.unknown"
    with pytest.raises(VerificationError) as caught:
        trust_store.add_certificate(impostor.certificate)
    assert caught.value.code == "cert.untrusted"
    assert impostor.kid not in trust_store
    with pytest.raises(VerificationError) as caught:
        TrustStore.from_files(pki_dir / "ca.pem", None, [foreign_pki_dir / "AL-ARO.pem"])
    assert caught.value.code == "cert.untrusted"


def test_the_ca_certificate_itself_cannot_sign_envelopes(
    pki_dir: Path, trust_store: TrustStore
) -> None:
    with pytest.raises(VerificationError) as caught:
        trust_store.add_certificate(load_certificate(pki_dir / "ca.pem"))
    assert caught.value.code == "cert.untrusted"


def test_a_store_needs_a_real_ca(pki_dir: Path) -> None:
    with pytest.raises(ConfigError):
        TrustStore(load_certificate(pki_dir / "AL-ARO.pem"))


def _dated_signer(
    pki_dir: Path, trust_store: TrustStore, not_before: datetime, not_after: datetime
) -> NodeSigner:
    ca_key, ca = load_private_key(pki_dir / "ca.key"), load_certificate(pki_dir / "ca.pem")
    key, cert = create_node_certificate(
        ca_key, ca, "AL-ARO", not_before=not_before, not_after=not_after
    )
    trust_store.add_certificate(cert)
    return NodeSigner.from_key_and_certificate(key, cert)


def test_an_expired_certificate_is_refused_but_verifies_as_of_its_lifetime(
    make_header: HeaderFactory,
) -> None:
    now = utc_now()
    ca_key, ca = create_ca("test-net", not_before=now - timedelta(days=90))
    key, cert = create_node_certificate(
        ca_key, ca, "AL-ARO", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    old = NodeSigner.from_key_and_certificate(key, cert)
    policy = VerificationPolicy(trust=TrustStore(ca, None, [cert]))
    then = now - timedelta(days=2)
    data = sign(old, make_header(created_at=then), {"q": 1})
    assert refused(data, policy, now=now).code == "cert.expired"
    assert verify_envelope(data, policy, now=then + timedelta(minutes=1))


def test_a_certificate_not_yet_valid_is_refused(
    pki_dir: Path, trust_store: TrustStore, make_header: HeaderFactory
) -> None:
    now = utc_now()
    early = _dated_signer(pki_dir, trust_store, now + timedelta(days=1), now + timedelta(days=9))
    data = sign(early, make_header(created_at=now), {"q": 1})
    error = refused(data, VerificationPolicy(trust=trust_store), now=now)
    assert error.code == "cert.expired"
    assert "not valid before" in error.detail


def test_an_expired_network_ca_invalidates_its_certificates(
    make_header: HeaderFactory,
) -> None:
    now = utc_now()
    ca_key, ca = create_ca(
        "short-lived", not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)
    )
    key, cert = create_node_certificate(
        ca_key, ca, "AL-ARO", not_before=now - timedelta(days=5), not_after=now + timedelta(days=5)
    )
    store = TrustStore(ca, None, [cert])
    data = sign(NodeSigner.from_key_and_certificate(key, cert), make_header(), {"q": 1})
    error = refused(data, VerificationPolicy(trust=store), now=now)
    assert error.code == "cert.expired"
    assert "network CA" in error.detail


def test_a_revoked_node_is_refused_with_the_crl_in_force_now(
    fresh_pki_dir: Path, make_header: HeaderFactory, sample_payload: dict[str, Any]
) -> None:
    al = NodeSigner.from_files(fresh_pki_dir / "AL-ARO.key", fresh_pki_dir / "AL-ARO.pem")
    store = TrustStore.from_directory(fresh_pki_dir)
    policy = VerificationPolicy(trust=store)
    data = sign(al, make_header(), sample_payload)
    assert verify_envelope(data, policy)  # the certificate is cached as trusted from here on

    revoke_node(fresh_pki_dir, "AL-ARO")
    store.set_crl(load_crl(fresh_pki_dir / "crl.pem"))

    assert refused(data, policy).code == "cert.revoked"
    assert TrustStore.from_directory(fresh_pki_dir).crl is not None
    fresh = VerificationPolicy(trust=TrustStore.from_directory(fresh_pki_dir))
    assert refused(data, fresh).code == "cert.revoked"


def test_a_crl_not_signed_by_the_network_ca_is_refused(
    foreign_pki_dir: Path, trust_store: TrustStore
) -> None:
    with pytest.raises(VerificationError) as caught:
        trust_store.set_crl(load_crl(foreign_pki_dir / "crl.pem"))
    assert caught.value.code == "cert.untrusted"


def test_an_older_crl_cannot_replace_a_newer_one(pki_dir: Path, trust_store: TrustStore) -> None:
    ca_key, ca = load_private_key(pki_dir / "ca.key"), load_certificate(pki_dir / "ca.pem")
    trust_store.set_crl(create_crl(ca_key, ca, {}, number=5))
    with pytest.raises(VerificationError) as caught:
        trust_store.set_crl(create_crl(ca_key, ca, {}, number=4))
    assert caught.value.code == "cert.untrusted"


def test_an_out_of_date_crl_makes_every_certificate_untrusted(
    pki_dir: Path, trust_store: TrustStore, envelope: bytes
) -> None:
    ca_key, ca = load_private_key(pki_dir / "ca.key"), load_certificate(pki_dir / "ca.pem")
    now = utc_now()
    stale = create_crl(
        ca_key,
        ca,
        {},
        number=9,
        this_update=now - timedelta(days=10),
        next_update=now - timedelta(seconds=1),
    )
    trust_store.set_crl(stale)
    error = refused(envelope, VerificationPolicy(trust=trust_store), now=now)
    assert error.code == "cert.untrusted"
    assert "CRL is out of date" in error.detail


def test_rotation_old_and_new_certificates_both_verify_until_the_old_is_revoked(
    fresh_pki_dir: Path, make_header: HeaderFactory, sample_payload: dict[str, Any]
) -> None:
    old = NodeSigner.from_files(fresh_pki_dir / "AL-ARO.key", fresh_pki_dir / "AL-ARO.pem")
    signed_before = sign(old, make_header(), sample_payload)
    issue_node_certificate(fresh_pki_dir, "AL-ARO")
    new = NodeSigner.from_files(fresh_pki_dir / "AL-ARO.key", fresh_pki_dir / "AL-ARO.pem")
    signed_after = sign(new, make_header(), sample_payload)
    store = TrustStore.from_directory(fresh_pki_dir)
    policy = VerificationPolicy(trust=store)
    assert old.kid != new.kid and old.kid in store and new.kid in store

    assert verify_envelope(signed_before, policy).signer == old.certificate
    assert verify_envelope(signed_after, policy).signer == new.certificate
    mixed = orjson.loads(signed_before)
    mixed["signature"]["kid"] = new.kid  # the old key's signature under the new certificate
    assert refused(mixed, policy).code == "signature.invalid"

    revoke_node(fresh_pki_dir, "AL-ARO", serial=old.certificate.serial_number)
    store.set_crl(load_crl(fresh_pki_dir / "crl.pem"))
    assert refused(signed_before, policy).code == "cert.revoked"
    assert verify_envelope(signed_after, policy)


# --- time ---------------------------------------------------------------------------------


def test_an_expired_message_is_refused(
    signer: SignerFactory, make_header: HeaderFactory, policy: VerificationPolicy
) -> None:
    now = utc_now()
    header = make_header(
        created_at=now - timedelta(minutes=2), expires_at=now - timedelta(seconds=1)
    )
    data = sign(signer("AL-ARO"), header, {"q": 1})
    assert refused(data, policy, now=now).code == "message.expired"
    assert verify_envelope(data, policy, now=now - timedelta(seconds=2))


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_clock_skew_either_way_is_refused(
    signer: SignerFactory,
    make_header: HeaderFactory,
    policy: VerificationPolicy,
    offset: timedelta,
) -> None:
    now = utc_now()
    data = sign(signer("AL-ARO"), make_header(created_at=now + offset), {"q": 1})
    assert refused(data, policy, now=now).code == "clock.skew"
    assert verify_envelope(data, policy, now=now + offset * 0.2)
    lenient = VerificationPolicy(trust=policy.trust, max_skew=timedelta(minutes=7))
    assert verify_envelope(data, lenient, now=now)


# --- replay -------------------------------------------------------------------------------


def test_a_replayed_envelope_is_refused_but_a_forged_copy_does_not_burn_its_id(
    envelope: bytes, trust_store: TrustStore, signer: SignerFactory, make_header: HeaderFactory
) -> None:
    guard = MemoryReplayGuard(max_entries=100)
    policy = VerificationPolicy(trust=trust_store, replay=guard)
    forged_first = envelope.replace(b"1250000.00", b"9250000.00")
    assert refused(forged_first, policy).code == "signature.invalid"
    assert len(guard) == 0

    assert verify_envelope(envelope, policy)
    error = refused(envelope, policy)
    assert error.code == "message.replayed"
    assert error.extra["message_id"] == orjson.loads(envelope)["header"]["id"]
    assert verify_envelope(sign(signer("AL-ARO"), make_header(), {"q": 2}), policy)


def test_the_replay_guard_remembers_ids_only_as_long_as_needed() -> None:
    guard = MemoryReplayGuard(max_entries=3)
    t0 = utc_now()
    ids = [uuid.uuid4() for _ in range(5)]
    assert not guard.check_and_record(ids[0], t0 + timedelta(minutes=5), t0)
    assert guard.check_and_record(ids[0], t0 + timedelta(minutes=5), t0 + timedelta(minutes=4))
    # Past its time the id is forgotten: the expiry and skew checks refuse such a copy.
    assert not guard.check_and_record(ids[0], t0 + timedelta(minutes=20), t0 + timedelta(minutes=6))

    assert not guard.check_and_record(ids[1], t0 + timedelta(minutes=7), t0 + timedelta(minutes=6))
    assert not guard.check_and_record(ids[2], None, t0 + timedelta(minutes=6))
    assert len(guard) == 3
    # Full: the expired entry (ids[1]) goes first, then the oldest.
    assert not guard.check_and_record(ids[3], None, t0 + timedelta(minutes=8))
    assert len(guard) == 3
    assert guard.check_and_record(ids[0], None, t0 + timedelta(minutes=8))
    assert not guard.check_and_record(ids[4], None, t0 + timedelta(minutes=8))
    assert not guard.check_and_record(ids[0], None, t0 + timedelta(minutes=8))  # evicted
    assert len(guard) == 3


def test_a_replay_guard_must_have_room() -> None:
    with pytest.raises(ValueError):
        MemoryReplayGuard(0)


# --- structure ----------------------------------------------------------------------------


def _mutations() -> list[tuple[str, Callable[[dict[str, Any]], Any], str]]:
    def extra_field(w: dict[str, Any]) -> None:
        w["routing"] = "x"

    def extra_header_field(w: dict[str, Any]) -> None:
        w["header"]["priority_hint"] = 1

    def no_signature(w: dict[str, Any]) -> None:
        del w["signature"]

    def bad_sender(w: dict[str, Any]) -> None:
        w["header"]["sender"] = "al-aro"

    def other_alg(w: dict[str, Any]) -> None:
        w["signature"]["alg"] = "RS256"

    def short_kid(w: dict[str, Any]) -> None:
        w["signature"]["kid"] = "abc"

    def payload_list(w: dict[str, Any]) -> None:
        w["payload"] = [1, 2]

    def unsafe_integer(w: dict[str, Any]) -> None:
        w["payload"]["n"] = 2**53

    def numeric_time(w: dict[str, Any]) -> None:
        w["header"]["created_at"] = float("nan")

    return [
        ("extra top-level field", extra_field, "/routing"),
        ("extra header field", extra_header_field, "/header/priority_hint"),
        ("missing signature", no_signature, "/signature"),
        ("malformed sender", bad_sender, "/header/sender"),
        ("another algorithm", other_alg, "/signature/alg"),
        ("short kid", short_kid, "/signature/kid"),
        ("payload not an object", payload_list, "/payload"),
        ("integer beyond 2**53 - 1", unsafe_integer, ""),
        ("NaN time", numeric_time, "/header/created_at"),
    ]


@pytest.mark.parametrize(("what", "mutate", "path"), _mutations(), ids=lambda v: v)
def test_a_malformed_envelope_is_refused_with_the_failing_field(
    envelope: bytes,
    policy: VerificationPolicy,
    what: str,
    mutate: Callable[[dict[str, Any]], Any],
    path: str,
) -> None:
    wire = orjson.loads(envelope)
    mutate(wire)
    error = refused(wire, policy)
    assert error.code == "envelope.malformed", what
    if path:
        assert path in [e.path for e in error.errors]
    assert error.extra.get("message_id") == wire["header"]["id"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b'{"header":',
        b"[1, 2, 3]",
        b'"an envelope"',
        b'{"header": {}, "payload": {"s": "\\ud800"}, "signature": {}}',
        b"\xff\xfe{}",
    ],
)
def test_bytes_that_are_not_a_json_object_are_malformed(
    data: bytes, policy: VerificationPolicy
) -> None:
    assert refused(data, policy).code == "envelope.malformed"


def test_repeated_member_names_are_malformed(envelope: bytes, policy: VerificationPolicy) -> None:
    # The second "case" would win in our parser and the first in others: refuse both readings.
    text = envelope.replace(b'"case":"AL-2026-0042"', b'"case":"AL-2026-0042","case":"X-1"')
    assert refused(text, policy).code == "envelope.malformed"
    spaced = envelope.replace(b'"urgent":true', b'"urgent" : true, "urgent": false')
    assert refused(spaced, policy).code == "envelope.malformed"
    assert verify_envelope(envelope.replace(b'"urgent":true', b'"urgent" : true'), policy)


def test_an_envelope_over_the_size_limit_is_refused_before_parsing(
    envelope: bytes, trust_store: TrustStore
) -> None:
    small = VerificationPolicy(trust=trust_store, max_bytes=len(envelope) - 1)
    assert refused(envelope, small).code == "envelope.too_large"
    huge = b'{"header":' + b" " * MAX_ENVELOPE_BYTES + b"}"
    assert refused(huge, VerificationPolicy(trust=trust_store)).code == "envelope.too_large"


def test_a_dict_with_python_objects_is_malformed(
    envelope: bytes, policy: VerificationPolicy
) -> None:
    wire = orjson.loads(envelope)
    wire["header"]["id"] = uuid.UUID(wire["header"]["id"])  # valid to the model, not JSON
    assert refused(wire, policy).code == "envelope.malformed"


# --- the order of the checks --------------------------------------------------------------


def test_the_first_failing_check_names_the_refusal(
    fresh_pki_dir: Path, make_header: HeaderFactory
) -> None:
    al = NodeSigner.from_files(fresh_pki_dir / "AL-ARO.key", fresh_pki_dir / "AL-ARO.pem")
    rs = NodeSigner.from_files(fresh_pki_dir / "RS-PPO.key", fresh_pki_dir / "RS-PPO.pem")
    guard = MemoryReplayGuard(10)
    policy = VerificationPolicy(trust=TrustStore.from_directory(fresh_pki_dir), replay=guard)
    now = utc_now()

    def tampered(data: bytes) -> bytes:
        return data.replace(b'"q":1', b'"q":2')

    # sender.mismatch before signature.invalid
    claim = make_header(recipients=["MD-ARO"]).model_dump(mode="json", by_alias=True)
    impersonation = forge(rs, claim, {"q": 1})
    assert refused(tampered(encode_envelope(impersonation)), policy).code == "sender.mismatch"
    # signature.invalid before message.expired and clock.skew
    stale = make_header(created_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1))
    assert refused(tampered(sign(al, stale, {"q": 1})), policy, now=now).code == "signature.invalid"
    # message.expired before clock.skew
    assert refused(sign(al, stale, {"q": 1}), policy, now=now).code == "message.expired"
    # clock.skew before message.replayed, and a refused message is not remembered
    early = sign(al, make_header(created_at=now + timedelta(hours=1)), {"q": 1})
    assert refused(early, policy, now=now).code == "clock.skew"
    assert len(guard) == 0
    # cert.revoked before signature.invalid
    revoke_node(fresh_pki_dir, "AL-ARO")
    policy.trust.set_crl(load_crl(fresh_pki_dir / "crl.pem"))
    assert refused(tampered(sign(al, make_header(), {"q": 1})), policy).code == "cert.revoked"
    # envelope.malformed before everything
    assert refused(b'{"header": {}}', policy).code == "envelope.malformed"


# --- policy and detached signatures -------------------------------------------------------


def test_a_policy_cannot_be_made_lax_by_accident(trust_store: TrustStore) -> None:
    with pytest.raises(ValueError):
        VerificationPolicy(trust=trust_store, max_skew=timedelta(seconds=-1))
    with pytest.raises(ValueError):
        VerificationPolicy(trust=trust_store, max_bytes=0)
    with pytest.raises(TypeError):
        VerificationPolicy(trust=None)  # type: ignore[arg-type]


def test_verify_envelope_wants_an_aware_now(envelope: bytes, policy: VerificationPolicy) -> None:
    with pytest.raises(ValueError):
        verify_envelope(envelope, policy, now=datetime(2026, 1, 1))


def test_detached_signatures_for_receipts_and_checkpoints(signer: SignerFactory) -> None:
    al, rs = signer("AL-ARO"), signer("RS-PPO")
    key = al.private_key.public_key()
    value = al.sign_bytes(b"tree head 42")
    assert verify_detached(b"tree head 42", value, key)
    assert not verify_detached(b"tree head 43", value, key)
    assert not verify_detached(b"tree head 42", rs.sign_bytes(b"tree head 42"), key)
    assert not verify_detached(b"tree head 42", value + "=", key)
    assert not verify_detached(b"tree head 42", value[:-4], key)
    assert not verify_detached(b"tree head 42", "!" * 86, key)


def test_a_receiving_node_accepts_a_message_that_waited_in_its_queue(
    envelope: bytes, trust_store: TrustStore
) -> None:
    """max_age lets old messages through (the inbox dedupes); the future stays bounded."""
    created = verify_envelope(envelope, VerificationPolicy(trust=trust_store)).envelope
    created_at = created.header.created_at
    patient = VerificationPolicy(trust=trust_store, max_age=timedelta(days=14))
    later = created_at + timedelta(hours=6)
    assert verify_envelope(envelope, patient, now=later).envelope.header.id == created.header.id
    strict = VerificationPolicy(trust=trust_store)
    assert refused(envelope, strict, now=later).code == "clock.skew"
    assert refused(envelope, patient, now=created_at + timedelta(days=15)).code == "clock.skew"
    with pytest.raises(ValueError):
        VerificationPolicy(trust=trust_store, max_age=timedelta(seconds=1))

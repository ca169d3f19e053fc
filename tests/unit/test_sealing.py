"""Sealed payloads: each recipient node, and only it, opens what was sealed to it; every way of
tampering with a sealed envelope is refused, by the signature or by the seal, with its code."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exchange.crypto.canonical import canonicalize, sha256_hex
from exchange.crypto.kem import (
    KEM_X25519,
    KEM_XWING,
    DecryptionKey,
    RecipientKey,
    generate_decryption_key,
    hpke_suite,
    keyring,
    load_decryption_key,
    write_decryption_key,
)
from exchange.crypto.sealing import (
    commitment_of,
    open_sealed,
    open_with_cek,
    parse_sealed,
    require_sealed,
    seal_and_sign,
    seal_payload,
    sign_sealed,
    signing_input_sealed,
)
from exchange.crypto.signing import NodeSigner, b64url_decode, b64url_encode, encode_envelope
from exchange.crypto.verify import VerificationPolicy, verify_envelope
from exchange.errors import (
    ERROR_TABLE,
    RECEIPT_REASONS,
    ConfigError,
    ExchangeError,
    SealError,
    VerificationError,
)
from exchange.model.envelope import Header
from exchange.model.receipt import Receipt
from tests.http_helpers import example_payload

SignerFactory = Callable[..., NodeSigner]
HeaderFactory = Callable[..., Header]

NODES = [f"{cc}-ARO" for cc in ("RS", "MD", "ME", "BA", "MK", "XK", "HR", "SI", "BG", "RO")]
KEMS = (KEM_XWING, KEM_X25519)


@pytest.fixture(scope="module")
def node_keys() -> dict[tuple[str, str], DecryptionKey]:
    """Each node's decryption key of each KEM, made once for the module."""
    return {(node, kem): generate_decryption_key(kem) for node in NODES for kem in KEMS}


@pytest.fixture(scope="module")
def payload() -> dict[str, Any]:
    return example_payload("asset-inquiry")


def recipients(
    node_keys: dict[tuple[str, str], DecryptionKey], nodes: list[str], kem: str
) -> list[RecipientKey]:
    return [node_keys[node, kem].recipient(node) for node in nodes]


def sealed_envelope(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    nodes: list[str] | None = None,
    kem: str = KEM_XWING,
) -> tuple[dict[str, Any], bytes]:
    """A sealed envelope from AL-ARO to `nodes` (RS-PPO and MD-ARO), and its CEK."""
    nodes = nodes or NODES[:2]
    header = make_header(recipients=nodes)
    envelope, _, cek = seal_and_sign(
        signer("AL-ARO"), header, payload, recipients(node_keys, nodes, kem)
    )
    return envelope, cek


def resign(signer: SignerFactory, envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope signed again by its sender as it now is: a seal broken by the sender
    itself, which only the seal's own checks can catch."""
    return sign_sealed(signer("AL-ARO"), envelope["header"], envelope["sealed"])[0]


def seal_refusal(envelope: dict[str, Any], node: str, keys: dict[str, DecryptionKey]) -> str:
    with pytest.raises(SealError) as caught:
        open_sealed(envelope["header"], envelope["sealed"], node, keys)
    return caught.value.code


def verify_refusal(envelope: dict[str, Any], policy: VerificationPolicy) -> str:
    with pytest.raises(VerificationError) as caught:
        verify_envelope(encode_envelope(envelope), policy)
    return caught.value.code


def respelled(text: str) -> str:
    """Another spelling of the same bytes: an unused low bit of the last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = text[:-1] + alphabet[alphabet.index(text[-1]) | 1]
    lenient = base64.urlsafe_b64decode(respelled + "=" * (-len(respelled) % 4))
    assert respelled != text and lenient == b64url_decode(text)
    return respelled


# --- the happy path ---------------------------------------------------------------------


@pytest.mark.parametrize("kem", KEMS)
@pytest.mark.parametrize("count", [1, 3, 10])
def test_every_recipient_verifies_and_opens_the_payload(
    count: int,
    kem: str,
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    nodes = NODES[:count]
    envelope, cek = sealed_envelope(signer, make_header, node_keys, payload, nodes, kem)
    wire = encode_envelope(envelope)
    verified = verify_envelope(wire, policy)
    assert verified.sealed == envelope["sealed"] and verified.payload is None
    assert "payload" not in envelope
    assert verified.digest == sha256_hex(signing_input_sealed(envelope["header"], verified.sealed))
    assert [r["node"] for r in envelope["sealed"]["recipients"]] == nodes
    assert {r["kem"] for r in envelope["sealed"]["recipients"]} == {kem}
    for node in nodes:
        key = node_keys[node, kem]
        opened, opened_cek = open_sealed(
            verified.raw["header"], verified.sealed, node, keyring([key])
        )
        assert opened == payload and opened_cek == cek


def test_one_message_may_seal_to_x_wing_and_x25519_members_alike(
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    header = make_header(recipients=NODES[:2]).model_dump(mode="json", by_alias=True)
    mixed = [node_keys[NODES[0], KEM_XWING].recipient(NODES[0])]
    mixed.append(node_keys[NODES[1], KEM_X25519].recipient(NODES[1]))
    sealed, cek = seal_payload(header, payload, mixed)
    assert [r["kem"] for r in sealed["recipients"]] == [KEM_XWING, KEM_X25519]
    for node, kem in ((NODES[0], KEM_XWING), (NODES[1], KEM_X25519)):
        assert open_sealed(header, sealed, node, keyring([node_keys[node, kem]])) == (payload, cek)


def test_the_wire_form_follows_the_format(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, cek = sealed_envelope(signer, make_header, node_keys, payload)
    sealed = envelope["sealed"]
    assert set(envelope) == {"header", "sealed", "signature"}
    assert set(sealed) == {"alg", "nonce", "ciphertext", "commitment", "recipients"}
    assert sealed["alg"] == "A256GCM" and len(b64url_decode(sealed["nonce"])) == 12
    assert b64url_decode(sealed["commitment"]) == hashlib.sha256(b"xb-cek/v1" + cek).digest()
    entry = sealed["recipients"][0]
    key = node_keys[entry["node"], KEM_XWING]
    assert entry["kid"] == hashlib.sha256(key.public_key).hexdigest() == key.kid
    assert len(b64url_decode(entry["enc"])) == 1120 + 32 + 16  # X-Wing enc, CEK, tag


def test_no_payload_value_appears_in_the_sealed_envelope(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    wire = encode_envelope(envelope)
    strings: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            list(map(collect, value.values()))
        elif isinstance(value, list):
            list(map(collect, value))
        elif isinstance(value, str) and len(value) >= 6:
            strings.append(value)

    collect(payload)
    header = canonicalize(envelope["header"])
    strings = [value for value in strings if value.encode() not in header]  # the sender's id
    assert len(strings) > 10
    for value in strings:
        assert value.encode() not in wire, value


def test_sealing_twice_gives_fresh_keys_and_nonces(
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    header = make_header().model_dump(mode="json", by_alias=True)
    keys = recipients(node_keys, NODES[:1], KEM_XWING)
    (one, cek1), (two, cek2) = (
        seal_payload(header, payload, keys),
        seal_payload(header, payload, keys),
    )
    assert cek1 != cek2 and one["nonce"] != two["nonce"]
    assert one["recipients"][0]["enc"] != two["recipients"][0]["enc"]


def test_a_disclosed_content_key_opens_the_payload_without_any_private_key(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, cek = sealed_envelope(signer, make_header, node_keys, payload)
    assert open_with_cek(envelope["header"], envelope["sealed"], cek) == payload
    with pytest.raises(SealError) as caught:
        open_with_cek(envelope["header"], envelope["sealed"], os.urandom(32))
    assert caught.value.code == "seal.invalid"


def test_another_key_cannot_be_passed_off_as_the_disclosed_one(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    """The commitment binds the sender to one CEK: a disclosure with another key (one under
    which the same ciphertext might decrypt to something else) is refused before any
    decryption, even with the commitment of that other key signed in."""
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    other = os.urandom(32)
    with pytest.raises(SealError) as caught:
        open_with_cek(envelope["header"], envelope["sealed"], other)
    assert caught.value.code == "seal.invalid"
    assert commitment_of(other) != b64url_decode(envelope["sealed"]["commitment"])


# --- the envelope: payload or sealed, and what the signature covers -------------------


def test_an_envelope_with_both_payload_and_sealed_is_malformed(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    with pytest.raises(VerificationError) as caught:
        verify_envelope({**envelope, "payload": payload}, policy)
    assert caught.value.code == "envelope.malformed"
    assert [e.path for e in caught.value.errors] == ["/payload"]


def test_an_envelope_with_neither_payload_nor_sealed_is_malformed(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    del envelope["sealed"]
    with pytest.raises(VerificationError) as caught:
        verify_envelope(envelope, policy)
    assert caught.value.code == "envelope.malformed"
    assert [e.path for e in caught.value.errors] == ["/payload"]


def test_a_clear_signature_does_not_verify_a_sealed_envelope(
    signer: SignerFactory, make_header: HeaderFactory, policy: VerificationPolicy
) -> None:
    """The name of the member is signed: a signature over {"header", "payload": X} does not
    verify {"header", "sealed": X}."""
    clear = signer("AL-ARO").sign_envelope(make_header(), {"alg": "A256GCM"})
    assert verify_envelope(encode_envelope(clear), policy).payload == {"alg": "A256GCM"}
    moved = {"header": clear["header"], "sealed": clear["payload"], "signature": clear["signature"]}
    assert verify_refusal(moved, policy) == "signature.invalid"


def test_a_clear_envelope_still_verifies_with_its_payload(
    signer: SignerFactory, make_header: HeaderFactory, policy: VerificationPolicy
) -> None:
    clear = signer("AL-ARO").sign_envelope(make_header(), {"q": 1})
    verified = verify_envelope(encode_envelope(clear), policy)
    assert verified.payload == {"q": 1} and verified.sealed is None


def test_only_the_sender_signs_a_sealed_envelope(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    header = make_header(sender="RS-PPO", recipients=["MD-ARO"])
    sealed, _ = seal_payload(
        header.model_dump(mode="json", by_alias=True),
        payload,
        recipients(node_keys, ["MD-ARO"], KEM_XWING),
    )
    with pytest.raises(ExchangeError) as caught:
        sign_sealed(signer("AL-ARO"), header, sealed)
    assert caught.value.code == "sender.mismatch"


# --- the bad inputs of the format --------------------------------------------------------


def test_a_recipient_entry_removed_after_signing_breaks_the_signature(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload, NODES[:3])
    del envelope["sealed"]["recipients"][1]
    assert verify_refusal(envelope, policy) == "signature.invalid"


def test_a_recipient_entry_added_after_signing_breaks_the_signature(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    """Someone holding the CEK (a recipient) seals it to a node of their choice: the entry
    opens for that node, but the envelope no longer verifies."""
    envelope, cek = sealed_envelope(signer, make_header, node_keys, payload)
    intruder = node_keys["XK-ARO", KEM_XWING].recipient("XK-ARO")
    info = b"xb-cek/v1 " + envelope["header"]["id"].encode()
    enc = hpke_suite(KEM_XWING).encrypt(cek, intruder.hpke_key, info=info)
    envelope["sealed"]["recipients"].append(
        {"node": "XK-ARO", "kid": intruder.kid, "kem": KEM_XWING, "enc": b64url_encode(enc)}
    )
    assert verify_refusal(envelope, policy) == "signature.invalid"


def test_enc_values_swapped_between_recipients_do_not_open(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    entries = envelope["sealed"]["recipients"]
    entries[0]["enc"], entries[1]["enc"] = entries[1]["enc"], entries[0]["enc"]
    assert verify_refusal(envelope, policy) == "signature.invalid"
    swapped = resign(signer, envelope)  # even signed so, each node's entry fails
    verify_envelope(encode_envelope(swapped), policy)
    for node in NODES[:2]:
        assert seal_refusal(swapped, node, keyring([node_keys[node, KEM_XWING]])) == "seal.invalid"


@pytest.mark.parametrize("field", ["id", "priority", "case"])
def test_a_changed_header_breaks_the_signature_and_the_seal(
    field: str,
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    """The header is AES-GCM's additional data (and its id is in the HPKE info): a sealed
    payload moved under another header, even one its sender signed, does not open."""
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    changed = {"id": "9b2c6f0e-1d3a-4b5c-8d7e-0f1a2b3c4d5e", "priority": "normal", "case": "X-1"}
    envelope["header"][field] = changed[field]
    assert verify_refusal(envelope, policy) == "signature.invalid"
    moved = resign(signer, envelope)
    verify_envelope(encode_envelope(moved), policy)
    assert seal_refusal(moved, "RS-ARO", keyring([node_keys["RS-ARO", KEM_XWING]])) == (
        "seal.invalid"
    )


@pytest.mark.parametrize("keep", [-1, 16, 0])
def test_a_truncated_ciphertext_does_not_open(
    keep: int,
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    envelope, cek = sealed_envelope(signer, make_header, node_keys, payload)
    data = b64url_decode(envelope["sealed"]["ciphertext"])
    envelope["sealed"]["ciphertext"] = b64url_encode(data[:keep])
    assert verify_refusal(envelope, policy) == "signature.invalid"
    truncated = resign(signer, envelope)
    expected = "seal.malformed" if keep == 0 else "seal.invalid"  # shorter than the tag
    keys = keyring([node_keys["RS-ARO", KEM_XWING]])
    assert seal_refusal(truncated, "RS-ARO", keys) == expected
    with pytest.raises(SealError) as caught:
        open_with_cek(truncated["header"], truncated["sealed"], cek)
    assert caught.value.code == expected


@pytest.mark.parametrize("index", [0, 1])
def test_a_truncated_enc_is_malformed_whoever_it_is_for(
    index: int,
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    entry = envelope["sealed"]["recipients"][index]
    entry["enc"] = b64url_encode(b64url_decode(entry["enc"])[:-1])
    keys = keyring([node_keys["RS-ARO", KEM_XWING]])
    with pytest.raises(SealError) as caught:
        open_sealed(envelope["header"], resign(signer, envelope)["sealed"], "RS-ARO", keys)
    assert caught.value.code == "seal.malformed"
    assert caught.value.errors[0].path == f"/sealed/recipients/{index}/enc"


def test_an_unknown_kem_is_malformed(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    """A KEM outside the format is refused once the signature verified: the sender signed
    it, so the refusal names its digest."""
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    envelope["sealed"]["recipients"][1]["kem"] = "MLKEM1024-P384"
    signed = resign(signer, envelope)
    verify_envelope(encode_envelope(signed), policy)
    with pytest.raises(SealError) as caught:
        open_sealed(signed["header"], signed["sealed"], "RS-ARO", keyring([]))
    assert caught.value.code == "seal.malformed"
    assert caught.value.errors[0].path == "/sealed/recipients/1/kem"


def test_a_kem_that_is_not_the_keys_is_an_unknown_key(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload, kem=KEM_X25519)
    entry = envelope["sealed"]["recipients"][0]
    entry["kem"] = KEM_XWING  # the kid names the node's X25519 key
    entry["enc"] = b64url_encode(os.urandom(1120 + 48))
    keys = keyring([node_keys["RS-ARO", KEM_X25519]])
    assert seal_refusal(resign(signer, envelope), "RS-ARO", keys) == "seal.key_unknown"


def test_a_wrong_commitment_is_refused(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    envelope["sealed"]["commitment"] = b64url_encode(commitment_of(os.urandom(32)))
    assert verify_refusal(envelope, policy) == "signature.invalid"
    signed = resign(signer, envelope)
    for node in NODES[:2]:
        assert seal_refusal(signed, node, keyring([node_keys[node, KEM_XWING]])) == "seal.invalid"


def test_a_key_for_another_node_is_unknown(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    others = keyring([node_keys["MD-ARO", KEM_XWING], node_keys["RS-ARO", KEM_X25519]])
    assert seal_refusal(envelope, "RS-ARO", others) == "seal.key_unknown"


def test_an_entry_naming_another_nodes_kid_is_an_unknown_key(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    """The sender sealed RS-ARO's entry to MD-ARO's key: RS-ARO does not hold it."""
    header = make_header(recipients=NODES[:2]).model_dump(mode="json", by_alias=True)
    wrong = RecipientKey("RS-ARO", KEM_XWING, node_keys["MD-ARO", KEM_XWING].public_key)
    sealed, _ = seal_payload(header, payload, [wrong])
    keys = keyring([node_keys["RS-ARO", KEM_XWING]])
    with pytest.raises(SealError) as caught:
        open_sealed(header, sealed, "RS-ARO", keys)
    assert caught.value.code == "seal.key_unknown"


def test_a_sealed_envelope_replayed_to_another_recipient_is_not_for_it(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    keys = keyring([node_keys["ME-ARO", KEM_XWING], node_keys["ME-ARO", KEM_X25519]])
    assert seal_refusal(envelope, "ME-ARO", keys) == "seal.not_for_me"


def test_a_clear_payload_is_refused_where_sealing_is_required(
    make_header: HeaderFactory,
) -> None:
    header = make_header()
    with pytest.raises(SealError) as caught:
        require_sealed(header, sealed=False)
    assert caught.value.code == "seal.required"
    require_sealed(header, sealed=True)
    require_sealed(header, sealed=False, required=False)  # a network that allows clear ones
    receipt = make_header(type="receipt", schema="receipt/1")
    require_sealed(receipt, sealed=False)  # receipts carry only digests and stay clear


@pytest.mark.parametrize(
    "where", ["nonce", "ciphertext", "commitment", "enc", "enc-kem-part", "enc-end"]
)
def test_a_flipped_bit_anywhere_in_the_seal_never_opens(
    where: str,
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload, NODES[:1])
    sealed = envelope["sealed"]
    entry = sealed["recipients"][0]
    field, at = {
        "nonce": (sealed, ("nonce", 5)),
        "ciphertext": (sealed, ("ciphertext", 100)),
        "commitment": (sealed, ("commitment", 31)),
        "enc": (entry, ("enc", 1100)),  # the X25519 ephemeral of X-Wing's enc
        "enc-kem-part": (entry, ("enc", 3)),  # ML-KEM ciphertext
        "enc-end": (entry, ("enc", -1)),  # the HPKE tag
    }[where]
    name, index = at
    data = bytearray(b64url_decode(field[name]))
    data[index] ^= 0x01
    field[name] = b64url_encode(bytes(data))
    keys = keyring([node_keys["RS-ARO", KEM_XWING]])
    assert seal_refusal(resign(signer, envelope), "RS-ARO", keys) == "seal.invalid"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda s: s.update(alg="A128GCM"), "/sealed/alg"),
        (lambda s: s.update(nonce="AAAA"), "/sealed/nonce"),
        (lambda s: s.update(nonce="AAAAAAAAAAAAAAA="), "/sealed/nonce"),
        (lambda s: s.update(extra=1), "/sealed/extra"),
        (lambda s: s.update(commitment=respelled(s["commitment"])), "/sealed/commitment"),
        (lambda s: s.update(ciphertext=s["ciphertext"][:41]), "/sealed/ciphertext"),
        (lambda s: s.pop("commitment"), "/sealed/commitment"),
        (lambda s: s.update(recipients=[]), "/sealed/recipients"),
        (lambda s: s["recipients"].append(dict(s["recipients"][0])), "/sealed/recipients"),
        (lambda s: s["recipients"][0].update(kid="AB" * 32), "/sealed/recipients/0/kid"),
        (lambda s: s["recipients"][0].update(node="rs-aro"), "/sealed/recipients/0/node"),
        (lambda s: s["recipients"][0].update(enc="a+b/"), "/sealed/recipients/0/enc"),
    ],
)
def test_a_malformed_seal_names_the_field(
    change: Callable[[dict[str, Any]], object],
    path: str,
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    change(envelope["sealed"])
    with pytest.raises(SealError) as caught:
        parse_sealed(envelope["sealed"])
    assert caught.value.code == "seal.malformed"
    assert caught.value.errors[0].path.startswith(path)


def test_a_plaintext_that_is_not_a_canonical_object_is_malformed(
    make_header: HeaderFactory, node_keys: dict[tuple[str, str], DecryptionKey]
) -> None:
    """The plaintext is the payload's RFC 8785 bytes and nothing else, so that a disclosed
    plaintext has one spelling."""
    header = make_header().model_dump(mode="json", by_alias=True)
    sealed, cek = seal_payload(header, {"a": 1}, recipients(node_keys, ["RS-ARO"], KEM_XWING))
    for plaintext in (b'{ "a": 1 }', b'{"a":1,"a":1}', b"[1]", b"not json", b'{"a":1.0}'):
        nonce = b64url_decode(sealed["nonce"])
        ciphertext = AESGCM(cek).encrypt(nonce, plaintext, canonicalize(header))
        forged = {**sealed, "ciphertext": b64url_encode(ciphertext)}
        with pytest.raises(SealError) as caught:
            open_with_cek(header, forged, cek)
        assert caught.value.code == "seal.malformed"


# --- keys -------------------------------------------------------------------------------


def test_an_x_wing_key_expands_its_seed_as_the_specification_does() -> None:
    seed = bytes(range(32))
    key = DecryptionKey(KEM_XWING, seed)
    expanded = hashlib.shake_256(seed).digest(96)
    ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    x = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = ml.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    assert key.public_key == public and len(public) == 1216
    assert key.kid == hashlib.sha256(public).hexdigest()
    assert key.recipient("RS-ARO") == RecipientKey("RS-ARO", KEM_XWING, public)


def test_an_x25519_key_is_the_raw_private_key() -> None:
    secret = bytes(range(32, 64))
    key = DecryptionKey(KEM_X25519, secret)
    raw = x25519.X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    assert key.public_key == raw and key.kid == hashlib.sha256(raw).hexdigest()


def test_a_key_file_is_one_line_with_its_kem_and_mode_0600(tmp_path: Path) -> None:
    for kem in KEMS:
        key = generate_decryption_key(kem)
        path = tmp_path / f"RS-ARO.{kem}.kem.key"
        write_decryption_key(path, key)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert text == f"{kem}:{b64url_encode(key.secret)}\n"
        assert load_decryption_key(path) == key
        assert load_decryption_key(path).kid == key.kid


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"X-Wing:\n",
        b"ML-KEM:" + b64url_encode(bytes(32)).encode() + b"\n",
        b"X-Wing:" + b64url_encode(bytes(31)).encode() + b"\n",
        b"X-Wing:" + b64url_encode(bytes(32)).encode() + b"=\n",
        b"X-Wing:" + b64url_encode(bytes(32)).encode() + b"\n\n",
        b64url_encode(bytes(32)).encode() + b"\n",  # which KEM?
        "X-Wing:é".encode(),
    ],
)
def test_a_key_file_that_is_not_exactly_a_key_is_refused(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "RS-ARO.kem.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        load_decryption_key(path)


def test_a_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_decryption_key(tmp_path / "absent.kem.key")


@pytest.mark.parametrize(
    ("kem", "public_key"),
    [
        (KEM_XWING, bytes(1215)),
        (KEM_XWING, b"\xff" * 1216),  # ML-KEM coefficients out of range
        (KEM_X25519, bytes(33)),
        ("X448", bytes(56)),
    ],
)
def test_an_invalid_public_key_is_refused_when_it_is_read(kem: str, public_key: bytes) -> None:
    with pytest.raises(ValueError) as caught:
        RecipientKey("RS-ARO", kem, public_key)
    assert isinstance(caught.value, ExchangeError) and caught.value.code == "config.invalid"


def test_the_decryption_key_never_shows_in_its_repr() -> None:
    key = generate_decryption_key()
    assert key.secret.hex() not in repr(key) and b64url_encode(key.secret) not in repr(key)


def test_a_rotated_node_still_opens_what_was_sealed_to_its_old_key(
    make_header: HeaderFactory, payload: dict[str, Any]
) -> None:
    old, new = generate_decryption_key(), generate_decryption_key()
    header = make_header().model_dump(mode="json", by_alias=True)
    before, _ = seal_payload(header, payload, [old.recipient("RS-ARO")])
    after, _ = seal_payload(header, payload, [new.recipient("RS-ARO")])
    keys = keyring([new, old])
    assert open_sealed(header, before, "RS-ARO", keys)[0] == payload
    assert open_sealed(header, after, "RS-ARO", keys)[0] == payload
    with pytest.raises(SealError) as caught:
        open_sealed(header, before, "RS-ARO", keyring([new]))
    assert caught.value.code == "seal.key_unknown"


def test_sealing_refuses_no_recipient_or_one_twice(
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
) -> None:
    header = make_header().model_dump(mode="json", by_alias=True)
    twice = recipients(node_keys, ["RS-ARO", "RS-ARO"], KEM_XWING)
    for chosen in ([], twice):
        with pytest.raises(ValueError):
            seal_payload(header, payload, chosen)


def test_the_sealed_envelope_round_trips_through_its_wire_bytes(
    signer: SignerFactory,
    make_header: HeaderFactory,
    node_keys: dict[tuple[str, str], DecryptionKey],
    payload: dict[str, Any],
    policy: VerificationPolicy,
) -> None:
    envelope, _ = sealed_envelope(signer, make_header, node_keys, payload)
    raw = orjson.loads(encode_envelope(envelope))
    verified = verify_envelope(raw, policy)
    keys = keyring([node_keys["MD-ARO", KEM_XWING]])
    assert open_sealed(raw["header"], verified.sealed, "MD-ARO", keys)[0] == payload


def test_every_seal_refusal_can_be_a_receipt_reason() -> None:
    """Each seal code is answered with a negative receipt, so it must fit the receipt's
    reason pattern (which has no hyphens: hence `seal.not_for_me`, `seal.key_unknown`)."""
    codes = {code for code in ERROR_TABLE if code.startswith("seal.")}
    assert codes == {
        "seal.malformed",
        "seal.not_for_me",
        "seal.key_unknown",
        "seal.invalid",
        "seal.required",
    }
    for code in codes:
        assert code in RECEIPT_REASONS
        Receipt.model_validate(
            {
                "message_id": "9b2c6f0e-1d3a-4b5c-8d7e-0f1a2b3c4d5e",
                "digest": "0" * 64,
                "outcome": "rejected",
                "reason": code,
                "received_at": "2026-03-01T10:00:00.000Z",
            }
        )


def test_a_key_announced_in_the_directory_is_read_back_with_its_kid() -> None:
    for kem in KEMS:
        key = generate_decryption_key(kem).recipient("RS-ARO")
        entry = key.announced()
        assert entry == {"kem": kem, "public_key": b64url_encode(key.public_key), "kid": key.kid}
        assert RecipientKey.from_announced("RS-ARO", entry) == key
        unnamed = {k: entry[k] for k in ("kem", "public_key")}  # the kid is optional
        assert RecipientKey.from_announced("RS-ARO", unnamed) == key


@pytest.mark.parametrize(
    "change",
    [
        {"kid": "0" * 64},  # another key's kid
        {"kem": "X25519"},  # an X-Wing key announced as X25519
        {"public_key": "not base64url!"},
        {"public_key": None},
    ],
)
def test_an_announced_key_that_does_not_hold_is_refused(change: dict[str, Any]) -> None:
    entry = {**generate_decryption_key(KEM_XWING).recipient("RS-ARO").announced(), **change}
    with pytest.raises(ExchangeError) as caught:
        RecipientKey.from_announced("RS-ARO", entry)
    assert caught.value.code == "config.invalid"


def test_an_announced_key_without_its_kem_is_refused() -> None:
    entry = generate_decryption_key(KEM_XWING).recipient("RS-ARO").announced()
    del entry["kem"]
    with pytest.raises(ExchangeError) as caught:
        RecipientKey.from_announced("RS-ARO", entry)
    assert caught.value.code == "config.invalid"

"""Signing: the wire envelope a node produces, and what its signature covers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.exceptions import InvalidSignature

from exchange.crypto.canonical import canonicalize
from exchange.crypto.pki import kid_of, load_certificate
from exchange.crypto.signing import (
    NodeSigner,
    b64url_decode,
    b64url_encode,
    encode_envelope,
    signing_input,
)
from exchange.errors import ConfigError, ExchangeError
from exchange.model.envelope import Envelope, Header

SignerFactory = Callable[..., NodeSigner]  # the `signer` fixture
HeaderFactory = Callable[..., Header]  # the `make_header` fixture


def test_a_signed_envelope_carries_header_payload_and_an_ed25519_signature(
    signer: SignerFactory, make_header: HeaderFactory, sample_payload: dict[str, Any]
) -> None:
    al = signer("AL-ARO")
    header = make_header()

    wire = al.sign_envelope(header, sample_payload)

    assert set(wire) == {"header", "payload", "signature"}
    assert wire["header"] == header.model_dump(mode="json", by_alias=True)
    assert wire["payload"] is sample_payload
    assert wire["signature"]["alg"] == "Ed25519"
    assert wire["signature"]["kid"] == al.kid == kid_of(al.certificate)
    signed = canonicalize({"header": wire["header"], "payload": sample_payload})
    al.private_key.public_key().verify(b64url_decode(wire["signature"]["value"]), signed)
    assert Envelope.model_validate(orjson.loads(encode_envelope(wire))).header == header


def test_ed25519_signatures_are_deterministic_and_cover_every_byte(
    signer: SignerFactory, make_header: HeaderFactory, sample_payload: dict[str, Any]
) -> None:
    al, header = signer("AL-ARO"), make_header()
    first = al.sign_envelope(header, sample_payload)
    assert al.sign_envelope(header, sample_payload) == first
    changed = dict(sample_payload, reference_count=9007199254740990)
    assert al.sign_envelope(header, changed)["signature"] != first["signature"]
    signature = b64url_decode(first["signature"]["value"])
    tampered = signing_input(first["header"], changed)
    with pytest.raises(InvalidSignature):
        al.private_key.public_key().verify(signature, tampered)


def test_a_node_cannot_sign_for_another_sender(
    signer: SignerFactory, make_header: HeaderFactory
) -> None:
    with pytest.raises(ExchangeError) as caught:
        signer("RS-PPO").sign_envelope(make_header(sender="AL-ARO"), {})
    assert caught.value.code == "sender.mismatch"


def test_from_files_refuses_a_key_that_does_not_match_the_certificate(pki_dir: Path) -> None:
    with pytest.raises(ConfigError, match="does not belong"):
        NodeSigner.from_files(pki_dir / "AL-ARO.key", pki_dir / "RS-PPO.pem")
    signer = NodeSigner.from_files(pki_dir / "RS-PPO.key", pki_dir / "RS-PPO.pem")
    assert signer.node_id == "RS-PPO"
    assert signer.certificate == load_certificate(pki_dir / "RS-PPO.pem")


def test_the_signer_is_frozen_and_does_not_show_its_key(signer: SignerFactory) -> None:
    al = signer("AL-ARO")
    with pytest.raises(dataclasses.FrozenInstanceError):
        al.node_id = "RS-PPO"  # type: ignore[misc]
    assert "private" not in repr(al).lower()
    assert al.kid in repr(al)


def test_sign_bytes_is_base64url_without_padding(signer: SignerFactory) -> None:
    value = signer("AL-ARO").sign_bytes(b"checkpoint")
    assert len(value) == 86 and "=" not in value and "+" not in value and "/" not in value
    assert len(b64url_decode(value)) == 64


@pytest.mark.parametrize(
    "text",
    ["AAE=", "AAE+", "AA E", "A", "AAF", "AAE_"[:3] + "!", "ÀAE"],
)
def test_b64url_decode_accepts_one_spelling_only(text: str) -> None:
    assert b64url_encode(b"\x00\x01") == "AAE"
    assert b64url_decode("AAE") == b"\x00\x01"
    with pytest.raises(ValueError):
        b64url_decode(text)


def test_encode_envelope_is_compact_utf8_json(
    signer: SignerFactory, make_header: HeaderFactory, sample_payload: dict[str, Any]
) -> None:
    wire = signer("AL-ARO").sign_envelope(make_header(), sample_payload)
    data = encode_envelope(wire)
    assert b"\n" not in data and b": " not in data
    assert "Љубомир".encode() in data
    assert orjson.loads(data) == wire

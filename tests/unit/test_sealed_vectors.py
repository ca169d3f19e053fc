"""The committed sealed-payload vectors open as their manifest says: each recipient's key file
opens its envelope to the expected plaintext bytes, and each broken one is refused with its
code. The vectors are read as committed, never regenerated here (test_vectors.py checks that
the generator keeps them)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.crypto.canonical import canonicalize, sha256_hex
from exchange.crypto.kem import RecipientKey, keyring, load_decryption_key
from exchange.crypto.pki import kid_of, load_certificate
from exchange.crypto.sealing import open_sealed, open_with_cek, signing_input_sealed
from exchange.crypto.signing import b64url_decode
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import SealError

SEALED = Path(__file__).parents[1] / "vectors" / "sealed"
MANIFEST: dict[str, Any] = orjson.loads((SEALED / "manifest.json").read_bytes())
VERIFY_AT = datetime.fromisoformat(MANIFEST["verify_at"])


@pytest.fixture(scope="module")
def policy() -> VerificationPolicy:
    trust = TrustStore.from_files(SEALED / MANIFEST["ca"], None, [SEALED / "AL-ARO.pem"])
    return VerificationPolicy(trust=trust)


def test_the_signer_and_recipient_keys_are_those_the_manifest_names() -> None:
    assert kid_of(load_certificate(SEALED / "AL-ARO.pem")) == MANIFEST["signer"]["kid"]
    kems = set()
    for node, entry in MANIFEST["recipients"].items():
        key = load_decryption_key(SEALED / entry["key"])
        announced = orjson.loads((SEALED / f"keys/{node}.kem.json").read_bytes())
        assert announced == {k: entry[k] for k in ("node", "kem", "public_key", "kid")}
        public = RecipientKey.from_announced(node, announced)
        assert key.kem == entry["kem"] and key.public_key == public.public_key
        assert key.kid == public.kid == entry["kid"]
        kems.add(key.kem)
    assert kems == {"X-Wing", "X25519"}


@pytest.mark.parametrize("vector", MANIFEST["vectors"], ids=lambda v: v["name"])
def test_each_recipient_opens_its_vector_to_the_expected_plaintext(
    vector: dict[str, Any], policy: VerificationPolicy
) -> None:
    verified = verify_envelope((SEALED / vector["envelope"]).read_bytes(), policy, now=VERIFY_AT)
    header, sealed = verified.raw["header"], verified.sealed
    assert sealed is not None
    assert verified.digest == vector["sha256"] == sha256_hex(signing_input_sealed(header, sealed))
    key = load_decryption_key(SEALED / vector["key"])
    assert key.kem == vector["kem"]
    payload, cek = open_sealed(header, sealed, vector["node"], keyring([key]))
    plaintext = (SEALED / vector["plaintext"]).read_bytes()
    assert canonicalize(payload) == plaintext
    assert cek == b64url_decode(vector["cek"])
    assert open_with_cek(header, sealed, cek) == payload


@pytest.mark.parametrize("vector", MANIFEST["negative"], ids=lambda v: v["name"])
def test_each_broken_vector_verifies_but_is_refused_when_opened(
    vector: dict[str, Any], policy: VerificationPolicy
) -> None:
    verified = verify_envelope((SEALED / vector["envelope"]).read_bytes(), policy, now=VERIFY_AT)
    key = load_decryption_key(SEALED / vector["key"])
    with pytest.raises(SealError) as caught:
        open_sealed(verified.raw["header"], verified.sealed, vector["node"], keyring([key]))
    assert caught.value.code == vector["expect"]


def test_the_vectors_cover_both_kems_and_every_refusal_of_the_seal() -> None:
    assert {v["kem"] for v in MANIFEST["vectors"]} == {"X-Wing", "X25519"}
    assert {v["expect"] for v in MANIFEST["negative"]} == {
        "seal.invalid",
        "seal.malformed",
        "seal.not_for_me",
        "seal.key_unknown",
    }
    assert "THROWAWAY" in (SEALED / "README.md").read_text()

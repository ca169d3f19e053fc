"""The committed test vectors still hold: same canonical bytes, same signatures, same verdicts.

Partner implementations check themselves against tests/vectors/; if this code drifted from
them, they would be checking against the wrong thing.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from exchange.crypto.canonical import canonicalize, canonicalize_reference, sha256_hex
from exchange.crypto.pki import kid_of, load_certificate
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import VerificationError
from exchange.model.envelope import Header

VECTORS = Path(__file__).parents[1] / "vectors"
MANIFEST: dict[str, Any] = orjson.loads((VECTORS / "manifest.json").read_bytes())
VERIFY_AT = datetime.fromisoformat(MANIFEST["verify_at"])


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def policy() -> VerificationPolicy:
    trust = TrustStore.from_files(VECTORS / "ca.pem", None, [VECTORS / "AL-ARO.pem"])
    return VerificationPolicy(trust=trust)


def test_the_generator_reproduces_every_committed_byte() -> None:
    built: dict[str, bytes] = _generator().build()
    committed = {
        str(p.relative_to(VECTORS))
        for p in VECTORS.rglob("*")
        if p.is_file() and p.suffix in {".pem", ".key", ".json", ".canonical"}
    }
    assert set(built) == committed
    for relative, content in built.items():
        assert (VECTORS / relative).read_bytes() == content, relative


@pytest.mark.parametrize("vector", MANIFEST["vectors"], ids=lambda v: v["name"])
def test_canonical_bytes_and_digest(vector: dict[str, Any]) -> None:
    unsigned = orjson.loads((VECTORS / vector["unsigned"]).read_bytes())
    expected = (VECTORS / vector["canonical"]).read_bytes()
    doc = {"header": unsigned["header"], "payload": unsigned["payload"]}
    assert canonicalize(doc) == expected
    assert canonicalize_reference(doc) == expected
    assert sha256_hex(expected) == vector["sha256"]


@pytest.mark.parametrize("vector", MANIFEST["vectors"], ids=lambda v: v["name"])
def test_signing_again_gives_the_committed_envelope(vector: dict[str, Any]) -> None:
    signer = NodeSigner.from_files(VECTORS / "AL-ARO.key", VECTORS / "AL-ARO.pem")
    assert (
        signer.kid == MANIFEST["signer"]["kid"] == kid_of(load_certificate(VECTORS / "AL-ARO.pem"))
    )
    unsigned = orjson.loads((VECTORS / vector["unsigned"]).read_bytes())
    wire = signer.sign_envelope(Header.model_validate(unsigned["header"]), unsigned["payload"])
    assert wire["signature"]["value"] == vector["signature"]
    assert encode_envelope(wire) == (VECTORS / vector["signed"]).read_bytes()


@pytest.mark.parametrize("vector", MANIFEST["vectors"], ids=lambda v: v["name"])
def test_each_signed_vector_gets_its_verdict_at_verify_at(
    vector: dict[str, Any], policy: VerificationPolicy
) -> None:
    data = (VECTORS / vector["signed"]).read_bytes()
    if vector["expect"] == "valid":
        verified = verify_envelope(data, policy, now=VERIFY_AT)
        assert verified.digest == vector["sha256"]
        assert str(verified.envelope.header.id) == vector["id"]
    else:
        with pytest.raises(VerificationError) as caught:
            verify_envelope(data, policy, now=VERIFY_AT)
        assert caught.value.code == vector["expect"]


@pytest.mark.parametrize("vector", MANIFEST["negative"], ids=lambda v: v["name"])
def test_each_broken_vector_is_refused_with_its_code(
    vector: dict[str, Any], policy: VerificationPolicy
) -> None:
    with pytest.raises(VerificationError) as caught:
        verify_envelope((VECTORS / vector["signed"]).read_bytes(), policy, now=VERIFY_AT)
    assert caught.value.code == vector["expect"]


def test_the_vector_names_hold_what_they_promise() -> None:
    first = (VECTORS / "envelopes/01-asset-inquiry.canonical").read_bytes().decode()
    assert "Љубомир Јовановић" in first and "Arbër Çela" in first
    assert '"1250000.00"' in first and "9007199254740991" in first
    tricky = orjson.loads(
        (VECTORS / "envelopes/03-escapes-numbers-ordering.canonical").read_bytes()
    )
    assert list(tricky["payload"]["keys_by_utf16"]) == [
        "\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"
    ]  # fmt: skip
    assert "THROWAWAY" in (VECTORS / "README.md").read_text()

"""Sealed payloads interoperate with an independent implementation: hpke-js (`@hpke/core`,
`@hpke/hybridkem-x-wing`, `@hpke/dhkem-x25519`) in Node, driven through
tests/interop/sealing.mjs. It derives the same public keys from the key files, opens what we
seal and the committed vectors, and we open what it seals.

The packages are installed by `.ci/setup test` (`npm ci` in tests/interop)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.crypto.canonical import canonicalize
from exchange.crypto.kem import (
    KEM_X25519,
    KEM_XWING,
    DecryptionKey,
    generate_decryption_key,
    keyring,
)
from exchange.crypto.sealing import (
    open_sealed,
    open_with_cek,
    seal_and_sign,
    seal_payload,
    sign_sealed,
)
from exchange.crypto.signing import NodeSigner, b64url_decode, b64url_encode, encode_envelope
from exchange.crypto.verify import VerificationPolicy, verify_envelope
from exchange.model.envelope import Header
from tests.http_helpers import example_payload

INTEROP = Path(__file__).parents[1] / "interop"
SEALED_VECTORS = Path(__file__).parents[1] / "vectors" / "sealed"
NODES = {"RS-PPO": KEM_XWING, "ME-ARO": KEM_XWING, "MD-ARO": KEM_X25519}

SignerFactory = Callable[..., NodeSigner]
HeaderFactory = Callable[..., Header]


def hpke_js(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the requests through the JavaScript implementation; its results, in order."""
    node = shutil.which("node")
    installed = INTEROP / "node_modules" / "@hpke" / "hybridkem-x-wing"
    if node is None or not installed.is_dir():
        pytest.fail("Node.js and tests/interop/node_modules are needed: run .ci/setup test")
    done = subprocess.run(
        [node, str(INTEROP / "sealing.mjs")],
        input=orjson.dumps({"requests": requests}),
        capture_output=True,
        cwd=INTEROP,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    results: list[dict[str, Any]] = orjson.loads(done.stdout)["results"]
    assert len(results) == len(requests)
    return results


def key_line(key: DecryptionKey) -> str:
    return f"{key.kem}:{b64url_encode(key.secret)}"


@pytest.fixture(scope="module")
def keys() -> dict[str, DecryptionKey]:
    return {node: generate_decryption_key(kem) for node, kem in NODES.items()}


def test_both_derive_the_same_public_key_from_a_key_file(keys: dict[str, DecryptionKey]) -> None:
    fixed = [DecryptionKey(KEM_XWING, bytes(32)), DecryptionKey(KEM_X25519, b"\x01" * 32)]
    chosen = [*keys.values(), *fixed]
    results = hpke_js([{"op": "public", "key": key_line(key)} for key in chosen])
    for key, result in zip(chosen, results, strict=True):
        assert result == {
            "kem": key.kem,
            "public_key": b64url_encode(key.public_key),
            "kid": key.kid,
        }


def test_it_opens_what_we_seal_to_x_wing_and_x25519_members(
    keys: dict[str, DecryptionKey],
    signer: SignerFactory,
    make_header: HeaderFactory,
    policy: VerificationPolicy,
) -> None:
    payload = example_payload("asset-inquiry")
    header = make_header(recipients=list(NODES))
    envelope, _, cek = seal_and_sign(
        signer("AL-ARO"), header, payload, [keys[n].recipient(n) for n in NODES]
    )
    verified = verify_envelope(encode_envelope(envelope), policy)
    requests = [
        {
            "op": "open",
            "header": verified.raw["header"],
            "sealed": verified.sealed,
            "node": node,
            "key": key_line(keys[node]),
        }
        for node in NODES
    ]
    for result in hpke_js(requests):
        assert "error" not in result, result
        assert b64url_decode(result["plaintext"]) == canonicalize(payload)
        assert b64url_decode(result["cek"]) == cek


def test_it_refuses_what_does_not_open(
    keys: dict[str, DecryptionKey], make_header: HeaderFactory
) -> None:
    """The independent side fails where ours does: a changed header (the AAD), another
    node's entry, a wrong commitment. Its refusals are not mere noise."""
    header = make_header(recipients=["RS-PPO"]).model_dump(mode="json", by_alias=True)
    sealed, _ = seal_payload(header, {"q": "1"}, [keys["RS-PPO"].recipient("RS-PPO")])
    line = key_line(keys["RS-PPO"])
    other_commitment = {**sealed, "commitment": b64url_encode(bytes(32))}
    requests = [
        {"op": "open", "header": header, "sealed": sealed, "node": "RS-PPO", "key": line},
        {"op": "open", "header": {**header, "priority": "normal"}, "sealed": sealed,
         "node": "RS-PPO", "key": line},
        {"op": "open", "header": header, "sealed": sealed, "node": "MD-ARO",
         "key": key_line(keys["MD-ARO"])},
        {"op": "open", "header": header, "sealed": other_commitment, "node": "RS-PPO",
         "key": line},
    ]  # fmt: skip
    opened, changed, not_for_me, wrong = hpke_js(requests)
    assert b64url_decode(opened["plaintext"]) == b'{"q":"1"}'
    assert changed["error"].startswith("aes-gcm")
    assert not_for_me == {"error": "not-for-me"}
    assert wrong == {"error": "commitment"}


def test_we_open_what_it_seals(
    keys: dict[str, DecryptionKey],
    signer: SignerFactory,
    make_header: HeaderFactory,
    policy: VerificationPolicy,
) -> None:
    payload = example_payload("freeze-notice")
    header = make_header(
        recipients=list(NODES), type="freeze-notice", schema="freeze-notice/1"
    ).model_dump(mode="json", by_alias=True)
    recipients = [
        {"node": n, "kem": keys[n].kem, "public_key": b64url_encode(keys[n].public_key)}
        for n in NODES
    ]
    request = {"op": "seal", "header": header, "payload": payload, "recipients": recipients}
    (result,) = hpke_js([request])
    envelope, _ = sign_sealed(signer("AL-ARO"), header, result["sealed"])
    verified = verify_envelope(encode_envelope(envelope), policy)
    assert [r["kid"] for r in result["sealed"]["recipients"]] == [keys[n].kid for n in NODES]
    cek = b64url_decode(result["cek"])
    for node in NODES:
        opened = open_sealed(verified.raw["header"], verified.sealed, node, keyring([keys[node]]))
        assert opened == (payload, cek)
    assert open_with_cek(header, result["sealed"], cek) == payload


def test_it_opens_every_committed_vector() -> None:
    manifest = orjson.loads((SEALED_VECTORS / "manifest.json").read_bytes())
    vectors = manifest["vectors"] + manifest["negative"]
    requests = []
    for vector in vectors:
        envelope = orjson.loads((SEALED_VECTORS / vector["envelope"]).read_bytes())
        line = (SEALED_VECTORS / vector["key"]).read_text().strip()
        requests.append(
            {
                "op": "open",
                "header": envelope["header"],
                "sealed": envelope["sealed"],
                "node": vector["node"],
                "key": line,
            }
        )
    for vector, result in zip(vectors, hpke_js(requests), strict=True):
        if vector["expect"] == "valid":
            assert "error" not in result, (vector["name"], result)
            plaintext = (SEALED_VECTORS / vector["plaintext"]).read_bytes()
            assert b64url_decode(result["plaintext"]) == plaintext, vector["name"]
            assert result["cek"] == vector["cek"]
        else:
            assert "error" in result and "plaintext" not in result, vector["name"]

"""Generate the sealed-payload test vectors in this folder. THROWAWAY TEST KEYS ONLY.

Keys come from fixed seeds, headers and payloads are fixed, Ed25519 is deterministic; HPKE
is not (each seal draws a fresh ephemeral key, the CEK and the nonce are random), so a
payload cannot be sealed twice to the same bytes. The sealed envelopes that open (01..03)
are therefore kept as committed for as long as they still hold: same header and recipient
keys, the sender's signature, and each recipient opens the expected plaintext. Only a
missing one, or one that no longer holds, is sealed anew. The broken ones (9N) are made
from those, deterministically.

    .venv/bin/python tests/vectors/sealed/make_vectors.py           # write every vector file
    .venv/bin/python tests/vectors/sealed/make_vectors.py --check   # exit 1 if one would change

(Both run tests/vectors/generate.py, which writes the signature vectors and these.)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from exchange.crypto.canonical import canonicalize, sha256_hex
from exchange.crypto.kem import KEM_X25519, KEM_XWING, DecryptionKey, keyring
from exchange.crypto.sealing import (
    commitment_of,
    open_sealed,
    parse_sealed,
    seal_payload,
    sign_sealed,
    signing_input_sealed,
)
from exchange.crypto.signing import NodeSigner, b64url_encode, encode_envelope
from exchange.errors import SealError
from exchange.model.common import format_utc
from exchange.model.envelope import Header

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[2] / "schemas" / "examples"
CREATED_AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
VERIFY_AT = datetime(2026, 3, 1, 10, 1, tzinfo=UTC)
RECIPIENT_KEMS = {"RS-PPO": KEM_XWING, "ME-ARO": KEM_XWING, "MD-ARO": KEM_X25519}


def decryption_key(node: str) -> DecryptionKey:
    seed = hashlib.sha256(f"xb test vectors / throwaway / kem / {node}".encode()).digest()
    return DecryptionKey(RECIPIENT_KEMS[node], seed)


def pretty(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def example(message_type: str, name: str) -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads(
        (EXAMPLES / message_type / "valid" / f"{name}.json").read_bytes()
    )
    return payload


def sealed_messages() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, header, payload) of each envelope that opens."""

    def header(**fields: Any) -> dict[str, Any]:
        values: dict[str, Any] = {"sender": "AL-ARO", "case": "AL-2026-0042"}
        values.update(created_at=CREATED_AT, priority="urgent")
        values.update(handling={"tlp": "AMBER", "code": "H2"})
        values.update(fields)
        return Header.model_validate(values).model_dump(mode="json", by_alias=True)

    inquiry = example("asset-inquiry", "me-to-al-yacht-car-account")
    return [
        (
            "01-x-wing",
            header(
                id="c0a80101-5ea1-4d1e-9a53-000000000001",
                type="asset-inquiry",
                schema="asset-inquiry/1",
                recipients=["RS-PPO"],
            ),
            inquiry,
        ),
        (
            "02-x25519",
            header(
                id="c0a80101-5ea1-4d1e-9a53-000000000002",
                type="asset-inquiry",
                schema="asset-inquiry/1",
                recipients=["MD-ARO"],
            ),
            inquiry,
        ),
        (
            "03-three-recipients-mixed",
            header(
                id="c0a80101-5ea1-4d1e-9a53-000000000003",
                type="freeze-notice",
                schema="freeze-notice/1",
                recipients=["RS-PPO", "ME-ARO", "MD-ARO"],
                handling={"tlp": "RED", "code": "H3"},
            ),
            example("freeze-notice", "al-to-rs-urgent-accounts-apartment"),
        ),
    ]


def build(signer: NodeSigner, identity: dict[str, bytes], folder: Path) -> dict[str, bytes]:
    """Every file of this folder: relative path -> exact bytes. `identity` holds the test
    network's ca.pem and the signer's certificate and key; `folder` the committed files."""
    files = dict(identity)
    recipients: dict[str, dict[str, Any]] = {}
    for node in RECIPIENT_KEMS:
        key = decryption_key(node)
        files[f"keys/{node}.kem.key"] = f"{key.kem}:{b64url_encode(key.secret)}\n".encode()
        announced = {
            "node": node,
            "kem": key.kem,
            "public_key": b64url_encode(key.public_key),
            "kid": key.kid,
        }
        files[f"keys/{node}.kem.json"] = pretty(announced)
        recipients[node] = {**announced, "key": f"keys/{node}.kem.key"}
    vectors: list[dict[str, Any]] = []
    genuine: dict[str, dict[str, Any]] = {}
    for name, header, payload in sealed_messages():
        path = f"envelopes/{name}.json"
        plaintext = canonicalize(payload)
        files[f"payloads/{name}.canonical"] = plaintext
        nodes = list(header["recipients"])
        kept = _kept(folder / path, header, nodes, plaintext, signer)
        envelope, cek = kept or _seal(header, payload, nodes, signer)
        files[path] = encode_envelope(envelope)
        genuine[name] = envelope
        digest = sha256_hex(signing_input_sealed(envelope["header"], envelope["sealed"]))
        for node in nodes:
            vectors.append(
                {
                    "name": f"{name}/{node}",
                    "envelope": path,
                    "sha256": digest,
                    "node": node,
                    "kem": RECIPIENT_KEMS[node],
                    "key": recipients[node]["key"],
                    "plaintext": f"payloads/{name}.canonical",
                    "cek": b64url_encode(cek),
                    "expect": "valid",
                }
            )
    negative = []
    for name, source, node, key_of, change, code in _broken():
        envelope = orjson.loads(encode_envelope(genuine[source]))
        if change is None:
            path = f"envelopes/{source}.json"
        else:
            change(envelope)
            path = f"envelopes/{name}.json"
            files[path] = encode_envelope(
                sign_sealed(signer, envelope["header"], envelope["sealed"])[0]
            )
        negative.append(
            {
                "name": name,
                "envelope": path,
                "node": node,
                "kem": RECIPIENT_KEMS[key_of],
                "key": recipients[key_of]["key"],
                "expect": code,
            }
        )
    files["manifest.json"] = pretty(
        {
            "about": "Sealed-payload test vectors: HPKE (X-Wing, X25519) sealing of a content "
            "key, AES-256-GCM, key commitment, signed sealed envelopes. Generated by "
            "make_vectors.py; THROWAWAY TEST KEYS, never for real use.",
            "network": "xb-test-vectors",
            "ca": "ca.pem",
            "signer": {
                "node": signer.node_id,
                "certificate": f"{signer.node_id}.pem",
                "private_key": f"{signer.node_id}.key",
                "kid": signer.kid,
                "throwaway": True,
            },
            "verify_at": format_utc(VERIFY_AT),
            "max_skew_seconds": 300,
            "recipients": recipients,
            "vectors": vectors,
            "negative": negative,
        }
    )
    return files


Change = Callable[[dict[str, Any]], None] | None


def _broken() -> list[tuple[str, str, str, str, Change, str]]:
    """(name, the genuine vector it is made from, the node that opens it, the node whose key
    it uses, the change, the code). A changed envelope is signed again by the sender, so that
    only the seal's own checks refuse it; with no change, the genuine envelope is used."""

    def wrong_commitment(env: dict[str, Any]) -> None:
        env["sealed"]["commitment"] = b64url_encode(commitment_of(bytes(32)))

    def swap_enc(env: dict[str, Any]) -> None:
        first, second = env["sealed"]["recipients"][:2]  # RS-PPO and ME-ARO, both X-Wing
        first["enc"], second["enc"] = second["enc"], first["enc"]

    def unknown_kem(env: dict[str, Any]) -> None:
        env["sealed"]["recipients"][0]["kem"] = "MLKEM1024-P384"

    def other_header(env: dict[str, Any]) -> None:
        env["header"]["priority"] = "normal"

    def truncate(env: dict[str, Any]) -> None:
        env["sealed"]["ciphertext"] = env["sealed"]["ciphertext"][:-4]

    rs, md, me = "RS-PPO", "MD-ARO", "ME-ARO"
    return [
        ("90-wrong-commitment", "01-x-wing", rs, rs, wrong_commitment, "seal.invalid"),
        ("91-enc-swapped", "03-three-recipients-mixed", rs, rs, swap_enc, "seal.invalid"),
        ("92-unknown-kem", "01-x-wing", rs, rs, unknown_kem, "seal.malformed"),
        ("93-header-changed", "02-x25519", md, md, other_header, "seal.invalid"),
        ("94-replayed-to-another-node", "01-x-wing", md, md, None, "seal.not_for_me"),
        ("95-truncated-ciphertext", "02-x25519", md, md, truncate, "seal.invalid"),
        ("96-another-nodes-key", "01-x-wing", rs, me, None, "seal.key_unknown"),
    ]


def _seal(
    header: dict[str, Any], payload: dict[str, Any], nodes: list[str], signer: NodeSigner
) -> tuple[dict[str, Any], bytes]:
    keys = [decryption_key(node).recipient(node) for node in nodes]
    sealed, cek = seal_payload(header, payload, keys)
    return sign_sealed(signer, header, sealed)[0], cek


def _kept(
    path: Path, header: dict[str, Any], nodes: list[str], plaintext: bytes, signer: NodeSigner
) -> tuple[dict[str, Any], bytes] | None:
    """The committed envelope and its CEK, if it still holds; else None."""
    try:
        data = path.read_bytes()
        envelope = orjson.loads(data)
    except (OSError, ValueError):
        return None
    if encode_envelope(envelope) != data or envelope.get("header") != header:
        return None
    sealed = envelope.get("sealed")
    if envelope != sign_sealed(signer, header, sealed)[0]:
        return None  # another signature, or more than header, sealed and signature
    expected = [(n, decryption_key(n).kid, decryption_key(n).kem) for n in nodes]
    ceks = set()
    try:
        if [(r.node, r.kid, r.kem) for r in parse_sealed(sealed).recipients] != expected:
            return None
        for node in nodes:
            payload, cek = open_sealed(header, sealed, node, keyring([decryption_key(node)]))
            if canonicalize(payload) != plaintext:
                return None
            ceks.add(cek)
    except SealError:
        return None
    return (envelope, ceks.pop()) if len(ceks) == 1 else None


if __name__ == "__main__":
    generator = HERE.parent / "generate.py"
    sys.exit(subprocess.call([sys.executable, str(generator), *sys.argv[1:]]))

"""Generate the signature test vectors in this folder. Every byte is reproducible.

Keys come from fixed seeds, certificates from fixed serials and dates, and Ed25519 is
deterministic, so running this twice writes the same files. THROWAWAY TEST KEYS ONLY.
It writes the sealed-payload vectors in sealed/ too (sealed/make_vectors.py), whose
randomized envelopes are kept while they still hold.

    .venv/bin/python tests/vectors/generate.py           # write the files
    .venv/bin/python tests/vectors/generate.py --check   # exit 1 if a file would change
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.crypto.canonical import sha256_hex
from exchange.crypto.pki import create_ca, create_node_certificate
from exchange.crypto.signing import NodeSigner, encode_envelope, signing_input
from exchange.model.common import format_utc
from exchange.model.envelope import Header, UnsignedEnvelope

HERE = Path(__file__).resolve().parent
NETWORK = "xb-test-vectors"
SIGNER_NODE = "AL-ARO"
NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2046, 1, 1, tzinfo=UTC)
CREATED_AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
VERIFY_AT = CREATED_AT + timedelta(minutes=1)
MAX_SKEW = timedelta(minutes=5)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def seeded_key(label: str) -> Ed25519PrivateKey:
    seed = hashlib.sha256(f"xb test vectors / throwaway / {label}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def pretty(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def header(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sender": SIGNER_NODE,
        "case": "AL-2026-0042",
        "created_at": CREATED_AT,
        "priority": "urgent",
    }
    values.update(fields)
    return Header.model_validate(values).model_dump(mode="json", by_alias=True)


def unsigned_envelopes() -> list[tuple[str, dict[str, Any]]]:
    inquiry_id = "5b0f3e2c-7a7d-4c1e-9a53-1f2d3c4b5a61"
    inquiry = {
        "header": header(
            id=inquiry_id,
            type="asset-inquiry",
            schema="asset-inquiry/1",
            recipients=["RS-PPO", "MD-ARO"],
            handling={"tlp": "AMBER", "code": "H2"},
        ),
        "payload": {
            "subject": {
                "name": "Љубомир Јовановић",
                "name_latin": "Ljubomir Jovanović",
                "aliases": ["Arbër Çela"],
                "born": "1971-04-12",
                "nationality": ["RS", "AL"],
            },
            "assets": [
                {
                    "kind": "bank-account",
                    "iban": "AL47212110090000000235698741",
                    "holder": "Arbër Çela",
                    "balance": {"amount": "1250000.00", "currency": "EUR"},
                },
                {
                    "kind": "real-estate",
                    "address": "Rruga e Durrësit 12, Tiranë",
                    "shares": [1, 2],
                },
            ],
            "question": "Who holds the accounts, and what moved above 10000.00 EUR since "
            "2024-01-01?",
            "max_results": 9007199254740991,
            "min_results": -9007199254740991,
            "includes_closed": False,
            "previous_request": None,
        },
    }
    freeze = {
        "header": header(
            id="a3c1e9d4-2b6f-4f0a-8d17-6e5c4b3a2910",
            type="freeze-notice",
            schema="freeze-notice/1",
            recipients=["RS-PPO"],
            in_reply_to=inquiry_id,
            expires_at=CREATED_AT + timedelta(days=7),
            priority="normal",
            handling={"tlp": "RED", "code": "H3"},
        ),
        "payload": {
            "order": {
                "court": "Gjykata e Posaçme e Shkallës së Parë për Korrupsionin dhe Krimin "
                "e Organizuar",
                "number": "SPAK-2026/118",
                "issued_on": "2026-02-27",
            },
            "subject": {"name": "Ëndrit Shkëmbi", "birthplace": "Gjirokastër"},
            "items": [
                {
                    "kind": "vehicle",
                    "vin": "WVWZZZ1JZXW000001",
                    "value": {"amount": "38500.00", "currency": "EUR"},
                },
                {
                    "kind": "bank-account",
                    "iban": "RS35260005601001611379",
                    "value": {"amount": "1250000.00", "currency": "RSD"},
                },
            ],
            "legal_basis": ["Regulation (EU) 2018/1805, Article 4"],
        },
    }
    tricky = {
        "header": header(
            id="0f9e8d7c-6b5a-4493-8271-605f4e3d2c1b",
            type="case-update",
            schema="case-update/1",
            recipients=["MD-ARO", "RS-PPO"],
            priority="normal",
            handling={"tlp": "GREEN", "code": "H0"},
        ),
        "payload": {
            "summary": 'Line one\nLine two\ttab "quoted" back\\slash /slash '
            "\x00\x1f\x7f \u2028\u2029 😀",
            # RFC 8785 section 3.2.3: sorted by UTF-16 code units, so U+1F600 (D83D DE00)
            # comes before U+FB33, although its code point is larger.
            "keys_by_utf16": {
                "\u20ac": "Euro Sign",
                "\r": "Carriage Return",
                "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One",
                "\U0001f600": "Emoji: Grinning Face",
                "\u0080": "Control",
                "\u00f6": "Latin Small Letter O With Diaeresis",
            },
            "case_sensitive": {"b": 1, "B": 2, "a": 3, "A": 4, "\u00e9": 5, "e": 6},
            "numbers": [0, -1, 333333333.3333333, 1e30, 4.5, 0.002, 1e-27],
            "empty": {"object": {}, "array": [], "string": ""},
            "nested": [[[{"deep": [True, False, None]}]]],
        },
    }
    expiring = {
        "header": header(
            id="7d6c5b4a-3928-4716-a504-f3e2d1c0b9a8",
            type="asset-inquiry",
            schema="asset-inquiry/1",
            recipients=["MD-ARO"],
            created_at=CREATED_AT - timedelta(seconds=30),
            expires_at=CREATED_AT + timedelta(seconds=30),
            handling={"tlp": "AMBER+STRICT", "code": "H1"},
        ),
        "payload": {"subject": {"name": "Arbër Çela"}},
    }
    return [
        ("01-asset-inquiry", inquiry),
        ("02-freeze-notice", freeze),
        ("03-escapes-numbers-ordering", tricky),
        ("04-expires-before-verify-at", expiring),
    ]


def identity() -> tuple[NodeSigner, dict[str, bytes]]:
    """The signer AL-ARO, and the files of the test network: CA, certificate, private key."""
    ca_key, ca = create_ca(
        NETWORK,
        key=seeded_key("network CA"),
        serial=0x7E57_0000_0000_0001,
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
    )
    node_key, node_cert = create_node_certificate(
        ca_key,
        ca,
        SIGNER_NODE,
        key=seeded_key(SIGNER_NODE),
        serial=0x7E57_0000_0000_0002,
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
    )
    signer = NodeSigner.from_key_and_certificate(node_key, node_cert)
    pem = serialization.Encoding.PEM
    return signer, {
        "ca.pem": ca.public_bytes(pem),
        f"{SIGNER_NODE}.pem": node_cert.public_bytes(pem),
        f"{SIGNER_NODE}.key": node_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def build() -> dict[str, bytes]:
    """Every file of the vector set: relative path -> exact bytes; the sealed-payload
    vectors in `sealed/` too (see sealed/make_vectors.py)."""
    signer, files = identity()
    files.update({f"sealed/{name}": data for name, data in sealed_vectors(signer, files).items()})
    vectors: list[dict[str, Any]] = []
    signed: dict[str, bytes] = {}
    for name, doc in unsigned_envelopes():
        envelope = UnsignedEnvelope.model_validate(doc)
        canonical = signing_input(doc["header"], doc["payload"])
        wire = signer.sign_envelope(envelope.header, doc["payload"])
        signed[name] = encode_envelope(wire)
        files[f"envelopes/{name}.unsigned.json"] = pretty(doc)
        files[f"envelopes/{name}.canonical"] = canonical
        files[f"envelopes/{name}.signed.json"] = signed[name]
        expires_at = envelope.header.expires_at
        vectors.append(
            {
                "name": name,
                "id": doc["header"]["id"],
                "unsigned": f"envelopes/{name}.unsigned.json",
                "canonical": f"envelopes/{name}.canonical",
                "signed": f"envelopes/{name}.signed.json",
                "sha256": sha256_hex(canonical),
                "signature": wire["signature"]["value"],
                "expect": "message.expired"
                if expires_at is not None and expires_at < VERIFY_AT
                else "valid",
            }
        )
    negatives = _negative_vectors(signed["01-asset-inquiry"])
    for name, (data, _) in negatives.items():
        files[f"envelopes/{name}.signed.json"] = data
    files["manifest.json"] = pretty(
        {
            "about": "Signature test vectors: RFC 8785 canonical form, Ed25519, certificates. "
            "Generated by generate.py; THROWAWAY TEST KEYS, never for real use.",
            "network": NETWORK,
            "ca": "ca.pem",
            "signer": {
                "node": SIGNER_NODE,
                "certificate": f"{SIGNER_NODE}.pem",
                "private_key": f"{SIGNER_NODE}.key",
                "kid": signer.kid,
                "throwaway": True,
            },
            "verify_at": format_utc(VERIFY_AT),
            "max_skew_seconds": int(MAX_SKEW.total_seconds()),
            "vectors": vectors,
            "negative": [
                {"name": name, "signed": f"envelopes/{name}.signed.json", "expect": code}
                for name, (_, code) in negatives.items()
            ],
        }
    )
    return files


def sealed_vectors(signer: NodeSigner, identity_files: dict[str, bytes]) -> dict[str, bytes]:
    spec = importlib.util.spec_from_file_location("sealed_vectors", HERE / "sealed/make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built: dict[str, bytes] = module.build(signer, identity_files, HERE / "sealed")
    return built


def _negative_vectors(genuine: bytes) -> dict[str, tuple[bytes, str]]:
    """Copies of the first signed vector, each broken in one way, with the expected code."""
    wire = orjson.loads(genuine)
    value = wire["signature"]["value"]
    respelled = value[:-1] + B64URL[B64URL.index(value[-1]) | 1]
    unknown_kid = hashlib.sha256(b"no such certificate").hexdigest()
    return {
        "90-tampered-payload": (genuine.replace(b"1250000.00", b"1250001.00"), "signature.invalid"),
        "91-non-canonical-base64url": (
            genuine.replace(value.encode(), respelled.encode()),
            "signature.invalid",
        ),
        "92-repeated-member-name": (
            genuine.replace(
                b'"case":"AL-2026-0042"', b'"case":"AL-2026-0042","case":"AL-2026-0043"'
            ),
            "envelope.malformed",
        ),
        "93-sender-not-the-certificate": (
            genuine.replace(b'"sender":"AL-ARO"', b'"sender":"KZ-ARC"'),
            "sender.mismatch",
        ),
        "94-unknown-kid": (
            genuine.replace(wire["signature"]["kid"].encode(), unknown_kid.encode()),
            "cert.unknown",
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) the test vectors.")
    parser.add_argument("--check", action="store_true", help="exit 1 if any file would change")
    args = parser.parse_args()
    stale = []
    for relative, content in build().items():
        path = HERE / relative
        if path.exists() and path.read_bytes() == content:
            continue
        stale.append(relative)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    verb = "differ" if args.check else "written"
    print(f"{len(stale)} file(s) {verb}" + ("".join(f"\n  {p}" for p in stale)))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

"""Sign and verify a 2 KB envelope through the full paths, against raw Ed25519.

Signing path: NodeSigner.sign_envelope (header dump, RFC 8785 canonical form, Ed25519).
Verification path: verify_envelope (size, parse, repeated-name check, envelope model, CA
chain (cached per kid), validity, CRL, sender, canonical form, Ed25519, expiry, skew).
Baselines: Ed25519 sign/verify of the same canonical bytes, measured in the same run.

Run: .venv/bin/python bench/sign_verify.py [--rounds N]
Writes bench/results/sign_verify.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.crypto.canonical import canonicalize, canonicalize_reference
from exchange.crypto.pki import init_network
from exchange.crypto.signing import NodeSigner, b64url_decode, encode_envelope, signing_input
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.model.envelope import Header

RESULTS = Path(__file__).parent / "results" / "sign_verify.json"
GOALS = {"sign path": 0.6, "verify path": 0.8}


def envelope_parts(now: datetime) -> tuple[Header, dict[str, Any]]:
    header = Header.model_validate(
        {
            "id": str(uuid.uuid4()),
            "type": "asset-inquiry",
            "schema": "asset-inquiry/1",
            "sender": "AL-ARO",
            "recipients": ["RS-PPO", "MD-ARO"],
            "case": "AL-2026-0042",
            "created_at": now,
            "priority": "urgent",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    payload: dict[str, Any] = {
        "subject": {
            "name": "Љубомир Јовановић",
            "aliases": ["Arbër Çela", "Ljubomir Jovanović"],
            "born": "1971-04-12",
            "nationality": ["RS", "AL"],
        },
        "legal_basis": "Council Decision 2007/845/JHA, Article 2",
        "assets": [
            {
                "kind": "bank-account",
                "iban": f"AL4721211009000000023569874{i}",
                "holder": "Arbër Çela",
                "amount": "1250000.00",
                "currency": "EUR",
                "opened": f"2019-03-0{1 + i % 9}",
            }
            for i in range(10)
        ],
        "request": "Please confirm the holders and balances of the accounts listed, "
        "and any transfers above 10000.00 EUR since 2024-01-01.",
    }
    return header, payload


def measure(cases: dict[str, tuple[Callable[[], object], int]], rounds: int) -> dict[str, float]:
    """Seconds per call of each case: the best of `rounds` runs. Rounds interleave the
    cases, so a burst of other work on the machine cannot favour one case over another."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, (fn, number) in cases.items():
            best[name] = min(best[name], timeit.timeit(fn, number=number) / number)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--number", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        init_network(tmp, "bench-net", ["AL-ARO", "RS-PPO", "MD-ARO"])
        signer = NodeSigner.from_files(f"{tmp}/AL-ARO.key", f"{tmp}/AL-ARO.pem")
        trust = TrustStore.from_directory(tmp)
    policy = VerificationPolicy(trust=trust)
    now = datetime.now(UTC)
    header, payload = envelope_parts(now)
    wire = signer.sign_envelope(header, payload)
    data = encode_envelope(wire)
    signed = signing_input(wire["header"], wire["payload"])
    signature = b64url_decode(wire["signature"]["value"])
    public_key = signer.private_key.public_key()
    verify_envelope(data, policy, now=now)  # it must pass before it is timed

    n, r = args.number, args.rounds
    cases: dict[str, tuple[Callable[[], object], int]] = {
        "raw sign": (lambda: signer.private_key.sign(signed), n),
        "sign path": (lambda: signer.sign_envelope(header, payload), n),
        "sign path + wire bytes": (
            lambda: encode_envelope(signer.sign_envelope(header, payload)),
            n,
        ),
        "raw verify": (lambda: public_key.verify(signature, signed), n),
        "verify path": (lambda: verify_envelope(data, policy, now=now), n),
        "canonicalize (reference)": (
            lambda: canonicalize_reference({"header": wire["header"], "payload": payload}),
            max(n // 10, 10),
        ),
        "canonicalize": (lambda: canonicalize({"header": wire["header"], "payload": payload}), n),
    }
    seconds = measure(cases, r)
    baseline = {
        "raw sign": "raw sign",
        "sign path": "raw sign",
        "sign path + wire bytes": "raw sign",
        "raw verify": "raw verify",
        "verify path": "raw verify",
        "canonicalize (reference)": "canonicalize (reference)",
        "canonicalize": "canonicalize (reference)",
    }
    rows = []
    print(f"envelope: {len(data)} bytes on the wire, {len(signed)} canonical bytes signed")
    print(f"{'case':<26}{'µs/op':>10}{'ops/s':>10}{'× baseline speed':>18}{'goal':>7}")
    for name, secs in seconds.items():
        ratio = seconds[baseline[name]] / secs
        goal = GOALS.get(name)
        mark = "" if goal is None else (f"≥{goal}" + (" ok" if ratio >= goal else " MISS"))
        print(f"{name:<26}{secs * 1e6:>10.1f}{1 / secs:>10.0f}{ratio:>18.2f}  {mark}")
        rows.append(
            {
                "case": name,
                "us_per_op": round(secs * 1e6, 2),
                "ops_per_s": round(1 / secs),
                "baseline": baseline[name],
                "ratio": round(ratio, 3),
                "goal": goal,
            }
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "sign_verify",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "wire_bytes": len(data),
                "signed_bytes": len(signed),
                "rounds": r,
                "number": n,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

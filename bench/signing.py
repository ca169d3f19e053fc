"""Envelope signing through a PKCS#11 token (SoftHSM2) against the software key, one run.

Both signers sign the same 2 KB envelope through `NodeSigner.sign_envelope` (header dump,
RFC 8785 canonical form, Ed25519): one with its key in memory, the other with its key
generated in a SoftHSM2 token and enrolled by request (`CKM_EDDSA` through the PKCS#11
module). Raw Ed25519 signatures of the canonical bytes are timed for both as well. Rounds
interleave the cases, and each case keeps its best round.

Run: .venv/bin/python bench/signing.py [--rounds N] [--number N] [--module PATH]
Needs softhsm2-util (Debian package softhsm2). Writes bench/results/signing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sign_verify import envelope_parts, measure

from exchange.crypto.enroll import sign_request, write_request
from exchange.crypto.pkcs11_key import generate_token_key
from exchange.crypto.pki import init_network
from exchange.crypto.signing import NodeSigner, encode_envelope, signing_input
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope

RESULTS = Path(__file__).parent / "results" / "signing.json"
MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
PIN = "4711-0815"


def token_signer(work: Path, module: Path, ca_dir: Path) -> NodeSigner:
    """A token in `work`, a key generated in it for KZ-ARC, enrolled at `ca_dir`."""
    conf = work / "softhsm2.conf"
    (work / "tokens").mkdir()
    conf.write_text(f"directories.tokendir = {work / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    util = shutil.which("softhsm2-util") or "softhsm2-util"
    subprocess.run(
        [util, "--init-token", "--free", "--label", "bench", "--so-pin", "0000", "--pin", PIN],
        check=True,
        capture_output=True,
    )
    pin = work / "pin"
    pin.write_text(PIN)
    uri = "pkcs11:token=bench;object=KZ-ARC"
    with generate_token_key(module, uri, pin) as key:
        request = write_request(work, "KZ-ARC", key)
    cert = sign_request(ca_dir, request, "KZ-ARC")
    return NodeSigner.from_token(module, uri, pin, cert)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=500)
    parser.add_argument("--module", type=Path, help="the PKCS#11 module (default: SoftHSM2)")
    args = parser.parse_args()
    module = args.module or next((Path(m) for m in MODULES if Path(m).exists()), None)
    if module is None:
        print("SoftHSM2 not found: apt-get install softhsm2, or give --module", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        init_network(work / "ca", "bench-net", ["AL-ARO", "RS-PPO"])
        software = NodeSigner.from_files(work / "ca" / "AL-ARO.key", work / "ca" / "AL-ARO.pem")
        token = token_signer(work, module, work / "ca")
        policy = VerificationPolicy(trust=TrustStore.from_directory(work / "ca"))
        try:
            now = datetime.now(UTC)
            header, payload = envelope_parts(now)
            token_header = header.model_copy(update={"sender": "KZ-ARC"})
            wire = software.sign_envelope(header, payload)
            signed = signing_input(wire["header"], wire["payload"])
            # Both must verify before they are timed.
            verify_envelope(encode_envelope(wire), policy, now=now)
            verify_envelope(encode_envelope(token.sign_envelope(token_header, payload)), policy)
            n = args.number
            cases: dict[str, tuple[Callable[[], object], int]] = {
                "software: raw sign": (lambda: software.private_key.sign(signed), n),
                "token: raw sign": (lambda: token.private_key.sign(signed), n),
                "software: envelope": (lambda: software.sign_envelope(header, payload), n),
                "token: envelope": (lambda: token.sign_envelope(token_header, payload), n),
            }
            seconds = measure(cases, args.rounds)
        finally:
            token.close()

    rows = []
    print(f"envelope: {len(signed)} canonical bytes signed; module {module}")
    print(f"{'case':<22}{'µs/op':>10}{'signs/s':>10}{'× software':>12}")
    for name, secs in seconds.items():
        software_case = "software: " + name.split(": ", 1)[1]
        ratio = seconds[software_case] / secs
        print(f"{name:<22}{secs * 1e6:>10.1f}{1 / secs:>10.0f}{ratio:>12.2f}")
        rows.append(
            {
                "case": name,
                "us_per_op": round(secs * 1e6, 2),
                "ops_per_s": round(1 / secs),
                "baseline": software_case,
                "ratio": round(ratio, 3),
            }
        )
    envelope_ratio = seconds["software: envelope"] / seconds["token: envelope"]
    print(f"token envelope signs/s over software envelope signs/s: {envelope_ratio:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "signing",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "module": str(module),
                "signed_bytes": len(signed),
                "rounds": args.rounds,
                "number": args.number,
                "envelope_ratio": round(envelope_ratio, 3),
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

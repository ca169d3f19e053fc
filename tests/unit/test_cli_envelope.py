"""`exchange pki` and `exchange envelope` as an operator uses them: exit codes and messages."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.cli import main
from exchange.model.common import format_utc, utc_now

VECTORS = Path(__file__).parents[1] / "vectors"
EXCHANGE = Path(sys.executable).with_name("exchange")


def exchange_command() -> list[str]:
    if EXCHANGE.exists():
        return [str(EXCHANGE)]
    return [sys.executable, "-c", "import sys; from exchange.cli import main; sys.exit(main())"]


def unsigned(sender: str = "AL-ARO", **header: Any) -> bytes:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "asset-inquiry",
        "schema": "asset-inquiry/1",
        "sender": sender,
        "recipients": ["RS-PPO", "MD-ARO"],
        "case": "AL-2026-0042",
        "created_at": format_utc(utc_now()),
        "priority": "urgent",
        "handling": {"tlp": "AMBER", "code": "H2"},
    }
    values.update(header)
    payload = {"subject": {"name": "Љубомир Јовановић", "alias": "Arbër Çela"}, "n": 1}
    return orjson.dumps({"header": values, "payload": payload})


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> Any:
    """Run `exchange ARGS` in this process with `stdin`; returns (exit code, stdout, stderr)."""

    def invoke(args: list[str], stdin: bytes = b"") -> tuple[int, bytes, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsysbinary.readouterr()
        return code, out, err.decode()

    return invoke


def test_the_shell_flow_init_sign_verify_and_a_tampered_copy(tmp_path: Path) -> None:
    net = tmp_path / "network"
    cmd = exchange_command()

    init = subprocess.run(
        [*cmd, "pki", "init", str(net), "--network", "see-arn", "--nodes", "AL-ARO,RS-PPO,MD-ARO"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    assert (net / "ca.pem").exists() and (net / "MD-ARO.key").exists()

    signed = subprocess.run(
        [*cmd, "envelope", "sign", "--key", net / "AL-ARO.key", "--cert", net / "AL-ARO.pem"],
        input=unsigned(),
        capture_output=True,
        timeout=60,
    )
    assert signed.returncode == 0, signed.stderr
    verify = [*cmd, "envelope", "verify", "--ca", f"{net}/ca.pem", "--crl", f"{net}/crl.pem"]
    verify += ["--cert", f"{net}/AL-ARO.pem", "--cert", f"{net}/RS-PPO.pem"]

    ok = subprocess.run(verify, input=signed.stdout, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert b"asset-inquiry AL-ARO -> RS-PPO,MD-ARO case AL-2026-0042" in ok.stdout

    tampered = signed.stdout.replace("Јовановић".encode(), "Јованович".encode())
    bad = subprocess.run(verify, input=tampered, capture_output=True, timeout=60)
    assert bad.returncode == 1
    assert b"signature.invalid" in bad.stderr


def test_sign_refuses_input_that_is_not_an_unsigned_envelope(pki_dir: Path, run: Any) -> None:
    sign = ["envelope", "sign", "--key", pki_dir / "AL-ARO.key", "--cert", pki_dir / "AL-ARO.pem"]
    code, out, err = run(sign, b"{not json")
    assert (code, out) == (2, b"") and "envelope.malformed" in err

    code, out, err = run(sign, unsigned(case="no dots.allowed"))
    assert (code, out) == (2, b"") and "/header/case" in err

    code, out, err = run(sign, unsigned(sender="RS-PPO", recipients=["MD-ARO"]))
    assert (code, out) == (2, b"") and "signs for AL-ARO" in err

    code, _, err = run([*sign[:3], pki_dir / "RS-PPO.key", *sign[4:]], unsigned())
    assert code == 2 and "does not belong" in err


def test_verify_reports_each_refusal_with_its_code(
    fresh_pki_dir: Path, foreign_pki_dir: Path, run: Any
) -> None:
    net = fresh_pki_dir
    key_cert = ["--key", net / "AL-ARO.key", "--cert", net / "AL-ARO.pem"]
    code, signed, _ = run(["envelope", "sign", *key_cert], unsigned())
    assert code == 0
    verify = ["envelope", "verify", "--ca", net / "ca.pem", "--crl", net / "crl.pem"]

    code, out, err = run([*verify, "--cert", net / "AL-ARO.pem"], signed)
    assert code == 0 and out.startswith(b"valid ")

    code, _, err = run(verify, signed)
    assert code == 1 and err.startswith("cert.unknown")

    code, _, err = run([*verify, "--cert", foreign_pki_dir / "AL-ARO.pem"], signed)
    assert code == 1 and err.startswith("cert.untrusted")

    code, _, err = run([*verify, "--cert", net / "AL-ARO.pem"], b'{"header": 1}')
    assert code == 1 and err.startswith("envelope.malformed")  # a verdict on the envelope

    code, out, _ = run(["pki", "revoke", net, "AL-ARO"])
    assert code == 0 and b"revoked AL-ARO certificate" in out
    code, _, err = run([*verify, "--cert", net / "AL-ARO.pem"], signed)
    assert code == 1 and err.startswith("cert.revoked")


def test_verify_an_archived_envelope_as_of_its_time(run: Any) -> None:
    manifest = orjson.loads((VECTORS / "manifest.json").read_bytes())
    vector = manifest["vectors"][0]
    data = (VECTORS / vector["signed"]).read_bytes()
    verify = ["envelope", "verify", "--ca", VECTORS / "ca.pem", "--cert", VECTORS / "AL-ARO.pem"]

    code, _, err = run(verify, data)
    assert code == 1 and err.startswith("clock.skew")

    code, out, err = run([*verify, "--now", manifest["verify_at"]], data)
    assert code == 0, err
    assert vector["id"].encode() in out

    code, _, err = run([*verify, "--now", "2026-03-01T10:00:00"], data)
    assert code == 2 and "offset" in err
    code, _, err = run([*verify, "--max-skew", "-5"], data)
    assert code == 2


def test_pki_issue_rotates_and_init_refuses_an_existing_network(
    fresh_pki_dir: Path, run: Any
) -> None:
    code, out, _ = run(["pki", "issue", fresh_pki_dir, "AL-ARO", "--days", "30"])
    assert code == 0 and b"AL-ARO" in out and b"1 earlier kept" in out

    code, _, err = run(["pki", "init", fresh_pki_dir, "--network", "x", "--nodes", "KZ-ARC"])
    assert code == 2 and "already holds a network CA" in err

    code, out, _ = run(["pki", "crl", fresh_pki_dir, "--days", "10"])
    assert code == 0 and b"CRL re-signed" in out

    code, _, err = run(["pki", "issue", fresh_pki_dir, "al-aro"])
    assert code == 2 and "not a node id" in err


@pytest.mark.parametrize(
    "document",
    [b'{"header": 1}', b"[1, 2]", b'"an envelope"', b'{"header": {}, "payload": {}, "x": 1}'],
)
def test_verify_judges_json_that_is_no_envelope_malformed_with_exit_1(
    pki_dir: Path, run: Any, document: bytes
) -> None:
    verify = ["envelope", "verify", "--ca", pki_dir / "ca.pem", "--cert", pki_dir / "AL-ARO.pem"]
    code, out, err = run(verify, document)
    assert (code, out) == (1, b"") and err.startswith("envelope.malformed")


@pytest.mark.parametrize("unreadable", [b"", b"{not json", b"\xff\xfe", b'{"header": '])
def test_verify_calls_input_that_is_not_json_bad_usage_with_exit_2(
    pki_dir: Path, run: Any, unreadable: bytes
) -> None:
    verify = ["envelope", "verify", "--ca", pki_dir / "ca.pem", "--cert", pki_dir / "AL-ARO.pem"]
    code, out, err = run(verify, unreadable)
    assert (code, out) == (2, b"") and "not JSON" in err

"""Signing keys in a PKCS#11 token (SoftHSM2): generated there, enrolled by request, used by
a gateway, never read out.

Each test gets its own token directory: SOFTHSM2_CONF points to a configuration in the
test's tmp_path, and the module is initialized afresh once the previous test's keys closed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from http_helpers import submission
from networks import DemoNetworks
from pkcs11 import Attribute, ObjectClass

from exchange.cli import main
from exchange.config import NodeConfig
from exchange.crypto import pkcs11_key
from exchange.crypto.pkcs11_key import TokenError, generate_token_key, open_token_key
from exchange.crypto.pki import init_network, kid_of, load_certificate
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import ConfigError
from exchange.gateway.app import load_identity
from exchange.model.common import utc_now
from exchange.model.envelope import Header

pytestmark = pytest.mark.integration

MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
)
LABEL = "xb-node"
PIN = "4711-0815"


@dataclass(frozen=True)
class Token:
    module: Path
    pin_file: Path
    label: str = LABEL

    def uri(self, name: str) -> str:
        return f"pkcs11:token={self.label};object={name}"


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Token:
    """An initialized SoftHSM2 token of this test only, its user PIN in a file (0600)."""
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if m.exists()), None)
    if util is None or module is None:
        pytest.fail("SoftHSM2 is missing: .ci/setup installs the Debian package softhsm2")
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(
        [util, "--init-token", "--free", "--label", LABEL, "--so-pin", "0000", "--pin", PIN],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    return Token(module, pin_file)


@pytest.fixture(autouse=True)
def _every_key_let_go() -> object:
    yield
    # A key left open would keep the module on the previous test's token directory.
    assert not pkcs11_key._MODULES._logins, "a token key was not closed"


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    init_network(tmp_path / "ca", "test-net", ["AL-ARO", "RS-PPO"])
    return tmp_path / "ca"


def _enroll_in_token(token: Token, ca_dir: Path, node_dir: Path, node: str, name: str) -> Path:
    """`exchange pki request --key-uri ...` on the node, `sign-request` at the CA."""
    request = [
        "pki",
        "request",
        str(node_dir),
        "--node",
        node,
        "--key-uri",
        token.uri(name),
        "--pkcs11-module",
        str(token.module),
        "--pin-file",
        str(token.pin_file),
    ]
    assert main(request) == 0
    csr = node_dir / f"{node}.csr"
    assert main(["pki", "sign-request", str(ca_dir), str(csr), "--node", node]) == 0
    return ca_dir / f"{node}.pem"


def _header(sender: str) -> Header:
    return Header.model_validate(
        {
            "id": "0b7f2c1e-7d5a-4f0e-9a51-3f1c2d4e5f60",
            "type": "asset-inquiry",
            "schema": "asset-inquiry/1",
            "sender": sender,
            "recipients": ["AL-ARO"],
            "case": "AL-2026-0042",
            "created_at": utc_now(),
            "priority": "urgent",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )


def test_a_key_made_in_the_token_is_enrolled_and_signs_envelopes_that_verify(
    token: Token, ca_dir: Path, tmp_path: Path
) -> None:
    node_dir = tmp_path / "kz"
    cert_path = _enroll_in_token(token, ca_dir, node_dir, "KZ-ARC", "KZ-ARC-2026")
    assert sorted(p.name for p in node_dir.iterdir()) == ["KZ-ARC.csr"]  # no key file

    signer = NodeSigner.from_token(
        token.module, token.uri("KZ-ARC-2026"), token.pin_file, cert_path
    )
    try:
        assert signer.node_id == "KZ-ARC" and signer.kid == kid_of(load_certificate(cert_path))
        envelope = encode_envelope(signer.sign_envelope(_header("KZ-ARC"), {"q": 1}))
    finally:
        signer.close()
    verified = verify_envelope(
        envelope, VerificationPolicy(trust=TrustStore.from_directory(ca_dir))
    )
    assert verified.signer == load_certificate(cert_path)


def test_the_private_key_cannot_be_read_out_of_the_token(token: Token, tmp_path: Path) -> None:
    with generate_token_key(token.module, token.uri("KZ-ARC"), token.pin_file):
        pass
    lib = pkcs11.lib(str(token.module.resolve()))
    try:
        with lib.get_token(token_label=LABEL).open(user_pin=PIN) as session:
            (private,) = session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "KZ-ARC"}
            )
            assert private[Attribute.SENSITIVE] and not private[Attribute.EXTRACTABLE]
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                private[Attribute.VALUE]
    finally:
        lib.finalize()


def test_a_wrong_pin_is_refused(token: Token, ca_dir: Path, tmp_path: Path) -> None:
    cert_path = _enroll_in_token(token, ca_dir, tmp_path / "kz", "KZ-ARC", "KZ-ARC")
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("0000-0000\n")
    with pytest.raises(TokenError, match="refused the PIN") as err:
        NodeSigner.from_token(token.module, token.uri("KZ-ARC"), wrong, cert_path)
    assert err.value.code == "pkcs11.pin"
    empty = tmp_path / "empty-pin"
    empty.write_text("")
    with pytest.raises(TokenError, match="is empty") as err:
        NodeSigner.from_token(token.module, token.uri("KZ-ARC"), empty, cert_path)
    assert err.value.code == "pkcs11.pin"


def test_a_token_key_that_is_not_the_certificates_is_refused(
    token: Token, ca_dir: Path, tmp_path: Path
) -> None:
    _enroll_in_token(token, ca_dir, tmp_path / "kz", "KZ-ARC", "KZ-ARC")
    # RS-PPO's certificate with KZ-ARC's token key: the token's key would sign in its name.
    with pytest.raises(ConfigError, match="does not belong to the certificate") as err:
        NodeSigner.from_token(
            token.module, token.uri("KZ-ARC"), token.pin_file, ca_dir / "RS-PPO.pem"
        )
    assert err.value.code == "key.mismatch"


def test_a_public_key_object_planted_beside_the_private_key_is_refused(token: Token) -> None:
    # Swap the ids of two keys' public halves: each private key now stands beside the other's
    # public key, which a certificate check alone would trust.
    for name in ("KZ-ARC", "RS-PPO"):
        with generate_token_key(token.module, token.uri(name), token.pin_file):
            pass
    lib = pkcs11.lib(str(token.module.resolve()))
    try:
        with lib.get_token(token_label=LABEL).open(rw=True, user_pin=PIN) as session:
            a, b = (
                next(
                    session.get_objects(
                        {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: n}
                    )
                )
                for n in ("KZ-ARC", "RS-PPO")
            )
            id_a, id_b = a[Attribute.ID], b[Attribute.ID]
            a[Attribute.ID], b[Attribute.ID] = id_b, id_a
    finally:
        lib.finalize()
    with pytest.raises(TokenError, match="mismatched") as err:
        open_token_key(token.module, token.uri("KZ-ARC"), token.pin_file)
    assert err.value.code == "pkcs11.key"


@pytest.mark.parametrize(
    ("uri", "code", "why"),
    [
        ("pkcs11:token=nobody;object=KZ-ARC", "pkcs11.token", "no token labelled"),
        (f"pkcs11:token={LABEL};object=MISSING", "pkcs11.key", "holds no PRIVATE_KEY"),
        (f"pkcs11:token={LABEL};object=KZ-ARC?pin-value={PIN}", "pkcs11.uri", "query"),
        (f"pkcs11:token={LABEL};slot-id=0;object=KZ-ARC", "pkcs11.uri", "slot-id=0"),
        ("pkcs11:object=KZ-ARC", "pkcs11.uri", "must name the token"),
        ("file:KZ-ARC.key", "pkcs11.uri", "not a pkcs11: URI"),
    ],
    ids=["no-token", "no-key", "pin-in-uri", "unknown-attribute", "no-token-name", "scheme"],
)
def test_a_key_uri_that_finds_no_single_key_is_refused(
    token: Token, uri: str, code: str, why: str
) -> None:
    with generate_token_key(token.module, token.uri("KZ-ARC"), token.pin_file):
        pass
    with pytest.raises(TokenError, match=why) as err:
        open_token_key(token.module, uri, token.pin_file)
    assert err.value.code == code


def test_a_key_in_the_token_is_never_replaced(token: Token) -> None:
    with generate_token_key(token.module, token.uri("KZ-ARC"), token.pin_file) as first:
        public = first.public_key()
        with pytest.raises(TokenError, match="already holds") as err:
            generate_token_key(token.module, token.uri("KZ-ARC"), token.pin_file)
        assert err.value.code == "pkcs11.key"
    with open_token_key(token.module, token.uri("KZ-ARC"), token.pin_file) as again:
        assert again.public_key() == public


async def test_a_gateway_signs_with_its_token_key_end_to_end(
    token: Token, demo_networks: DemoNetworks
) -> None:
    layout = demo_networks.layout(["AL-ARO", "RS-PPO"])
    pki = layout.directory / "pki"
    node_dir = layout.directory / "al-aro-token"
    # AL-ARO moves its signing key into the token: a rotation, enrolled by request.
    request = [
        *("pki", "request", str(node_dir), "--node", "AL-ARO", "--rotate"),
        *("--key-uri", token.uri("AL-ARO-2"), "--pkcs11-module", str(token.module)),
        *("--pin-file", str(token.pin_file)),
    ]
    assert main(request) == 0
    csr = node_dir / "AL-ARO.next.csr"
    assert main(["pki", "sign-request", str(pki), str(csr), "--node", "AL-ARO", "--rotate"]) == 0
    # The secretariat signs the directory again, with AL-ARO's new certificate beside the old.
    build = ["directory", "build", "--ca-dir", str(pki), "--members", str(layout.members_file)]
    assert main([*build, "--out", str(layout.directory_file)]) == 0
    config_path = layout.nodes["AL-ARO"].config_path
    toml = config_path.read_text()
    key_line = next(line for line in toml.splitlines() if line.startswith("key_path"))
    config_path.write_text(
        toml.replace(
            key_line,
            f'key_uri = "{token.uri("AL-ARO-2")}"\n'
            f'pkcs11_module = "{token.module}"\npkcs11_pin_path = "{token.pin_file}"',
        )
    )
    (pki / "AL-ARO.key").unlink()  # the old key is gone: only the token can sign now

    async with demo_networks.running(layout) as net:
        status, sent = await net.call("AL-ARO", "POST", "/v1/messages", submission())
        assert status == 202, sent
        assert (await net.wait_settled("AL-ARO", sent["id"])).status == "delivered"
        status, view = await net.call("AL-ARO", "GET", f"/v1/messages/{sent['id']}")
    assert view["envelope"]["signature"]["kid"] == kid_of(load_certificate(pki / "AL-ARO.pem"))


def test_a_gateway_with_a_wrong_pin_does_not_start(
    token: Token, ca_dir: Path, tmp_path: Path
) -> None:
    cert_path = _enroll_in_token(token, ca_dir, tmp_path / "kz", "KZ-ARC", "KZ-ARC")
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("1234\n")
    config = NodeConfig.from_mapping(
        {
            "node_id": "KZ-ARC",
            "network": "test-net",
            "data_dir": str(tmp_path / "data"),
            "key_uri": token.uri("KZ-ARC"),
            "pkcs11_module": str(token.module),
            "pkcs11_pin_path": str(wrong),
            "cert_path": str(cert_path),
            "ca_path": str(ca_dir / "ca.pem"),
            "crl_path": str(ca_dir / "crl.pem"),
        }
    )
    with pytest.raises(TokenError) as err:
        load_identity(config)
    assert err.value.code == "pkcs11.pin"
    signer, trust = load_identity(config.model_copy(update={"pkcs11_pin_path": token.pin_file}))
    try:
        assert signer.node_id == "KZ-ARC" and trust.ca == load_certificate(ca_dir / "ca.pem")
    finally:
        signer.close()

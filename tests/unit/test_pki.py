"""The network PKI: what `init_network`, `issue_node_certificate` and `revoke_node` write."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.crypto.pki import (
    create_ca,
    init_network,
    issue_node_certificate,
    kid_of,
    load_certificate,
    load_crl,
    load_private_key,
    network_of,
    node_certificate_paths,
    node_id_of,
    refresh_crl,
    revoke_node,
)
from exchange.errors import ConfigError, ExchangeError, VerificationError

TEST_NETWORK = "test-net"  # as made by the `pki_dir` fixture
TEST_NODES = ("AL-ARO", "RS-PPO", "MD-ARO")
_E = TypeVar("_E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E]:
    return cert.extensions.get_extension_for_class(kind)


def test_init_writes_ca_node_keys_and_an_empty_crl(pki_dir: Path) -> None:
    names = {p.name for p in pki_dir.iterdir()}
    assert names == {"ca.pem", "ca.key", "crl.pem"} | {
        f"{n}.{ext}" for n in TEST_NODES for ext in ("pem", "key")
    }
    for key in pki_dir.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    crl = load_crl(pki_dir / "crl.pem")
    assert len(crl) == 0
    assert crl.is_signature_valid(load_private_key(pki_dir / "ca.key").public_key())


def test_the_ca_is_a_self_signed_ed25519_ca_named_after_the_network(pki_dir: Path) -> None:
    ca = load_certificate(pki_dir / "ca.pem")
    ca.verify_directly_issued_by(ca)
    assert ca.signature_algorithm_oid.dotted_string == "1.3.101.112"  # Ed25519
    assert network_of(ca) == TEST_NETWORK
    constraints = _ext(ca, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = _ext(ca, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature


def test_node_certificates_name_their_node_and_may_only_sign(pki_dir: Path) -> None:
    ca = load_certificate(pki_dir / "ca.pem")
    for node in TEST_NODES:
        cert = load_certificate(pki_dir / f"{node}.pem")
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
            TEST_NETWORK
        )
        san = _ext(cert, x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:xb:node:{node}"]
        assert node_id_of(cert) == node
        assert not _ext(cert, x509.BasicConstraints).value.ca
        usage = _ext(cert, x509.KeyUsage).value
        assert usage.digital_signature and not usage.key_cert_sign
        assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert timedelta(days=729) < lifetime <= timedelta(days=731)
        assert cert.not_valid_before_utc <= datetime.now(UTC)
        key = load_private_key(pki_dir / f"{node}.key")
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        assert key.public_key().public_bytes(*raw) == cert.public_key().public_bytes(*raw)


def test_serials_are_random_and_kids_are_the_der_sha256(pki_dir: Path) -> None:
    certs = [load_certificate(pki_dir / f"{n}.pem") for n in TEST_NODES]
    assert len({c.serial_number for c in certs}) == len(certs)
    assert all(c.serial_number.bit_length() > 64 for c in certs)
    cert = certs[0]
    digest = hashes.Hash(hashes.SHA256())
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    assert kid_of(cert) == digest.finalize().hex()


def test_init_refuses_to_replace_an_existing_ca(fresh_pki_dir: Path) -> None:
    before = (fresh_pki_dir / "ca.key").read_bytes()
    with pytest.raises(ExchangeError, match="already holds a network CA"):
        init_network(fresh_pki_dir, TEST_NETWORK, ["KZ-ARC"])
    assert (fresh_pki_dir / "ca.key").read_bytes() == before
    assert not (fresh_pki_dir / "KZ-ARC.pem").exists()


def test_init_refuses_to_overwrite_a_node_key(tmp_path: Path) -> None:
    (tmp_path / "AL-ARO.key").write_text("a key someone still needs")
    with pytest.raises(ExchangeError, match="refusing to replace"):
        init_network(tmp_path, TEST_NETWORK, ["AL-ARO"])
    assert (tmp_path / "AL-ARO.key").read_text() == "a key someone still needs"
    assert not (tmp_path / "ca.pem").exists()


@pytest.mark.parametrize(
    ("network", "nodes"),
    [
        ("test-net", ["al-aro"]),
        ("test-net", ["AL.ARO"]),
        ("test-net", ["AL-ARO", "AL-ARO"]),
        ("Test Net", ["AL-ARO"]),
    ],
)
def test_init_refuses_bad_names(tmp_path: Path, network: str, nodes: list[str]) -> None:
    with pytest.raises(ExchangeError) as caught:
        init_network(tmp_path / "net", network, nodes)
    assert caught.value.code == "usage"
    assert not (tmp_path / "net" / "ca.pem").exists()


def test_issue_rotates_the_key_and_archives_the_previous_pair(fresh_pki_dir: Path) -> None:
    old_cert = load_certificate(fresh_pki_dir / "AL-ARO.pem")
    old_key_pem = (fresh_pki_dir / "AL-ARO.key").read_bytes()

    path = issue_node_certificate(fresh_pki_dir, "AL-ARO")

    assert path == fresh_pki_dir / "AL-ARO.pem"
    new_cert = load_certificate(path)
    assert new_cert.serial_number != old_cert.serial_number
    assert node_id_of(new_cert) == "AL-ARO"
    assert (fresh_pki_dir / "AL-ARO.key").read_bytes() != old_key_pem
    archived_cert = fresh_pki_dir / f"AL-ARO.{old_cert.serial_number:x}.pem"
    archived_key = fresh_pki_dir / f"AL-ARO.{old_cert.serial_number:x}.key"
    assert load_certificate(archived_cert) == old_cert
    assert archived_key.read_bytes() == old_key_pem
    assert stat.S_IMODE(archived_key.stat().st_mode) == 0o600
    assert stat.S_IMODE((fresh_pki_dir / "AL-ARO.key").stat().st_mode) == 0o600
    assert node_certificate_paths(fresh_pki_dir, "AL-ARO") == [
        fresh_pki_dir / "AL-ARO.pem",
        archived_cert,
    ]
    assert not list(fresh_pki_dir.glob(".*"))  # no staging files left behind


def test_issue_can_add_a_new_node_to_the_network(fresh_pki_dir: Path) -> None:
    path = issue_node_certificate(fresh_pki_dir, "KZ-ARC", validity=timedelta(days=30))
    cert = load_certificate(path)
    assert node_id_of(cert) == "KZ-ARC"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30)


def test_revoke_lists_every_certificate_of_the_node_in_a_ca_signed_crl(
    fresh_pki_dir: Path,
) -> None:
    first = load_certificate(fresh_pki_dir / "RS-PPO.pem").serial_number
    second = load_certificate(issue_node_certificate(fresh_pki_dir, "RS-PPO")).serial_number

    assert sorted(revoke_node(fresh_pki_dir, "RS-PPO")) == sorted([first, second])

    crl = load_crl(fresh_pki_dir / "crl.pem")
    ca = load_certificate(fresh_pki_dir / "ca.pem")
    assert crl.is_signature_valid(load_private_key(fresh_pki_dir / "ca.key").public_key())
    assert crl.issuer == ca.subject
    assert {r.serial_number for r in crl} == {first, second}
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert crl.next_update_utc is not None and crl.next_update_utc > datetime.now(UTC)
    other = load_certificate(fresh_pki_dir / "AL-ARO.pem").serial_number
    assert crl.get_revoked_certificate_by_serial_number(other) is None


def test_revoke_one_serial_keeps_the_others_and_earlier_entries(fresh_pki_dir: Path) -> None:
    old = load_certificate(fresh_pki_dir / "AL-ARO.pem").serial_number
    new = load_certificate(issue_node_certificate(fresh_pki_dir, "AL-ARO")).serial_number
    md = load_certificate(fresh_pki_dir / "MD-ARO.pem").serial_number
    revoke_node(fresh_pki_dir, "MD-ARO")

    assert revoke_node(fresh_pki_dir, "AL-ARO", serial=old) == [old]

    revoked = {r.serial_number for r in load_crl(fresh_pki_dir / "crl.pem")}
    assert revoked == {old, md}
    assert new not in revoked
    assert revoke_node(fresh_pki_dir, "AL-ARO", serial=old) == []  # already listed
    with pytest.raises(ExchangeError, match="no certificate"):
        revoke_node(fresh_pki_dir, "AL-ARO", serial=md)
    with pytest.raises(ExchangeError, match="no certificate of node KZ-ARC"):
        revoke_node(fresh_pki_dir, "KZ-ARC")


def test_refresh_crl_keeps_entries_and_moves_next_update(fresh_pki_dir: Path) -> None:
    revoke_node(fresh_pki_dir, "MD-ARO")
    before = load_crl(fresh_pki_dir / "crl.pem")
    crl = refresh_crl(fresh_pki_dir, validity=timedelta(days=7))
    assert {r.serial_number for r in crl} == {r.serial_number for r in before}
    assert crl.next_update_utc is not None and crl.last_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=7)
    assert load_crl(fresh_pki_dir / "crl.pem") == crl


def test_node_id_of_refuses_certificates_that_name_no_node(pki_dir: Path) -> None:
    with pytest.raises(VerificationError) as caught:
        node_id_of(load_certificate(pki_dir / "ca.pem"))
    assert caught.value.code == "cert.untrusted"
    _, ca = create_ca("other")
    with pytest.raises(VerificationError):
        node_id_of(ca)


def test_loaders_turn_bad_files_into_config_errors(tmp_path: Path, pki_dir: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_certificate(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError):
        load_certificate(garbage)
    with pytest.raises(ConfigError):
        load_crl(pki_dir / "ca.pem")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_private_key(pki_dir / "ca.pem")
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        load_private_key(ec_key)

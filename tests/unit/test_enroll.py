"""Enrollment by request: a node makes its key, the CA certifies the request, no key moves.

Each refusal of `sign_request` is an attack that fails with its own code and leaves the CA's
directory as it was; a rotation keeps the old certificate valid beside the new one.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from exchange.cli import main
from exchange.crypto.csr import check_request, create_request, load_request, node_names
from exchange.crypto.enroll import install_certificate, request_key, sign_request
from exchange.crypto.pki import (
    create_ca,
    create_node_certificate,
    init_network,
    kid_of,
    load_certificate,
    load_private_key,
    node_id_of,
    revoke_node,
    role_of,
)
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import ConfigError, ExchangeError, VerificationError
from tests.unit.conftest import HeaderFactory

PEM = serialization.Encoding.PEM


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _write(path: Path, request: x509.CertificateSigningRequest) -> Path:
    path.write_bytes(request.public_bytes(PEM))
    return path


def _built(
    key: Any, subject: x509.Name, names: list[x509.GeneralName] | None = None, **extra: Any
) -> x509.CertificateSigningRequest:
    """A request made with `cryptography`'s builder, as any other tool would make one."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for extension in extra.get("extensions", ()):
        builder = builder.add_extension(extension, critical=True)
    edwards = isinstance(key, Ed25519PrivateKey | Ed448PrivateKey)
    return builder.sign(key, None if edwards else hashes.SHA256())


def _cn(node: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)])


def _uri(node: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(f"urn:xb:node:{node}")


def _verify(signer: NodeSigner, trust: TrustStore, make_header: HeaderFactory) -> Any:
    header = make_header(sender=signer.node_id, recipients=["AL-ARO"])
    envelope = encode_envelope(signer.sign_envelope(header, {"q": 1}))
    return verify_envelope(envelope, VerificationPolicy(trust=trust))


# --- the round trip -----------------------------------------------------------------------


def test_a_node_requests_the_ca_signs_and_the_key_never_leaves_the_node(
    fresh_pki_dir: Path, tmp_path: Path, make_header: HeaderFactory
) -> None:
    node_dir = tmp_path / "kz"
    key_path, request_path = request_key(node_dir, "KZ-ARC")
    assert (key_path, request_path) == (node_dir / "KZ-ARC.key", node_dir / "KZ-ARC.csr")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    request = load_request(request_path.read_bytes())
    assert request.subject.rfc4514_string() == "CN=KZ-ARC"
    assert check_request(request, "KZ-ARC") == load_private_key(key_path).public_key()

    cert_path = sign_request(fresh_pki_dir, request_path, "KZ-ARC", out=node_dir / "issued.pem")
    assert cert_path == fresh_pki_dir / "KZ-ARC.pem"
    assert (node_dir / "issued.pem").read_bytes() == cert_path.read_bytes()
    assert not list(fresh_pki_dir.glob("KZ-ARC*.key"))  # the CA never held the key
    cert = load_certificate(cert_path)
    assert node_id_of(cert) == "KZ-ARC" and role_of(cert) == "authority"

    signer = NodeSigner.from_files(key_path, cert_path)
    verified = _verify(signer, TrustStore.from_directory(fresh_pki_dir), make_header)
    assert verified.signer == cert


def test_a_signed_request_has_the_profile_of_every_node_certificate(
    fresh_pki_dir: Path, tmp_path: Path
) -> None:
    _, request_path = request_key(tmp_path, "KZ-ARC")
    enrolled = load_certificate(sign_request(fresh_pki_dir, request_path, "KZ-ARC"))
    made = load_certificate(fresh_pki_dir / "AL-ARO.pem")  # by init, through the same steps

    def profile(cert: x509.Certificate) -> list[tuple[str, bool, Any]]:
        out = []
        for ext in cert.extensions:
            value: Any = ext.value
            if isinstance(value, x509.SubjectAlternativeName):
                value = [type(n).__name__ for n in value]
            elif isinstance(value, x509.SubjectKeyIdentifier | x509.AuthorityKeyIdentifier):
                value = type(value).__name__
            out.append((ext.oid.dotted_string, ext.critical, value))
        return out

    assert profile(enrolled) == profile(made)
    assert enrolled.issuer == made.issuer
    assert enrolled.subject.rfc4514_string() == "CN=KZ-ARC,O=test-net"
    assert enrolled.not_valid_after_utc - enrolled.not_valid_before_utc == (
        made.not_valid_after_utc - made.not_valid_before_utc
    )


def test_the_request_is_the_very_request_a_standard_builder_makes() -> None:
    # Ed25519 is deterministic: the hand-built DER must equal cryptography's, byte for byte.
    key = Ed25519PrivateKey.generate()
    subject, san = node_names("AL-ARO")
    standard = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(san, critical=False)
        .sign(key, None)
    )
    assert create_request(key, "AL-ARO").public_bytes(PEM) == standard.public_bytes(PEM)


def test_init_leaves_no_request_behind_and_certifies_each_nodes_own_key(tmp_path: Path) -> None:
    init_network(tmp_path, "test-net", ["AL-ARO", "RS-PPO"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "AL-ARO.key",
        "AL-ARO.pem",
        "RS-PPO.key",
        "RS-PPO.pem",
        "ca.key",
        "ca.pem",
        "crl.pem",
    ]
    for node in ("AL-ARO", "RS-PPO"):
        NodeSigner.from_files(tmp_path / f"{node}.key", tmp_path / f"{node}.pem")


def test_a_private_sector_member_gets_its_role_in_the_certificate_and_keeps_it_on_rotation(
    fresh_pki_dir: Path, tmp_path: Path
) -> None:
    _, first = request_key(tmp_path, "VA-COIN")
    cert = load_certificate(sign_request(fresh_pki_dir, first, "VA-COIN", role="private-sector"))
    assert role_of(cert) == "private-sector"
    assert cert.subject.rfc4514_string() == "CN=VA-COIN,OU=private-sector,O=test-net"
    _, second = request_key(tmp_path, "VA-COIN", rotate=True)
    rotated = load_certificate(sign_request(fresh_pki_dir, second, "VA-COIN", rotate=True))
    assert role_of(rotated) == "private-sector"


def test_a_certificate_without_a_role_is_an_authoritys_and_an_unknown_role_is_refused() -> None:
    ca_key, ca = create_ca("test-net")
    _, plain = create_node_certificate(ca_key, ca, "AL-ARO")
    assert role_of(plain) == "authority"
    _, odd = create_node_certificate(ca_key, ca, "AL-ARO")
    builder = x509.CertificateBuilder(
        subject_name=x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "prosecutor-general"),
                x509.NameAttribute(NameOID.COMMON_NAME, "AL-ARO"),
            ]
        ),
        issuer_name=ca.subject,
        public_key=odd.public_key(),
        serial_number=odd.serial_number,
        not_valid_before=odd.not_valid_before_utc,
        not_valid_after=odd.not_valid_after_utc,
        extensions=list(odd.extensions),
    )
    with pytest.raises(VerificationError) as err:
        role_of(builder.sign(ca_key, None))
    assert err.value.code == "cert.untrusted" and "names no role" in err.value.detail
    with pytest.raises(ExchangeError, match="not a role"):
        create_node_certificate(ca_key, ca, "AL-ARO", role="secretariat")


# --- attacks on the CA: each request is refused and nothing is written ----------------------


def _refused(ca_dir: Path, request: Path, node: str, **options: Any) -> VerificationError:
    before = _files(ca_dir)
    with pytest.raises(VerificationError) as err:
        sign_request(ca_dir, request, node, **options)
    assert _files(ca_dir) == before
    return err.value


class _Impostor:
    """Presents one key and signs with another: a request for a key its sender does not hold."""

    def __init__(self, shown: Ed25519PublicKey) -> None:
        self._shown = shown
        self._real = Ed25519PrivateKey.generate()

    def sign(self, data: bytes) -> bytes:
        return self._real.sign(data)

    def public_key(self) -> Ed25519PublicKey:
        return self._shown


def test_a_request_whose_signature_fails_is_refused(fresh_pki_dir: Path, tmp_path: Path) -> None:
    _, path = request_key(tmp_path, "KZ-ARC")
    der = bytearray(load_request(path.read_bytes()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature
    (tmp_path / "flipped.csr").write_bytes(bytes(der))
    error = _refused(fresh_pki_dir, tmp_path / "flipped.csr", "KZ-ARC")
    assert error.code == "csr.signature"


def test_a_request_for_someone_elses_key_is_refused(fresh_pki_dir: Path, tmp_path: Path) -> None:
    victim = load_private_key(fresh_pki_dir / "RS-PPO.key").public_key()
    forged = _write(tmp_path / "forged.csr", create_request(_Impostor(victim), "KZ-ARC"))
    assert _refused(fresh_pki_dir, forged, "KZ-ARC").code == "csr.signature"


def test_a_request_tampered_to_name_another_node_is_refused(
    fresh_pki_dir: Path, tmp_path: Path
) -> None:
    _, path = request_key(tmp_path, "KZ-ARC")
    pem = path.read_bytes()
    der = load_request(pem).public_bytes(serialization.Encoding.DER)
    swapped = der.replace(b"KZ-ARC", b"AL-ARO")  # same length: only the signature breaks
    (tmp_path / "swapped.csr").write_bytes(swapped)
    assert _refused(fresh_pki_dir, tmp_path / "swapped.csr", "AL-ARO").code == "csr.signature"


@pytest.mark.parametrize(
    ("subject", "names", "why"),
    [
        (_cn("RS-PPO"), [_uri("RS-PPO")], "subject CN is RS-PPO"),
        (_cn("KZ-ARC"), [_uri("RS-PPO")], "subjectAltName lists urn:xb:node:RS-PPO"),
        (_cn("KZ-ARC"), [_uri("KZ-ARC"), _uri("RS-PPO")], "must name exactly"),
        (_cn("KZ-ARC"), [_uri("KZ-ARC"), x509.DNSName("kz.example")], "must name exactly"),
        (_cn("KZ-ARC"), None, "no subjectAltName"),
        (
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "KZ-ARC"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "RS-PPO"),
                ]
            ),
            [_uri("KZ-ARC")],
            "CN is KZ-ARC, RS-PPO",
        ),
        (x509.Name([]), [_uri("KZ-ARC")], "CN is missing"),
    ],
    ids=["cn", "san", "two-nodes", "extra-dns", "no-san", "two-cns", "no-cn"],
)
def test_a_request_naming_anything_but_the_node_is_refused(
    fresh_pki_dir: Path,
    tmp_path: Path,
    subject: x509.Name,
    names: list[x509.GeneralName] | None,
    why: str,
) -> None:
    request = _write(tmp_path / "r.csr", _built(Ed25519PrivateKey.generate(), subject, names))
    error = _refused(fresh_pki_dir, request, "KZ-ARC")
    assert error.code == "csr.name_mismatch" and why in error.detail


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP256R1()), Ed448PrivateKey.generate()],
    ids=["p256", "ed448"],
)
def test_a_request_for_a_key_that_is_not_ed25519_is_refused(
    fresh_pki_dir: Path, tmp_path: Path, key: Any
) -> None:
    signed = _built(key, _cn("KZ-ARC"), [_uri("KZ-ARC")])
    error = _refused(fresh_pki_dir, _write(tmp_path / "r.csr", signed), "KZ-ARC")
    assert error.code == "csr.key_type" and "Ed25519" in error.detail


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a request",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"\x30" * 70_000,
    ],
    ids=["empty", "text", "bad-pem", "huge"],
)
def test_a_malformed_request_is_refused(
    fresh_pki_dir: Path, tmp_path: Path, content: bytes
) -> None:
    (tmp_path / "r.csr").write_bytes(content)
    assert _refused(fresh_pki_dir, tmp_path / "r.csr", "KZ-ARC").code == "csr.malformed"


def test_a_certificate_sent_instead_of_a_request_is_malformed(
    fresh_pki_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "r.csr").write_bytes((fresh_pki_dir / "AL-ARO.pem").read_bytes())
    assert _refused(fresh_pki_dir, tmp_path / "r.csr", "AL-ARO").code == "csr.malformed"


def test_a_second_node_claiming_an_enrolled_id_is_refused_as_a_duplicate(
    fresh_pki_dir: Path, tmp_path: Path
) -> None:
    _, request = request_key(tmp_path, "AL-ARO")  # an impostor's own key, for AL-ARO's id
    error = _refused(fresh_pki_dir, request, "AL-ARO")
    assert error.code == "csr.duplicate" and "already has a certificate" in error.detail


def test_one_key_for_two_nodes_is_refused_as_a_duplicate(
    fresh_pki_dir: Path, tmp_path: Path
) -> None:
    stolen = load_private_key(fresh_pki_dir / "RS-PPO.key")
    request = _write(tmp_path / "r.csr", create_request(stolen, "KZ-ARC"))
    error = _refused(fresh_pki_dir, request, "KZ-ARC")
    assert error.code == "csr.duplicate" and "already certified for RS-PPO" in error.detail


def test_the_ca_copies_nothing_but_the_key_from_a_request(
    fresh_pki_dir: Path, tmp_path: Path
) -> None:
    # A request that asks to be a CA, and a private-sector OU in an authority's enrollment.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "private-sector"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "other-net"),
            x509.NameAttribute(NameOID.COMMON_NAME, "KZ-ARC"),
        ]
    )
    greedy = _built(
        Ed25519PrivateKey.generate(),
        subject,
        [_uri("KZ-ARC")],
        extensions=[x509.BasicConstraints(ca=True, path_length=None)],
    )
    cert = load_certificate(
        sign_request(fresh_pki_dir, _write(tmp_path / "r.csr", greedy), "KZ-ARC")
    )
    assert cert.subject.rfc4514_string() == "CN=KZ-ARC,O=test-net"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert role_of(cert) == "authority"


def test_the_cli_refuses_with_the_code_and_exit_1(
    fresh_pki_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, request = request_key(tmp_path, "KZ-ARC")
    code = main(["pki", "sign-request", str(fresh_pki_dir), str(request), "--node", "RS-PPO"])
    assert code == 1
    assert "csr.name_mismatch" in capsys.readouterr().err
    assert not (fresh_pki_dir / "KZ-ARC.pem").exists()
    code = main(["pki", "sign-request", str(fresh_pki_dir), str(request), "--node", "KZ-ARC"])
    assert code == 0 and (fresh_pki_dir / "KZ-ARC.pem").exists()


# --- keys on the node ---------------------------------------------------------------------


def test_a_nodes_key_is_never_overwritten(tmp_path: Path) -> None:
    key_path, _ = request_key(tmp_path, "KZ-ARC")
    before = key_path.read_bytes()
    with pytest.raises(ExchangeError, match="never replaced") as err:
        request_key(tmp_path, "KZ-ARC")
    assert err.value.code == "usage" and key_path.read_bytes() == before
    request_key(tmp_path, "KZ-ARC", rotate=True)
    with pytest.raises(ExchangeError, match="already pending"):
        request_key(tmp_path, "KZ-ARC", rotate=True)
    assert key_path.read_bytes() == before


def test_install_refuses_a_certificate_for_another_key_node_or_ca(
    fresh_pki_dir: Path, foreign_pki_dir: Path, tmp_path: Path
) -> None:
    request_key(tmp_path, "AL-ARO")
    (tmp_path / "ca.pem").write_bytes((fresh_pki_dir / "ca.pem").read_bytes())
    with pytest.raises(ConfigError) as mismatch:
        install_certificate(tmp_path, "AL-ARO", fresh_pki_dir / "AL-ARO.pem")
    assert mismatch.value.code == "key.mismatch"
    with pytest.raises(VerificationError, match="RS-PPO's certificate") as other:
        install_certificate(tmp_path, "AL-ARO", fresh_pki_dir / "RS-PPO.pem")
    assert other.value.code == "cert.untrusted"
    with pytest.raises(VerificationError, match="not issued by the network CA") as foreign:
        install_certificate(tmp_path, "AL-ARO", foreign_pki_dir / "AL-ARO.pem")
    assert foreign.value.code == "cert.untrusted"
    assert not (tmp_path / "AL-ARO.pem").exists()


# --- rotation with overlap ----------------------------------------------------------------


def test_rotation_keeps_the_running_key_until_the_switch_and_both_verify_in_the_overlap(
    fresh_pki_dir: Path, tmp_path: Path, make_header: HeaderFactory
) -> None:
    node_dir = tmp_path / "kz"
    _, first = request_key(node_dir, "KZ-ARC")
    install_certificate(node_dir, "KZ-ARC", sign_request(fresh_pki_dir, first, "KZ-ARC"))
    old = NodeSigner.from_files(node_dir / "KZ-ARC.key", node_dir / "KZ-ARC.pem")
    trust = TrustStore.from_directory(fresh_pki_dir)
    signed_before = encode_envelope(
        old.sign_envelope(make_header(sender="KZ-ARC", recipients=["AL-ARO"]), {"q": 1})
    )

    running = (node_dir / "KZ-ARC.key").read_bytes()
    next_key, next_request = request_key(node_dir, "KZ-ARC", rotate=True)
    assert (next_key.name, next_request.name) == ("KZ-ARC.next.key", "KZ-ARC.next.csr")
    assert (node_dir / "KZ-ARC.key").read_bytes() == running  # untouched until the switch
    # A rotation not marked as one looks like a second node with this id.
    assert _refused(fresh_pki_dir, next_request, "KZ-ARC").code == "csr.duplicate"
    issued = sign_request(
        fresh_pki_dir, next_request, "KZ-ARC", rotate=True, out=tmp_path / "answer.pem"
    )
    archived = fresh_pki_dir / f"KZ-ARC.{old.certificate.serial_number:x}.pem"
    assert archived.read_bytes() == old.certificate.public_bytes(PEM)
    assert load_certificate(issued).public_key() == load_private_key(next_key).public_key()

    install_certificate(node_dir, "KZ-ARC", tmp_path / "answer.pem")
    assert not next_key.exists() and not next_request.exists()
    assert (node_dir / f"KZ-ARC.{old.certificate.serial_number:x}.key").read_bytes() == running
    new = NodeSigner.from_files(node_dir / "KZ-ARC.key", node_dir / "KZ-ARC.pem")
    assert new.kid != old.kid

    overlap = TrustStore.from_directory(fresh_pki_dir)
    assert old.kid in overlap and new.kid in overlap and old.kid in trust
    policy = VerificationPolicy(trust=overlap)
    assert verify_envelope(signed_before, policy).signer == old.certificate
    assert _verify(new, overlap, make_header).signer == new.certificate

    # The overlap ends when the old certificate is revoked.
    revoke_node(fresh_pki_dir, "KZ-ARC", serial=old.certificate.serial_number)
    ended = TrustStore.from_directory(fresh_pki_dir)
    with pytest.raises(VerificationError) as err:
        verify_envelope(signed_before, VerificationPolicy(trust=ended))
    assert err.value.code == "cert.revoked"
    assert _verify(new, ended, make_header).signer == new.certificate
    assert kid_of(load_certificate(fresh_pki_dir / "KZ-ARC.pem")) == new.kid

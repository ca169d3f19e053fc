"""PKCS#10 certification requests: a node asks the network CA to certify a key it made.

`create_request` is the node's half: the request names the node (subject CN and the SAN URI
`urn:xb:node:<ID>`) and is signed by the key, wherever it lives (in memory or in a token).
`check_request` is the CA's half: it refuses, each with its own code, a request that is not
a request, whose key is not Ed25519, whose signature fails, or that names anything but the
expected node. The CA certifies only the key; it copies nothing else from the request.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from exchange.crypto.keys import SigningKey
from exchange.errors import VerificationError
from exchange.model.common import NODE_ID_PATTERN

NODE_URI_PREFIX = "urn:xb:node:"
MAX_REQUEST_BYTES = 64 * 1024
"""A node's request is a few hundred bytes; anything near this is not one."""

_NODE_ID = re.compile(NODE_ID_PATTERN)
# DER of the fixed parts: AlgorithmIdentifier id-Ed25519 (RFC 8410), the OIDs of the
# extensionRequest attribute (PKCS#9) and of subjectAltName.
_ED25519_ALGORITHM = bytes.fromhex("300506032b6570")
_EXTENSION_REQUEST_OID = bytes.fromhex("06092a864886f70d01090e")
_SUBJECT_ALT_NAME_OID = bytes.fromhex("0603551d11")


def node_names(node: str) -> tuple[x509.Name, x509.SubjectAlternativeName]:
    """The names a request for `node` carries: subject CN and one SAN URI."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)])
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(NODE_URI_PREFIX + node)])
    return subject, san


def create_request(key: SigningKey, node: str) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for `node`, signed by `key` (Ed25519).

    Built as DER here rather than by `cryptography`'s builder, which signs only with a key
    in memory: the same bytes come out (the tests compare them), and a key in a token signs
    them just as well.
    """
    if not _NODE_ID.fullmatch(node):
        raise ValueError(f"{node!r} is not a node id ({NODE_ID_PATTERN})")
    subject, san = node_names(node)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    extension = _der(0x30, _SUBJECT_ALT_NAME_OID + _der(0x04, san.public_bytes()))
    attribute = _der(0x30, _EXTENSION_REQUEST_OID + _der(0x31, _der(0x30, extension)))
    info = _der(0x30, b"\x02\x01\x00" + subject.public_bytes() + spki + _der(0xA0, attribute))
    signature = key.sign(info)
    request = _der(0x30, info + _ED25519_ALGORITHM + _der(0x03, b"\x00" + signature))
    return x509.load_der_x509_csr(request)


def request_pem(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(serialization.Encoding.PEM)


def load_request(data: bytes) -> x509.CertificateSigningRequest:
    """A request from PEM or DER bytes; anything else is refused as `csr.malformed`."""
    if len(data) > MAX_REQUEST_BYTES:
        raise VerificationError(
            f"a certification request is at most {MAX_REQUEST_BYTES} bytes", code="csr.malformed"
        )
    try:
        if b"-----BEGIN CERTIFICATE REQUEST-----" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as err:
        raise VerificationError(
            f"not a PKCS#10 certification request ({err})", code="csr.malformed"
        ) from None


def check_request(request: x509.CertificateSigningRequest, node: str) -> Ed25519PublicKey:
    """The key `request` asks to certify for `node`, once every check has passed.

    Refused: a key that is not Ed25519 (`csr.key_type`), a signature that does not verify
    with the request's own key (`csr.signature`), a subject CN or subjectAltName other than
    exactly `node` and `urn:xb:node:<node>` (`csr.name_mismatch`), undecodable parts
    (`csr.malformed`).
    """
    try:
        key = request.public_key()
    except (UnsupportedAlgorithm, ValueError) as err:
        raise VerificationError(
            f"the request's key cannot be used ({err}); node keys are Ed25519",
            code="csr.key_type",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationError(
            f"the request's key is {type(key).__name__.removeprefix('_')}; node keys are Ed25519",
            code="csr.key_type",
        )
    if not request.is_signature_valid:
        raise VerificationError(
            "the request's signature does not verify with its own key: it was altered, or "
            "signed by another key than the one it asks to certify",
            code="csr.signature",
        )
    _check_names(request, node)
    return key


def _check_names(request: x509.CertificateSigningRequest, node: str) -> None:
    try:
        common_names = [
            str(a.value) for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
        extensions = request.extensions
    except ValueError as err:
        raise VerificationError(
            f"the request's names cannot be read ({err})", code="csr.malformed"
        ) from None
    if common_names != [node]:
        raise VerificationError(
            f"the request's subject CN is {', '.join(common_names) or 'missing'}, not {node}",
            code="csr.name_mismatch",
        )
    try:
        names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise VerificationError(
            f"the request has no subjectAltName; it must name {NODE_URI_PREFIX}{node}",
            code="csr.name_mismatch",
        ) from None
    expected = x509.UniformResourceIdentifier(NODE_URI_PREFIX + node)
    if list(names) != [expected]:
        listed = ", ".join(str(getattr(n, "value", n)) for n in names) or "nothing"
        raise VerificationError(
            f"the request's subjectAltName lists {listed}; it must name exactly "
            f"{NODE_URI_PREFIX}{node}",
            code="csr.name_mismatch",
        )


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV: `tag`, definite length, `content`."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content

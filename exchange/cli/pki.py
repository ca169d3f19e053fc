"""`exchange pki`: make and keep a network's certificates (CA, node certificates, CRL).

Enrollment, where no key leaves its node: `request` (on the node: a key, in a file or a
PKCS#11 token, and its certification request), `sign-request` (at the CA: check the request,
write the certificate) and `install` (on the node: put the certificate in place, switching
to a rotated key). `init` creates a development network (CA and every node, through the same
two steps), `issue` rotates a key of that network at the CA, `revoke` lists a node's
certificates in the CRL, `crl` re-signs the CRL before its next-update time passes, and
`server` issues a TLS server certificate for a broker or an HTTPS gateway.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.crypto.csr import load_request
from exchange.crypto.enroll import install_certificate, request_key, sign_request, write_request
from exchange.crypto.keys import raw_public_key
from exchange.crypto.pkcs11_key import generate_token_key
from exchange.crypto.pki import (
    CRL_VALIDITY,
    NODE_VALIDITY,
    ROLES,
    init_network,
    issue_node_certificate,
    kid_of,
    load_certificate,
    node_certificate_paths,
    refresh_crl,
    revoke_node,
    role_of,
)
from exchange.crypto.server_certs import SERVER_VALIDITY, issue_server_certificate
from exchange.errors import ExchangeError

EXIT_OK = 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("pki", help="make and keep the network's CA, certificates and CRL")
    actions = parser.add_subparsers(dest="pki_action", metavar="ACTION", required=True)

    init = actions.add_parser(
        "init",
        help="create a network CA, a key and certificate per node, and an empty CRL",
        description="Writes ca.pem, ca.key, <NODE>.pem, <NODE>.key and crl.pem into DIR "
        "(private keys mode 0600). Refuses a directory that already holds a CA.",
    )
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument("--network", required=True, help="the network's short name, e.g. see-arn")
    init.add_argument(
        "--nodes", required=True, type=_node_list, help="comma-separated ids, e.g. AL-ARO,RS-PPO"
    )
    init.add_argument("--days", type=_days, default=NODE_VALIDITY, help="node certificate days")
    init.set_defaults(func=_init)

    _register_enrollment(actions)

    issue = actions.add_parser(
        "issue",
        help="development network: give a node a new key and certificate at the CA",
        description="The previous <NODE>.pem/.key become <NODE>.<serial-hex>.pem/.key and stay "
        "valid until they expire or are revoked. For a development network, whose directory "
        "holds the node keys; a real node rotates with `request --rotate`, `sign-request "
        "--rotate` and `install`, and its key never reaches the CA.",
    )
    issue.add_argument("directory", type=Path, metavar="DIR")
    issue.add_argument("node", metavar="NODE")
    issue.add_argument("--days", type=_days, default=NODE_VALIDITY, help="certificate validity")
    issue.set_defaults(func=_issue)

    revoke = actions.add_parser(
        "revoke", help="revoke a node's certificates (all, or one by --serial) and re-sign the CRL"
    )
    revoke.add_argument("directory", type=Path, metavar="DIR")
    revoke.add_argument("node", metavar="NODE")
    revoke.add_argument("--serial", type=_hex, help="only the certificate with this hex serial")
    revoke.set_defaults(func=_revoke)

    crl = actions.add_parser("crl", help="re-sign the CRL with a new next-update time")
    crl.add_argument("directory", type=Path, metavar="DIR")
    crl.add_argument("--days", type=_days, default=CRL_VALIDITY, help="days until next update")
    crl.set_defaults(func=_crl)

    server = actions.add_parser(
        "server",
        help="issue a TLS server certificate (a broker, an HTTPS gateway) from the network CA",
        description="Writes DIR/tls/<HOST>.pem and .key: Ed25519, extended key usage "
        "serverAuth, SAN DNS names and IP addresses for HOST and every --alt. It names no "
        "node: it cannot sign envelopes or log in to a broker.",
    )
    server.add_argument("directory", type=Path, metavar="DIR")
    server.add_argument("hostname", metavar="HOST", help="the name clients connect to")
    server.add_argument(
        "--alt", action="append", default=[], metavar="NAME", help="another DNS name or IP"
    )
    server.add_argument("--days", type=_days, default=SERVER_VALIDITY, help="validity in days")
    server.set_defaults(func=_server)


def _register_enrollment(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    request = actions.add_parser(
        "request",
        help="on a node: make its key and a certification request for the network CA",
        description="Writes DIR/<NODE>.key (mode 0600) and DIR/<NODE>.csr (PKCS#10: CN and "
        "SAN urn:xb:node:<NODE>, signed by the key); send the .csr to the CA. With --key-uri "
        "the key pair is generated inside a PKCS#11 token and only the .csr is written. "
        "--rotate writes <NODE>.next.key/.csr instead, leaving the running key untouched. "
        "An existing key is never replaced.",
    )
    request.add_argument("directory", type=Path, metavar="DIR")
    request.add_argument("--node", required=True, metavar="ID", help="this node's id")
    request.add_argument(
        "--rotate", action="store_true", help="a new key beside the running one (.next)"
    )
    token = request.add_argument_group("a key in a PKCS#11 token (all three together)")
    token.add_argument("--key-uri", metavar="URI", help="pkcs11:token=LABEL;object=LABEL")
    token.add_argument("--pkcs11-module", type=Path, metavar="M", help="the module (.so)")
    token.add_argument("--pin-file", type=Path, metavar="F", help="a file holding the user PIN")
    request.set_defaults(func=_request)

    sign = actions.add_parser(
        "sign-request",
        help="at the CA: check a node's certification request and write its certificate",
        description="Writes CA_DIR/<ID>.pem for the request's key. Refused with a code: a "
        "malformed request (csr.malformed), a key not Ed25519 (csr.key_type), a bad signature "
        "(csr.signature), names other than --node (csr.name_mismatch), a key of another node "
        "or a new key for a node that has one without --rotate (csr.duplicate). A replaced "
        "certificate is kept as <ID>.<serial-hex>.pem and stays valid (the overlap).",
    )
    sign.add_argument("ca_dir", type=Path, metavar="CA_DIR")
    sign.add_argument("request", type=Path, metavar="ID.csr")
    sign.add_argument("--node", required=True, metavar="ID", help="the node the request is for")
    sign.add_argument(
        "--role", choices=ROLES, help="the member's role (default: its current one, or authority)"
    )
    sign.add_argument("--days", type=_days, default=NODE_VALIDITY, help="certificate validity")
    sign.add_argument(
        "--rotate", action="store_true", help="the node replaces its key (keep the old cert)"
    )
    sign.add_argument("--out", type=Path, metavar="PATH", help="also write the certificate here")
    sign.set_defaults(func=_sign_request)

    install = actions.add_parser(
        "install",
        help="on a node: put the CA's certificate in place (and switch to a rotated key)",
        description="Checks that CERT names --node, comes from DIR/ca.pem when present, and "
        "certifies DIR/<ID>.next.key (a rotation) or DIR/<ID>.key. A rotation archives the "
        "running pair as <ID>.<serial-hex>.pem/.key and makes the new one current: restart "
        "the gateway to sign with it.",
    )
    install.add_argument("directory", type=Path, metavar="DIR")
    install.add_argument("certificate", type=Path, metavar="CERT")
    install.add_argument("--node", required=True, metavar="ID", help="this node's id")
    install.set_defaults(func=_install)


def _request(args: argparse.Namespace) -> int:
    token = (args.key_uri, args.pkcs11_module, args.pin_file)
    if any(t is not None for t in token) and not all(t is not None for t in token):
        raise ExchangeError(
            "a key in a token needs --key-uri, --pkcs11-module and --pin-file together",
            code="usage",
        )
    if args.key_uri is None:
        key_path, request_path = request_key(args.directory, args.node, rotate=args.rotate)
        print(f"{args.node}: key {key_path} (keep it here), request {request_path}")
    else:
        with generate_token_key(args.pkcs11_module, args.key_uri, args.pin_file) as key:
            request_path = write_request(args.directory, args.node, key, rotate=args.rotate)
        print(f"{args.node}: key {args.key_uri} (in the token), request {request_path}")
    request = load_request(request_path.read_bytes())
    print(f"  key sha256 {_fingerprint(request.public_key())}: read it to the CA's operator")
    print("send the request to the network CA; install the certificate it returns")
    return EXIT_OK


def _sign_request(args: argparse.Namespace) -> int:
    path = sign_request(
        args.ca_dir,
        args.request,
        args.node,
        role=args.role,
        validity=args.days,
        rotate=args.rotate,
        out=args.out,
    )
    _describe(path)
    print(
        f"  key sha256 {_fingerprint(load_certificate(path).public_key())}: the node's "
        "operator must read you the same before the certificate goes out"
    )
    if args.out is not None:
        print(f"  also written to {args.out}")
    return EXIT_OK


def _install(args: argparse.Namespace) -> int:
    _describe(install_certificate(args.directory, args.node, args.certificate))
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    init_network(args.directory, args.network, args.nodes, node_validity=args.days)
    print(f"network {args.network}: CA, CRL and {len(args.nodes)} node(s) in {args.directory}")
    for node in args.nodes:
        _describe(args.directory / f"{node}.pem")
    return EXIT_OK


def _issue(args: argparse.Namespace) -> int:
    path = issue_node_certificate(args.directory, args.node, validity=args.days)
    _describe(path)
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    added = revoke_node(args.directory, args.node, serial=args.serial)
    for serial in added:
        print(f"revoked {args.node} certificate {serial:x}")
    if not added:
        print(f"{args.node}: already revoked; CRL re-signed")
    return EXIT_OK


def _crl(args: argparse.Namespace) -> int:
    crl = refresh_crl(args.directory, validity=args.days)
    print(f"CRL re-signed: {len(crl)} revoked, next update {crl.next_update_utc:%Y-%m-%d}")
    return EXIT_OK


def _server(args: argparse.Namespace) -> int:
    path = issue_server_certificate(
        args.directory, args.hostname, alt_names=args.alt, validity=args.days
    )
    cert = load_certificate(path)
    print(
        f"server certificate {path} (key {path.with_suffix('.key')}): serial "
        f"{cert.serial_number:x}, until {cert.not_valid_after_utc:%Y-%m-%d}"
    )
    return EXIT_OK


def _describe(cert_path: Path) -> None:
    cert = load_certificate(cert_path)
    node = cert_path.name.split(".", 1)[0]
    archived = len(node_certificate_paths(cert_path.parent, node)) - 1
    print(
        f"  {node:<14} kid {kid_of(cert)[:16]}  serial {cert.serial_number:x}  "
        f"{role_of(cert)}  until {cert.not_valid_after_utc:%Y-%m-%d}"
        + (f"  ({archived} earlier kept)" if archived else "")
    )


def _fingerprint(key: object) -> str:
    """Hex SHA-256 of an Ed25519 public key's 32 bytes, for operators to compare aloud."""
    if not isinstance(key, Ed25519PublicKey):
        raise ExchangeError("not an Ed25519 key", code="csr.key_type")
    return hashlib.sha256(raw_public_key(key)).hexdigest()


def _node_list(text: str) -> list[str]:
    nodes = [n.strip() for n in text.split(",") if n.strip()]
    if not nodes:
        raise argparse.ArgumentTypeError("name at least one node")
    return nodes


def _days(text: str) -> timedelta:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if days <= 0:
        raise argparse.ArgumentTypeError("days must be positive")
    return timedelta(days=days)


def _hex(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex serial number") from None

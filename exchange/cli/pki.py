"""`exchange pki`: make and keep a network's certificates (CA, node certificates, CRL).

`init` creates the network directory, `issue` rotates a node's key, `revoke` lists a node's
certificates in the CRL, `crl` re-signs the CRL before its next-update time passes, and
`server` issues a TLS server certificate for a broker or an HTTPS gateway.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from exchange.crypto.pki import (
    CRL_VALIDITY,
    NODE_VALIDITY,
    SERVER_VALIDITY,
    init_network,
    issue_node_certificate,
    issue_server_certificate,
    kid_of,
    load_certificate,
    node_certificate_paths,
    refresh_crl,
    revoke_node,
)

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

    issue = actions.add_parser(
        "issue",
        help="give a node a new key and certificate (rotation; the old pair is archived)",
        description="The previous <NODE>.pem/.key become <NODE>.<serial-hex>.pem/.key and stay "
        "valid until they expire or are revoked.",
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
        f"until {cert.not_valid_after_utc:%Y-%m-%d}"
        + (f"  ({archived} earlier kept)" if archived else "")
    )


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

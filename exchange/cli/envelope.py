"""`exchange envelope`: sign an envelope with a node key, or verify a signed one, offline.

`sign` reads an unsigned envelope (header and payload) on stdin and writes the signed wire
form to stdout. `verify` reads a signed envelope on stdin and applies the full policy: any
refusal of a document that parses as JSON is a verdict on the envelope (exit 1, even
`envelope.malformed`); only input that is not JSON at all is bad usage (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from pydantic import ValidationError

from exchange.cli import EXIT_CHECK_FAILED
from exchange.crypto.canonical import parse_json
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import ExchangeError, FieldError, VerificationError
from exchange.model.envelope import UnsignedEnvelope

EXIT_OK = 0
_JSON_WHITESPACE = b" \t\r\n"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("envelope", help="sign or verify an envelope (stdin -> stdout)")
    actions = parser.add_subparsers(dest="envelope_action", metavar="ACTION", required=True)

    sign = actions.add_parser(
        "sign",
        help="sign the unsigned envelope on stdin",
        description='Reads {"header": ..., "payload": ...} on stdin; writes the signed '
        "envelope to stdout. Exit 2 if the input is not a valid unsigned envelope.",
    )
    sign.add_argument("--key", required=True, type=Path, help="the node's private key (PEM)")
    sign.add_argument("--cert", required=True, type=Path, help="the node's certificate (PEM)")
    sign.set_defaults(func=_sign)

    verify = actions.add_parser(
        "verify",
        help="verify the signed envelope on stdin",
        description="Exit 0 and a one-line summary if the envelope passes every check; exit 1 "
        "with the failing check's code on stderr (envelope.malformed included: a document "
        "that is JSON but no valid envelope is refused, like a bad signature); exit 2 if the "
        "input is not JSON at all.",
    )
    verify.add_argument("--ca", required=True, type=Path, help="the network CA certificate")
    verify.add_argument("--crl", type=Path, help="the network's CRL (else no revocation check)")
    verify.add_argument(
        "--cert",
        dest="certs",
        action="append",
        type=Path,
        default=[],
        help="a node certificate to trust (repeat for several)",
    )
    verify.add_argument(
        "--max-skew",
        type=_seconds,
        default=timedelta(minutes=5),
        metavar="SECONDS",
        help="largest accepted distance between created_at and now (default 300)",
    )
    verify.add_argument(
        "--now",
        type=_aware_time,
        help="check as of this time (ISO 8601 with offset), e.g. for an archived envelope",
    )
    verify.set_defaults(func=_verify)


def _sign(args: argparse.Namespace) -> int:
    signer = NodeSigner.from_files(args.key, args.cert)
    data = sys.stdin.buffer.read().strip(_JSON_WHITESPACE)
    try:
        unsigned = UnsignedEnvelope.model_validate(parse_json(data))
    except ValidationError as err:
        raise ExchangeError(
            "the input is not an unsigned envelope",
            code="envelope.malformed",
            errors=[
                FieldError("/" + "/".join(str(p) for p in e["loc"]), e["msg"])
                for e in err.errors(include_url=False, include_input=False)
            ],
        ) from None
    except ValueError as err:
        raise ExchangeError(f"the input is not JSON: {err}", code="envelope.malformed") from None
    if unsigned.header.sender != signer.node_id:
        raise ExchangeError(
            f"the key signs for {signer.node_id}; the header's sender is {unsigned.header.sender}",
            code="usage",
        )
    signed = signer.sign_envelope(unsigned.header, unsigned.payload)
    sys.stdout.buffer.write(encode_envelope(signed) + b"\n")
    sys.stdout.flush()
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    trust = TrustStore.from_files(args.ca, args.crl, args.certs)
    policy = VerificationPolicy(trust=trust, max_skew=args.max_skew)
    data = sys.stdin.buffer.read().strip(_JSON_WHITESPACE)
    _require_json(data)
    try:
        verified = verify_envelope(data, policy, now=args.now)
    except VerificationError as err:
        print(err.diagnostics(), file=sys.stderr)
        return EXIT_CHECK_FAILED
    header = verified.envelope.header
    print(
        f"valid {header.id} {header.type.value} {header.sender} -> "
        f"{','.join(header.recipients)} case {header.case} "
        f"kid {verified.envelope.signature.kid[:16]}"
    )
    return EXIT_OK


def _require_json(data: bytes) -> None:
    """Bad usage (exit 2) when stdin is not a JSON text: there is no envelope to judge."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise ExchangeError(f"the input is not JSON: {err}", code="envelope.malformed") from None


def _seconds(text: str) -> timedelta:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds < 1e10:
        raise argparse.ArgumentTypeError("seconds must be between 0 and 1e10")
    return timedelta(seconds=seconds)


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise argparse.ArgumentTypeError("give the time with an offset, e.g. 2026-03-01T10:00Z")
    return value

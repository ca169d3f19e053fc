"""`exchange schemas export|check|validate`: write the JSON Schemas from the models, check
that the committed files have not drifted, and validate a payload or envelope file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from exchange.errors import SchemaError
from exchange.model.common import MessageType
from exchange.model.envelope import MAX_ENVELOPE_BYTES, Envelope, UnsignedEnvelope
from exchange.schemas import REGISTRY, check_schemas, export_schemas, field_errors

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("schemas", help="export, check and use the shared JSON Schemas")
    commands = parser.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)

    export = commands.add_parser("export", help="write schemas/<type>/v<major>.json")
    export.add_argument("--dir", type=Path, default=Path("schemas"), help="default: schemas")
    export.set_defaults(func=_export)

    check = commands.add_parser("check", help="exit 1 if the files differ from the models")
    check.add_argument("--dir", type=Path, default=Path("schemas"), help="default: schemas")
    check.set_defaults(func=_check)

    validate = commands.add_parser(
        "validate",
        help="validate a payload (or an envelope) file; exit 0 valid, 1 invalid, 2 usage",
    )
    validate.add_argument(
        "--type",
        dest="message_type",
        choices=[t.value for t in MessageType],
        help="the payload's message type (an envelope names its own)",
    )
    validate.add_argument(
        "--version", type=int, default=None, help="major version (default: the current one)"
    )
    validate.add_argument("file", type=Path, help="a JSON file, or - for standard input")
    validate.set_defaults(func=_validate)


def _export(args: argparse.Namespace) -> int:
    drift = export_schemas(args.dir)
    for line in drift.lines():
        print(
            line.replace("missing:", "written:")
            .replace("differs:", "updated:")
            .replace("extra:", "removed:")
        )
    print(f"{len(REGISTRY.documents())} schema files in {args.dir}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        print(f"{args.dir}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    drift = check_schemas(args.dir)
    if drift.ok:
        print(f"{len(REGISTRY.documents())} schema files in {args.dir} match the models")
        return EXIT_OK
    for line in drift.lines():
        print(line)
    print("run `exchange schemas export` and commit the result", file=sys.stderr)
    return EXIT_INVALID


def _read(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read(MAX_ENVELOPE_BYTES + 1)
    with path.open("rb") as stream:
        return stream.read(MAX_ENVELOPE_BYTES + 1)


def _validate(args: argparse.Namespace) -> int:
    try:
        data = _read(args.file)
    except OSError as err:
        print(f"{args.file}: {err.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if len(data) > MAX_ENVELOPE_BYTES:
        print(f"{args.file}: larger than {MAX_ENVELOPE_BYTES} bytes", file=sys.stderr)
        return EXIT_USAGE
    try:
        document: Any = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        print(f"{args.file}: not JSON: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        kind, ref, payload = _payload_of(document, args)
        REGISTRY.validate_payload(kind, ref, payload)
    except SchemaError as err:
        print(f"{args.file}: {err.diagnostics()}")
        return EXIT_USAGE if err.code in ("schema.unknown", "usage") else EXIT_INVALID
    print(f"{args.file}: valid {ref}")
    return EXIT_OK


def _payload_of(document: Any, args: argparse.Namespace) -> tuple[str, str, Any]:
    """(type, schema ref, payload) of a bare payload, or of an envelope's header and payload."""
    if isinstance(document, dict) and {"header", "payload"} <= document.keys():
        # The signature's form is checked (not its value: that needs the network's PKI).
        model = Envelope if "signature" in document else UnsignedEnvelope
        try:
            envelope = model.model_validate(document)
        except ValidationError as err:
            errors = field_errors(err, document)
            raise SchemaError("the envelope is not well formed", errors=errors) from None
        kind, ref = envelope.header.type.value, envelope.header.schema_
        wanted = (args.message_type or kind, args.version or envelope.header.schema_major)
        if wanted != (kind, envelope.header.schema_major):
            raise SchemaError(f"the envelope is {ref}, not what --type/--version say")
        return kind, ref, document["payload"]
    if args.message_type is None:
        raise SchemaError("--type is required for a bare payload", code="usage")
    version = args.version or REGISTRY.current_versions[MessageType(args.message_type)]
    return args.message_type, f"{args.message_type}/{version}", document

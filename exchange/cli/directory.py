"""`exchange directory`: build, verify, show and publish the signed network directory.

The secretariat keeps `members.toml` (see `deploy/members.example.toml`) and the network
CA. `build` signs a directory from them with the next serial; `verify` checks one against
the CA (exit 0 valid, 1 refused with its code); `show` prints it for a person; `publish`
puts it on the broker's directory stream (`<prefix>.directory.stream`, behind the fanout
exchange `<prefix>.directory`), where every node reads it within `directory_poll_seconds`
and takes it if it verifies and its serial is higher than the one it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import aio_pika

from exchange.crypto.pki import load_certificate
from exchange.directory.build import build_directory, next_serial, read_members
from exchange.directory.document import VerifiedDirectory, parse_directory, verify_directory
from exchange.errors import ExchangeError, VerificationError
from exchange.transport.topology import Topology

EXIT_OK = 0
EXIT_INVALID = 1
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("directory", help="build, verify, show and publish the directory")
    actions = parser.add_subparsers(dest="directory_action", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build",
        help="sign a directory from members.toml and the CA's certificates and CRL",
        description="The serial is one more than that of the directory already at --out "
        "(1 for the first), unless --serial is given; it must only grow.",
    )
    build.add_argument("--ca-dir", type=Path, required=True, help="the network CA's directory")
    build.add_argument("--members", type=Path, required=True, help="the members.toml to sign")
    build.add_argument("--out", type=Path, required=True, help="where to write directory.json")
    build.add_argument("--serial", type=int, default=None, help="the serial (default: next)")
    build.set_defaults(func=_build)

    verify = actions.add_parser("verify", help="check a directory against the network CA")
    verify.add_argument("file", type=Path, metavar="DIRECTORY")
    verify.add_argument("--ca", type=Path, required=True, help="the network CA certificate")
    verify.set_defaults(func=_verify)

    show = actions.add_parser("show", help="print a directory's members, networks and roles")
    show.add_argument("file", type=Path, metavar="DIRECTORY")
    show.set_defaults(func=_show)

    publish = actions.add_parser(
        "publish", help="put a directory on the broker's directory stream for the nodes"
    )
    publish.add_argument("file", type=Path, metavar="DIRECTORY")
    publish.add_argument("--ca", type=Path, required=True, help="verified before publishing")
    publish.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="the secretariat's login")
    publish.add_argument("--prefix", default="xb", help="the topology prefix (default xb)")
    publish.add_argument(
        "--provisioned",
        action="store_true",
        help="the exchange and stream exist (topology apply): do not declare them",
    )
    publish.set_defaults(func=_publish)


def _build(args: argparse.Namespace) -> int:
    serial = args.serial if args.serial is not None else next_serial(args.out)
    if args.out.exists():
        previous = parse_directory(args.out.read_bytes()).directory.serial
        if serial <= previous:
            raise ExchangeError(
                f"serial {serial} is not above {previous}, the serial of {args.out}: nodes "
                "would refuse it as a rollback",
                code="usage",
            )
    document = build_directory(args.ca_dir, read_members(args.members), serial=serial)
    staging = args.out.with_name(args.out.name + ".new")
    staging.write_bytes(document)
    staging.replace(args.out)
    directory = verify_directory(document, load_certificate(args.ca_dir / "ca.pem"))
    print(
        f"directory serial {serial} of {directory.body.network}: "
        f"{len(directory.body.members)} members, {len(directory.body.networks)} prosecutor "
        f"networks, valid until {directory.body.next_update.isoformat()} -> {args.out}"
    )
    return EXIT_OK


def _verified(path: Path, ca: Path) -> VerifiedDirectory:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ExchangeError(f"cannot read {path}: {err.strerror}", code="usage") from None
    return verify_directory(data, load_certificate(ca))


def _verify(args: argparse.Namespace) -> int:
    try:
        directory = _verified(args.file, args.ca)
    except VerificationError as err:
        print(f"INVALID {err.code}: {err.detail}", file=sys.stderr)
        return EXIT_INVALID
    print(f"valid: serial {directory.serial}, digest {directory.digest}")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    body = parse_directory(args.file.read_bytes()).directory
    now = datetime.now(UTC)
    state = "EXPIRED" if now > body.next_update else "current"
    print(f"network {body.network}, serial {body.serial} ({state}; not verified: use verify)")
    print(f"issued {body.issued_at.isoformat()}, next update {body.next_update.isoformat()}")
    print("members:")
    for m in body.members:
        print(
            f"  {m.id:<14} {m.country}  {m.role.value:<15} {m.name}  [{len(m.certificates)} cert]"
        )
    for n in body.networks:
        print(f"prosecutor network {n.name}: {', '.join(n.members)}")
    for role, rule in body.permissions.items():
        sends = ", ".join(t.value for t in rule.send) or "nothing"
        receives = ", ".join(t.value for t in rule.receive) or "nothing"
        print(f"{role.value} sends {sends}; receives {receives}")
    return EXIT_OK


def _publish(args: argparse.Namespace) -> int:
    directory = _verified(args.file, args.ca)
    asyncio.run(publish_directory(directory.raw, args.amqp_url, Topology(prefix=args.prefix),
                                  declare=not args.provisioned))  # fmt: skip
    print(f"published directory serial {directory.serial} to {args.prefix}.directory")
    return EXIT_OK


async def publish_directory(
    document: bytes, amqp_url: str, topology: Topology, *, declare: bool = True
) -> None:
    """Publish `document` to the directory exchange and wait for the broker's confirm."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        spec, stream = topology.directory, topology.directory_stream
        if declare:
            exchange = await channel.declare_exchange(
                spec.name, aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await channel.declare_queue(
                stream.name, durable=True, arguments=dict(stream.argument_map)
            )
            await queue.bind(exchange)
        else:
            exchange = await channel.get_exchange(spec.name, ensure=True)
        await exchange.publish(
            aio_pika.Message(
                document,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="",
        )

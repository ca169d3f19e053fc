"""`exchange audit`: an auditor's offline tools for a node's audit log.

`verify` proves the log intact against its checkpoints (and published ones), `replay`
prints the timeline, `report` the deadline compliance of requests, and
`export-checkpoints` writes the signed tree heads an auditor keeps for later, and
`peer-checkpoints` those of other nodes that a node saw (to check against their logs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import orjson

from exchange.audit.checkpoints import Checkpoint, read_checkpoints_jsonl, write_checkpoints_jsonl
from exchange.audit.envelopes import EnvelopeChecker
from exchange.audit.replay import TABLE_COLUMNS, TimelineFilter, timeline
from exchange.audit.report import STATUSES, deadline_report, summary_by_node
from exchange.audit.revocations import Revocations
from exchange.audit.store import AuditStore
from exchange.audit.stream import DEFAULT_MAX_SKEW, StreamReplay, StreamRow
from exchange.audit.verifier import verify_log
from exchange.crypto.pki import CA_CERT_FILE, CRL_FILE
from exchange.crypto.verify import TrustStore
from exchange.errors import AuditError, ExchangeError, FieldError
from exchange.model.common import format_utc, utc_now

EXIT_OK, EXIT_FAILED = 0, 1
_WIDTHS = (7, 24, 22, 28, 36, 16, 13, 18, 18)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify, replay and report on a node's audit log")
    actions = audit.add_subparsers(dest="audit_action", metavar="ACTION", required=True)

    verify = actions.add_parser(
        "verify", help="check every entry, the tree, every checkpoint and envelope"
    )
    _db(verify)
    verify.add_argument(
        "--checkpoints",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="JSON Lines of checkpoints published earlier (detects truncation); repeatable",
    )
    _trust(verify)
    verify.add_argument("--jobs", type=int, default=None, help="worker processes (all cores)")
    verify.set_defaults(func=_verify)

    replay = actions.add_parser("replay", help="the timeline, each entry checked as shown")
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--db", type=Path, metavar="FILE", help="a node's audit log (its node.sqlite3)"
    )
    source.add_argument(
        "--stream",
        metavar="URL",
        help="the network's audit stream on RabbitMQ (amqp[s]://...); needs --ca",
    )
    replay.add_argument("--prefix", default="xb", help="topology prefix of the stream (xb)")
    replay.add_argument("--since", type=_utc_time, help="from this time (RFC 3339 or a date)")
    replay.add_argument("--until", type=_utc_time, help="before this time")
    replay.add_argument("--case", help="only this case reference")
    replay.add_argument("--node", help="only entries with this node as sender or recipient")
    replay.add_argument("--type", dest="kind", help="an event (received) or message type")
    replay.add_argument("--format", choices=("table", "json"), default="table")
    replay.add_argument(
        "--offset",
        type=_stream_offset,
        default="first",
        help="--stream: where to start: first (default), last, next, or an offset",
    )
    replay.add_argument(
        "--max-skew",
        type=float,
        default=DEFAULT_MAX_SKEW.total_seconds(),
        metavar="SECONDS",
        help="--stream: how far a record's signed time may lie from when the broker wrote it",
    )
    _trust(replay)
    replay.set_defaults(func=_replay)

    report = actions.add_parser("report", help="deadline compliance of requests, per node")
    _db(report)
    report.add_argument("--now", type=_utc_time, help="judge deadlines as at this time")
    report.add_argument("--format", choices=("table", "json"), default="table")
    report.set_defaults(func=_report)

    export = actions.add_parser(
        "export-checkpoints", help="write the log's signed checkpoints as JSON Lines"
    )
    _db(export)
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.set_defaults(func=_export)

    peers = actions.add_parser(
        "peer-checkpoints",
        help="the other nodes' checkpoints a node saw, as JSON Lines for `verify --checkpoints`",
    )
    peers.add_argument(
        "--db", type=Path, required=True, metavar="FILE", help="the node's database (node.sqlite3)"
    )
    peers.add_argument("--node", help="only this node's checkpoints")
    peers.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")
    peers.set_defaults(func=_peer_checkpoints)


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, required=True, metavar="FILE", help="the audit log")


def _trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cert",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="CERT",
        help="node certificates (files, or network directories of *.pem)",
    )
    parser.add_argument("--ca", type=Path, help="the network CA: verify every kept envelope again")
    parser.add_argument(
        "--crl",
        type=Path,
        metavar="FILE",
        help="the network's CRL (needs --ca): flag what a revoked certificate signed and a "
        "node logged, or the broker recorded, after its revocation",
    )


def _stream_offset(text: str) -> str | int:
    if text in ("first", "last", "next"):
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"not first, last, next or an offset: {text!r}")


def _utc_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time or date: {text!r}") from None
    if len(text) == 10:  # a date: midnight UTC
        return when.replace(tzinfo=UTC)
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone (e.g. 'Z'): {text!r}")
    return when.astimezone(UTC)


def _open(db: Path) -> AuditStore:
    try:
        return AuditStore.open(db, readonly=True)
    except (OSError, ValueError, sqlite3.DatabaseError) as exc:
        raise ExchangeError(f"cannot read the audit log: {exc}", code="usage") from None


def _cert_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            skip = (CA_CERT_FILE, CRL_FILE)
            files.extend(sorted(p for p in path.glob("*.pem") if p.name not in skip))
        else:
            files.append(path)
    return files


def _checker(args: argparse.Namespace) -> EnvelopeChecker | None:
    crl = _crl(args)
    if args.ca is None:
        return None
    return EnvelopeChecker.from_files(args.ca, _cert_files(args.cert), crl)


def _crl(args: argparse.Namespace) -> Path | None:
    """The --crl file, which means nothing without the --ca that signed it."""
    if args.crl is not None and args.ca is None:
        raise ExchangeError("--crl needs --ca (the CA that signed it)", code="usage")
    crl: Path | None = args.crl
    return crl


# -- verify --------------------------------------------------------------------------------


class _ProgressBar:
    """A one-line progress bar on stderr, redrawn with \\r at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = self._drawn = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._drawn < 0.1 and done < total:
            return
        self._drawn = now
        share = done / total if total else 1.0
        rate = done / max(now - self._started, 1e-9)
        bar = "#" * int(share * 30)
        self._stream.write(f"\rverifying [{bar:<30}] {done:,}/{total:,} entries {rate:,.0f}/s")
        self._stream.flush()

    def finish(self) -> None:
        self._stream.write("\n")
        self._stream.flush()


def _load_checkpoints(paths: Sequence[Path]) -> list[tuple[Checkpoint, str]]:
    loaded: list[tuple[Checkpoint, str]] = []
    for path in paths:
        try:
            loaded.extend((cp, f"from {path.name}") for cp in read_checkpoints_jsonl(path))
        except (OSError, ValueError) as exc:
            raise ExchangeError(f"cannot read checkpoints: {exc}", code="usage") from None
    return loaded


def _verify(args: argparse.Namespace) -> int:
    _open(args.db).close()
    extra = _load_checkpoints(args.checkpoints)
    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    report = verify_log(
        args.db,
        checkpoints=extra,
        cert_paths=_cert_files(args.cert),
        ca_path=args.ca,
        crl_path=_crl(args),
        jobs=args.jobs,
        progress=bar,
    )
    if bar is not None:
        bar.finish()
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    envelopes = f"{report.envelopes_verified:,} envelopes verified again"
    if args.ca is None:
        envelopes = "envelopes not verified (give --ca)"
    print(
        f"{args.db}: node {report.node}, {report.size:,} entries, root {report.root.hex()}; "
        f"{report.checkpoints_verified:,} checkpoints verified; {envelopes}"
    )
    first = report.first
    if first is None:
        print("ok: the audit log verifies")
        return EXIT_OK
    others = report.findings[1:21]
    more = len(report.findings) - 1 - len(others) + report.more_findings
    errors = [_as_field_error(f.index, f.reason) for f in others]
    if more:
        errors.append(FieldError("/", f"and {more} more"))
    raise AuditError(
        f"the audit log does not verify: {first}",
        errors=errors,
        extra={"index": first.index},
    )


def _as_field_error(index: int | None, reason: str) -> FieldError:
    return FieldError(f"/entries/{index}" if index is not None else "/checkpoints", reason)


# -- replay --------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    if args.stream is not None:
        return _replay_stream(args)
    selection = TimelineFilter(
        since=args.since, until=args.until, case=args.case, node=args.node, kind=args.kind
    )
    checker = _checker(args)
    failed = 0
    store = _open(args.db)
    try:
        if args.format == "table":
            print(_table_line(TABLE_COLUMNS))
        for row in timeline(store, selection, checker):
            failed += not row.ok
            if args.format == "json":
                sys.stdout.write(orjson.dumps(row.as_dict()).decode() + "\n")
            else:
                print(_table_line(row.cells()))
    except BrokenPipeError:  # the reader (e.g. `head`) has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        store.close()
    if failed:
        print(f"{failed} shown entries do not verify", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _replay_stream(args: argparse.Namespace) -> int:
    """The network's audit stream, each envelope and checkpoint verified again."""
    if args.ca is None:
        raise ExchangeError("--stream needs --ca (and --cert for the nodes)", code="usage")
    trust = TrustStore.from_files(args.ca, None, _cert_files(args.cert))
    crl = _crl(args)
    revocations = Revocations.from_file(crl, trust.ca) if crl is not None else None
    if args.max_skew < 0:
        raise ExchangeError("--max-skew must not be negative", code="usage")

    def selected(row: StreamRow) -> bool:
        if args.case and row.case != args.case:
            return False
        if args.node and args.node != row.sender and args.node not in row.recipients.split(","):
            return False
        return not (args.kind and args.kind != row.type)

    async def run() -> int:
        failed = shown = 0
        replay = StreamReplay(
            args.stream,
            trust,
            prefix=args.prefix,
            offset=args.offset,
            revocations=revocations,
            max_skew=timedelta(seconds=args.max_skew),
        )
        async for row in replay:
            if not selected(row):
                continue
            shown += 1
            failed += not row.ok
            if args.format == "json":
                sys.stdout.write(orjson.dumps(row.as_dict()).decode() + "\n")
            else:
                print(" ".join(row.cells()))
        print(
            f"{shown} records, {failed} do not verify; {replay.duplicates} duplicate copies "
            "folded into the first",
            file=sys.stderr,
        )
        return EXIT_FAILED if failed else EXIT_OK

    return asyncio.run(run())


def _table_line(cells: Sequence[str]) -> str:
    parts = [c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=False)]
    parts.extend(cells[len(_WIDTHS) :])
    return " ".join(parts).rstrip()


# -- report --------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    now = args.now or utc_now()
    store = _open(args.db)
    try:
        rows = deadline_report(store)
    finally:
        store.close()
    nodes = summary_by_node(rows, now)
    if args.format == "json":
        doc: dict[str, Any] = {
            "now": format_utc(now),
            "requests": [r.as_dict(now) for r in rows],
            "nodes": nodes,
        }
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    print(f"deadlines as at {format_utc(now)}")
    header = ("REQUEST", "TYPE", "CASE", "FROM", "TO", "PRIORITY", "RESPOND BY", "ANSWERED")
    widths = (36, 28, 16, 10, 10, 8, 24, 24)
    print(" ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " STATUS")
    for r in rows:
        cells = (
            r.message_id,
            r.type,
            r.case,
            r.sender,
            r.recipient,
            r.priority,
            format_utc(r.respond_by) if r.respond_by else "-",
            format_utc(r.answered_at) if r.answered_at else "-",
        )
        line = " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        print(f"{line} {r.status(now)}")
    print()
    columns = ("requests", *STATUSES)
    print("per node".ljust(14) + " ".join(c.upper().ljust(12) for c in columns).rstrip())
    for node, counts in nodes.items():
        print(node.ljust(14) + " ".join(str(counts[c]).ljust(12) for c in columns).rstrip())
    return EXIT_OK


# -- export --------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        count = write_checkpoints_jsonl(store.checkpoints(), args.out)
    finally:
        store.close()
    print(f"wrote {count} checkpoints to {args.out}")
    return EXIT_OK


def _peer_checkpoints(args: argparse.Namespace) -> int:
    if not args.db.is_file():
        raise ExchangeError(f"no such file: {args.db}", code="usage")
    conn = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    try:
        query = "SELECT body FROM peer_checkpoints"
        rows = (
            conn.execute(query + " WHERE node = ? ORDER BY size", (args.node,))
            if args.node
            else conn.execute(query + " ORDER BY node, size")
        )
        seen = [Checkpoint.from_json(bytes(row[0])) for row in rows]
    except sqlite3.DatabaseError as exc:
        raise ExchangeError(f"{args.db} is not a peers file: {exc}", code="usage") from None
    finally:
        conn.close()
    if args.out is None:
        for cp in seen:
            sys.stdout.write(cp.to_json().decode() + "\n")
        return EXIT_OK
    count = write_checkpoints_jsonl(seen, args.out)
    print(f"wrote {count} checkpoints to {args.out}", file=sys.stderr)
    return EXIT_OK

"""The auditor's pages: the checkpoint, a verification of the whole log, entries, inclusion.

Everything needs the `audit` permission and shows what the API's audit routes show: entries
go through `audit_http.entry_item`, so an auditor gets an entry that keeps a payload with
the payload withheld. A verification runs `exchange audit verify`'s own `verify_log` (with
the network CA, CRL and node certificates, so every kept envelope is verified again) on a
consistent snapshot of the log taken when it starts, off the event loop, one at a time per
node; its page shows the progress. An inclusion check takes the entries that name a
message, computes each leaf hash from the entry's bytes, and checks the RFC 9162 proof
against a signed checkpoint whose signature it checks too.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchange.audit.checkpoints import Checkpoint, check_checkpoint
from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.audit.merkle import leaf_hash, verify_inclusion
from exchange.audit.verifier import VerifyReport, verify_log
from exchange.config import NodeConfig
from exchange.console.messages import bad_parameter, case_ref, cursor
from exchange.console.web import CONSOLE, PREFIX, SESSION, page, render
from exchange.errors import ExchangeError, RequestError
from exchange.gateway import keys
from exchange.gateway.audit_http import entry_item
from exchange.gateway.auth import Permission
from exchange.model.common import utc_now

SEARCH_PAGE = 100
MAX_PROOFS = 20
KEPT_JOBS = 5


@dataclass
class VerifyJob:
    """One verification of the node's log, started from the console."""

    id: str
    by: str
    started: datetime
    done: int = 0
    total: int = 0
    finished: datetime | None = None
    report: VerifyReport | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def percent(self) -> int:
        return (
            100
            if self.total == 0 and not self.running
            else int(100 * self.done / max(1, self.total))
        )


def _snapshot_and_verify(
    job: VerifyJob, config: NodeConfig, certificates: list[x509.Certificate]
) -> VerifyReport:
    """Copy the log as it is now (SQLite's online backup: one consistent read), verify it
    with the network CA and the members' `certificates` (those of the directory in use)."""
    with tempfile.TemporaryDirectory(prefix="xb-verify-") as folder:
        copy = Path(folder) / "snapshot.sqlite3"
        cert_paths = []
        for number, certificate in enumerate(certificates):
            path = Path(folder) / f"member-{number}.pem"
            path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
            cert_paths.append(path)
        source = sqlite3.connect(f"{config.database_path.resolve().as_uri()}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        return verify_log(
            copy,
            cert_paths=cert_paths,
            ca_path=config.ca_path,
            crl_path=config.crl_path,
            jobs=max(1, (os.cpu_count() or 2) // 2),  # leave the node a core
            progress=progress,
        )


async def _run(job: VerifyJob, config: NodeConfig, certificates: list[x509.Certificate]) -> None:
    try:
        job.report = await asyncio.to_thread(_snapshot_and_verify, job, config, certificates)
    except Exception as exc:  # shown on the job's page; the node goes on
        job.error = f"{type(exc).__name__}: {exc}"
    finally:
        job.finished = utc_now()


def _jobs(request: web.Request) -> dict[str, VerifyJob]:
    jobs: dict[str, VerifyJob] = request.app[CONSOLE].jobs
    return jobs


async def _checkpoint(request: web.Request) -> tuple[Checkpoint | None, str | None]:
    """The latest signed checkpoint (signed now if entries were added) and why its
    signature does not verify (None when it does)."""
    checkpoint = await request.app[keys.AUDIT].checkpoint()
    if checkpoint is None:
        return None, None
    try:
        check_checkpoint(checkpoint, request.app[keys.TRUST])
    except ExchangeError as err:
        return checkpoint, err.detail
    return checkpoint, None


@page(Permission.AUDIT)
async def audit_home(request: web.Request) -> web.StreamResponse:
    checkpoint, problem = await _checkpoint(request)
    jobs = sorted(_jobs(request).values(), key=lambda j: j.started, reverse=True)
    context = {
        "title": "Audit log",
        "checkpoint": checkpoint,
        "checkpoint_problem": problem,
        "size": request.app[keys.AUDIT].head.size,
        "jobs": jobs,
    }
    return render(request, "audit.html", context)


@page(Permission.AUDIT)
async def verify_start(request: web.Request) -> web.StreamResponse:
    jobs = _jobs(request)
    running = next((j for j in jobs.values() if j.running), None)
    if running is None:
        principal = request[SESSION].principal
        running = VerifyJob(secrets.token_hex(8), principal.token_id, utc_now())
        for old in sorted(jobs.values(), key=lambda j: j.started)[
            : max(0, len(jobs) - KEPT_JOBS + 1)
        ]:
            jobs.pop(old.id, None)
        jobs[running.id] = running
        directory = request.app[keys.DIRECTORY].directory
        members = [c for certs in directory.certificates.values() for c in certs]
        running.task = asyncio.create_task(_run(running, request.app[keys.CONFIG], members))
    raise web.HTTPSeeOther(f"{PREFIX}/audit/verify/{running.id}")


@page(Permission.AUDIT)
async def verify_status(request: web.Request) -> web.StreamResponse:
    job = _jobs(request).get(request.match_info["job"])
    if job is None:
        raise RequestError("no verification with this id (kept: the last five)", code="not_found")
    return render(request, "verify.html", {"title": "Log verification", "job": job})


_CLAUSES = {
    "event": "json_extract(CAST(body AS TEXT), '$.event') = :event",
    "case": "(json_extract(CAST(body AS TEXT), '$.case') = :case"
    " OR json_extract(CAST(body AS TEXT), '$.envelope.header.case') = :case"
    " OR EXISTS (SELECT 1 FROM json_each(CAST(body AS TEXT), '$.detail.cases')"
    " WHERE value = :case))",
    "message": "(json_extract(CAST(body AS TEXT), '$.message_id') = :message"
    " OR json_extract(CAST(body AS TEXT), '$.envelope.header.id') = :message"
    " OR EXISTS (SELECT 1 FROM json_each(CAST(body AS TEXT), '$.detail.ids')"
    " WHERE value = :message))",
    "since": "json_extract(CAST(body AS TEXT), '$.time') >= :since",
    "until": "json_extract(CAST(body AS TEXT), '$.time') < :until",
    "before": "idx < :before",
}
"""The search's conditions; the values are always bound parameters."""


def _search(path: Path, filters: dict[str, Any], limit: int) -> list[AuditEntry]:
    """Entries matching every filter, newest first (a read-only connection of its own)."""
    where, args = ["1 = 1"], dict(filters)
    for name in ("event", "case", "message"):
        if name in filters:
            where.append(_CLAUSES[name])
    for name in ("since", "until", "before"):
        if name in filters:
            where.append(_CLAUSES[name])
    query = (
        f"SELECT body FROM entries WHERE {' AND '.join(where)} "  # noqa: S608 (fixed clauses)
        "ORDER BY idx DESC LIMIT :limit"
    )
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(query, {**args, "limit": limit}).fetchall()
    finally:
        conn.close()
    return [AuditEntry.from_bytes(bytes(row[0])) for row in rows]


def _time_filter(request: web.Request, name: str) -> str | None:
    value = request.query.get(name) or None
    if value is None:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise bad_parameter(name, "a date (YYYY-MM-DD) or an RFC 3339 time") from None
    return value


def _filters(request: web.Request) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    event = request.query.get("event") or None
    if event is not None:
        if event not in {e.value for e in AuditEvent}:
            raise bad_parameter("event", "one of the audit events")
        filters["event"] = event
    case = case_ref(request.query.get("case"))
    if case is not None:
        filters["case"] = case
    message = request.query.get("message") or None
    if message is not None:
        try:
            filters["message"] = str(UUID(message))
        except ValueError:
            raise bad_parameter("message", "a message id (UUID)") from None
    for name in ("since", "until"):
        value = _time_filter(request, name)
        if value is not None:
            filters[name] = value
    before = cursor(request, "before")
    if before is not None:
        filters["before"] = before
    return filters


def entry_view(entry: AuditEntry, payloads: bool) -> dict[str, Any]:
    """An entry as the API serves it to this role, with its document decoded for reading."""
    item = entry_item(entry, payloads=payloads)
    document = item.get("entry")
    if document is None and "body" in item:
        document = orjson.loads(base64.b64decode(item["body"]))
    item["document"] = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    item["actor"], item["role"] = entry.actor, entry.role
    return item


@page(Permission.AUDIT)
async def entries(request: web.Request) -> web.StreamResponse:
    filters = _filters(request)
    path = request.app[keys.CONFIG].database_path
    found = await asyncio.to_thread(_search, path, filters, SEARCH_PAGE)
    payloads = request[SESSION].principal.may(Permission.PAYLOADS)
    items = [entry_view(e, payloads) for e in found]
    shown = {k: str(v) for k, v in filters.items() if k != "before"}
    context = {
        "title": "Audit entries",
        "items": items,
        "filters": shown,
        "events": [e.value for e in AuditEvent],
        "older": items[-1]["index"] if len(items) == SEARCH_PAGE else None,
        "size": request.app[keys.AUDIT].head.size,
    }
    return render(request, "entries.html", context)


@page(Permission.AUDIT)
async def entry(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["index"]
    audit = request.app[keys.AUDIT]
    if not raw.isdigit() or len(raw) > 18 or int(raw) >= audit.head.size:
        raise RequestError("no audit entry with this index", code="not_found")
    (found,) = await audit.entries(int(raw), 1)
    payloads = request[SESSION].principal.may(Permission.PAYLOADS)
    item = entry_view(found, payloads)
    return render(request, "entry.html", {"title": f"Audit entry {raw}", "item": item})


@page(Permission.AUDIT)
async def inclusion(request: web.Request) -> web.StreamResponse:
    wanted = request.query.get("message") or None
    context: dict[str, Any] = {"title": "Inclusion check", "message": wanted or "", "results": []}
    if wanted is None:
        return render(request, "inclusion.html", context)
    try:
        message = str(UUID(wanted))
    except ValueError:
        raise bad_parameter("message", "a message id (UUID)") from None
    audit = request.app[keys.AUDIT]
    checkpoint, problem = await _checkpoint(request)
    if checkpoint is None:
        raise RequestError("the audit log has no signed checkpoint yet", code="not_found")
    path = request.app[keys.CONFIG].database_path
    found = await asyncio.to_thread(_search, path, {"message": message}, MAX_PROOFS)
    root = checkpoint.root_hash
    results = []
    for item in sorted(found, key=lambda e: e.index):
        leaf = leaf_hash(item.body)
        covered = item.index < checkpoint.size
        proof = await audit.inclusion_proof(item.index, checkpoint.size) if covered else None
        results.append(
            {
                "index": item.index,
                "event": item.event.value,
                "time": item.time,
                "leaf": leaf.hex(),
                "covered": covered,
                "path": [h.hex() for h in proof.path] if proof else [],
                "included": bool(
                    proof and verify_inclusion(item.index, checkpoint.size, leaf, proof.path, root)
                ),
            }
        )
    context.update(
        message=message,
        checkpoint=checkpoint,
        checkpoint_problem=problem,
        results=results,
        all_included=problem is None
        and any(r["covered"] for r in results)
        and all(r["included"] for r in results if r["covered"]),
    )
    return render(request, "inclusion.html", context)

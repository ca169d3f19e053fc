"""The auditor's HTTP view of the node's audit log: checkpoint, proofs, entries.

Everything here is read-only and needs the `audit` permission. Proofs follow RFC 9162
2.1.3-2.1.4 with hex hashes, so an auditor can check them with any implementation. Each
entry comes with its leaf hash and, for a role that may read payloads (or an entry that
keeps none), the exact bytes that were hashed (base64), so the leaf can be recomputed. An
auditor gets an entry that keeps a payload as its document with that payload replaced by
its digest (`redacted`: true, no `body`): the leaf hashes still fold to the signed root,
and whoever holds the payload can restore the bytes (`exchange.audit.redaction`).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import BeforeValidator, Field

from exchange.audit.entries import AuditEntry
from exchange.audit.merkle import leaf_hash
from exchange.audit.redaction import redact_entry
from exchange.errors import ExchangeError
from exchange.gateway import keys
from exchange.gateway.auth import Permission
from exchange.gateway.params import (
    MAX_CURSOR,
    AsciiInt,
    Cursor,
    RouteParams,
    ascii_integer,
    takes,
)
from exchange.gateway.route_spec import Route
from exchange.gateway.views import json_response
from exchange.model.common import NodeId

MAX_ENTRIES_PAGE = 1000
DEFAULT_ENTRIES_PAGE = 100

TreeSize = Annotated[int, Field(ge=1, le=MAX_CURSOR), BeforeValidator(ascii_integer)]


class InclusionQuery(RouteParams):
    index: Cursor = Field(description="The entry's index (less than `size`).")
    size: TreeSize | None = Field(None, description="The tree size (default: the whole log).")


class ConsistencyQuery(RouteParams):
    from_: TreeSize = Field(alias="from", description="The older size (at most `to`).")
    to: TreeSize | None = Field(None, description="The newer size (default: the whole log).")


class EntriesQuery(RouteParams):
    from_: Cursor = Field(0, alias="from", description="The first index.")
    limit: AsciiInt = Field(
        DEFAULT_ENTRIES_PAGE, ge=1, le=MAX_ENTRIES_PAGE, description="At most this many entries."
    )


class PeersQuery(RouteParams):
    node: NodeId | None = Field(None, description="Only this node's checkpoints.")


def _no_such_proof(logged: int, why: str) -> ExchangeError:
    """Sizes that name no proof (beyond the log, or the wrong way round): a resource that
    does not exist, like an unknown message id. Every pair the schemas allow is answered
    either with its proof or with this 404, never with a 400."""
    return ExchangeError(f"no such proof: {why} (the log has {logged} entries)", code="not_found")


async def get_checkpoint(request: web.Request) -> web.StreamResponse:
    """The latest signed tree head, signing a new one if entries were added since."""
    audit = request.app[keys.AUDIT]
    checkpoint = await audit.checkpoint()
    if checkpoint is None:
        raise ExchangeError("the audit log has no signed checkpoint yet", code="not_found")
    return json_response(checkpoint.as_dict())


@takes(InclusionQuery)
async def get_inclusion_proof(request: web.Request, params: InclusionQuery) -> web.StreamResponse:
    audit = request.app[keys.AUDIT]
    logged = audit.head.size
    index, size = params.index, logged if params.size is None else params.size
    if size > logged:
        raise _no_such_proof(logged, f"the log has no tree of size {size} yet")
    if index >= size:
        raise _no_such_proof(logged, f"a tree of size {size} has no entry {index}")
    proof = await audit.inclusion_proof(index, size)
    return json_response(proof.as_dict())


@takes(ConsistencyQuery)
async def get_consistency_proof(
    request: web.Request, params: ConsistencyQuery
) -> web.StreamResponse:
    audit = request.app[keys.AUDIT]
    logged = audit.head.size
    old, new = params.from_, logged if params.to is None else params.to
    if max(old, new) > logged:
        raise _no_such_proof(logged, f"the log has no tree of size {max(old, new)} yet")
    if old > new:
        raise _no_such_proof(logged, f"a tree of size {old} is no prefix of one of size {new}")
    proof = await audit.consistency_proof(old, new)
    return json_response(proof.as_dict())


def entry_item(entry: AuditEntry, *, payloads: bool) -> dict[str, Any]:
    """One entry as served: its bytes, or (for a role without payloads) its document with
    the payload withheld when it keeps one."""
    item: dict[str, Any] = {
        "index": entry.index,
        "time": entry.time.isoformat().replace("+00:00", "Z"),
        "event": entry.event.value,
        "message_id": entry.message_id,
        "case": entry.case,
        "code": entry.code,
        "digest": entry.digest,
        "leaf_hash": leaf_hash(entry.body).hex(),
        "redacted": False,
    }
    if not payloads and entry.envelope is not None:
        document, redacted = redact_entry(orjson.loads(entry.body))
        if redacted:
            item.update(redacted=True, entry=document)
            return item
    item["body"] = base64.b64encode(entry.body).decode("ascii")
    return item


@takes(EntriesQuery)
async def list_entries(request: web.Request, params: EntriesQuery) -> web.StreamResponse:
    audit = request.app[keys.AUDIT]
    start = params.from_
    entries = await audit.entries(start, params.limit)
    payloads = request[keys.PRINCIPAL].may(Permission.PAYLOADS)
    items = [entry_item(e, payloads=payloads) for e in entries]
    head = audit.head
    return json_response(
        {
            "items": items,
            "next": start + len(items),
            "size": head.size,
            "root": head.root.hex(),
        }
    )


@takes(PeersQuery)
async def list_peer_checkpoints(request: web.Request, params: PeersQuery) -> web.StreamResponse:
    """The other nodes' checkpoints this node has seen and checked (optionally of one)."""
    seen = await request.app[keys.PEERS].seen(params.node)
    return json_response({"items": [cp.as_dict() for cp in seen]})


_HEX = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_INT = {"type": "integer", "minimum": 0}
_CHECKPOINT = {
    "type": "object",
    "properties": {
        "node": {"type": "string"},
        "size": _INT,
        "root": _HEX,
        "time": {"type": "string", "format": "date-time"},
        "kid": _HEX,
        "signature": {"type": "string"},
    },
    "required": ["node", "size", "root", "time", "kid", "signature"],
}

_ENTRY = {
    "type": "object",
    "properties": {
        "index": _INT,
        "time": {"type": "string", "format": "date-time"},
        "event": {"type": "string"},
        "message_id": {"type": ["string", "null"]},
        "case": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]},
        "digest": {"type": ["string", "null"]},
        "leaf_hash": _HEX,
        "redacted": {"type": "boolean"},
        "body": {"type": "string", "contentEncoding": "base64"},
        "entry": {"type": "object"},
    },
    "required": ["index", "time", "event", "leaf_hash", "redacted"],
}

AUDIT_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/audit/checkpoint",
        get_checkpoint,
        "getAuditCheckpoint",
        "The latest signed checkpoint (tree head) of this node's audit log",
        Permission.AUDIT,
        response_schema=_CHECKPOINT,
        errors=("not_found",),
        tags=("audit",),
        description="Signs a new checkpoint first if entries were added since the last one. "
        "The signature is Ed25519 over the RFC 8785 form of the other fields.",
    ),
    Route(
        "GET",
        "/v1/audit/proof/inclusion",
        get_inclusion_proof,
        "getAuditInclusionProof",
        "RFC 9162 inclusion proof of one entry in the tree of a given size",
        Permission.AUDIT,
        response_schema={
            "type": "object",
            "properties": {
                "index": _INT,
                "size": _INT,
                "leaf_hash": _HEX,
                "path": {"type": "array", "items": _HEX},
                "root": _HEX,
            },
            "required": ["index", "size", "leaf_hash", "path", "root"],
        },
        errors=("not_found",),
        tags=("audit",),
        description="An entry the tree does not hold (an index beyond the log, or not less "
        "than `size`) or a size beyond the log is 404 `not_found`: there is no such proof.",
    ),
    Route(
        "GET",
        "/v1/audit/proof/consistency",
        get_consistency_proof,
        "getAuditConsistencyProof",
        "RFC 9162 consistency proof between two tree sizes",
        Permission.AUDIT,
        response_schema={
            "type": "object",
            "properties": {
                "from": _INT,
                "to": _INT,
                "path": {"type": "array", "items": _HEX},
                "from_root": _HEX,
                "to_root": _HEX,
            },
            "required": ["from", "to", "path", "from_root", "to_root"],
        },
        errors=("not_found",),
        tags=("audit",),
        description="A size beyond the log, or a `from` larger than `to`, is 404 `not_found`: "
        "there is no such proof.",
    ),
    Route(
        "GET",
        "/v1/audit/entries",
        list_entries,
        "listAuditEntries",
        "Audit log entries from an index, with their leaf hashes and the bytes that were hashed",
        Permission.AUDIT,
        response_schema={
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": _ENTRY},
                "next": _INT,
                "size": _INT,
                "root": _HEX,
            },
            "required": ["items", "next", "size", "root"],
        },
        tags=("audit",),
        description="`leaf_hash` = SHA-256(0x00 || the entry's canonical bytes); the leaf "
        "hashes of entries 0..size-1 fold to `root` (RFC 9162). `body` is base64 of those "
        "bytes. A role that may not read payloads (an auditor) gets an entry that keeps a "
        "payload without `body`, as `entry`: the document with the envelope's payload "
        "replaced by `withheld: {payload: <hex SHA-256 of its RFC 8785 form>}` "
        "(`redacted`: true). Putting the payload back and canonicalizing gives the bytes.",
    ),
    Route(
        "GET",
        "/v1/audit/peers",
        list_peer_checkpoints,
        "listPeerCheckpoints",
        "Other nodes' checkpoints this node has seen, checked and kept",
        Permission.AUDIT,
        response_schema={
            "type": "object",
            "properties": {"items": {"type": "array", "items": _CHECKPOINT}},
            "required": ["items"],
        },
        tags=("audit",),
        description="Every envelope a node publishes carries its latest checkpoint; the "
        "recipient keeps each new one that is validly signed and agrees with those seen "
        "before (one root per size, time growing with size). Ordered by node and size; "
        "check them against that node's log with `exchange audit verify --checkpoints`.",
    ),
)

"""The auditor's HTTP view of the node's audit log: checkpoint, proofs, entries.

Everything here is read-only and needs the `audit` permission. Proofs follow RFC 9162
2.1.3-2.1.4 with hex hashes, so an auditor can check them with any implementation; the
entries come with the exact bytes that were hashed (base64), so leaves can be recomputed.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from aiohttp import web

from exchange.errors import AuditError, ExchangeError, RequestError
from exchange.gateway import keys
from exchange.gateway.auth import Permission
from exchange.gateway.route_spec import Param, Route
from exchange.gateway.views import json_response
from exchange.model.common import NODE_ID_PATTERN

NODE_ID = re.compile(NODE_ID_PATTERN)

MAX_ENTRIES_PAGE = 1000
DEFAULT_ENTRIES_PAGE = 100


def _int_param(request: web.Request, name: str, *, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise RequestError(
                f"the query parameter {name!r} is required", code="request.bad_parameter"
            )
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise RequestError(
            f"the query parameter {name!r} must be a non-negative integer",
            code="request.bad_parameter",
        )
    return int(raw)


async def get_checkpoint(request: web.Request) -> web.StreamResponse:
    """The latest signed tree head, signing a new one if entries were added since."""
    audit = request.app[keys.AUDIT]
    checkpoint = await audit.checkpoint()
    if checkpoint is None:
        raise ExchangeError("the audit log has no signed checkpoint yet", code="not_found")
    return json_response(checkpoint.as_dict())


async def get_inclusion_proof(request: web.Request) -> web.StreamResponse:
    audit = request.app[keys.AUDIT]
    index = _int_param(request, "index")
    size = _int_param(request, "size", default=audit.head.size)
    if not 0 <= index < size <= audit.head.size:
        raise RequestError(
            f"need 0 <= index < size <= {audit.head.size} (the log's size)",
            code="request.bad_parameter",
        )
    proof = await audit.inclusion_proof(index, size)
    return json_response(proof.as_dict())


async def get_consistency_proof(request: web.Request) -> web.StreamResponse:
    audit = request.app[keys.AUDIT]
    old = _int_param(request, "from")
    new = _int_param(request, "to", default=audit.head.size)
    if not 0 < old <= new <= audit.head.size:
        raise RequestError(
            f"need 0 < from <= to <= {audit.head.size} (the log's size)",
            code="request.bad_parameter",
        )
    proof = await audit.consistency_proof(old, new)
    return json_response(proof.as_dict())


async def list_entries(request: web.Request) -> web.StreamResponse:
    audit = request.app[keys.AUDIT]
    start = _int_param(request, "from", default=0)
    limit = _int_param(request, "limit", default=DEFAULT_ENTRIES_PAGE)
    if not 1 <= limit <= MAX_ENTRIES_PAGE:
        raise RequestError(
            f"limit must be within 1..{MAX_ENTRIES_PAGE}", code="request.bad_parameter"
        )
    try:
        entries = await audit.entries(start, limit)
    except AuditError:
        raise
    items: list[dict[str, Any]] = [
        {
            "index": e.index,
            "time": e.time.isoformat().replace("+00:00", "Z"),
            "event": e.event.value,
            "message_id": e.message_id,
            "case": e.case,
            "code": e.code,
            "digest": e.digest,
            "body": base64.b64encode(e.body).decode("ascii"),
        }
        for e in entries
    ]
    head = audit.head
    return json_response(
        {
            "items": items,
            "next": start + len(items),
            "size": head.size,
            "root": head.root.hex(),
        }
    )


async def list_peer_checkpoints(request: web.Request) -> web.StreamResponse:
    """The other nodes' checkpoints this node has seen and checked (optionally of one)."""
    node = request.query.get("node")
    if node is not None and not NODE_ID.fullmatch(node):
        raise RequestError(
            "the query parameter 'node' must be a node id like RS-PPO", code="request.bad_parameter"
        )
    seen = await request.app[keys.PEERS].seen(node)
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
        },
        params=(
            Param("index", "query", "The entry's index.", _INT, required=True),
            Param("size", "query", "The tree size (default: the whole log).", _INT),
        ),
        errors=("request.bad_parameter",),
        tags=("audit",),
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
        },
        params=(
            Param("from", "query", "The older size (at least 1).", _INT, required=True),
            Param("to", "query", "The newer size (default: the whole log).", _INT),
        ),
        errors=("request.bad_parameter",),
        tags=("audit",),
    ),
    Route(
        "GET",
        "/v1/audit/entries",
        list_entries,
        "listAuditEntries",
        "Audit log entries from an index, with the exact bytes that were hashed",
        Permission.AUDIT,
        response_schema={
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"type": "object"}},
                "next": _INT,
                "size": _INT,
                "root": _HEX,
            },
        },
        params=(
            Param("from", "query", "The first index (default 0).", _INT),
            Param(
                "limit",
                "query",
                "At most this many entries.",
                {"type": "integer", "minimum": 1, "maximum": MAX_ENTRIES_PAGE},
            ),
        ),
        errors=("request.bad_parameter",),
        tags=("audit",),
        description="`body` is base64 of the canonical entry bytes: leaf = SHA-256(0x00 || body).",
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
        params=(Param("node", "query", "Only this node's checkpoints.", {"type": "string"}),),
        errors=("request.bad_parameter",),
        tags=("audit",),
        description="Every envelope a node publishes carries its latest checkpoint; the "
        "recipient keeps each new one that is validly signed and agrees with those seen "
        "before (one root per size, time growing with size). Ordered by node and size; "
        "check them against that node's log with `exchange audit verify --checkpoints`.",
    ),
)

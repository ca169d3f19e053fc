"""Other nodes' checkpoints as this node sees them: gossip that makes a split view visible.

Every envelope a node publishes carries its latest signed checkpoint in the AMQP header
`x-xb-checkpoint` (`CHECKPOINT_HEADER`). A recipient checks each checkpoint it has not seen
before:

- it parses strictly, names the node that sent the envelope (the broker-checked routing
  key's sender), and is signed by a certificate of that node which the network's trust
  store accepts at the checkpoint's time (`check_checkpoint`); else `checkpoint.invalid`;
- it agrees with every checkpoint of that node seen before: the same size has the same
  root, and a larger size never has an earlier time (a log only grows); else
  `checkpoint.conflict`: the node showed two different histories, or rewound its log.

A new valid checkpoint is kept in the node's database and, in the same transaction, recorded
in the node's own audit log as `peer-checkpoint` (the evidence is then as tamper-evident as
the rest); a refused one is recorded as `rejected` with its code and both checkpoints in the
detail. The header is outside the envelope's signature, so the broker can vary it at will: an
invalid one (`checkpoint.invalid`) is a transport problem, audited and logged as a warning
about the header the envelope came with, never as the sender's fault. A conflict is
different: both checkpoints carry the node's own signature, so it is evidence against that
node and logged as an error.
Consistency between checkpoints of different sizes needs the peer's log itself: an auditor
exports what a node saw (`exchange audit peers --db node.sqlite3 --node N --out FILE`) and
checks it against N's log with `exchange audit verify --db <N's node.sqlite3> --checkpoints
FILE`. A checkpoint never stops a message: the envelope is judged on its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exchange.audit.checkpoints import Checkpoint, check_checkpoint
from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.crypto.verify import TrustStore
from exchange.errors import ExchangeError
from exchange.log import get_logger
from exchange.model.common import format_utc
from exchange.storage.sqlite_thread import SqliteThread

_log = get_logger(__name__)

CHECKPOINT_HEADER = "x-xb-checkpoint"
MAX_CHECKPOINT_BYTES = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_checkpoints (
    node TEXT NOT NULL,
    size INTEGER NOT NULL,
    time TEXT NOT NULL,
    root TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (node, size)
) WITHOUT ROWID;
"""


def setup_schema(conn: sqlite3.Connection) -> None:
    """Create the table inside the caller's transaction."""
    conn.execute(_SCHEMA)  # one statement: `executescript` would commit on its own


@dataclass(frozen=True, slots=True)
class Observation:
    """What checking one header gave: `new` (recorded), `known`, or a refusal `code`."""

    outcome: str  # "new" | "known" | "refused"
    code: str | None = None
    reason: str | None = None


KNOWN = Observation("known")


class Gossip:
    """The `x-xb-checkpoint` header for this node's outgoing envelopes: the latest
    checkpoint of its own log (encoded once per checkpoint)."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._checkpoint: Checkpoint | None = None
        self._value = ""

    def headers(self) -> dict[str, str]:
        checkpoint = self._audit.latest_checkpoint
        if checkpoint is None:
            return {}
        if checkpoint is not self._checkpoint:
            self._checkpoint, self._value = checkpoint, checkpoint.to_json().decode()
        return {CHECKPOINT_HEADER: self._value}


class PeerCheckpoints:
    """The checkpoints of other nodes seen so far, checked as they arrive."""

    def __init__(self, db: SqliteThread, audit: AuditLog, trust: TrustStore, node_id: str) -> None:
        self._db = db
        self._audit = audit
        self._trust = trust
        self.node_id = node_id
        self._last: dict[str, bytes] = {}  # node -> the body last seen: the common case
        self._refused: dict[str, bytes] = {}  # node -> the body last refused
        self._refused_code: dict[str, str] = {}

    @classmethod
    async def beside(cls, audit: AuditLog, trust: TrustStore, node_id: str) -> PeerCheckpoints:
        """Peer checkpoints kept in the audit log's own database (its table created there if
        need be); a node's database has the table already."""
        await audit.database.call(setup_schema)
        return cls(audit.database, audit, trust, node_id)

    async def observe_headers(self, headers: Mapping[str, object], sender: str) -> None:
        """Check the checkpoint an envelope from `sender` (verified) carries, if any; never
        raises: a checkpoint is evidence about the sender, never a reason to refuse."""
        raw = headers.get(CHECKPOINT_HEADER)
        if raw is None:
            return
        try:
            await self.observe(raw, sender)
        except Exception:
            _log.exception("peer_checkpoint.check_failed", node=self.node_id, peer=sender)

    async def observe(self, raw: object, sender: str) -> Observation:
        """Check the checkpoint header `raw` of an envelope that `sender` published."""
        body = raw.encode() if isinstance(raw, str) else raw
        if not isinstance(body, bytes):
            body = repr(raw).encode()[:MAX_CHECKPOINT_BYTES]
            return await self._refuse(sender, body, "checkpoint.invalid", "not a string", None)
        if body == self._last.get(sender):
            return KNOWN
        if body == self._refused.get(sender):  # the same bad header again: refused once
            return Observation("refused", self._refused_code[sender], "as before")
        if len(body) > MAX_CHECKPOINT_BYTES:
            return await self._refuse(
                sender, body, "checkpoint.invalid", f"over {MAX_CHECKPOINT_BYTES} bytes", None
            )
        try:
            cp = Checkpoint.from_json(body)
        except ValueError as exc:
            return await self._refuse(sender, body, "checkpoint.invalid", str(exc), None)
        if cp.node != sender:
            return await self._refuse(
                sender, body, "checkpoint.invalid", f"it names {cp.node}, not its sender", cp
            )
        try:
            check_checkpoint(cp, self._trust)
        except ExchangeError as err:
            return await self._refuse(sender, body, "checkpoint.invalid", err.detail, cp)
        conflict, same = await self._db.call(lambda conn: _compare(conn, cp))
        if conflict is not None:
            earlier, reason = conflict
            return await self._refuse(sender, body, "checkpoint.conflict", reason, cp, earlier)
        self._last[sender] = body
        if same:
            return KNOWN
        entry = EntryFields.build(AuditEvent.PEER_CHECKPOINT, detail={"checkpoint": cp.as_dict()})

        def keep(conn: sqlite3.Connection) -> bool:
            if not _insert(conn, cp, body):
                return False
            self._audit.write(conn, entry)
            return True

        if not await self._db.call(keep):
            return KNOWN
        _log.info("peer_checkpoint.seen", node=self.node_id, peer=sender, size=cp.size)
        return Observation("new")

    async def _refuse(
        self,
        sender: str,
        body: bytes,
        code: str,
        reason: str,
        cp: Checkpoint | None,
        earlier: Mapping[str, Any] | None = None,
    ) -> Observation:
        detail: dict[str, Any]
        if code == "checkpoint.invalid":
            # Unsigned: the broker (or anyone on the path) could have written it.
            detail = {
                "source": "transport",
                "header": CHECKPOINT_HEADER,
                "carried_by_envelope_from": sender,
                "reason": reason,
                "note": f"came in the unsigned AMQP header {CHECKPOINT_HEADER}, which the "
                "broker could have altered: no evidence against the envelope's sender",
            }
        else:
            detail = {"from": sender, "reason": reason}
        if cp is not None:
            detail["checkpoint"] = cp.as_dict()
        if earlier is not None:
            detail["earlier"] = dict(earlier)
        self._refused[sender], self._refused_code[sender] = body, code
        await self._audit.append(AuditEvent.REJECTED, code=code, detail=detail)
        if code == "checkpoint.invalid":
            _log.warning(
                "transport.checkpoint_header_invalid",
                node=self.node_id,
                header=CHECKPOINT_HEADER,
                envelope_from=sender,
                code=code,
                reason=reason,
            )
        else:
            _log.error(
                "peer_checkpoint.refused", node=self.node_id, peer=sender, code=code, reason=reason
            )
        return Observation("refused", code, reason)

    async def seen(self, node: str | None = None) -> list[Checkpoint]:
        """Every checkpoint kept (of `node`, or of all), by node and size."""

        def run(conn: sqlite3.Connection) -> list[bytes]:
            if node is None:
                rows = conn.execute("SELECT body FROM peer_checkpoints ORDER BY node, size")
            else:
                rows = conn.execute(
                    "SELECT body FROM peer_checkpoints WHERE node = ? ORDER BY size", (node,)
                )
            return [bytes(row[0]) for row in rows]

        return [Checkpoint.from_json(body) for body in await self._db.call(run)]


_SELECT_SAME = "SELECT body FROM peer_checkpoints WHERE node = ? AND size = ?"
_SELECT_CONTRADICTING = (
    (
        "SELECT body FROM peer_checkpoints WHERE node = ? AND size < ? AND time > ? "
        "ORDER BY size DESC LIMIT 1",
        "is dated before size {size}",
    ),
    (
        "SELECT body FROM peer_checkpoints WHERE node = ? AND size > ? AND time < ? "
        "ORDER BY size LIMIT 1",
        "is dated after size {size}: the log was rewound",
    ),
)


def _one(conn: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> Checkpoint | None:
    row = conn.execute(query, args).fetchone()
    return None if row is None else Checkpoint.from_json(bytes(row[0]))


def _compare(
    conn: sqlite3.Connection, cp: Checkpoint
) -> tuple[tuple[dict[str, Any], str] | None, bool]:
    """(conflict with an earlier checkpoint of the node and why, or None; seen already)."""
    same = _one(conn, _SELECT_SAME, (cp.node, cp.size))
    if same is not None:
        if same.root != cp.root:
            return (same.as_dict(), f"two roots for size {cp.size}"), False
        return None, True
    for query, why in _SELECT_CONTRADICTING:
        earlier = _one(conn, query, (cp.node, cp.size, format_utc(cp.time)))
        if earlier is not None:
            return (earlier.as_dict(), f"size {cp.size} " + why.format(size=earlier.size)), False
    return None, False


def _insert(conn: sqlite3.Connection, cp: Checkpoint, body: bytes) -> bool:
    cursor = conn.execute(
        "INSERT OR IGNORE INTO peer_checkpoints (node, size, time, root, body) "
        "VALUES (?, ?, ?, ?, ?)",
        (cp.node, cp.size, format_utc(cp.time), cp.root, body),
    )
    return cursor.rowcount == 1

"""How a node takes up network directories: at start, and from the broker while it runs.

At start the node uses the newest of two directories: the one it kept in its database
(`node_meta`), and the file its configuration names (`directory_path`, how a new node
joins). While it runs it reads the broker's directory stream (`<prefix>.directory.stream`)
every `directory_poll_seconds`, from where it stopped. Each directory offered is verified
against the network CA and taken only with a higher serial. Taking one is one transaction:
the directory kept, the stream position, and the `directory-updated` audit entry. Refusing
one (malformed, another CA, expired, a rollback) is one too: the position moves past it
and a `directory-refused` entry names the code; the node goes on with what it had.

An expired directory in use is kept (there is nothing better), and `/readyz` says the node
is degraded until a newer one arrives.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from exchange.audit.entries import AuditEvent, EntryFields
from exchange.audit.log import AuditLog
from exchange.directory.document import VerifiedDirectory, verify_directory
from exchange.directory.view import NetworkView
from exchange.errors import ExchangeError, VerificationError
from exchange.log import get_logger
from exchange.storage import node_meta
from exchange.storage.sqlite_thread import SqliteThread
from exchange.tasks import cancel_and_wait, every
from exchange.transport.bus import Bus, ConsumeError, stream_offset

_log = get_logger(__name__)

KEPT = "directory"
"""node_meta: the directory in use, `{"serial", "digest", "document"}`."""
POSITION = "directory_stream_offset"
"""node_meta: the next directory stream offset to read."""


def _kept(conn: sqlite3.Connection) -> bytes | None:
    value = node_meta.get(conn, KEPT)
    if isinstance(value, dict) and isinstance(value.get("document"), str):
        return str(value["document"]).encode()
    return None


class DirectoryKeeper:
    """Verifies offered directories, keeps the newest, and audits each decision."""

    def __init__(
        self,
        *,
        ca: x509.Certificate,
        db: SqliteThread,
        audit: AuditLog,
        node_id: str,
        on_taken: Callable[[VerifiedDirectory], Awaitable[object]] | None = None,
    ) -> None:
        self._ca = ca
        self._db = db
        self._audit = audit
        self._node = node_id
        self._on_taken = on_taken
        self.view: NetworkView | None = None

    async def settle(self, file: Path | None) -> VerifiedDirectory:
        """The directory to start with: the kept one or the file's, whichever is newer."""
        kept_raw = await self._db.call(_kept)
        kept = None
        if kept_raw is not None:
            kept = verify_directory(kept_raw, self._ca, allow_expired=True)
        offered = None
        if file is not None:
            try:
                data = await asyncio.to_thread(file.read_bytes)
            except OSError as err:
                raise ExchangeError(
                    f"cannot read the network directory {file}: {err.strerror}",
                    code="config.invalid",
                ) from None
            try:
                offered = verify_directory(data, self._ca, allow_expired=True)
            except VerificationError as err:
                if kept is None:
                    raise ExchangeError(
                        f"the network directory {file} is refused ({err.code}): {err.detail}",
                        code="config.invalid",
                    ) from None
                await self._refuse(err.code, err.detail, f"file {file}", None)
        if kept is None and offered is None:
            raise ExchangeError(
                "no network directory: set directory_path to the file `exchange directory "
                "build` wrote for this network",
                code="config.invalid",
            )
        if offered is not None and kept is not None:
            if offered.serial == kept.serial and offered.digest != kept.digest:
                await self._refuse(
                    "directory.rollback",
                    f"{file} has serial {offered.serial}, the serial in use, with other content",
                    f"file {file}",
                    None,
                )
            if offered.serial <= kept.serial:
                offered = None
        chosen = offered or kept
        assert chosen is not None
        if offered is not None:
            await self._db.call(lambda conn: self._keep(conn, offered, f"file {file}", None))
        if chosen.expired():
            _log.warning(
                "directory.expired",
                node=self._node,
                serial=chosen.serial,
                next_update=chosen.body.next_update.isoformat(),
            )
        return chosen

    async def position(self) -> int | None:
        value = await self._db.call(lambda conn: node_meta.get(conn, POSITION))
        return value if isinstance(value, int) else None

    async def offer(self, data: bytes, source: str, offset: int | None = None) -> bool:
        """Take `data` if it is a valid directory newer than the one in use; True if taken.
        Anything else is refused with its code and audited (a copy of the one in use is
        only passed over)."""
        view = self.view
        assert view is not None, "settle the directory and set the view first"
        try:
            directory = verify_directory(data, self._ca)
            if directory.digest == view.directory.digest:
                await self._db.call(lambda conn: self._move(conn, offset))
                return False
            if directory.serial <= view.serial:
                raise VerificationError(
                    f"serial {directory.serial} is not newer than serial {view.serial} in use",
                    code="directory.rollback",
                )
            view.check_fits(directory)
        except (VerificationError, ExchangeError) as err:
            await self._refuse(err.code, err.detail, source, offset)
            return False
        previous = view.serial
        await self._db.call(lambda conn: self._keep(conn, directory, source, offset))
        view.replace(directory)
        _log.info(
            "directory.updated",
            node=self._node,
            serial=directory.serial,
            previous=previous,
            members=len(directory.body.members),
            source=source,
        )
        if self._on_taken is not None:
            # what follows the directory: its CRL, the prosecutor networks to subscribe to
            await self._on_taken(directory)
        return True

    def _keep(
        self,
        conn: sqlite3.Connection,
        directory: VerifiedDirectory,
        source: str,
        offset: int | None,
    ) -> None:
        node_meta.put(
            conn,
            KEPT,
            {
                "serial": directory.serial,
                "digest": directory.digest,
                "document": directory.raw.decode(),
            },
        )
        self._move(conn, offset)
        detail = {
            "serial": directory.serial,
            "members": sorted(m.id for m in directory.body.members),
            "source": source,
        }
        self._audit.write(
            conn,
            EntryFields.build(AuditEvent.DIRECTORY_UPDATED, digest=directory.digest, detail=detail),
        )

    @staticmethod
    def _move(conn: sqlite3.Connection, offset: int | None) -> None:
        if offset is not None:
            node_meta.put(conn, POSITION, offset + 1)

    async def _refuse(self, code: str, detail: str, source: str, offset: int | None) -> None:
        _log.error("directory.refused", node=self._node, code=code, detail=detail, source=source)

        def write(conn: sqlite3.Connection) -> None:
            self._move(conn, offset)
            fields = {"reason": detail[:500], "source": source[:300]}
            self._audit.write(
                conn, EntryFields.build(AuditEvent.REJECTED, code=code, detail=fields)
            )

        await self._db.call(write)


class DirectoryFollower:
    """Reads the broker's directory stream while the node runs and offers what it finds."""

    def __init__(
        self, keeper: DirectoryKeeper, bus: Callable[[], Bus | None], interval: float
    ) -> None:
        self._keeper = keeper
        self._bus = bus
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            every(self._interval, self.poll, "directory.poll_failed"), name="directory-follow"
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def poll(self) -> int:
        """Read the stream from where the node stopped; return how many directories were
        taken."""
        bus = self._bus()
        if bus is None or not bus.connected:
            return 0
        start = await self._keeper.position()
        taken = 0
        stream = bus.read_audit_stream(
            offset="first" if start is None else start,
            idle_timeout=0.3,
            queue=bus.topology.directory_stream_queue,
        )
        try:
            async for delivery in stream:
                offset = stream_offset(delivery)
                if start is not None and offset is not None and offset < start:
                    continue  # a stream starts at its chunk's first record
                source = f"broker offset {offset}"
                taken += await self._keeper.offer(delivery.body, source, offset)
        except ConsumeError as err:
            if "NOT_FOUND" not in str(err):
                raise
            return 0  # nothing was ever published: the node runs on the directory it has
        return taken


def degraded_reason(view: NetworkView | None, now: datetime | None = None) -> str | None:
    """Why `/readyz` should say the node runs degraded on its directory, if it should."""
    if view is None:
        return None
    if view.expired(now or datetime.now(UTC)):
        return (
            f"the network directory (serial {view.serial}) expired at "
            f"{view.directory.body.next_update.isoformat()}: ask the secretariat for a new one"
        )
    return None

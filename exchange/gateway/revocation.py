"""The node's CRL: the directory's, or a file's when newer; never rolled back.

The newest CRL the node has used is kept in its database (`node_meta`). At start the CRL
in `crl_path` is compared with it: an older one (or another one of the same number) is
refused, logged as an error and audited (`crl.rollback`), and the kept, newer CRL is used.
While the node runs, the file is looked at every second: a newer CRL of the network CA is
kept and used at once; an older, foreign, unreadable or removed one is refused the same way
and the CRL in use stays. With `revocation = "off"` there is no CRL at all, and the node
says so with a warning at every start.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchange.audit.entries import AuditEvent
from exchange.audit.log import AuditLog
from exchange.crypto.revocation import CrlFile
from exchange.crypto.verify import TrustStore
from exchange.errors import ExchangeError
from exchange.log import get_logger
from exchange.storage import node_meta
from exchange.storage.sqlite_thread import SqliteThread
from exchange.tasks import cancel_and_wait, every

CHECK_SECONDS = 1.0

_log = get_logger(__name__)


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.DER)


def _load_kept(kept: Any) -> x509.CertificateRevocationList | None:
    if isinstance(kept, dict) and isinstance(kept.get("der"), str):
        return x509.load_der_x509_crl(base64.b64decode(kept["der"]))
    return None


class Revocation:
    """Keeps the trust store's CRL current and monotonic. `start` settles the CRL in use
    against the newest kept and starts watching the file; `stop` ends the watch."""

    def __init__(
        self,
        *,
        trust: TrustStore,
        crl_file: CrlFile | None,
        db: SqliteThread,
        audit: AuditLog,
        node_id: str,
        interval: float = CHECK_SECONDS,
    ) -> None:
        self._trust = trust
        self._file = crl_file
        self._db = db
        self._audit = audit
        self._node = node_id
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        kept = await self._db.call(lambda conn: node_meta.get(conn, node_meta.CRL))
        current = self._trust.crl
        if current is None:
            raise ExchangeError("the trust store has no CRL to watch", code="config.invalid")
        held = _load_kept(kept)
        if held is not None and _der(held) != _der(current):
            number = self._trust.crl_number_of(current)
            held_number = self._trust.crl_number_of(held)  # still the network CA's?
            if held_number >= number:
                self._trust.set_crl(held)
                await self._refuse_rollback(number, held_number)
            else:
                await self._keep(current)
        elif held is None:
            await self._keep(current)
        if self._file is not None:
            self._task = asyncio.create_task(
                every(self._interval, self.check_file, "crl.watch_failed", wait_first=True),
                name="crl-watch",
            )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def check_file(self) -> None:
        """Look at the file once: use a newer CRL, refuse anything else that changed."""
        if self._file is None:
            return
        change = await asyncio.to_thread(self._file.poll)
        if change is None:
            return
        if change.crl is None:
            await self._refuse("crl.invalid", str(change.error), None)
            return
        await self.offer(change.crl)

    async def offer(self, crl: x509.CertificateRevocationList) -> bool:
        """Use `crl` if the network CA signed it and it is newer than the CRL in use; True
        when it is used (or already was)."""
        held = self._trust.crl
        try:
            number = self._trust.crl_number_of(crl)
        except ExchangeError as err:
            await self._refuse("crl.invalid", err.detail, None)
            return False
        if held is not None and _der(crl) == _der(held):
            return True
        held_number = self._trust.crl_number
        if held_number is not None and number <= held_number:
            await self._refuse_rollback(number, held_number)
            return False
        await self._keep(crl)
        self._trust.set_crl(crl)
        _log.info("crl.updated", node=self._node, number=number, revoked=len(crl))
        return True

    async def _refuse_rollback(self, number: int, held: int) -> None:
        why = "older than" if number < held else "another CRL of the same number as"
        reason = (
            f"CRL number {number} is {why} number {held}, the newest this node has used: an "
            "older CRL may have been put back; install the newest one"
        )
        await self._refuse("crl.rollback", reason, number)

    async def _keep(self, crl: x509.CertificateRevocationList) -> None:
        number = self._trust.crl_number_of(crl)
        value = {"number": number, "der": base64.b64encode(_der(crl)).decode("ascii")}
        await self._db.call(lambda conn: node_meta.put(conn, node_meta.CRL, value))

    async def _refuse(self, code: str, reason: str, number: int | None) -> None:
        in_use = self._trust.crl_number
        source = str(self._file.path) if self._file is not None else "network directory"
        detail: dict[str, Any] = {"crl": source, "in_use": in_use}
        if number is not None:
            detail["number"] = number
        _log.error(f"{code}.refused", node=self._node, reason=reason, **detail)
        await self._audit.append(AuditEvent.REJECTED, code=code, detail=detail)

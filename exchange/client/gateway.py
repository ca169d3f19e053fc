"""`GatewayClient`: the typed async client of one gateway's HTTP API (see the package)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack
from uuid import UUID

import aiohttp
import orjson
from pydantic import BaseModel, ValidationError

from exchange.audit.checkpoints import Checkpoint
from exchange.audit.entries import AuditEntry
from exchange.audit.proofs import ConsistencyProof, InclusionProof
from exchange.backoff import retry_delay
from exchange.client.problems import GatewayUnreachable, ProblemError
from exchange.crypto.canonical import canonicalize
from exchange.errors import ConfigError, ExchangeError
from exchange.gateway import api_models as api
from exchange.model.case_update import CaseUpdate
from exchange.model.common import HandlingCode, MessageType, Priority, Tlp
from exchange.model.envelope import Handling
from exchange.subscriptions.sse import EVENT_NAME, parse_events
from exchange.transport.tls import https_client_context

DEFAULT_TIMEOUT_SECONDS = 60.0
RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 10.0
SETTLED = frozenset({"delivered", "rejected", "failed"})
"""The states a sent message does not leave."""

STREAM_PATH = "/v1/subscriptions/stream"

_Model = TypeVar("_Model", bound=BaseModel)
_Built = TypeVar("_Built")
Params = Mapping[str, str | int | None]
PathLike = str | os.PathLike[str]


class StreamOptions(TypedDict, total=False):
    """The options of the case-update streams (see `stream_case_update_documents`)."""

    after: int
    network: str | None
    case: str | None
    heartbeat: int
    on_connect: Callable[[int], None] | None
    on_reconnect: Callable[[int, BaseException], None] | None


@dataclass(frozen=True, slots=True)
class AuditEntriesPage:
    """A page of a node's audit log: the entries, their leaf hashes, the index to ask from
    next, and the log's size and hex root when read.

    Each entry is decoded from the exact bytes that were hashed, except for a token that may
    not read payloads (an auditor): an entry that keeps a payload is then its document with
    the payload withheld (its index is in `redacted`, and its `body` is that document's
    canonical form, not the hashed bytes: check `leaf_hashes` against proofs instead)."""

    items: list[AuditEntry]
    next: int
    size: int
    root: str
    leaf_hashes: list[bytes] = field(default_factory=list)
    redacted: frozenset[int] = frozenset()


class GatewayClient:
    """A client of one gateway, acting with one bearer token (its role decides what it may do).

    `async with GatewayClient(url, token) as client: ...`. Over HTTPS give `ca_file` (the
    CA of the gateway's certificate; no other is trusted) and, where the gateway asks for
    client certificates, `cert_file` and `key_file`. Give `session` to share a connection
    pool; the client then leaves it open. `timeout` bounds each request of its own session.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        ca_file: PathLike | None = None,
        cert_file: PathLike | None = None,
        key_file: PathLike | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if cert_file is not None and ca_file is None:
            raise ConfigError("a client certificate needs the CA file of the gateway's certificate")
        self.url = url.rstrip("/")
        self._token = token
        self._ssl: ssl.SSLContext | bool = (
            https_client_context(ca_file, cert_file, key_file) if ca_file is not None else True
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's own session (a shared one stays open); it may be used again."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    # -- messages ------------------------------------------------------------------------

    async def submit(self, message: api.SubmitMessage | Mapping[str, Any]) -> api.Accepted:
        """`POST /v1/messages`: the gateway signs the message, stores it durably and queues
        it for its recipients. A mapping is sent as given, for the gateway to validate."""
        body = (
            message.model_dump(mode="json", exclude_none=True)
            if isinstance(message, api.SubmitMessage)
            else message
        )
        return await self._typed("POST", "/v1/messages", api.Accepted, json=body)

    async def message(self, message_id: UUID | str) -> api.MessageView:
        """A sent message's status, per-recipient delivery and signed receipts."""
        return await self._typed("GET", f"/v1/messages/{_segment(message_id)}", api.MessageView)

    async def wait_settled(
        self, message_id: UUID | str, *, within: float = 30.0, interval: float = 0.05
    ) -> api.MessageView:
        """Poll a sent message until it is delivered, rejected or failed; after `within`
        seconds, its view as it then stands."""
        deadline = time.monotonic() + within
        while True:
            view = await self.message(message_id)
            if view.status in SETTLED or time.monotonic() >= deadline:
                return view
            await asyncio.sleep(interval)

    async def inbox(self, *, after: int = 0, limit: int = 100) -> api.InboxPage:
        """Verified incoming messages after the cursor `after`, oldest first (each one
        returned is audited as delivered to this client's token)."""
        return await self._typed(
            "GET", "/v1/inbox", api.InboxPage, params={"after": after, "limit": limit}
        )

    async def inbox_item(self, message_id: UUID | str) -> api.InboxItem:
        """One verified incoming message (audited as delivered to this client's token)."""
        return await self._typed("GET", f"/v1/inbox/{_segment(message_id)}", api.InboxItem)

    async def case(self, case: str) -> api.CaseView:
        """Every message of a case, in both directions, in time order."""
        return await self._typed("GET", f"/v1/cases/{_segment(case)}", api.CaseView)

    async def overdue(self) -> api.OverdueView:
        """Requests past their response deadline: those this node owes, and those owed to it."""
        return await self._typed("GET", "/v1/overdue", api.OverdueView)

    # -- case updates (prosecutor networks) ----------------------------------------------

    async def submit_case_update(
        self,
        update: CaseUpdate,
        *,
        recipients: Sequence[str],
        handling: Handling | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> api.Accepted:
        """Publish a case update to the other `recipients` of its network (by default
        handled as TLP AMBER, H2, like `exchange send`)."""
        message = api.SubmitMessage(
            type=MessageType.CASE_UPDATE,
            recipients=list(recipients),
            case=update.case,
            priority=priority,
            handling=handling or Handling(tlp=Tlp.AMBER, code=HandlingCode.H2),
            payload=update.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        return await self.submit(message)

    async def case_updates(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        network: str | None = None,
        case: str | None = None,
    ) -> api.CaseUpdatePage:
        """One page of case updates after the cursor `after` (needs a subscriber token)."""
        params = {"after": after, "limit": limit, "network": network, "case": case}
        path = "/v1/subscriptions/events"
        return await self._typed("GET", path, api.CaseUpdatePage, params=params)

    async def wait_case_updates(
        self,
        expect: int,
        *,
        after: int = 0,
        network: str | None = None,
        case: str | None = None,
        within: float = 30.0,
        interval: float = 0.1,
    ) -> list[api.CaseUpdateEvent]:
        """Poll until `expect` updates after `after` arrived; after `within` seconds, those
        that did."""
        items: list[api.CaseUpdateEvent] = []
        deadline = time.monotonic() + within
        while len(items) < expect and time.monotonic() < deadline:
            page = await self.case_updates(after=after, network=network, case=case)
            items += page.items
            after = page.next
            if not page.items:
                await asyncio.sleep(interval)
        return items

    async def stream_case_updates(
        self, **options: Unpack[StreamOptions]
    ) -> AsyncGenerator[api.CaseUpdateEvent, None]:
        """Every update after `after` as it arrives, forever: `stream_case_update_documents`
        (the same options), each parsed into a `CaseUpdateEvent`."""
        documents = self.stream_case_update_documents(**options)
        async with contextlib.aclosing(documents):
            async for document in documents:
                yield _parse(api.CaseUpdateEvent, document, STREAM_PATH)

    async def stream_case_update_documents(
        self,
        *,
        after: int = 0,
        network: str | None = None,
        case: str | None = None,
        heartbeat: int = 15,
        on_connect: Callable[[int], None] | None = None,
        on_reconnect: Callable[[int, BaseException], None] | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The Server-Sent Events stream: each update after `after` once, as the exact JSON
        sent, forever. A lost connection is resumed with `Last-Event-ID`, right after the
        last update received, with growing pauses; `on_connect(cursor)` is called each time
        the stream opens, `on_reconnect(cursor, error)` each time it is lost. A refusal
        raises `ProblemError` (reconnecting would not help)."""
        last, failures = after, 0
        params = _query({"network": network, "case": case, "heartbeat": heartbeat})
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=3 * heartbeat)
        while True:
            headers = self._headers("text/event-stream")
            if last:
                headers["Last-Event-ID"] = str(last)
            try:
                async with self._http().get(
                    self.url + STREAM_PATH,
                    params=params,
                    headers=headers,
                    timeout=timeout,
                    ssl=self._ssl,
                ) as response:
                    if response.status != 200:
                        raise ProblemError(response.status, _decode(await response.read()))
                    if on_connect is not None:
                        on_connect(last)
                    async for event in parse_events(response.content):
                        if event.event != EVENT_NAME or event.id is None:
                            continue
                        document: dict[str, Any] = orjson.loads(event.data)
                        last, failures = int(event.id), 0
                        yield document
                lost: BaseException = ConnectionError("the server ended the stream")
            except (aiohttp.ClientError, TimeoutError) as exc:
                lost = exc
            if on_reconnect is not None:
                on_reconnect(last, lost)
            await asyncio.sleep(retry_delay(failures, RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS))
            failures += 1

    # -- audit (auditor token) -----------------------------------------------------------

    async def audit_checkpoint(self) -> Checkpoint:
        """The node's latest signed checkpoint (it signs a new one if entries were added)."""
        path = "/v1/audit/checkpoint"
        return _build(path, Checkpoint.from_dict, await self._json("GET", path))

    async def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """RFC 9162 proof that entry `index` is in the tree of `size` entries (default: all)."""
        path = "/v1/audit/proof/inclusion"
        doc = await self._json("GET", path, params={"index": index, "size": size})
        return _build(path, _inclusion_proof, doc)

    async def consistency_proof(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        """RFC 9162 proof that the tree of `old_size` entries is a prefix of that of
        `new_size` (default: all)."""
        path = "/v1/audit/proof/consistency"
        doc = await self._json("GET", path, params={"from": old_size, "to": new_size})
        return _build(path, _consistency_proof, doc)

    async def audit_entries(self, start: int = 0, limit: int = 100) -> AuditEntriesPage:
        """Entries from index `start`, each decoded from the exact bytes that were hashed."""
        path = "/v1/audit/entries"
        doc = await self._json("GET", path, params={"from": start, "limit": limit})

        def build(d: dict[str, Any]) -> AuditEntriesPage:
            items = [
                AuditEntry.from_bytes(
                    canonicalize(i["entry"]) if i["redacted"] else base64.b64decode(i["body"])
                )
                for i in d["items"]
            ]
            return AuditEntriesPage(
                items,
                int(d["next"]),
                int(d["size"]),
                str(d["root"]),
                [bytes.fromhex(i["leaf_hash"]) for i in d["items"]],
                frozenset(int(i["index"]) for i in d["items"] if i["redacted"]),
            )

        return _build(path, build, doc)

    async def peer_checkpoints(self, node: str | None = None) -> list[Checkpoint]:
        """Other nodes' checkpoints this node saw and checked (or only `node`'s)."""
        path = "/v1/audit/peers"
        doc = await self._json("GET", path, params={"node": node})
        return _build(path, lambda d: [Checkpoint.from_dict(c) for c in d["items"]], doc)

    # -- operations ----------------------------------------------------------------------

    async def health(self) -> api.Health:
        """The process is alive (no token needed)."""
        return await self._typed("GET", "/healthz", api.Health)

    async def readiness(self) -> api.Readiness:
        """Broker connected and store writable; a `ProblemError` 503 (with
        `problem.checks`) when not."""
        return await self._typed("GET", "/readyz", api.Readiness)

    async def wait_ready(self, *, within: float = 30.0, interval: float = 0.1) -> api.Readiness:
        """Poll readiness until the node is ready; after `within` seconds, raise the last
        refusal (or `GatewayUnreachable`)."""
        deadline = time.monotonic() + within
        while True:
            try:
                return await self.readiness()
            except (ProblemError, GatewayUnreachable):
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(interval)

    async def metrics(self) -> str:
        """The Prometheus metrics, as text."""
        return (await self._send("GET", "/metrics"))[1].decode("utf-8")

    async def openapi(self) -> dict[str, Any]:
        """The node's OpenAPI document."""
        return _build("/openapi.json", dict, await self._json("GET", "/openapi.json"))

    # -- any route -----------------------------------------------------------------------

    async def request(
        self, method: str, path: str, *, json: Any = None, params: Params | None = None
    ) -> tuple[int, Any]:
        """Any route (`path` from the root, with its query if `params` is not given): the
        status and the answer as sent (decoded JSON; text if not JSON; None if empty) of a
        2xx answer, `ProblemError` otherwise."""
        status, body = await self._send(method, path, json=json, params=params)
        return status, _decode(body)

    async def _typed(
        self,
        method: str,
        path: str,
        model: type[_Model],
        *,
        json: Any = None,
        params: Params | None = None,
    ) -> _Model:
        _, body = await self._send(method, path, json=json, params=params)
        return _parse(model, body, path)

    async def _json(self, method: str, path: str, *, params: Params | None = None) -> Any:
        return _decode((await self._send(method, path, params=params))[1])

    async def _send(
        self, method: str, path: str, *, json: Any = None, params: Params | None = None
    ) -> tuple[int, bytes]:
        headers = self._headers("application/json")
        data = None
        if json is not None:
            data = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method,
                self.url + path,
                data=data,
                params=_query(params),
                headers=headers,
                ssl=self._ssl,
            ) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise GatewayUnreachable(self.url + path, exc) from exc
        if not 200 <= status < 300:
            raise ProblemError(status, _decode(body))
        return status, body

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # made here: a session belongs to a running event loop
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers


def _segment(value: object) -> str:
    return urllib.parse.quote(str(value), safe="")


def _query(params: Params | None) -> dict[str, str] | None:
    if params is None:
        return None
    return {name: str(value) for name, value in params.items() if value is not None}


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace")


def _unexpected(path: str, what: str, error: Exception) -> ExchangeError:
    return ExchangeError(f"the gateway's answer to {path} is not {what}: {error}", code="internal")


def _parse(model: type[_Model], body: bytes | Mapping[str, Any], path: str) -> _Model:
    try:
        if isinstance(body, bytes):
            return model.model_validate_json(body)
        return model.model_validate(body)
    except ValidationError as err:
        raise _unexpected(path, f"a {model.__name__}", err) from None


def _inclusion_proof(doc: dict[str, Any]) -> InclusionProof:
    leaf, root = bytes.fromhex(doc["leaf_hash"]), bytes.fromhex(doc["root"])
    return InclusionProof(int(doc["index"]), int(doc["size"]), leaf, _hashes(doc), root)


def _consistency_proof(doc: dict[str, Any]) -> ConsistencyProof:
    old, new = bytes.fromhex(doc["from_root"]), bytes.fromhex(doc["to_root"])
    return ConsistencyProof(int(doc["from"]), int(doc["to"]), _hashes(doc), old, new)


def _hashes(doc: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(h) for h in doc["path"]]


def _build(path: str, build: Callable[[dict[str, Any]], _Built], doc: Any) -> _Built:
    if not isinstance(doc, dict):
        raise _unexpected(path, "a JSON object", TypeError(type(doc).__name__))
    try:
        return build(doc)
    except (KeyError, TypeError, ValueError) as err:
        raise _unexpected(path, "what the API documents", err) from None

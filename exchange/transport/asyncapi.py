"""The network's AsyncAPI 3.0 document, generated from the topology and the payload schemas.

Channels are the exchanges (addressed by routing key) and each node's queues, with AMQP
0.3.0 bindings taken from the same value objects the gateways declare and the definitions
render from; messages are the signed envelopes, one per message type and accepted schema
version, their payloads the schemas of `schemas/` (translated to the draft-07 dialect of
AsyncAPI Schema Objects, their `$defs` lifted into `components.schemas`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from exchange.model.common import MessageType
from exchange.schemas import REGISTRY, SchemaRegistry
from exchange.transport.bus import ORIGINAL_ROUTING_KEY_HEADER, REASON_HEADER
from exchange.transport.topology import ExchangeSpec, QueueSpec, Topology

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SENDER_HEADER = "x-xb-sender"
ENVELOPE_SCHEMA = "envelope.v1"
CASE_TYPES = frozenset({MessageType.CASE_UPDATE})
"""Types published to the cases exchange; every other type travels node to node."""

_REF_PREFIX = "#/components/schemas/"
_SERVER = "broker"


def asyncapi_document(
    topology: Topology,
    *,
    network: str,
    nodes: Sequence[str],
    networks: Mapping[str, Sequence[str]] | None = None,
    server_url: str = "amqps://localhost:5671/",
    registry: SchemaRegistry = REGISTRY,
    version: str = "1.0.0",
) -> dict[str, Any]:
    """An AsyncAPI 3.0.0 document of `network`: its broker, channels, operations, messages.

    `networks` are the prosecutor networks (name -> members) whose case updates the
    members' subscription queues receive; `server_url` is the broker nodes connect to
    (its path is the virtual host).
    """
    networks = dict(networks or {})
    builder = _Builder(topology, registry, _vhost(server_url, network))
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "id": f"urn:xb:network:{network}",
        "info": {
            "title": f"Asset-recovery exchange: network {network}",
            "version": version,
            "description": (
                "Signed requests between national authorities' nodes over RabbitMQ. Every "
                "message is an envelope (header, payload, Ed25519 signature over the RFC 8785 "
                "canonical form of header and payload); the recipient verifies it against the "
                "network CA before acting on it. The broker lets a node publish only routing "
                "keys naming itself as sender and read only its own queues."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {_SERVER: _server(server_url, builder.vhost)},
        "channels": {},
        "operations": {},
        "components": {
            "schemas": builder.schemas(),
            "messages": builder.messages(),
            "securitySchemes": {
                "nodeCertificate": {
                    "type": "X509",
                    "description": (
                        "Mutual TLS 1.3; the broker user is the client certificate's CN, the "
                        "node id (SASL EXTERNAL). Certificates are issued by the network CA."
                    ),
                }
            },
        },
    }
    builder.add_exchanges(doc, nodes)
    members = sorted({n for m in networks.values() for n in m})
    for node in _unique([*nodes, *members]):
        builder.add_node(doc, node, subscriber=node in members)
    builder.add_audit(doc)
    return doc


class _Builder:
    """Turns topology value objects and schema documents into AsyncAPI objects."""

    def __init__(self, topology: Topology, registry: SchemaRegistry, vhost: str) -> None:
        self.topology = topology
        self.registry = registry
        self.vhost = vhost
        self.versions = sorted(
            (kind, major)
            for kind in registry.current_versions
            for major in registry.accepted_majors(kind)
        )

    # -- components ----------------------------------------------------------------------
    def schemas(self) -> dict[str, Any]:
        documents = self.registry.documents()
        out: dict[str, Any] = {}
        out.update(_component_schemas(ENVELOPE_SCHEMA, documents["envelope/v1.json"]))
        for kind, major in self.versions:
            path = f"{kind.value}/v{major}.json"
            out.update(_component_schemas(_versioned(kind, major), documents[path]))
        return out

    def messages(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, major in self.versions:
            name = _versioned(kind, major)
            out[name] = {
                "name": name,
                "title": f"{kind.value}, schema version {major}",
                "summary": f"A signed envelope whose header names type {kind.value!r} and "
                f"schema '{kind.value}/{major}'.",
                "contentType": "application/json",
                "headers": _headers_schema(),
                "payload": {
                    "allOf": [{"$ref": _REF_PREFIX + ENVELOPE_SCHEMA}],
                    "properties": {
                        "header": {
                            "properties": {
                                "type": {"const": kind.value},
                                "schema": {"const": f"{kind.value}/{major}"},
                            }
                        },
                        "payload": {"$ref": _REF_PREFIX + _versioned(kind, major)},
                    },
                },
                "bindings": {
                    "amqp": {"messageType": kind.value, "bindingVersion": AMQP_BINDING_VERSION}
                },
            }
        out["dead-letter"] = {
            "name": "dead-letter",
            "title": "A rejected or poison message",
            "summary": "The body exactly as it was received (it may not be an envelope), with "
            "the reason in the headers.",
            "headers": {
                "type": "object",
                "properties": {
                    REASON_HEADER: {
                        "type": "string",
                        "description": "The error code (signature.invalid, delivery-limit, ...).",
                    },
                    ORIGINAL_ROUTING_KEY_HEADER: {"type": "string"},
                },
            },
            "payload": {},
        }
        return out

    def _refs(self, kinds: Sequence[MessageType]) -> dict[str, Any]:
        return {
            _versioned(kind, major): {"$ref": f"#/components/messages/{name}"}
            for kind, major in self.versions
            if kind in kinds
            for name in [_versioned(kind, major)]
        }

    def _channel_messages(self, channel: str, names: Sequence[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel}/messages/{n}"} for n in names]

    # -- channels and operations ---------------------------------------------------------
    def add_exchanges(self, doc: dict[str, Any], nodes: Sequence[str]) -> None:
        t = self.topology
        direct = [k for k in MessageType if k not in CASE_TYPES]
        node_ids = sorted(nodes)
        doc["channels"]["messages"] = {
            "address": "{recipient}.{messageType}.{sender}",
            "title": f"Node-to-node messages ({t.messages.name})",
            "description": "The broker refuses (ACCESS_REFUSED) a routing key whose sender is "
            "not the publishing node, and a message to a node without an inbox is returned.",
            "parameters": {
                "recipient": {
                    "description": "The node the message is for (one copy per recipient).",
                    **({"enum": node_ids} if node_ids else {}),
                },
                "messageType": {
                    "enum": [k.value for k in direct],
                    "location": "$message.payload#/header/type",
                },
                "sender": {
                    "description": "The publishing node; must be the broker user itself.",
                    **({"enum": node_ids} if node_ids else {}),
                    "location": "$message.payload#/header/sender",
                },
            },
            "messages": self._refs(direct),
            "bindings": {"amqp": self._exchange_binding(t.messages)},
        }
        doc["operations"]["sendMessage"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/messages"},
            "summary": "Publish a signed envelope to one recipient (persistent, mandatory, "
            "confirmed by the broker before the outbox row is marked sent).",
            "messages": self._channel_messages("messages", list(self._refs(direct))),
            "bindings": {"amqp": _publish_binding()},
        }
        doc["channels"]["cases"] = {
            "address": "{network}.{case}.{event}",
            "title": f"Case updates for prosecutor networks ({t.cases.name})",
            "parameters": {
                "network": {"description": "A network the publishing node belongs to."},
                "case": {"description": "The case reference."},
                "event": {"description": "What happened (opened, frozen, ...)."},
            },
            "messages": self._refs(list(CASE_TYPES)),
            "bindings": {"amqp": self._exchange_binding(t.cases)},
        }
        doc["operations"]["publishCaseUpdate"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/cases"},
            "summary": "Publish a signed case update to the members of a network.",
            "messages": self._channel_messages("cases", list(self._refs(list(CASE_TYPES)))),
            "bindings": {"amqp": _publish_binding()},
        }
        doc["channels"]["dead"] = {
            "address": "{node}.{reason}",
            "title": f"Rejected and poison messages ({t.dead.name})",
            "parameters": {
                "node": {"description": "The node that rejected the message."},
                "reason": {"description": "The error code, e.g. signature.invalid."},
            },
            "messages": {"dead-letter": {"$ref": "#/components/messages/dead-letter"}},
            "bindings": {"amqp": self._exchange_binding(t.dead)},
        }

    def add_node(self, doc: dict[str, Any], node: str, *, subscriber: bool) -> None:
        t = self.topology
        direct = [k for k in MessageType if k not in CASE_TYPES]
        queues: list[tuple[str, QueueSpec, dict[str, Any], str]] = [
            ("inbox", t.inbox(node), self._refs(direct), "its inbox: messages addressed to it"),
            (
                "dead",
                t.dead_letters(node),
                {"dead-letter": {"$ref": "#/components/messages/dead-letter"}},
                "what it rejected, and poison messages",
            ),
        ]
        if subscriber:
            queues.append(
                (
                    "subscription",
                    t.subscription(node),
                    self._refs(list(CASE_TYPES)),
                    "case updates of the networks it belongs to",
                )
            )
        for role, queue, messages, what in queues:
            channel = f"{node}.{role}"
            doc["channels"][channel] = {
                "address": queue.name,
                "title": f"{node}: {what}",
                "messages": messages,
                "bindings": {"amqp": self._queue_binding(queue)},
            }
            doc["operations"][f"{node}.receive-{role}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"{node} consumes {what}; only {node}'s broker user may.",
                "messages": self._channel_messages(channel, list(messages)),
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            }

    def add_audit(self, doc: dict[str, Any]) -> None:
        t = self.topology
        stream = t.audit_stream
        doc["channels"]["audit"] = {
            "address": stream.name,
            "title": "The network's audit stream",
            "description": f"The broker copies every envelope of {t.messages.name} and "
            f"{t.cases.name}, and each node's signed checkpoints (routing key "
            f"checkpoint.{{node}} on {t.messages.name}), through the fanout exchange "
            f"{t.audit.name} into this stream; no node may publish to {t.audit.name} itself. "
            "Auditors read it from any offset.",
            "messages": self._refs(list(MessageType)),
            "bindings": {"amqp": self._queue_binding(stream)},
        }
        doc["operations"]["readAuditStream"] = {
            "action": "receive",
            "channel": {"$ref": "#/channels/audit"},
            "summary": "Replay the stream from an offset (x-stream-offset); read-only for "
            "auditor users.",
            "messages": self._channel_messages("audit", list(self._refs(list(MessageType)))),
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }

    def _exchange_binding(self, exchange: ExchangeSpec) -> dict[str, Any]:
        return {
            "is": "routingKey",
            "exchange": {
                "name": exchange.name,
                "type": exchange.kind.value,
                "durable": True,
                "autoDelete": False,
                "vhost": self.vhost,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }

    def _queue_binding(self, queue: QueueSpec) -> dict[str, Any]:
        return {
            "is": "queue",
            "queue": {
                "name": queue.name,
                "durable": True,
                "exclusive": False,
                "autoDelete": False,
                "vhost": self.vhost,
            },
            "x-arguments": queue.argument_map,
            "bindingVersion": AMQP_BINDING_VERSION,
        }


def _publish_binding() -> dict[str, Any]:
    return {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}


def _headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            SENDER_HEADER: {
                "type": "string",
                "description": "The publishing node (informative; trust the signature).",
            }
        },
    }


def _server(url: str, vhost: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(f"{url!r} is not an amqp:// or amqps:// URL with a host")
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    server: dict[str, Any] = {
        "host": f"{parts.hostname}:{port}",
        "protocol": parts.scheme,
        "protocolVersion": "0.9.1",
        "pathname": "/" + vhost.lstrip("/"),
        "title": "The network's RabbitMQ",
    }
    if parts.scheme == "amqps":
        server["security"] = [{"$ref": "#/components/securitySchemes/nodeCertificate"}]
    return server


def _vhost(url: str, network: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return path[1:] if len(path) > 1 else network


def _versioned(kind: MessageType, major: int) -> str:
    """The name of a type's message and of its payload schema: `asset-inquiry.v1`."""
    return f"{kind.value}.v{major}"


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- JSON Schema 2020-12 -> AsyncAPI Schema Object (draft-07) ----------------------------


def _component_schemas(name: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """`document` as `name`, its `$defs` as `name.<Def>`, every `$ref` rewritten to match."""
    defs: Mapping[str, Any] = document.get("$defs", {})
    renamed = {f"#/$defs/{d}": f"{_REF_PREFIX}{name}.{d}" for d in defs}
    top = {k: v for k, v in document.items() if k not in ("$defs", "$schema", "$id", "$comment")}
    top["x-schema-id"] = document.get("$id")
    out = {name: _draft07(top, renamed)}
    for def_name, schema in defs.items():
        out[f"{name}.{def_name}"] = _draft07(schema, renamed)
    return out


def _draft07(schema: Any, refs: Mapping[str, str]) -> Any:
    """The same constraints in the AsyncAPI dialect: local refs renamed, OpenAPI-style
    discriminator objects reduced to the property name AsyncAPI expects."""
    if isinstance(schema, list):
        return [_draft07(item, refs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema and len(schema) > 1:
        # draft-07 ignores the siblings of a $ref; 2020-12 applies them: keep them applied
        siblings = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        schema = {**siblings, "allOf": [{"$ref": schema["$ref"]}, *schema.get("allOf", [])]}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            if value not in refs:
                raise ValueError(f"cannot translate reference {value!r}")
            out[key] = refs[value]
        elif key == "discriminator" and isinstance(value, dict):
            out[key] = value["propertyName"]
        elif key in ("properties", "patternProperties", "$defs", "definitions"):
            out[key] = {name: _draft07(sub, refs) for name, sub in value.items()}
        elif key in ("examples", "enum", "const", "default"):
            out[key] = value  # values, not schemas
        else:
            out[key] = _draft07(value, refs)
    return out

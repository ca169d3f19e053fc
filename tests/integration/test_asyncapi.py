"""The network's AsyncAPI 3.0 document: valid against the official AsyncAPI 3.0.0 JSON
Schema, generated from the same topology the brokers get, and its message schemas accept
the real signed envelopes of the test vectors.

The official schema is vendored (no network at test time): tests/asyncapi/README.md says
where it comes from.
"""

from __future__ import annotations

import argparse
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from exchange.cli import topology as topology_cli
from exchange.crypto.signing import NodeSigner
from exchange.errors import SchemaError
from exchange.model.common import MessageType, utc_now
from exchange.model.envelope import Header
from exchange.schemas import REGISTRY, validate_payload
from exchange.transport.topology import Topology

TESTS = Path(__file__).resolve().parents[1]
OFFICIAL_SCHEMA = TESTS / "asyncapi" / "asyncapi-3.0.0.schema.json"
VECTORS = TESTS / "vectors"
EXAMPLES = TESTS.parent / "schemas" / "examples"
NODES = ["AL-ARO", "RS-PPO", "MD-ARO", "KZ-ARC"]
DOC_URI = "urn:xb:test:asyncapi"


@pytest.fixture(scope="module")
def official() -> jsonschema.Draft7Validator:
    schema = json.loads(OFFICIAL_SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    registry: Registry[Any] = Registry().with_resources(
        (uri, Resource.from_contents(part, default_specification=DRAFT7))
        for uri, part in schema["definitions"].items()
    )
    return jsonschema.Draft7Validator(schema, registry=registry)


def write_asyncapi(tmp_path: Path) -> dict[str, Any]:
    """`exchange topology asyncapi --network network.json -o FILE`, read back."""
    network = tmp_path / "network.json"
    network.write_text(
        json.dumps(
            {
                "network": "see-arn",
                "nodes": {n: {} for n in NODES},
                "networks": {"pcoc": ["AL-ARO", "RS-PPO"]},
            }
        )
    )
    out = tmp_path / "asyncapi.json"
    parser = argparse.ArgumentParser(prog="exchange")
    topology_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "topology",
            "asyncapi",
            "--network",
            str(network),
            "-o",
            str(out),
            "--server",
            "amqps://broker.see-arn.example:5671/see-arn",
        ]
    )
    assert args.func(args) == 0
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def errors(validator: jsonschema.Draft7Validator, document: Any) -> list[str]:
    return [
        f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
        for e in validator.iter_errors(document)
    ]


def test_the_generated_document_is_valid_asyncapi_3(
    tmp_path: Path, official: jsonschema.Draft7Validator
) -> None:
    document = write_asyncapi(tmp_path)
    assert document["asyncapi"] == "3.0.0"
    assert errors(official, document) == []


def test_the_official_schema_catches_what_a_broken_document_gets_wrong(
    tmp_path: Path, official: jsonschema.Draft7Validator
) -> None:
    document = write_asyncapi(tmp_path)
    breakages = {
        "an AMQP channel that is neither a queue nor a routing key": (
            "channels",
            "messages",
            "bindings",
            "amqp",
            "is",
            "topic",
        ),
        "a delivery mode AMQP does not have": (
            "operations",
            "sendMessage",
            "bindings",
            "amqp",
            "deliveryMode",
            3,
        ),
        "an AsyncAPI 2 action": ("operations", "sendMessage", "action", "publish"),
        "a payload schema of an unknown type": (
            "components",
            "schemas",
            "asset-inquiry.v1",
            "type",
            "objekt",
        ),
    }
    for what, (*path, value) in breakages.items():
        broken = copy.deepcopy(document)
        target = broken
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        assert errors(official, broken), what


def test_channels_and_bindings_come_from_the_topology(tmp_path: Path) -> None:
    document = write_asyncapi(tmp_path)
    topology = Topology()
    messages = document["channels"]["messages"]["bindings"]["amqp"]["exchange"]
    assert (messages["name"], messages["type"], messages["vhost"]) == (
        topology.messages.name,
        "topic",
        "see-arn",
    )
    for node in NODES:
        inbox = document["channels"][f"{node}.inbox"]
        assert inbox["address"] == topology.inbox_queue(node)
        assert inbox["bindings"]["amqp"]["x-arguments"] == topology.inbox(node).argument_map
        assert f"{node}.receive-inbox" in document["operations"]
    # subscription queues for the members of a network (all are members of see-arn)
    assert document["channels"]["AL-ARO.subscription"]["address"] == "xb.sub.AL-ARO"
    assert (
        document["channels"]["audit"]["bindings"]["amqp"]["x-arguments"]["x-queue-type"] == "stream"
    )
    server = document["servers"]["broker"]
    assert (server["host"], server["protocol"], server["pathname"]) == (
        "broker.see-arn.example:5671",
        "amqps",
        "/see-arn",
    )
    # one message per type and accepted schema version; case updates use the cases exchange
    for kind in MessageType:
        for major in REGISTRY.accepted_majors(kind):
            name = f"{kind.value}.v{major}"
            assert name in document["components"]["messages"]
            channel = "cases" if kind is MessageType.CASE_UPDATE else "messages"
            assert name in document["channels"][channel]["messages"]


def payload_validator(document: dict[str, Any], pointer: str) -> jsonschema.Draft7Validator:
    """A validator for the schema at `pointer` in the document (its refs resolved there)."""
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT7)
    )
    return jsonschema.Draft7Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=registry)


def signed(kind: MessageType) -> dict[str, Any]:
    """An envelope of `kind` around a shared valid example, signed with the vector key."""
    signer = NodeSigner.from_files(VECTORS / "AL-ARO.key", VECTORS / "AL-ARO.pem")
    example = sorted((EXAMPLES / kind.value / "valid").glob("*.json"))[0]
    header = Header.model_validate(
        {
            "id": str(uuid.uuid4()),
            "type": kind.value,
            "schema": f"{kind.value}/1",
            "sender": "AL-ARO",
            "recipients": ["RS-PPO"],
            "case": "AL-2026-0042",
            "created_at": utc_now(),
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    return signer.sign_envelope(header, json.loads(example.read_text()))


def test_signed_envelopes_match_their_message_and_no_other(tmp_path: Path) -> None:
    document = write_asyncapi(tmp_path)
    inquiry, notice = signed(MessageType.ASSET_INQUIRY), signed(MessageType.FREEZE_NOTICE)
    as_inquiry = payload_validator(document, "/components/messages/asset-inquiry.v1/payload")
    as_notice = payload_validator(document, "/components/messages/freeze-notice.v1/payload")
    assert errors(as_inquiry, inquiry) == []
    assert errors(as_notice, notice) == []
    assert errors(as_inquiry, notice)  # a freeze notice is not an asset inquiry
    assert errors(as_inquiry, {k: v for k, v in inquiry.items() if k != "signature"})
    # the signature vectors carry payloads no gateway accepts: nor does the document
    vector = json.loads((VECTORS / "envelopes" / "01-asset-inquiry.signed.json").read_text())
    with pytest.raises(SchemaError):
        validate_payload("asset-inquiry", "asset-inquiry/1", vector["payload"])
    assert errors(as_inquiry, vector)


def test_the_payload_schemas_accept_the_shared_valid_examples(tmp_path: Path) -> None:
    document = write_asyncapi(tmp_path)
    checked = 0
    for kind in MessageType:
        schema = payload_validator(document, f"/components/schemas/{kind.value}.v1")
        for example in sorted((EXAMPLES / kind.value / "valid").glob("*.json")):
            assert errors(schema, json.loads(example.read_text())) == [], example.name
            checked += 1
    assert checked >= len(MessageType)

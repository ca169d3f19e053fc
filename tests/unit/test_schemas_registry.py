"""The schema registry as a gateway uses it: which versions are accepted, which are refused
with `schema.unknown`, and field-level errors a contact point can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from pydantic import Field, ValidationError

from exchange.errors import SchemaError
from exchange.model.asset_inquiry import AssetInquiry
from exchange.model.case_update import CaseUpdate
from exchange.model.common import MessageType
from exchange.model.receipt import Receipt
from exchange.schemas import (
    CURRENT_VERSIONS,
    MAX_FIELD_ERRORS,
    MAX_PAYLOAD_BYTES,
    REGISTRY,
    SchemaRegistry,
    model_for,
    schema_ref,
    validate_payload,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def example(kind: str, name: str) -> dict[str, Any]:
    path = EXAMPLES / kind / "valid" / f"{name}.json"
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def inquiry() -> dict[str, Any]:
    return example("asset-inquiry", "al-to-md-bank-crypto-company")


def refusal(kind: str, schema: str, payload: Any) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        validate_payload(kind, schema, payload)
    return caught.value


class AssetInquiryV2(AssetInquiry):
    """A made-up breaking change: a new required field."""

    national_case_number: str = Field(max_length=40, description="New in version 2.")


def test_every_message_type_is_registered_at_version_1() -> None:
    assert dict(CURRENT_VERSIONS) == {t: 1 for t in MessageType}
    assert schema_ref(MessageType.FREEZE_NOTICE) == "freeze-notice/1"
    assert schema_ref("receipt") == "receipt/1"
    assert model_for("asset-inquiry", 1) is AssetInquiry


def test_a_valid_payload_comes_back_as_its_model() -> None:
    model = validate_payload("asset-inquiry", "asset-inquiry/1", inquiry())
    assert isinstance(model, AssetInquiry)
    assert model.subjects[0].ref == "S1"
    assert model.assets_sought[0].kind == "bank-account"


@pytest.mark.parametrize(
    ("kind", "schema"),
    [
        ("asset-inquiry", "asset-inquiry/2"),  # a version that does not exist
        ("asset-inquiry", "asset-inquiry/0"),
        ("asset-inquiry", "freeze-notice/1"),  # schema of another type
        ("asset-inquiry", "asset-inquiry"),  # no version
        ("wire-transfer", "wire-transfer/1"),  # no such type
    ],
)
def test_unknown_types_and_versions_are_refused_as_schema_unknown(kind: str, schema: str) -> None:
    err = refusal(kind, schema, inquiry())
    assert err.code == "schema.unknown"
    assert err.http_status == 422
    assert err.spec.receipt_reason


def test_model_for_refuses_unknown_types_and_versions() -> None:
    with pytest.raises(SchemaError) as caught:
        model_for("asset-inquiry", 2)
    assert caught.value.code == "schema.unknown"
    with pytest.raises(SchemaError):
        model_for("wire-transfer", 1)


def test_a_gateway_accepts_the_current_and_the_previous_major_version() -> None:
    registry = SchemaRegistry(
        {
            (MessageType.ASSET_INQUIRY, 1): AssetInquiry,
            (MessageType.ASSET_INQUIRY, 2): AssetInquiryV2,
        }
    )
    assert registry.current_versions[MessageType.ASSET_INQUIRY] == 2
    assert registry.schema_ref("asset-inquiry") == "asset-inquiry/2"
    assert registry.accepted_majors(MessageType.ASSET_INQUIRY) == (2, 1)
    old = registry.validate_payload("asset-inquiry", "asset-inquiry/1", inquiry())
    assert type(old) is AssetInquiry
    new = registry.validate_payload(
        "asset-inquiry", "asset-inquiry/2", {**inquiry(), "national_case_number": "214/2025"}
    )
    assert isinstance(new, AssetInquiryV2)
    # The same payload without the new required field is valid v1 but not v2.
    with pytest.raises(SchemaError) as caught:
        registry.validate_payload("asset-inquiry", "asset-inquiry/2", inquiry())
    assert [e.path for e in caught.value.errors] == ["/payload/national_case_number"]


def test_versions_older_than_the_previous_one_are_refused_but_still_exported() -> None:
    class AssetInquiryV3(AssetInquiryV2):
        pass

    registry = SchemaRegistry(
        {
            (MessageType.ASSET_INQUIRY, 1): AssetInquiry,
            (MessageType.ASSET_INQUIRY, 2): AssetInquiryV2,
            (MessageType.ASSET_INQUIRY, 3): AssetInquiryV3,
        }
    )
    with pytest.raises(SchemaError) as caught:
        registry.validate_payload("asset-inquiry", "asset-inquiry/1", inquiry())
    assert caught.value.code == "schema.unknown"
    assert "accepted: 3, 2" in caught.value.detail
    docs = registry.documents()
    assert {"asset-inquiry/v1.json", "asset-inquiry/v2.json", "asset-inquiry/v3.json"} <= set(docs)
    assert docs["asset-inquiry/v2.json"]["$id"].endswith("/asset-inquiry/v2.json")
    assert "national_case_number" in docs["asset-inquiry/v2.json"]["required"]


def test_errors_point_at_the_failing_field_through_unions_and_lists() -> None:
    payload = inquiry()
    payload["subjects"][1]["name"]["family_name"] = ""  # a natural person, inside a union
    payload["subjects"][2]["registration_country"] = "YU"  # a legal person
    del payload["assets_sought"][1]["chain"]  # a virtual asset
    payload["questions"][0]["urgency"] = "high"  # unknown field
    err = refusal("asset-inquiry", "asset-inquiry/1", payload)
    assert err.code == "schema.invalid"
    paths = {e.path: e.message for e in err.errors}
    assert paths == {
        "/payload/subjects/1/name/family_name": "String should have at least 1 character",
        "/payload/subjects/2/registration_country": (
            "'YU' is not an ISO 3166-1 alpha-2 country code"
        ),
        "/payload/assets_sought/1/chain": "required field is missing",
        "/payload/questions/0/urgency": "unknown field",
    }
    assert "4 error(s)" in err.detail


def test_errors_explain_patterns_in_words() -> None:
    payload = inquiry()
    payload["subjects"][0]["name"]["given_names"] = "Arben\nHoxha"
    payload["offence"]["estimated_proceeds"]["amount"] = "1.850.000,00"
    payload["subjects"][0]["date_of_birth"] = "05.03.1979"
    err = refusal("asset-inquiry", "asset-inquiry/1", payload)
    messages = {e.path: e.message for e in err.errors}
    assert "one line" in messages["/payload/subjects/0/name/given_names"]
    assert "decimal string" in messages["/payload/offence/estimated_proceeds/amount"]
    assert messages["/payload/subjects/0/date_of_birth"] == "must be YYYY, YYYY-MM or YYYY-MM-DD"


def test_cross_field_rules_are_reported_on_the_object_that_breaks_them() -> None:
    receipt = example("receipt", "rejected-revoked-certificate")
    del receipt["reason"]
    err = refusal("receipt", "receipt/1", receipt)
    assert [e.as_dict() for e in err.errors] == [
        {"path": "/payload", "message": "reason is required when outcome is 'rejected'"}
    ]


def test_unknown_field_names_are_escaped_as_json_pointers() -> None:
    payload = inquiry()
    payload["a/b~c"] = 1
    err = refusal("asset-inquiry", "asset-inquiry/1", payload)
    assert [e.path for e in err.errors] == ["/payload/a~1b~0c"]


def test_a_payload_that_is_not_an_object_is_refused_at_the_root() -> None:
    err = refusal("case-update", "case-update/1", ["not", "an", "object"])
    assert [e.path for e in err.errors] == ["/payload"]


def test_a_flood_of_errors_is_cut_to_a_bounded_list() -> None:
    payload = inquiry()
    payload.update({f"junk_{i}": i for i in range(500)})
    err = refusal("asset-inquiry", "asset-inquiry/1", payload)
    assert len(err.errors) == MAX_FIELD_ERRORS
    assert "500 error(s)" in err.detail


def test_json_bytes_validate_the_same_way_and_oversized_payloads_are_refused() -> None:
    data = orjson.dumps(inquiry())
    model = REGISTRY.validate_payload_json("asset-inquiry", "asset-inquiry/1", data)
    assert model == validate_payload("asset-inquiry", "asset-inquiry/1", inquiry())

    broken = inquiry()
    broken["subjects"][0]["nationalities"] = ["YU"]
    with pytest.raises(SchemaError) as caught:
        REGISTRY.validate_payload_json("asset-inquiry", "asset-inquiry/1", orjson.dumps(broken))
    assert [e.path for e in caught.value.errors] == ["/payload/subjects/0/nationalities/0"]

    huge = b'{"summary": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    with pytest.raises(SchemaError) as caught:
        REGISTRY.validate_payload_json("case-update", "case-update/1", huge)
    assert caught.value.code == "schema.invalid"
    assert "larger than" in caught.value.errors[0].message

    with pytest.raises(SchemaError) as caught:
        REGISTRY.validate_payload_json("case-update", "case-update/1", b"{not json")
    assert [e.path for e in caught.value.errors] == ["/payload"]


def test_receipt_and_case_update_use_the_contract_field_names() -> None:
    assert list(Receipt.model_fields) == [
        "message_id",
        "digest",
        "outcome",
        "reason",
        "detail",
        "received_at",
    ]
    assert list(CaseUpdate.model_fields)[:5] == [
        "case",
        "network",
        "event",
        "summary",
        "related_messages",
    ]
    receipt = Receipt.model_validate(example("receipt", "rejected-schema-invalid"))
    assert receipt.message_id == UUID("d1c2b3a4-9586-4776-8e9f-a0b1c2d3e4f5")
    assert receipt.received_at.isoformat() == "2026-03-02T14:00:00+00:00"  # normalised to UTC
    assert receipt.model_dump(mode="json")["received_at"] == "2026-03-02T14:00:00.000Z"


def test_payload_models_are_immutable_and_refuse_unknown_fields() -> None:
    model = validate_payload("case-update", "case-update/1", example("case-update", "case-opened"))
    assert isinstance(model, CaseUpdate)
    with pytest.raises(ValidationError):
        model.summary = "rewritten"  # type: ignore[misc]
    for kind in MessageType:
        payload_model = model_for(kind, 1)
        assert payload_model.model_config.get("frozen") is True
        assert payload_model.model_config.get("extra") == "forbid"


def test_a_model_round_trips_through_its_json_form() -> None:
    for path in sorted(EXAMPLES.glob("*/valid/*.json")):
        kind = path.parents[1].name
        model = validate_payload(kind, f"{kind}/1", json.loads(path.read_text(encoding="utf-8")))
        again = validate_payload(kind, f"{kind}/1", model.model_dump(mode="json"))
        assert again == model, path.name

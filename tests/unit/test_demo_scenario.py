"""The demo's scenario table and payloads: every payload is valid, every step is one the
roles of the demo network allow, every answer answers the right request, and the
private-sector member stays out of the prosecutor network.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from exchange.demo.scenario import (
    CASE_EVENTS,
    DEMO_NODES,
    NETWORK,
    NODES,
    PROSECUTOR_NETWORK,
    ROLES,
    SCENARIO,
    VASP,
    VASP_STEPS,
    Step,
    load_payload,
)
from exchange.directory.view import NetworkView, load_view
from exchange.errors import ExchangeError
from exchange.model.case_update import CaseUpdate
from exchange.model.common import MessageType
from exchange.model.envelope import Header
from exchange.network import init_network_dir
from exchange.schemas import schema_ref, validate_payload
from exchange.subscriptions.automatic import automatic_update, should_emit

ANSWERS = {"asset-inquiry-response": "asset-inquiry", "freeze-decision": "freeze-notice"}


@pytest.fixture(scope="module")
def view(tmp_path_factory: pytest.TempPathFactory) -> NetworkView:
    """AL-ARO's view of the demo network's signed directory."""
    layout = init_network_dir(
        tmp_path_factory.mktemp("demo"),
        DEMO_NODES,
        network=NETWORK,
        bus="memory",
        networks={PROSECUTOR_NETWORK: NODES},
        roles=ROLES,
    )
    return load_view(layout.config("AL-ARO", environ={}))


@pytest.mark.parametrize("step", SCENARIO, ids=[s.payload_file for s in SCENARIO])
def test_every_payload_is_valid_against_its_schema(step: Step) -> None:
    validate_payload(step.type, schema_ref(step.type), load_payload(step.payload_file))


def test_every_payload_file_is_a_step_or_the_case_update_example() -> None:
    folder = resources.files("exchange.demo").joinpath("payloads")
    files = {Path(str(f)).name for f in folder.iterdir() if str(f).endswith(".json")}
    assert files == {s.payload_file for s in SCENARIO} | {"06-case-update.json"}
    CaseUpdate.model_validate(load_payload("06-case-update.json"))


def test_each_answer_replies_to_the_request_it_answers() -> None:
    for number, step in enumerate(SCENARIO):
        if step.replies_to is None:
            assert step.type not in ANSWERS, step.title
            continue
        request = SCENARIO[step.replies_to]
        assert step.replies_to < number
        assert ANSWERS[step.type] == request.type
        assert (step.sender, step.recipients) == (request.recipients[0], (request.sender,))


def test_the_vasp_steps_name_the_same_wallet_throughout() -> None:
    addresses = set()
    for step in VASP_STEPS:
        text = json.dumps(load_payload(step.payload_file), ensure_ascii=False)
        addresses |= {word for word in text.split('"') if word.startswith("TX81")}
    assert addresses == {"TX81zxkgg6LAe71DLwmmWB8TFHxLeu4gpA"}
    # the Belgrade findings are where the trail to EE-VASP starts
    findings = json.dumps(load_payload("02-asset-inquiry-response.json"), ensure_ascii=False)
    assert "TX81zxkgg6LAe71DLwmmWB8TFHxLeu4gpA" in findings


def test_the_network_allows_every_step_and_keeps_the_vasp_out(view: NetworkView) -> None:
    for step in SCENARIO:
        for recipient in step.recipients:
            view.check_exchange(step.sender, recipient, step.type)
    parties = {s.sender for s in VASP_STEPS} | {r for s in VASP_STEPS for r in s.recipients}
    assert parties == {"AL-ARO", VASP}
    role = view.role_of(VASP)
    assert role is not None and role.value == "private-sector"
    network = view.network(PROSECUTOR_NETWORK)
    assert network is not None and set(network.members) == set(NODES)
    assert VASP not in network.members
    with pytest.raises(ExchangeError) as refused:
        view.check_exchange("AL-ARO", VASP, "extradition-support")
    assert refused.value.code == "role.forbidden"
    with pytest.raises(ExchangeError) as refused:
        view.check_exchange(VASP, "AL-ARO", "case-update")
    assert refused.value.code == "role.forbidden"


def test_the_expected_case_updates_are_what_the_members_emit(view: NetworkView) -> None:
    """The demo's subscriber check follows the rules of automatic updates: one update per
    answer or decision, by the sender when it is a member, else by the member that
    received it (AL-ARO for EE-VASP's)."""
    network = view.network(PROSECUTOR_NETWORK)
    assert network is not None
    events = ["opened"]
    for number, step in enumerate(SCENARIO):
        if step.type not in (MessageType.ASSET_INQUIRY_RESPONSE, MessageType.FREEZE_DECISION):
            continue
        header = Header.model_validate(
            {
                "id": f"00000000-0000-4000-8000-{number:012d}",
                "type": step.type,
                "schema": schema_ref(step.type),
                "sender": step.sender,
                "recipients": list(step.recipients),
                "case": "AL-2026-0042",
                "created_at": "2026-03-13T10:00:00.000Z",
                "priority": step.priority,
                "handling": {"tlp": step.tlp, "code": step.handling_code},
            }
        )
        emitters = [
            node
            for node in DEMO_NODES
            if should_emit(network, header, node, "sent" if node == step.sender else "received")
        ]
        assert emitters == ([step.sender] if step.sender in NODES else ["AL-ARO"])
        update = automatic_update(network, header, load_payload(step.payload_file))
        assert update is not None
        events.append(update.event.value)
    assert tuple(events) == CASE_EVENTS

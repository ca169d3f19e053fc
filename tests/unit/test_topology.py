"""The topology module: names, queue arguments, routing keys and the rendered definitions."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from exchange.cli import topology as topology_cli
from exchange.errors import ExchangeError
from exchange.transport.definitions import rabbit_password_hash
from exchange.transport.memory import topic_matches
from exchange.transport.topology import (
    DestinationKind,
    ExchangeKind,
    InvalidName,
    QueueBounds,
    QueueKind,
    Topology,
)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("RS-PPO.#", "RS-PPO.asset-inquiry.AL-ARO", True),
        ("RS-PPO.#", "RS-PPO", True),  # '#' matches zero words
        ("RS-PPO.#", "AL-ARO.asset-inquiry.RS-PPO", False),
        ("RS-PPO.#", "RS-PPOX.asset-inquiry.AL-ARO", False),  # words, not prefixes
        ("*.asset-inquiry.*", "RS-PPO.asset-inquiry.AL-ARO", True),
        ("*.asset-inquiry.*", "RS-PPO.asset-inquiry", False),  # '*' is exactly one word
        ("*.asset-inquiry.*", "RS-PPO.asset-inquiry.AL-ARO.x", False),
        ("#", "", True),
        ("#", "a.b.c", True),
        ("*", "", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c.y", False),
        ("#.z", "z", True),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("see-arn.C1.*", "see-arn.C1.opened", True),
        ("see-arn.C1.*", "see-arn.C10.opened", False),
        ("a", "a", True),
        ("a", "A", False),
    ],
)
def test_topic_matching_follows_amqp_rules(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def test_names_live_under_the_prefix() -> None:
    t = Topology(prefix="xb")
    assert [e.name for e in t.exchanges()] == ["xb.messages", "xb.cases", "xb.audit", "xb.dead"]
    assert [e.kind for e in t.exchanges()] == [
        ExchangeKind.TOPIC,
        ExchangeKind.TOPIC,
        ExchangeKind.FANOUT,
        ExchangeKind.TOPIC,
    ]
    assert t.inbox_queue("RS-PPO") == "xb.inbox.RS-PPO"
    assert t.dead_queue("RS-PPO") == "xb.dead.RS-PPO"
    assert t.subscription_queue("MD-ARO") == "xb.sub.MD-ARO"
    assert t.audit_stream_queue == "xb.audit.stream"
    assert t.node_of_queue("xb.inbox.RS-PPO") == "RS-PPO"
    assert t.node_of_queue("other.inbox.RS-PPO") is None
    assert t.logical_name("xb.messages") == "messages" and t.physical_name("dead") == "xb.dead"


def test_an_inbox_dead_letters_poison_into_the_nodes_own_dead_queue() -> None:
    t = Topology(prefix="xb", delivery_limit=7)
    inbox = t.inbox("RS-PPO")
    assert inbox.kind is QueueKind.QUORUM
    assert inbox.argument_map == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "xb.dead",
        "x-dead-letter-routing-key": "RS-PPO.delivery-limit",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 7,
    }
    dead_binding = next(b for b in t.node_bindings("RS-PPO") if b.source == "xb.dead")
    assert dead_binding.destination == "xb.dead.RS-PPO"
    assert topic_matches(dead_binding.routing_key, "RS-PPO.delivery-limit")
    assert not topic_matches(dead_binding.routing_key, "AL-ARO.delivery-limit")


def test_the_audit_stream_keeps_a_bounded_history() -> None:
    stream = Topology(stream_max_age="30D", stream_max_bytes=1_000_000).audit_stream
    assert stream.argument_map == {
        "x-queue-type": "stream",
        "x-max-age": "30D",
        "x-max-length-bytes": 1_000_000,
    }


def test_specs_are_frozen_hashable_values() -> None:
    a, b = Topology(prefix="xb"), Topology(prefix="xb")
    assert a == b and hash(a) == hash(b)
    assert a.inbox("RS-PPO") == b.inbox("RS-PPO")
    assert len({a.inbox("RS-PPO"), b.inbox("RS-PPO"), a.inbox("AL-ARO")}) == 2
    with pytest.raises(AttributeError):
        a.inbox("RS-PPO").name = "other"  # type: ignore[misc]


def test_declarations_are_idempotent_sums() -> None:
    t = Topology()
    both = t.for_node("AL-ARO") + t.for_node("RS-PPO") + t.for_node("AL-ARO")
    assert len(both.exchanges) == 4
    assert [q.name for q in both.queues] == [
        "xb.audit.stream",
        "xb.inbox.AL-ARO",
        "xb.dead.AL-ARO",
        "xb.inbox.RS-PPO",
        "xb.dead.RS-PPO",
    ]
    assert len(both.bindings) == len(set(both.bindings))


def test_routing_keys_refuse_dots_wildcards_and_empty_words() -> None:
    t = Topology()
    assert t.routing_key("RS-PPO", "asset-inquiry", "AL-ARO") == "RS-PPO.asset-inquiry.AL-ARO"
    for bad in ("RS.PPO", "RS-PPO#", "*", "#", "", "RS PPO", "x" * 65):
        with pytest.raises(InvalidName):
            t.routing_key(bad, "asset-inquiry", "AL-ARO")
        with pytest.raises(InvalidName):
            t.routing_key("RS-PPO", "asset-inquiry", bad)
    assert t.case_routing_key("see-arn", "AL-2026-0042", "opened") == "see-arn.AL-2026-0042.opened"
    with pytest.raises(InvalidName):
        t.case_routing_key("see-arn", "AL.2026", "opened")
    assert t.dead_letter_routing_key("RS-PPO", "signature.invalid") == "RS-PPO.signature.invalid"
    with pytest.raises(InvalidName):
        t.dead_letter_routing_key("RS-PPO", "#")
    with pytest.raises(InvalidName):
        Topology(prefix="x.b")


def test_subscription_bindings_follow_networks_or_cases() -> None:
    t = Topology()
    whole = t.subscription_bindings("MD-ARO", ["see-arn", "pcoc"])
    assert [b.routing_key for b in whole] == ["see-arn.#", "pcoc.#"]
    assert {b.destination for b in whole} == {"xb.sub.MD-ARO"}
    some = t.subscription_bindings("MD-ARO", ["see-arn"], cases=["C1", "C2"])
    assert [b.routing_key for b in some] == ["see-arn.C1.*", "see-arn.C2.*"]


def test_messages_are_audited_only_when_they_reach_an_inbox() -> None:
    t = Topology()
    audit_copies = [
        b
        for b in t.for_node("RS-PPO").bindings
        if b.destination_kind is DestinationKind.EXCHANGE and b.source == "xb.messages"
    ]
    # a message is audited on its way to an inbox; a checkpoint has its own key
    assert [(b.routing_key, b.destination) for b in audit_copies] == [
        ("checkpoint.*", "xb.audit"),
        ("RS-PPO.#", "xb.audit"),
    ]
    assert ("#", "xb.audit") in [(b.routing_key, b.destination) for b in t.shared().bindings]


def _rendered() -> dict[str, list[dict[str, str]]]:
    return Topology(prefix="xb").render_definitions(
        "see",
        ["AL-ARO", "RS-PPO", "KZ-ARC"],
        {"see-arn": ["AL-ARO", "RS-PPO"]},
        passwords={"AL-ARO": "dev-secret"},
        auditors=["AUDITOR"],
    )


def test_definitions_give_each_node_a_user_without_password_unless_asked() -> None:
    defs = _rendered()
    users = {u["name"]: u for u in defs["users"]}
    assert set(users) == {"AL-ARO", "RS-PPO", "KZ-ARC", "AUDITOR"}
    assert "password_hash" not in users["RS-PPO"]  # x509 login only
    salted = base64.b64decode(users["AL-ARO"]["password_hash"])
    assert hashlib.sha256(salted[:4] + b"dev-secret").digest() == salted[4:]
    assert defs["vhosts"] == [{"name": "see"}]


def test_definitions_confine_each_node_to_its_own_queues() -> None:
    perms = {p["user"]: p for p in _rendered()["permissions"]}
    al = perms["AL-ARO"]
    assert re.fullmatch(al["read"], "xb.inbox.AL-ARO")
    assert re.fullmatch(al["read"], "xb.messages")
    assert not re.fullmatch(al["read"], "xb.inbox.RS-PPO")
    assert not re.fullmatch(al["read"], "xb.audit.stream")
    assert re.fullmatch(al["write"], "xb.messages")
    assert not re.fullmatch(al["write"], "xb.inbox.RS-PPO")
    assert re.fullmatch(al["configure"], "xb.inbox.AL-ARO")
    assert not re.fullmatch(al["configure"], "xb.messages")
    auditor = perms["AUDITOR"]
    assert re.fullmatch(auditor["read"], "xb.audit.stream")
    assert not re.fullmatch(auditor["read"], "xb.inbox.AL-ARO")


def test_topic_permissions_bind_the_sender_to_the_user_name() -> None:
    tps = {(t["user"], t["exchange"]): t for t in _rendered()["topic_permissions"]}
    messages = tps[("AL-ARO", "xb.messages")]

    def allowed(pattern: str, user: str, key: str) -> bool:
        return re.search(pattern.replace("{username}", re.escape(user)), key) is not None

    assert allowed(messages["write"], "AL-ARO", "RS-PPO.asset-inquiry.AL-ARO")
    assert not allowed(messages["write"], "AL-ARO", "RS-PPO.asset-inquiry.KZ-ARC")
    assert not allowed(messages["write"], "AL-ARO", "RS-PPO.asset-inquiry.AL-ARO.x")
    assert allowed(messages["read"], "AL-ARO", "AL-ARO.#")
    assert not allowed(messages["read"], "AL-ARO", "#")
    member, outsider = tps[("AL-ARO", "xb.cases")], tps[("KZ-ARC", "xb.cases")]
    assert allowed(member["write"], "AL-ARO", "see-arn.C1.opened")
    assert not allowed(member["write"], "AL-ARO", "pcoc.C1.opened")
    for key in ("see-arn.C1.opened", "", "#"):
        assert not allowed(outsider["write"], "KZ-ARC", key)
        assert not allowed(outsider["read"], "KZ-ARC", key)


def test_rabbit_password_hash_matches_rabbitmqs_scheme() -> None:
    # RabbitMQ's documented example: salt 908DC60A, password "test12"
    expected = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    assert rabbit_password_hash("test12", bytes.fromhex("908DC60A")) == expected


def render(*argv: str) -> int:
    """`exchange topology render ...` through this command's own parser."""
    parser = argparse.ArgumentParser(prog="exchange")
    topology_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["topology", "render", *argv])
    code: int = args.func(args)
    return code


def test_cli_renders_a_network_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    network = tmp_path / "network.json"
    network.write_text(json.dumps({"network": "see-arn", "nodes": {"AL-ARO": {}, "RS-PPO": {}}}))
    assert render("--network", str(network), "--nodes", "MD-ARO") == 0
    defs = json.loads(capsys.readouterr().out)
    assert defs["vhosts"] == [{"name": "see-arn"}]
    assert [u["name"] for u in defs["users"]] == ["MD-ARO", "AL-ARO", "RS-PPO"]
    subs = [q["name"] for q in defs["queues"] if ".sub." in q["name"]]
    assert subs == ["xb.sub.AL-ARO", "xb.sub.RS-PPO"]  # MD-ARO is in no network


def test_cli_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ExchangeError, match="not a node id") as bad_id:
        render("--nodes", "AL.ARO")
    with pytest.raises(ExchangeError, match="--nodes or --network") as nothing:
        render()
    broken = tmp_path / "network.json"
    broken.write_text("{")
    with pytest.raises(ExchangeError, match="cannot read") as unreadable:
        render("--network", str(broken))
    # the CLI maps these codes to exit status 2 (bad usage or input)
    assert {bad_id.value.code, nothing.value.code, unreadable.value.code} == {
        "usage",
        "config.invalid",
    }


# -- the audit exchange, and bounded queues -------------------------------------------------


def test_no_user_may_publish_to_the_audit_exchange() -> None:
    defs = _rendered()
    for permission in defs["permissions"]:
        assert not re.fullmatch(permission["write"], "xb.audit"), permission["user"]
    assert not any(tp["exchange"] == "xb.audit" for tp in defs["topic_permissions"])
    # what reaches the stream is what the broker's own bindings copy there
    into_audit = [b for b in defs["bindings"] if b["destination"] == "xb.audit"]
    assert {b["source"] for b in into_audit} == {"xb.messages", "xb.cases"}


def test_a_node_publishes_its_checkpoints_only_under_its_own_id() -> None:
    tps = {(t["user"], t["exchange"]): t for t in _rendered()["topic_permissions"]}
    write = tps[("AL-ARO", "xb.messages")]["write"].replace("{username}", "AL-ARO")
    t = Topology()
    own = t.checkpoint_routing_key("AL-ARO")
    assert own == "checkpoint.AL-ARO"
    assert re.search(write, own)
    assert not re.search(write, t.checkpoint_routing_key("RS-PPO"))
    assert not re.search(write, "checkpoint.AL-ARO.x")
    # the broker copies checkpoints into the stream, and into no inbox
    into_audit = [b for b in t.shared().bindings if b.destination == "xb.audit"]
    assert any(topic_matches(b.routing_key, own) for b in into_audit if b.source == "xb.messages")
    inboxes = [b for b in t.for_node("AL-ARO").bindings if b.destination.startswith("xb.inbox.")]
    assert not any(topic_matches(b.routing_key, own) for b in inboxes)


def test_every_nodes_queues_are_bounded_by_a_policy_that_refuses_more() -> None:
    t = Topology(inbox_bounds=QueueBounds(100, 10_000), dead_bounds=QueueBounds(10, 1_000))
    defs = t.render_definitions(
        "see",
        ["AL-ARO", "RS-PPO"],
        {"see-arn": ["AL-ARO", "RS-PPO"]},
        node_bounds={"RS-PPO": QueueBounds(500, 50_000)},
    )
    policies = {p["name"]: p for p in defs["policies"]}
    assert set(policies) == {"xb-work-queues", "xb-dead-queues", "xb-work-queues-RS-PPO"}
    for policy in policies.values():
        assert policy["apply-to"] == "queues" and policy["vhost"] == "see"
        assert policy["definition"]["overflow"] == "reject-publish"

    def applied(queue: str) -> dict[str, int | str] | None:
        matching = [p for p in policies.values() if re.search(p["pattern"], queue)]
        if not matching:
            return None
        definition: dict[str, int | str] = max(matching, key=lambda p: p["priority"])["definition"]
        return definition

    for queue in [q["name"] for q in defs["queues"]]:
        bounds = applied(queue)
        if queue in ("xb.audit.stream", "xb.directory.stream"):
            assert bounds is None  # a stream keeps its own retention
        elif queue.endswith("RS-PPO") and ".dead." not in queue:
            assert bounds is not None and bounds["max-length"] == 500, queue
        elif ".dead." in queue:
            assert bounds is not None and bounds["max-length-bytes"] == 1_000, queue
        else:
            assert bounds is not None and bounds["max-length"] == 100, queue
    assert t.bounds_of("xb.inbox.AL-ARO") == QueueBounds(100, 10_000)
    assert t.bounds_of("xb.sub.AL-ARO") == QueueBounds(100, 10_000)
    assert t.bounds_of("xb.dead.AL-ARO") == QueueBounds(10, 1_000)
    assert t.bounds_of("xb.audit.stream") is None
    with pytest.raises(ValueError, match="outside the network"):
        t.render_definitions("see", ["AL-ARO"], node_bounds={"KZ-ARC": QueueBounds(1, 1)})
    with pytest.raises(ValueError):
        QueueBounds(0, 1)


def test_cli_renders_queue_bounds_from_flags_and_the_network_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    network = tmp_path / "network.json"
    nodes = {"AL-ARO": {}, "RS-PPO": {"inbox_max_length": 9, "inbox_max_bytes": 99}}
    network.write_text(json.dumps({"network": "see-arn", "nodes": nodes}))
    assert (
        render("--network", str(network), "--inbox-max-length", "7", "--dead-max-bytes", "5") == 0
    )
    policies = {p["name"]: p["definition"] for p in json.loads(capsys.readouterr().out)["policies"]}
    assert policies["xb-work-queues"]["max-length"] == 7
    assert policies["xb-dead-queues"]["max-length-bytes"] == 5
    assert policies["xb-work-queues-RS-PPO"] == {
        "max-length": 9,
        "max-length-bytes": 99,
        "overflow": "reject-publish",
    }
    network.write_text(
        json.dumps({"network": "see-arn", "nodes": {"AL-ARO": {"inbox_max_length": 9}}})
    )
    with pytest.raises(ExchangeError, match="both inbox_max_length and inbox_max_bytes"):
        render("--network", str(network))
    with pytest.raises(ExchangeError, match="at least 1"):
        render("--nodes", "AL-ARO", "--inbox-max-length", "0")

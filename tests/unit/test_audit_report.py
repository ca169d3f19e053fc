"""`exchange audit report`: which requests were answered in time, which are overdue, per node."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.audit.log import AuditLog
from exchange.audit.report import DeadlineRules, deadline_report, summary_by_node
from exchange.audit.store import AuditStore
from exchange.cli import main
from exchange.crypto.signing import NodeSigner
from exchange.model.common import MessageType, Priority
from exchange.model.envelope import Header

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
INQUIRY = uuid.UUID("6f1c33a0-63a1-4f4e-8d55-0a1f4b9a2c01")
NOTICE = uuid.UUID("6f1c33a0-63a1-4f4e-8d55-0a1f4b9a2c02")
DIRECT = uuid.UUID("6f1c33a0-63a1-4f4e-8d55-0a1f4b9a2c03")


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def rule_of_thumb(
    kind: MessageType,
    priority: Priority,
    created_at: datetime,
    *,
    directly_accessible: bool = False,
) -> datetime | None:
    """Eight hours for urgent requests, two days for the others."""
    return created_at + (hours(8) if priority is Priority.URGENT else hours(48))


RULES = DeadlineRules(
    respond_by=rule_of_thumb,
    response_types={
        MessageType.ASSET_INQUIRY: MessageType.ASSET_INQUIRY_RESPONSE,
        MessageType.FREEZE_NOTICE: MessageType.FREEZE_DECISION,
    },
)


def envelope(
    signer: NodeSigner,
    kind: str,
    to: list[str],
    created: datetime,
    *,
    message_id: uuid.UUID | None = None,
    reply_to: uuid.UUID | None = None,
    priority: str = "normal",
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    header = Header.model_validate(
        {
            "id": str(message_id or uuid.uuid4()),
            "type": kind,
            "schema": f"{kind}/1",
            "sender": signer.node_id,
            "recipients": to,
            "case": "AL-2026-0042",
            "in_reply_to": str(reply_to) if reply_to else None,
            "created_at": created,
            "priority": priority,
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    return signer.sign_envelope(header, payload or {"note": "only the deadline hints are read"})


async def write_log(path: Path, pki_dir: Path) -> None:
    al = NodeSigner.from_files(pki_dir / "AL-ARO.key", pki_dir / "AL-ARO.pem")
    rs = NodeSigner.from_files(pki_dir / "RS-PPO.key", pki_dir / "RS-PPO.pem")
    log = await AuditLog.open(path, al)
    # AL-ARO asks RS-PPO and MD-ARO, urgently; RS-PPO answers in two hours, MD-ARO never.
    inquiry = envelope(
        al, "asset-inquiry", ["RS-PPO", "MD-ARO"], T0, message_id=INQUIRY, priority="urgent"
    )
    await log.append("accepted", message_id=INQUIRY, envelope=inquiry)
    receipt = envelope(rs, "receipt", ["AL-ARO"], T0 + hours(0.1), reply_to=INQUIRY)
    await log.append("receipt-received", message_id=INQUIRY, envelope=receipt)
    answer = envelope(rs, "asset-inquiry-response", ["AL-ARO"], T0 + hours(2), reply_to=INQUIRY)
    await log.append("verified", message_id=answer["header"]["id"], envelope=answer)
    # Information RS-PPO holds directly is due in 8 hours; it answers in 10.
    direct = envelope(
        al,
        "asset-inquiry",
        ["RS-PPO"],
        T0,
        message_id=DIRECT,
        priority="urgent",
        payload={"directly_accessible": True},
    )
    await log.append("accepted", message_id=DIRECT, envelope=direct)
    late = envelope(rs, "asset-inquiry-response", ["AL-ARO"], T0 + hours(10), reply_to=DIRECT)
    await log.append("verified", message_id=late["header"]["id"], envelope=late)
    # RS-PPO notifies a freeze; AL-ARO decides after 60 hours, past its 48.
    notice = envelope(rs, "freeze-notice", ["AL-ARO"], T0, message_id=NOTICE)
    await log.append("verified", message_id=NOTICE, envelope=notice)
    decision = envelope(al, "freeze-decision", ["RS-PPO"], T0 + hours(60), reply_to=NOTICE)
    await log.append("accepted", message_id=decision["header"]["id"], envelope=decision)
    # A refused copy of the notice is evidence, not a second request.
    await log.append("rejected", code="message.replayed", envelope=notice)
    await log.close()


@pytest.fixture(scope="module")
def db(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    asyncio.run(write_log(directory / "audit.sqlite3", pki_dir))
    return directory / "audit.sqlite3"


def report(db: Path) -> list[Any]:
    store = AuditStore.open(db, readonly=True)
    try:
        return deadline_report(store, RULES)
    finally:
        store.close()


def test_each_recipient_of_a_request_owes_an_answer(db: Path) -> None:
    rows = {(r.message_id, r.recipient): r for r in report(db)}
    assert set(rows) == {
        (str(INQUIRY), "RS-PPO"),
        (str(INQUIRY), "MD-ARO"),
        (str(NOTICE), "AL-ARO"),
        (str(DIRECT), "RS-PPO"),
    }
    answered = rows[(str(INQUIRY), "RS-PPO")]
    assert answered.respond_by == T0 + hours(8)
    assert answered.answered_at == T0 + hours(2)  # the answer, not the receipt
    assert answered.status(T0 + hours(100)) == "on time"
    assert rows[(str(NOTICE), "AL-ARO")].status(T0 + hours(100)) == "late"
    silent = rows[(str(INQUIRY), "MD-ARO")]
    assert silent.answered_at is None
    assert silent.status(T0 + hours(1)) == "open"
    assert silent.status(T0 + hours(9)) == "overdue"


def test_the_summary_counts_per_node(db: Path) -> None:
    nodes = summary_by_node(report(db), T0 + hours(100))
    assert nodes["RS-PPO"]["requests"] == 2
    assert nodes["RS-PPO"]["on time"] == 1 and nodes["RS-PPO"]["late"] == 1
    assert nodes["MD-ARO"]["overdue"] == 1
    assert nodes["AL-ARO"]["late"] == 1


def test_the_cli_report_as_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["audit", "report", "--db", str(db), "--now", "2026-11-10T00:00:00Z", "--format", "json"]
    )
    assert code == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["now"] == "2026-11-10T00:00:00.000Z"
    rows = {(r["message_id"], r["recipient"]): r for r in doc["requests"]}
    answered = rows[(str(INQUIRY), "RS-PPO")]
    assert answered["answered_at"] == "2026-11-02T11:00:00.000Z"
    # The network's table: urgent, not directly accessible information is due in 3 days.
    assert answered["respond_by"] == "2026-11-05T09:00:00.000Z"
    assert answered["status"] == "on time"
    silent = rows[(str(INQUIRY), "MD-ARO")]
    assert silent["status"] == "overdue" and silent["answered_at"] is None
    # A normal freeze notice: seven days, answered after 60 hours.
    assert rows[(str(NOTICE), "AL-ARO")]["status"] == "on time"
    direct = rows[(str(DIRECT), "RS-PPO")]
    assert direct["respond_by"] == "2026-11-02T17:00:00.000Z" and direct["status"] == "late"
    assert set(doc["nodes"]) == {"RS-PPO", "MD-ARO", "AL-ARO"}


def test_the_cli_report_as_a_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "report", "--db", str(db), "--now", "2026-11-10"]) == 0
    out = capsys.readouterr().out
    assert str(INQUIRY) in out and "MD-ARO" in out and "per node" in out

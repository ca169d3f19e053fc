"""`exchange audit verify | replay | report`: an auditor finds every kind of tampering.

The log is the one a node writes while receiving signed receipts from a partner and
answering with its own; tests copy it, tamper with the copy as an operator with write
access to the file could, and check that verification fails naming the right entry.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from exchange.audit.checkpoints import (
    Checkpoint,
    CheckpointPolicy,
    read_checkpoints_jsonl,
    sign_checkpoint,
    write_checkpoints_jsonl,
)
from exchange.audit.log import AuditLog
from exchange.audit.merkle import CompactRange, leaf_hash
from exchange.audit.verifier import verify_log
from exchange.cli import main
from exchange.cli.audit import _ProgressBar
from exchange.crypto.canonical import sha256_hex
from exchange.crypto.pki import create_crl, load_certificate, load_private_key
from exchange.crypto.signing import NodeSigner, signing_input
from exchange.model.common import utc_now
from exchange.model.envelope import Header
from exchange.model.receipt import Receipt

NODE, PEER = "AL-ARO", "RS-PPO"
ROUNDS = 10  # each round logs five entries


def signer_of(pki_dir: Path, node: str) -> NodeSigner:
    return NodeSigner.from_files(pki_dir / f"{node}.key", pki_dir / f"{node}.pem")


def receipt(signer: NodeSigner, to: str, about: uuid.UUID, digest: str) -> dict[str, Any]:
    header = Header.model_validate(
        {
            "id": str(uuid.uuid4()),
            "type": "receipt",
            "schema": "receipt/1",
            "sender": signer.node_id,
            "recipients": [to],
            "case": "AL-2026-0042",
            "in_reply_to": str(about),
            "created_at": utc_now(),
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    payload = Receipt.model_validate(
        {
            "message_id": str(about),
            "digest": digest,
            "outcome": "accepted",
            "received_at": utc_now(),
        }
    ).model_dump(mode="json")
    return signer.sign_envelope(header, payload)


def digest_of(envelope: dict[str, Any]) -> str:
    return sha256_hex(signing_input(envelope["header"], envelope["payload"]))


async def write_log(path: Path, pki_dir: Path, published: Path) -> None:
    """A node receives ROUNDS receipts from its peer, stores them and answers each."""
    me, peer = signer_of(pki_dir, NODE), signer_of(pki_dir, PEER)
    log = await AuditLog.open(path, me, checkpoints=CheckpointPolicy(every_entries=8))
    for _ in range(ROUNDS):
        incoming = receipt(peer, NODE, uuid.uuid4(), "ab" * 32)
        mid, digest = incoming["header"]["id"], digest_of(incoming)
        case = incoming["header"]["case"]
        await log.append("received", message_id=mid, case=case, digest=digest)
        await log.append("verified", message_id=mid, case=case, digest=digest, envelope=incoming)
        await log.append("stored", message_id=mid, case=case, digest=digest)
        answer = receipt(me, PEER, uuid.UUID(mid), digest)
        await log.append("receipt-sent", message_id=mid, case=case, digest=digest, envelope=answer)
        await log.append("delivered", actor="tok-1", role="operator", message_id=mid, case=case)
    await log.export_checkpoints(published)  # what the network's audit stream holds
    await log.close()


@pytest.fixture(scope="module")
def pristine(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("pristine")
    db, published = directory / "audit.sqlite3", directory / "published.jsonl"
    asyncio.run(write_log(db, pki_dir, published))
    return db, published


@pytest.fixture
def db(pristine: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "audit.sqlite3"
    shutil.copyfile(pristine[0], copy)
    return copy


@pytest.fixture
def published(pristine: tuple[Path, Path]) -> Path:
    return pristine[1]


def size_of(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])


@pytest.fixture
def tamper(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the copy with the append-only triggers dropped, as an attacker has."""
    conn = sqlite3.connect(db)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    yield conn
    conn.commit()
    conn.close()


def body_of(conn: sqlite3.Connection, index: int) -> bytes:
    return bytes(conn.execute("SELECT body FROM entries WHERE idx = ?", (index,)).fetchone()[0])


def flip_byte(conn: sqlite3.Connection, index: int, position: int, *, fix_leaf: bool) -> None:
    body = bytearray(body_of(conn, index))
    body[position % len(body)] ^= 0x01
    conn.execute("UPDATE entries SET body = ? WHERE idx = ?", (bytes(body), index))
    if fix_leaf:
        conn.execute("UPDATE entries SET leaf = ? WHERE idx = ?", (leaf_hash(bytes(body)), index))
    conn.commit()


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", "verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- a log as written verifies -------------------------------------------------------------


def test_the_log_as_written_verifies(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = verify(capsys, "--db", str(db), "--jobs", "1")
    assert code == 0, err
    assert "ok: the audit log verifies" in out
    assert f"{size_of(db)} entries" in out
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    assert "--cert or --ca" in err  # the key was taken from the log itself: say so


def test_with_the_network_ca_every_envelope_is_verified_again(
    db: Path, pki_dir: Path, published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--db", str(db), "--ca", str(pki_dir / "ca.pem"), "--cert", str(pki_dir)]
    code, out, err = verify(capsys, *args, "--checkpoints", str(published), "--jobs", "1")
    assert code == 0, err
    assert f"{2 * ROUNDS} envelopes verified again" in out
    assert "checkpoints verified" in out and "warning" not in err


def test_worker_processes_reach_the_same_verdict(db: Path, tamper: sqlite3.Connection) -> None:
    flip_byte(tamper, 30, 40, fix_leaf=False)
    report = verify_log(db, jobs=2, chunk_size=8)
    assert report.first is not None and report.first.index == 30


# -- tampering -----------------------------------------------------------------------------


def test_altering_any_byte_of_any_entry_is_detected_at_that_entry(
    db: Path, tamper: sqlite3.Connection
) -> None:
    for index in range(size_of(db)):
        length = len(body_of(tamper, index))
        for position in (0, index * 7, length - 1):
            flip_byte(tamper, index, position, fix_leaf=False)
            report = verify_log(db, jobs=1)
            assert report.first is not None and report.first.index == index, (index, position)
            flip_byte(tamper, index, position, fix_leaf=False)  # and back
    assert verify_log(db, jobs=1).ok


def test_an_altered_byte_is_found_through_the_cli(
    db: Path, tamper: sqlite3.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(tamper, 17, 25, fix_leaf=False)
    code, _, err = verify(capsys, "--db", str(db), "--jobs", "1")
    assert code == 1
    assert "audit.invalid" in err and "entry 17: its bytes do not match" in err


def test_an_entry_altered_with_its_leaf_hash_is_caught_by_the_next_checkpoint(
    db: Path, tamper: sqlite3.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(tamper, 13, 60, fix_leaf=True)
    code, _, err = verify(capsys, "--db", str(db), "--jobs", "1")
    assert code == 1
    # Checkpoints cover 0-7 (entry 8 records it), then 9-16 (entry 17): entry 13 lies between.
    assert "entry 16: the log's first 17 entries do not match the checkpoint" in err
    assert "from 8 to 16" in err


def test_a_deleted_entry_is_detected_where_it_is_missing(
    db: Path, tamper: sqlite3.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper.execute("DELETE FROM entries WHERE idx = 22")
    tamper.commit()
    code, _, err = verify(capsys, "--db", str(db), "--jobs", "1")
    assert code == 1 and "entry 22: it is missing" in err


def test_a_deleted_entry_closed_up_by_renumbering_is_detected(
    db: Path, tamper: sqlite3.Connection
) -> None:
    last = size_of(db) - 1
    tamper.execute("DELETE FROM entries WHERE idx = 22")
    for index in range(23, last + 1):
        tamper.execute("UPDATE entries SET idx = ? WHERE idx = ?", (index - 1, index))
    tamper.commit()
    report = verify_log(db, jobs=1)
    assert report.first is not None and report.first.index == 22
    assert "it says it is entry 23" in report.first.reason


def test_two_reordered_entries_are_detected_at_the_first(
    db: Path, tamper: sqlite3.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = body_of(tamper, 11), body_of(tamper, 14)
    tamper.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = 11", (b, leaf_hash(b)))
    tamper.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = 14", (a, leaf_hash(a)))
    tamper.commit()
    code, _, err = verify(capsys, "--db", str(db), "--jobs", "1")
    assert code == 1 and "entry 11: it says it is entry 14" in err


def cut_tail(conn: sqlite3.Connection, keep: int) -> None:
    """Truncate the log to `keep` entries and make everything in the file agree with it."""
    leaves = [bytes(r[0]) for r in conn.execute("SELECT leaf FROM entries ORDER BY idx")][:keep]
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    conn.execute("DELETE FROM entries WHERE idx >= ?", (keep,))
    conn.execute("DELETE FROM checkpoints WHERE size >= ?", (keep,))
    conn.execute("DELETE FROM subtrees WHERE end_idx > ?", (keep,))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'size'", (keep,))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'frontier'", (compact.to_bytes(),))
    conn.commit()


def test_a_truncated_tail_is_detected_against_a_checkpoint_published_earlier(
    db: Path, tamper: sqlite3.Connection, published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut_tail(tamper, 30)
    # The file alone is consistent again: only a checkpoint kept elsewhere shows the cut.
    assert verify_log(db, jobs=1).ok
    code, _, err = verify(capsys, "--db", str(db), "--checkpoints", str(published))
    assert code == 1
    assert "entry 30: the log ends at 30 entries but a checkpoint (from published.jsonl)" in err


def test_a_tail_cut_without_covering_tracks_is_detected_without_checkpoints(
    db: Path, tamper: sqlite3.Connection
) -> None:
    tamper.execute("DELETE FROM entries WHERE idx >= 40")
    tamper.commit()
    report = verify_log(db, jobs=1)
    assert report.first is not None and report.first.index == 40


# -- checkpoints ---------------------------------------------------------------------------


def test_a_published_checkpoint_with_a_changed_root_or_signature_is_refused(
    db: Path, published: Path, tmp_path: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoints = read_checkpoints_jsonl(published)
    first = checkpoints[0].as_dict()
    other = "B" if first["signature"].startswith("A") else "A"
    altered = Checkpoint.from_dict({**first, "signature": other + first["signature"][1:]})
    forged = tmp_path / "forged.jsonl"
    write_checkpoints_jsonl([altered], forged)
    code, _, err = verify(
        capsys, "--db", str(db), "--checkpoints", str(forged), "--cert", str(pki_dir / "AL-ARO.pem")
    )
    assert code == 1 and "its signature does not verify" in err


def test_a_checkpoint_signed_by_another_node_is_refused(
    db: Path, tmp_path: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impostor = signer_of(pki_dir, PEER)
    fake = sign_checkpoint(impostor, 5, leaf_hash(b"x"), utc_now())
    as_node = Checkpoint.from_dict({**fake.as_dict(), "node": NODE})
    forged = tmp_path / "forged.jsonl"
    write_checkpoints_jsonl([as_node], forged)
    ca = ["--ca", str(pki_dir / "ca.pem"), "--cert", str(pki_dir)]
    code, _, err = verify(capsys, "--db", str(db), "--checkpoints", str(forged), *ca)
    assert code == 1
    assert "checkpoints: checkpoint of size 5 (from forged.jsonl)" in err
    assert f"its key belongs to {PEER}, not {NODE}" in err
    assert "entry" not in err  # a forged checkpoint accuses no entry


def test_a_stored_checkpoint_rewritten_in_the_file_is_refused(
    db: Path, tamper: sqlite3.Connection, pki_dir: Path
) -> None:
    size, body = tamper.execute("SELECT size, body FROM checkpoints LIMIT 1").fetchone()
    doc = orjson.loads(body)
    doc["time"] = "2020-01-01T00:00:00.000Z"
    tamper.execute("UPDATE checkpoints SET body = ? WHERE size = ?", (orjson.dumps(doc), size))
    tamper.commit()
    report = verify_log(db, jobs=1, ca_path=pki_dir / "ca.pem")
    assert not report.ok
    assert any("stored in the log" in f.reason and f.index is None for f in report.findings)


# -- envelopes -----------------------------------------------------------------------------


async def test_an_envelope_that_no_longer_verifies_is_named(
    tmp_path: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    peer, db = signer_of(pki_dir, PEER), tmp_path / "audit.sqlite3"
    good = receipt(peer, NODE, uuid.uuid4(), "cd" * 32)
    bad = receipt(peer, NODE, uuid.uuid4(), "cd" * 32)
    bad["payload"]["outcome"] = "rejected"  # changed after signing
    log = await AuditLog.open(db, signer_of(pki_dir, NODE))
    await log.append("verified", message_id=good["header"]["id"], envelope=good)
    await log.append("verified", message_id=bad["header"]["id"], envelope=bad)
    await log.close()
    assert verify_log(db, jobs=1).ok  # without the CA, envelopes are not checked
    ca = ["--ca", str(pki_dir / "ca.pem"), "--cert", str(pki_dir)]
    code, _, err = await asyncio.to_thread(verify, capsys, "--db", str(db), *ca)
    assert code == 1 and "entry 1: its envelope does not verify again: signature.invalid" in err


def crl_revoking(pki_dir: Path, path: Path, node: str, at: datetime) -> Path:
    """A CRL of the network CA revoking `node`'s certificate at `at`."""
    serial = load_certificate(pki_dir / f"{node}.pem").serial_number
    ca_key, ca = load_private_key(pki_dir / "ca.key"), load_certificate(pki_dir / "ca.pem")
    path.write_bytes(create_crl(ca_key, ca, {serial: at}, number=2).public_bytes(Encoding.PEM))
    return path


def test_with_the_crl_envelopes_logged_after_their_signers_revocation_fail(
    db: Path, pki_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = ["--ca", str(pki_dir / "ca.pem"), "--cert", str(pki_dir), "--jobs", "1"]
    earlier = crl_revoking(pki_dir, tmp_path / "early.pem", PEER, utc_now() - timedelta(hours=1))
    code, _, err = verify(capsys, "--db", str(db), *ca, "--crl", str(earlier))
    assert code == 1
    assert "its envelope does not verify again: cert.revoked" in err
    assert f"of {PEER} was revoked at" in err and "before this entry" in err
    # revoked after the node logged them: they were good when exchanged
    later = crl_revoking(pki_dir, tmp_path / "late.pem", PEER, utc_now() + timedelta(hours=1))
    code, out, err = verify(capsys, "--db", str(db), *ca, "--crl", str(later))
    assert code == 0, err
    assert f"{2 * ROUNDS} envelopes verified again" in out


def test_a_crl_needs_the_ca_that_signed_it(
    db: Path, pki_dir: Path, foreign_pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = verify(capsys, "--db", str(db), "--crl", str(pki_dir / "crl.pem"))
    assert code == 2 and "--crl needs --ca" in err
    ca = ["--ca", str(pki_dir / "ca.pem"), "--jobs", "1"]
    code, _, err = verify(capsys, "--db", str(db), *ca, "--crl", str(foreign_pki_dir / "crl.pem"))
    assert code == 2 and "not the network's" in err


def test_the_progress_bar_redraws_one_line() -> None:
    stream = io.StringIO()
    bar = _ProgressBar(stream)
    bar(50, 100)
    bar(100, 100)
    bar.finish()
    text = stream.getvalue()
    assert text.startswith("\rverifying") and "100/100 entries" in text and text.endswith("\n")


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = verify(capsys, "--db", str(tmp_path / "missing.sqlite3"))
    assert code == 2 and "cannot read the audit log" in err
    (tmp_path / "notes.txt").write_text("not a database")
    code, _, err = verify(capsys, "--db", str(tmp_path / "notes.txt"))
    assert code == 2 and "cannot read the audit log" in err


# -- replay --------------------------------------------------------------------------------


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["audit", "replay", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, [orjson.loads(line) for line in out.splitlines()]


def test_replay_shows_the_timeline_without_payloads(
    db: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rows = replay(capsys, "--db", str(db))
    assert code == 0 and [r["index"] for r in rows] == list(range(size_of(db)))
    kept = [r for r in rows if "envelope" in r]
    assert kept and all("payload" not in r["envelope"] for r in kept)
    ca = ["--ca", str(pki_dir / "ca.pem"), "--cert", str(pki_dir)]
    code, rows = replay(capsys, "--db", str(db), "--type", "receipt-sent", *ca)
    assert code == 0 and len(rows) == ROUNDS
    assert all(r["check"]["envelope_verified"] for r in rows)


def test_replay_filters_by_type_node_case_and_time(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, receipts = replay(capsys, "--db", str(db), "--type", "receipt")
    assert len(receipts) == 2 * ROUNDS  # a message type: both directions
    _, from_peer = replay(capsys, "--db", str(db), "--node", PEER)
    assert len(from_peer) == 2 * ROUNDS
    _, none = replay(capsys, "--db", str(db), "--case", "XX-0")
    assert none == []
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    _, future = replay(capsys, "--db", str(db), "--since", later)
    assert future == []
    _, past = replay(capsys, "--db", str(db), "--until", later)
    assert len(past) == size_of(db)


def test_replay_marks_an_altered_entry_and_fails(
    db: Path, tamper: sqlite3.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(tamper, 3, 45, fix_leaf=False)
    code = main(["audit", "replay", "--db", str(db)])
    out, err = capsys.readouterr()
    assert code == 1 and "1 shown entries do not verify" in err
    assert any(line.startswith("3 ") and "altered" in line for line in out.splitlines())

"""The node's audit log: durable group-committed appends, the tree, checkpoints, proofs."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from exchange.audit import merkle
from exchange.audit.checkpoints import (
    Checkpoint,
    CheckpointPolicy,
    read_checkpoints_jsonl,
    verify_checkpoint,
)
from exchange.audit.entries import AuditEntry, AuditEvent
from exchange.audit.log import AuditLog
from exchange.crypto.canonical import canonicalize
from exchange.crypto.signing import NodeSigner
from exchange.errors import AuditError, ConfigError

NODE = "AL-ARO"


@pytest.fixture(scope="module")
def signer(pki_dir: Path) -> NodeSigner:
    return NodeSigner.from_files(pki_dir / f"{NODE}.key", pki_dir / f"{NODE}.pem")


@pytest.fixture
async def log(tmp_path: Path, signer: NodeSigner) -> AsyncIterator[AuditLog]:
    opened = await AuditLog.open(
        tmp_path / "audit.sqlite3", signer, checkpoints=CheckpointPolicy(every_entries=10_000)
    )
    yield opened
    await opened.close()


def stored_bodies(path: Path) -> list[tuple[int, bytes, bytes]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT idx, leaf, body FROM entries ORDER BY idx").fetchall()


def reference_root(path: Path) -> bytes:
    """The recursive RFC 9162 MTH of the stored entry bytes."""

    def mth(entries: list[bytes]) -> bytes:
        if len(entries) == 1:
            return merkle.leaf_hash(entries[0])
        k = 1
        while k * 2 < len(entries):
            k *= 2
        return merkle.node_hash(mth(entries[:k]), mth(entries[k:]))

    return mth([bytes(b) for _, _, b in stored_bodies(path)])


async def test_1000_concurrent_appends_get_contiguous_indices_and_the_reference_root(
    log: AuditLog, tmp_path: Path
) -> None:
    indices = await asyncio.gather(
        *(log.append("received", message_id=uuid.uuid4(), case=f"C-{i}") for i in range(1000))
    )
    assert sorted(indices) == list(range(1000))
    rows = stored_bodies(tmp_path / "audit.sqlite3")
    assert [r[0] for r in rows] == list(range(1000))
    # Each caller got the index its own entry was written at.
    by_case = {AuditEntry.from_bytes(bytes(b)).case: idx for idx, _, b in rows}
    assert [by_case[f"C-{i}"] for i in range(1000)] == indices
    assert log.head.size == 1000
    assert log.head.root == reference_root(tmp_path / "audit.sqlite3")
    assert log.commits < 100  # committed in groups, not one transaction per entry


async def test_an_append_is_on_disk_when_it_returns(log: AuditLog, tmp_path: Path) -> None:
    index = await log.append("accepted", actor="tok-1", role="operator", case="AL-2026-1")
    # Another connection, as after a crash of this process, sees the entry.
    rows = stored_bodies(tmp_path / "audit.sqlite3")
    assert rows[-1][0] == index
    with sqlite3.connect(tmp_path / "audit.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_entry_is_canonical_json_with_what_happened(log: AuditLog, tmp_path: Path) -> None:
    message_id = uuid.uuid4()
    envelope = {"header": {"id": str(message_id)}, "payload": {"x": 1}, "signature": {}}
    await log.append(
        AuditEvent.VERIFIED,
        actor="tok-7",
        role="operator",
        message_id=str(message_id).upper(),
        case="AL-2026-0042",
        digest="ab" * 32,
        envelope=envelope,
        detail={"from": "RS-PPO"},
    )
    (_, leaf, body) = stored_bodies(tmp_path / "audit.sqlite3")[-1]
    assert body == canonicalize(orjson.loads(body))
    assert leaf == merkle.leaf_hash(body)
    doc = orjson.loads(body)
    assert doc["node"] == NODE and doc["event"] == "verified" and doc["index"] == 0
    assert doc["message_id"] == str(message_id)
    assert doc["time"].endswith("Z")
    assert doc["envelope"] == envelope and doc["detail"] == {"from": "RS-PPO"}
    assert "code" not in doc  # absent fields are left out, not null
    entry = (await log.entries(0, 10))[0]
    assert entry.event is AuditEvent.VERIFIED and entry.case == "AL-2026-0042"


async def test_bad_entries_are_refused_and_do_not_disturb_the_others(log: AuditLog) -> None:
    with pytest.raises(ValueError):
        await log.append("teleported")
    with pytest.raises(ValueError):
        await log.append("checkpoint")
    with pytest.raises(ValueError):
        await log.append("received", message_id="not-a-uuid")
    results = await asyncio.gather(
        log.append("received", case="A"),
        log.append("received", detail={"amount": float("nan")}),
        log.append("received", case="B"),
        return_exceptions=True,
    )
    assert results[0] == 0 and results[2] == 1
    assert isinstance(results[1], ValueError)
    assert log.head.size == 2


async def test_the_log_reopens_where_it_stopped(tmp_path: Path, signer: NodeSigner) -> None:
    path = tmp_path / "audit.sqlite3"
    policy = CheckpointPolicy(every_entries=10_000)
    first = await AuditLog.open(path, signer, checkpoints=policy)
    await asyncio.gather(*(first.append("stored") for _ in range(300)))
    await first.close()  # signs a last checkpoint (entry 300)
    second = await AuditLog.open(path, signer, checkpoints=policy)
    assert second.head.size == 301
    assert await second.append("delivered") == 301
    await second.close()
    assert reference_root(path) == merkle.root([r[1] for r in stored_bodies(path)])
    with pytest.raises(RuntimeError):
        await second.append("delivered")


async def test_a_log_refuses_another_node(tmp_path: Path, signer: NodeSigner) -> None:
    path = tmp_path / "audit.sqlite3"
    log = await AuditLog.open(path, None, node="RS-PPO")
    await log.close()
    with pytest.raises(ConfigError):
        await AuditLog.open(path, signer)
    with pytest.raises(ConfigError):
        await AuditLog.open(tmp_path / "new.sqlite3", None)


async def test_the_store_refuses_updates_and_deletes(log: AuditLog, tmp_path: Path) -> None:
    await log.append("received")
    await log.checkpoint()
    with sqlite3.connect(tmp_path / "audit.sqlite3") as conn:
        for statement in (
            "UPDATE entries SET body = x'00' WHERE idx = 0",
            "DELETE FROM entries WHERE idx = 0",
            "DELETE FROM checkpoints",
            "UPDATE checkpoints SET size = 0",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)


async def test_a_log_whose_tail_was_cut_is_not_appended_to(
    tmp_path: Path, signer: NodeSigner
) -> None:
    path = tmp_path / "audit.sqlite3"
    log = await AuditLog.open(path, signer)
    await asyncio.gather(*(log.append("received") for _ in range(20)))
    await log.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER entries_no_delete")
        conn.execute("DELETE FROM entries WHERE idx >= 15")
    with pytest.raises(AuditError, match="audit verify"):
        await AuditLog.open(path, signer)


# -- checkpoints ---------------------------------------------------------------------------


async def test_checkpoints_every_n_entries_are_signed_logged_and_announced(
    tmp_path: Path, signer: NodeSigner
) -> None:
    announced: list[Checkpoint] = []
    published: list[Checkpoint] = []

    async def publish(cp: Checkpoint) -> None:
        await asyncio.sleep(0)
        published.append(cp)

    log = await AuditLog.open(
        tmp_path / "audit.sqlite3",
        signer,
        checkpoints=CheckpointPolicy(every_entries=10),
        on_checkpoint=announced.append,
    )
    await asyncio.gather(*(log.append("received") for _ in range(35)))
    await asyncio.sleep(0.05)
    # Entries 0-9, then the checkpoint entry at 10; the next ten are 11-20, and so on.
    assert [cp.size for cp in announced] == [10, 21, 32]
    stored = await log.checkpoints()
    assert stored == announced
    entries = await log.entries(0, 100)
    for cp in announced:
        assert entries[cp.size].event is AuditEvent.CHECKPOINT
        assert Checkpoint.from_dict(entries[cp.size].detail or {}) == cp
        assert cp.root_hash == merkle.root([merkle.leaf_hash(e.body) for e in entries[: cp.size]])
        assert verify_checkpoint(cp, signer.private_key.public_key())
        assert cp.node == NODE and cp.kid == signer.kid
    await log.close()
    assert announced[-1].size == 38  # close signs what the last checkpoint did not cover
    assert log.latest_checkpoint == announced[-1]

    log = await AuditLog.open(tmp_path / "audit.sqlite3", signer, on_checkpoint=publish)
    await log.append("received")
    forced = await log.checkpoint()
    assert forced is not None and forced.size == 40
    assert await log.checkpoint() == forced  # nothing new: the same checkpoint
    await log.close()
    assert [cp.size for cp in published] == [40]


async def test_a_checkpoint_is_signed_after_some_seconds_even_when_idle(
    tmp_path: Path, signer: NodeSigner
) -> None:
    announced: list[Checkpoint] = []
    log = await AuditLog.open(
        tmp_path / "audit.sqlite3",
        signer,
        checkpoints=CheckpointPolicy(every_entries=1000, every_seconds=0.2),
        on_checkpoint=announced.append,
    )
    await log.append("received")
    await log.append("stored")
    for _ in range(100):  # no more appends: the clock alone brings the checkpoint
        if announced and announced[-1].size == log.head.size - 1:
            break
        await asyncio.sleep(0.05)
    assert announced[-1].size == log.head.size - 1 >= 2  # all but its own entry
    seen = len(announced)
    await asyncio.sleep(0.6)
    assert len(announced) == seen  # its own checkpoint entry does not call for another
    await log.close()


class FlakySigner:
    """The node's signer behind a switch, as a key held by a device that can go away."""

    def __init__(self, signer: NodeSigner) -> None:
        self._signer = signer
        self.node_id, self.kid = signer.node_id, signer.kid
        self.broken = False

    def sign_bytes(self, data: bytes) -> str:
        if self.broken:
            raise RuntimeError("the signing device is not reachable")
        return self._signer.sign_bytes(data)


async def test_a_batch_that_cannot_be_written_changes_nothing(
    tmp_path: Path, signer: NodeSigner
) -> None:
    flaky = FlakySigner(signer)
    path = tmp_path / "audit.sqlite3"
    log = await AuditLog.open(path, flaky, checkpoints=CheckpointPolicy(every_entries=3))
    assert [await log.append("received"), await log.append("stored")] == [0, 1]
    flaky.broken = True
    with pytest.raises(RuntimeError, match="signing device"):
        await log.append("delivered")  # the third entry calls for a checkpoint
    assert log.head.size == 2 and len(stored_bodies(path)) == 2
    flaky.broken = False
    assert await log.append("delivered") == 2
    assert log.latest_checkpoint is not None and log.latest_checkpoint.size == 3
    await log.close()
    assert log.head.root == reference_root(path)


def test_any_change_to_a_checkpoint_breaks_its_signature(signer: NodeSigner) -> None:
    from exchange.audit.checkpoints import sign_checkpoint
    from exchange.model.common import utc_now

    cp = sign_checkpoint(signer, 12, merkle.leaf_hash(b"x"), utc_now())
    key = signer.private_key.public_key()
    assert verify_checkpoint(cp, key)
    doc = cp.as_dict()
    changes = {
        "size": 13,
        "root": merkle.leaf_hash(b"y").hex(),
        "node": "RS-PPO",
        "time": "2020-01-01T00:00:00.000Z",
        "kid": "0" * 64,
        "signature": cp.signature[:-2] + ("AA" if cp.signature[-2:] != "AA" else "AB"),
    }
    for name, value in changes.items():
        altered = Checkpoint.from_dict({**doc, name: value})
        assert not verify_checkpoint(altered, key), name
    with pytest.raises(ValueError):
        Checkpoint.from_dict({**doc, "extra": 1})
    with pytest.raises(ValueError):
        Checkpoint.from_dict({**doc, "time": "2020-01-01T00:00:00Z"})


def test_a_peer_checkpoint_is_checked_against_the_network_trust_store(
    pki_dir: Path, signer: NodeSigner
) -> None:
    from exchange.audit.checkpoints import check_checkpoint, sign_checkpoint
    from exchange.crypto.verify import TrustStore
    from exchange.model.common import utc_now

    trust = TrustStore.from_directory(pki_dir)
    cp = sign_checkpoint(signer, 40, merkle.leaf_hash(b"x"), utc_now())
    check_checkpoint(cp, trust)
    claimed = Checkpoint.from_dict({**cp.as_dict(), "node": "RS-PPO"})
    with pytest.raises(AuditError, match=f"belongs to {NODE}"):
        check_checkpoint(claimed, trust)
    bigger = Checkpoint.from_dict({**cp.as_dict(), "size": 41})
    with pytest.raises(AuditError, match="signature does not verify"):
        check_checkpoint(bigger, trust)
    with pytest.raises(AuditError, match=r"cert\.unknown"):
        check_checkpoint(Checkpoint.from_dict({**cp.as_dict(), "kid": "0" * 64}), trust)


async def test_checkpoints_export_to_json_lines(log: AuditLog, tmp_path: Path) -> None:
    await log.append("received")
    await log.checkpoint()
    await log.append("received")
    await log.checkpoint()
    count = await log.export_checkpoints(tmp_path / "published.jsonl")
    assert count == 2
    assert read_checkpoints_jsonl(tmp_path / "published.jsonl") == await log.checkpoints()


# -- proofs --------------------------------------------------------------------------------


async def test_proofs_from_the_store_match_the_whole_tree_and_verify(
    log: AuditLog, tmp_path: Path
) -> None:
    await asyncio.gather(*(log.append("received", detail={"n": i}) for i in range(1100)))
    leaves = [bytes(r[1]) for r in stored_bodies(tmp_path / "audit.sqlite3")]
    size = log.head.size
    for index in (0, 1, 255, 256, 511, 700, 1023, 1024, size - 1):
        proof = await log.inclusion_proof(index)
        assert proof.path == merkle.inclusion_proof(index, leaves)
        assert merkle.verify_inclusion(index, size, leaves[index], proof.path, log.head.root)
    for old, new in ((1, size), (256, 1024), (300, 1025), (512, 513), (1024, size), (7, 700)):
        proof = await log.consistency_proof(old, new)
        assert proof.path == merkle.consistency_proof(old, leaves[:new])
        assert proof.old_root == merkle.root(leaves[:old])
        assert merkle.verify_consistency(old, new, proof.path, proof.old_root, proof.new_root)
    page = await log.entries(1000, 50)
    assert [e.index for e in page] == list(range(1000, 1050))
    assert len(await log.entries(0, 5000)) == size  # no hidden page limit
    past = await log.inclusion_proof(5, 300)
    assert past.root == merkle.root(leaves[:300])
    with pytest.raises(ValueError):
        await log.inclusion_proof(0, size + 1)
    assert set(past.as_dict()) == {"index", "size", "leaf_hash", "path", "root"}

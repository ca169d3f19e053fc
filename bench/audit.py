"""The audit log: batched append throughput, `audit verify` speed, and its peak memory.

Append: N entries through `AuditLog.append`, 1,000 callers at a time (group commit, one
fsync per transaction), against plain SQLite inserts of the same bytes in one transaction.
Verify: `verify_log` with the network CA (every entry's leaf and envelope: parse, chain,
signature, schema) on all cores, against raw Ed25519 verification of the same signed bytes
on all cores, both with process start-up; by wall clock, and per CPU second of all processes
(a ratio that other work on the machine does not skew). Memory: peak RSS of a fresh process
verifying logs of growing size, alone and as coordinator of the workers.

Run: .venv/bin/python bench/audit.py [--append N] [--verify N] [--memory 50000,200000]
Writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchange import log as logging_setup
from exchange.audit.checkpoints import CheckpointPolicy
from exchange.audit.log import AuditLog
from exchange.audit.scan import ChunkScanner
from exchange.audit.verifier import verify_log
from exchange.crypto.canonical import sha256_hex
from exchange.crypto.pki import init_network
from exchange.crypto.signing import NodeSigner, b64url_decode, signing_input
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.model.envelope import Header
from exchange.model.receipt import Receipt

RESULTS = Path(__file__).parent / "results" / "audit.json"
GOALS = {
    "append, batched": 20_000.0,
    "append, batched (CPU bound)": 20_000.0,
    "verify vs raw": 0.8,
    "verify vs raw, per CPU second": 0.8,
}
DISTINCT_ENVELOPES = 2000
WAVE = 1000


def receipt(signer: NodeSigner, n: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    header = Header.model_validate(
        {
            "id": str(uuid.uuid4()),
            "type": "receipt",
            "schema": "receipt/1",
            "sender": signer.node_id,
            "recipients": ["AL-ARO"],
            "case": f"AL-2026-{n % 9000:04d}",
            "in_reply_to": str(uuid.uuid4()),
            "created_at": now,
            "priority": "normal",
            "handling": {"tlp": "AMBER", "code": "H2"},
        }
    )
    payload = Receipt.model_validate(
        {
            "message_id": header.in_reply_to,
            "digest": f"{n:064x}",
            "outcome": "accepted",
            "received_at": now,
        }
    ).model_dump(mode="json")
    return signer.sign_envelope(header, payload)


async def append_entries(
    path: Path, signer: NodeSigner, count: int, envelopes: list[dict[str, Any]] | None
) -> tuple[float, float]:
    """Seconds (wall, CPU of all threads) to append `count` entries, WAVE callers at a time."""
    log = await AuditLog.open(path, signer, checkpoints=CheckpointPolicy(every_entries=1000))
    digests = [sha256_hex(signing_input(e["header"], e["payload"])) for e in envelopes or ()]
    ids = [uuid.uuid4() for _ in range(min(count, 10_000))]  # callers know their message ids
    started, cpu = time.perf_counter(), time.process_time()
    for first in range(0, count, WAVE):
        calls = []
        for n in range(first, min(first + WAVE, count)):
            envelope = envelopes[n % len(envelopes)] if envelopes else None
            calls.append(
                log.append(
                    "verified" if envelope else "received",
                    actor="tok-bench",
                    role="operator",
                    message_id=envelope["header"]["id"] if envelope else ids[n % len(ids)],
                    case=f"AL-2026-{n % 9000:04d}",
                    digest=digests[n % len(digests)] if envelopes else f"{n:064x}",
                    envelope=envelope,
                    detail={"from": "RS-PPO"},
                )
            )
        await asyncio.gather(*calls)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await log.close()
    return elapsed, cpu


def raw_inserts(source: Path, target: Path) -> tuple[int, float]:
    """Seconds to insert the same entry bytes with plain SQLite, one transaction."""
    with sqlite3.connect(source) as conn:
        rows = conn.execute("SELECT idx, leaf, body FROM entries ORDER BY idx").fetchall()
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, leaf BLOB, body BLOB)")
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO entries VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows), elapsed


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (fork-started pool workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_per_entry(
    db: Path, trust: tuple[Path, tuple[Path, ...]], envelopes: list[dict[str, Any]], sample: int
) -> dict[str, float]:
    """CPU µs per entry on one core, best of interleaved rounds: the whole check of an entry;
    `verify_envelope` alone (the crypto package's path: envelope model, chain, canonical form,
    Ed25519); raw Ed25519 of the same bytes."""
    scanner = ChunkScanner.open(db, "AL-ARO", trust)
    policy = VerificationPolicy(TrustStore.from_files(trust[0], None, trust[1]))
    signed_at = [datetime.fromisoformat(e["header"]["created_at"]) for e in envelopes]
    items = [
        (b64url_decode(e["signature"]["value"]), signing_input(e["header"], e["payload"]))
        for e in envelopes
    ]
    key = policy.trust.get(envelopes[0]["signature"]["kid"])
    assert key is not None

    def scan() -> None:
        for first in range(0, sample, 2048):
            scanner(first, min(first + 2048, sample))

    def crypto_path() -> None:
        for n in range(sample):
            verify_envelope(
                envelopes[n % len(envelopes)], policy, now=signed_at[n % len(envelopes)]
            )

    def raw() -> None:
        for n in range(sample):
            signature, data = items[n % len(items)]
            key.public_key.verify(signature, data)

    cases = {"entry_check_us": scan, "verify_envelope_us": crypto_path, "raw_ed25519_us": raw}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(3):
        for name, run in cases.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], (time.process_time() - started) / sample)
    scanner.close()
    return {name: round(seconds * 1e6, 1) for name, seconds in best.items()}


def _raw_verify_chunk(args: tuple[bytes, list[tuple[bytes, bytes]]]) -> int:
    public_raw, items = args
    key = Ed25519PublicKey.from_public_bytes(public_raw)
    for signature, data in items:
        key.verify(signature, data)
    return len(items)


def raw_verify(
    envelopes: list[dict[str, Any]], public: bytes, count: int, jobs: int
) -> tuple[float, float]:
    """Seconds (wall, CPU of all processes) to verify `count` raw Ed25519 signatures on
    `jobs` processes, pool start-up included as for `audit verify`."""
    items = [
        (b64url_decode(e["signature"]["value"]), signing_input(e["header"], e["payload"]))
        for e in envelopes
    ]
    chunk = 2048
    work = [
        (public, [items[n % len(items)] for n in range(first, min(first + chunk, count))])
        for first in range(0, count, chunk)
    ]
    started, cpu = time.perf_counter(), cpu_seconds()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        done = sum(pool.map(_raw_verify_chunk, work))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert done == count
    return elapsed, cpu


# VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec and would report this process's size.
_MEMORY_PROBE = """
import json, sys, time
from pathlib import Path
from exchange.audit.scan import ChunkScanner
from exchange.audit.verifier import verify_log
jobs, db, ca = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
started = time.perf_counter()
report = verify_log(db, ca_path=ca, cert_paths=[Path(p) for p in sys.argv[4:]], jobs=jobs)
elapsed = time.perf_counter() - started
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"ok": report.ok, "size": report.size, "seconds": elapsed, "peak_kib": peak}))
"""


def memory_probe(db: Path, network: Path, jobs: int) -> dict[str, Any]:
    """Peak RSS of a fresh process verifying `db` with `jobs` workers (1: all in-process)."""
    certs = [str(network / "RS-PPO.pem"), str(network / "AL-ARO.pem")]
    argv = [str(jobs), str(db), str(network / "ca.pem"), *certs]
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, *argv], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--append", type=int, default=100_000, help="entries appended")
    parser.add_argument("--verify", type=int, default=200_000, help="entries verified")
    parser.add_argument("--memory", default="50000,200000", help="log sizes for peak memory")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write JSON")
    args = parser.parse_args()
    logging_setup.configure("WARNING")
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    cpu_rows: dict[str, float] = {}

    def row(case: str, per_s: float, baseline: str | None, ratio: float | None) -> None:
        goal = GOALS.get(case)
        rows.append({"case": case, "per_s": round(per_s), "baseline": baseline, "ratio": ratio})
        mark = ""
        if goal is not None:
            value = ratio if goal < 10 else per_s
            mark = f"goal {goal:g}: " + ("ok" if value is not None and value >= goal else "MISS")
        shown = f"{ratio:.2f}" if ratio is not None else "-"
        print(f"{case:<34}{per_s:>12,.0f}/s {shown:>8}  {baseline or '':<28}{mark}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        network = root / "network"
        init_network(network, "bench-net", ["AL-ARO", "RS-PPO"])
        me = NodeSigner.from_files(network / "AL-ARO.key", network / "AL-ARO.pem")
        peer = NodeSigner.from_files(network / "RS-PPO.key", network / "RS-PPO.pem")
        envelopes = [receipt(peer, n) for n in range(DISTINCT_ENVELOPES)]
        size_one = len(json.dumps(envelopes[0]))
        print(f"{args.jobs} cores; envelopes: signed receipts of {size_one} bytes")
        print(f"{'case':<34}{'rate':>14} {'ratio':>8}  {'against':<28}")

        small = root / "small.sqlite3"
        seconds, cpu = asyncio.run(append_entries(small, me, args.append, None))
        n, raw_seconds = raw_inserts(small, root / "raw-small.sqlite3")
        row("raw insert, one transaction", n / raw_seconds, None, None)
        row("append, batched", args.append / seconds, "raw insert", raw_seconds / seconds)
        row("append, batched (CPU bound)", args.append / cpu, "raw insert", raw_seconds / cpu)

        with_env = root / "verify.sqlite3"
        seconds, cpu = asyncio.run(append_entries(with_env, me, args.verify, envelopes))
        n, raw_seconds = raw_inserts(with_env, root / "raw-env.sqlite3")
        row("raw insert with envelopes", n / raw_seconds, None, None)
        row(
            "append with envelopes", n / seconds, "raw insert with envelopes", raw_seconds / seconds
        )

        public = peer.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        raw_seconds, raw_cpu = raw_verify(envelopes, public, args.verify, args.jobs)
        row(f"raw Ed25519 verify, {args.jobs} cores", args.verify / raw_seconds, None, None)
        trust = (network / "ca.pem", (network / "RS-PPO.pem", network / "AL-ARO.pem"))
        started, cpu = time.perf_counter(), cpu_seconds()
        report = verify_log(with_env, ca_path=trust[0], cert_paths=trust[1], jobs=args.jobs)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        assert report.ok, report.first
        assert report.envelopes_verified == args.verify
        raw_rate, rate = args.verify / raw_seconds, report.size / seconds
        row("verify vs raw", rate, "raw Ed25519 verify", rate / raw_rate)
        raw_rate, rate = args.verify / raw_cpu, report.size / cpu
        row("verify vs raw, per CPU second", rate, "raw Ed25519 verify, per CPU s", rate / raw_rate)
        cpu_rows = cpu_per_entry(with_env, trust, envelopes, min(args.verify, 5_000))
        print("one core, µs per entry: " + ", ".join(f"{k} {v}" for k, v in cpu_rows.items()))

        for size in [int(s) for s in args.memory.split(",") if s]:
            db = root / f"memory-{size}.sqlite3"
            asyncio.run(append_entries(db, me, size, envelopes))
            alone, pooled = memory_probe(db, network, 1), memory_probe(db, network, args.jobs)
            assert alone["ok"] and pooled["ok"]
            db_mib = round(db.stat().st_size / 2**20, 1)
            memory.append(
                {
                    "entries": size,
                    "db_mib": db_mib,
                    "one_process_peak_mib": round(alone["peak_kib"] / 1024, 1),
                    "one_process_seconds": round(alone["seconds"], 1),
                    "coordinator_peak_mib": round(pooled["peak_kib"] / 1024, 1),
                    "pooled_seconds": round(pooled["seconds"], 1),
                }
            )
            print(
                f"verify {size:>9,} entries ({db_mib:,} MiB file): peak RSS "
                f"{alone['peak_kib'] / 1024:.0f} MiB in one process ({alone['seconds']:.0f} s); "
                f"coordinator {pooled['peak_kib'] / 1024:.0f} MiB with {args.jobs} workers "
                f"({pooled['seconds']:.0f} s)"
            )
            db.unlink()

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(
        json.dumps(
            {
                "benchmark": "audit",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "cores": args.jobs,
                "append_entries": args.append,
                "verify_entries": args.verify,
                "results": rows,
                "cpu_per_entry": cpu_rows,
                "memory": memory,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Property tests of `verify_envelope`: no mutation of a valid signed envelope is accepted unless it
is semantically a no-op, and the verifier never raises anything but `VerificationError`.

The oracle for "semantically a no-op" is canonical JSON (RFC 8785): a mutated envelope must be
accepted exactly when its canonical form equals the original's, whatever its whitespace,
member order or escaping. Byte-level mutations (bit flips, insertions, deletions) must never
be accepted with a different digest. How many mutations ran is printed with `-s`.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exchange.crypto.canonical import CanonicalizationError, canonicalize
from exchange.crypto.signing import NodeSigner, encode_envelope
from exchange.crypto.verify import TrustStore, VerificationPolicy, verify_envelope
from exchange.errors import RECEIPT_REASONS, VerificationError
from exchange.model.common import utc_now
from exchange.model.envelope import Header

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "asset-inquiry" / "valid"
RUNS: Counter[str] = Counter()


def budget(examples: int) -> settings:
    """Bounded runs (the suite must stay fast on two loaded cores); no per-example deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Signed:
    """One valid signed envelope, its wire bytes, canonical form, digest and signing time."""

    def __init__(self, signer: NodeSigner, policy: VerificationPolicy) -> None:
        self.now: datetime = utc_now()
        payload = json.loads(sorted(EXAMPLE.glob("*.json"))[0].read_text(encoding="utf-8"))
        header = Header.model_validate(
            {
                "id": "0b5f4d1e-8c2a-4e6f-9a7b-1c2d3e4f5a6b",
                "type": "asset-inquiry",
                "schema": "asset-inquiry/1",
                "sender": "AL-ARO",
                "recipients": ["RS-PPO"],
                "case": "AL-2026-0042",
                "created_at": self.now,
                "expires_at": None,
                "priority": "urgent",
                "handling": {"tlp": "AMBER", "code": "H2"},
            }
        )
        self.doc: dict[str, Any] = signer.sign_envelope(header, payload)
        self.wire = encode_envelope(self.doc)
        self.canonical = canonicalize(self.doc)
        self.policy = policy
        self.digest = verify_envelope(self.wire, policy, now=self.now).digest


@pytest.fixture(scope="module")
def signed(pki_dir: Path) -> Signed:
    signer = NodeSigner.from_files(pki_dir / "AL-ARO.key", pki_dir / "AL-ARO.pem")
    return Signed(signer, VerificationPolicy(trust=TrustStore.from_directory(pki_dir)))


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\nverify_envelope property runs: {dict(RUNS)} (total {sum(RUNS.values())})")


def outcome(data: bytes, signed: Signed) -> str | None:
    """The digest if accepted, None if refused; anything but VerificationError propagates."""
    try:
        verified = verify_envelope(data, signed.policy, now=signed.now)
    except VerificationError as err:
        assert err.code in RECEIPT_REASONS, err.code
        return None
    return verified.digest


# --- byte-level mutations ---------------------------------------------------------------------


@st.composite
def byte_mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, int]]:
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "set", "insert", "delete", "duplicate"]),
                st.integers(0, size - 1),
                st.integers(0, 255),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return ops


def mutate_bytes(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, position, value in ops:
        at = position % max(len(out), 1)
        if op == "flip":
            out[at] ^= 1 << (value % 8)
        elif op == "set":
            out[at] = value
        elif op == "insert":
            out[at:at] = bytes([value])
        elif op == "delete":
            del out[at : at + 1 + value % 8]
        else:
            out[at:at] = out[at : at + 1 + value % 16]
    return bytes(out)


@budget(400)
@given(data=st.data())
def test_byte_mutations_are_refused_unless_nothing_signed_changed(
    signed: Signed, data: st.DataObject
) -> None:
    ops = data.draw(byte_mutations(len(signed.wire)))
    mutated = mutate_bytes(signed.wire, ops)
    RUNS["byte mutations"] += 1
    digest = outcome(mutated, signed)
    if digest is not None:
        RUNS["byte mutations accepted as no-ops"] += 1
        assert digest == signed.digest
        assert orjson.loads(mutated)["signature"] == signed.doc["signature"]


# --- structural mutations ---------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths_of(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from paths_of(value, (*prefix, index))


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def structural_mutation(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in paths_of(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = at(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "insert", "retype", "same", "nest"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(json_values)
        elif op == "insert":
            if isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(json_values)
            else:
                parent.insert(key, draw(json_values))
        elif op == "retype":
            value = parent[key]
            parent[key] = (
                str(value) if not isinstance(value, str) else draw(st.sampled_from([1, True, None]))
            )
        elif op == "same":
            parent[key] = copy.deepcopy(parent[key])  # a no-op, which must still verify
        else:
            depth = draw(st.integers(1, 40))
            parent[key] = json.loads("[" * depth + "]" * depth)
    return doc


def encode_any_way(doc: Any, rng: random.Random) -> bytes:
    """The same document in one of many spellings: order, indentation, escaping."""

    def shuffled(node: Any) -> Any:
        if isinstance(node, dict):
            keys = list(node)
            rng.shuffle(keys)
            return {k: shuffled(node[k]) for k in keys}
        if isinstance(node, list):
            return [shuffled(v) for v in node]
        return node

    text = json.dumps(
        shuffled(doc),
        indent=rng.choice([None, 0, 2]),
        ensure_ascii=rng.choice([True, False]),
        separators=rng.choice([None, (",", ":"), (" , ", " : ")]),
    )
    return text.encode("utf-8", "surrogatepass")


def canonical_or_none(doc: Any) -> bytes | None:
    try:
        return canonicalize(doc)
    except (CanonicalizationError, ValueError, TypeError, RecursionError):
        return None


@budget(300)
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_a_mutated_envelope_verifies_exactly_when_its_canonical_form_is_unchanged(
    signed: Signed, data: st.DataObject, seed: int
) -> None:
    mutated = data.draw(structural_mutation(signed.doc))
    wire = encode_any_way(mutated, random.Random(seed))
    RUNS["structural mutations"] += 1
    digest = outcome(wire, signed)
    unchanged = canonical_or_none(mutated) == signed.canonical
    if unchanged:
        RUNS["structural no-ops (must verify)"] += 1
    assert (digest is not None) == unchanged, (digest, unchanged)
    if digest is not None:
        assert digest == signed.digest


@budget(100)
@given(seed=st.integers(0, 2**32))
def test_every_spelling_of_the_same_envelope_verifies_with_the_same_digest(
    signed: Signed, seed: int
) -> None:
    RUNS["re-spellings"] += 1
    assert outcome(encode_any_way(signed.doc, random.Random(seed)), signed) == signed.digest


# --- anything at all --------------------------------------------------------------------------


@budget(400)
@given(body=st.binary(max_size=2048))
@example(body=b"")
@example(body=b"\xef\xbb\xbf{}")
@example(body=b'{"header": {}, "payload": {}, "signature": {}}')
@example(body=b'{"header": ' + b"[" * 300 + b"]" * 300 + b"}")  # deeper than a signature covers
@example(body=b'{"payload": {"n": 9007199254740993}}')
def test_arbitrary_bytes_only_ever_raise_verification_errors(signed: Signed, body: bytes) -> None:
    RUNS["arbitrary bytes"] += 1
    assert outcome(body, signed) is None


@budget(150)
@given(doc=st.dictionaries(st.sampled_from(["header", "payload", "signature", "x"]), json_values))
def test_arbitrary_documents_only_ever_raise_verification_errors(
    signed: Signed, doc: dict[str, Any]
) -> None:
    RUNS["arbitrary documents"] += 1
    with pytest.raises(VerificationError):
        verify_envelope(doc, signed.policy, now=signed.now)
    try:
        wire = json.dumps(doc).encode("utf-8", "surrogatepass")
    except ValueError:
        return
    assert outcome(wire, signed) is None

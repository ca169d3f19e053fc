"""The RFC 9162 section 2.1 tree: hashes, roots, proofs, and the incremental frontier.

The reference functions below transcribe the RFC's recursive definitions (MTH, PATH,
SUBPROOF) literally; the module under test must agree with them everywhere.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 64


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over the entries' data (not their hashes)."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:])).digest()


def path(m: int, entries: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n])."""
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(entries)
    if m == n:
        return [] if b else [mth(entries)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, entries[:k], b), mth(entries[k:])]
    return [*subproof(m - k, entries[k:], False), mth(entries[:k])]


ENTRIES = [f"entry {i}".encode() for i in range(MAX_SIZE)]
LEAVES = [leaf_hash(e) for e in ENTRIES]
ROOTS = [mth(ENTRIES[:n]) for n in range(MAX_SIZE + 1)]


def flip(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# -- hashes and roots ----------------------------------------------------------------------


def test_leaf_and_node_hashes_use_the_rfc_domain_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )


def test_the_empty_tree_root_is_the_hash_of_the_empty_string() -> None:
    assert (
        root([])
        == EMPTY_ROOT
        == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    )


def test_a_three_leaf_tree_is_built_as_the_rfc_draws_it() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    expected = hashlib.sha256(b"\x01" + hashlib.sha256(b"\x01" + a + b).digest() + c).digest()
    assert root([a, b, c]) == expected


# The test vectors of the Certificate Transparency reference implementation (RFC 6962's
# tree, which RFC 9162 section 2.1 keeps): eight leaves and the root after each append.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_certificate_transparency_vectors(size: int) -> None:
    leaves = [leaf_hash(d) for d in CT_LEAVES[:size]]
    assert root(leaves).hex() == CT_ROOTS[size - 1]
    assert mth(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]


def test_inclusion_proof_of_the_first_of_eight_leaves_matches_the_vector() -> None:
    leaves = [leaf_hash(d) for d in CT_LEAVES]
    assert [h.hex() for h in inclusion_proof(0, leaves)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


@pytest.mark.parametrize("size", range(MAX_SIZE + 1))
def test_root_equals_the_recursive_definition(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size]


# -- inclusion -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_leaf_has_the_rfc_audit_path_and_it_verifies(size: int) -> None:
    for index in range(size):
        proof = inclusion_proof(index, LEAVES[:size])
        assert proof == path(index, ENTRIES[:size])
        assert verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


@pytest.mark.parametrize("size", range(1, 33))
def test_an_inclusion_proof_proves_nothing_about_another_leaf_or_tree(size: int) -> None:
    for index in range(size):
        proof = inclusion_proof(index, LEAVES[:size])
        for other in range(size):
            if other != index:
                assert not verify_inclusion(other, size, LEAVES[index], proof, ROOTS[size])
                assert not verify_inclusion(index, size, LEAVES[other], proof, ROOTS[size])
        for other_size in range(index + 1, 34):
            if other_size != size:
                # Against the real root of any other size, the proof fails.
                assert not verify_inclusion(
                    index, other_size, LEAVES[index], proof, ROOTS[other_size]
                )


def test_inclusion_refuses_impossible_indices_and_malformed_hashes() -> None:
    proof = inclusion_proof(3, LEAVES[:8])
    assert not verify_inclusion(8, 8, LEAVES[3], proof, ROOTS[8])
    assert not verify_inclusion(-1, 8, LEAVES[3], proof, ROOTS[8])
    assert not verify_inclusion(3, 8, LEAVES[3], [*proof, LEAVES[0]], ROOTS[8])
    assert not verify_inclusion(3, 8, LEAVES[3], proof[:-1], ROOTS[8])
    assert not verify_inclusion(3, 8, LEAVES[3][:31], proof, ROOTS[8])
    assert not verify_inclusion(0, 1, LEAVES[0], [LEAVES[1]], ROOTS[1])
    with pytest.raises(ValueError):
        inclusion_proof(8, LEAVES[:8])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_bit_change_in_an_inclusion_proof_is_refused(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE))
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, LEAVES[:size])
    leaf, tree_root = LEAVES[index], ROOTS[size]
    target = data.draw(st.integers(-2, len(proof) - 1))  # -2 the leaf, -1 the root
    bit = data.draw(st.integers(0, 255))
    if target == -2:
        leaf = flip(leaf, bit)
    elif target == -1:
        tree_root = flip(tree_root, bit)
    else:
        proof = [flip(h, bit) if i == target else h for i, h in enumerate(proof)]
    assert not verify_inclusion(index, size, leaf, proof, tree_root)


# -- consistency ---------------------------------------------------------------------------


@pytest.mark.parametrize("new_size", range(1, MAX_SIZE + 1))
def test_every_pair_of_sizes_has_the_rfc_consistency_proof_and_it_verifies(new_size: int) -> None:
    for old_size in range(0, new_size + 1):
        proof = consistency_proof(old_size, LEAVES[:new_size])
        expected = [] if old_size in (0, new_size) else subproof(old_size, ENTRIES[:new_size], True)
        assert proof == expected
        assert verify_consistency(old_size, new_size, proof, ROOTS[old_size], ROOTS[new_size])


@pytest.mark.parametrize("new_size", range(2, 33))
def test_a_consistency_proof_holds_only_for_its_own_sizes_and_roots(new_size: int) -> None:
    for old_size in range(1, new_size):
        proof = consistency_proof(old_size, LEAVES[:new_size])
        for other_old in range(1, new_size):
            if other_old != old_size:
                assert not verify_consistency(
                    other_old, new_size, proof, ROOTS[other_old], ROOTS[new_size]
                )
        for other_new in range(old_size + 1, 34):
            if other_new != new_size:
                assert not verify_consistency(
                    old_size, other_new, proof, ROOTS[old_size], ROOTS[other_new]
                )
        # A forked history: the same old size, but its root from other leaves.
        forked = root([leaf_hash(b"forged"), *LEAVES[1:old_size]])
        assert not verify_consistency(old_size, new_size, proof, forked, ROOTS[new_size])


def test_consistency_edge_cases() -> None:
    assert verify_consistency(5, 5, [], ROOTS[5], ROOTS[5])
    assert not verify_consistency(5, 5, [], ROOTS[5], ROOTS[6])
    assert not verify_consistency(5, 5, [ROOTS[1]], ROOTS[5], ROOTS[5])
    assert verify_consistency(0, 9, [], EMPTY_ROOT, ROOTS[9])
    assert not verify_consistency(0, 9, [], ROOTS[1], ROOTS[9])
    assert not verify_consistency(6, 5, [], ROOTS[6], ROOTS[5])
    assert not verify_consistency(3, 7, [], ROOTS[3], ROOTS[7])
    with pytest.raises(ValueError):
        consistency_proof(9, LEAVES[:8])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_bit_change_in_a_consistency_proof_is_refused(data: st.DataObject) -> None:
    new_size = data.draw(st.integers(2, MAX_SIZE))
    old_size = data.draw(st.integers(1, new_size - 1))
    proof = consistency_proof(old_size, LEAVES[:new_size])
    old_root, new_root = ROOTS[old_size], ROOTS[new_size]
    target = data.draw(st.integers(-2, len(proof) - 1))  # -2 the old root, -1 the new root
    bit = data.draw(st.integers(0, 255))
    if target == -2:
        old_root = flip(old_root, bit)
    elif target == -1:
        new_root = flip(new_root, bit)
    else:
        proof = [flip(h, bit) if i == target else h for i, h in enumerate(proof)]
    assert not verify_consistency(old_size, new_size, proof, old_root, new_root)


# -- the frontier --------------------------------------------------------------------------


def test_the_frontier_root_follows_every_append() -> None:
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    for size in range(1, MAX_SIZE + 1):
        compact.append(LEAVES[size - 1])
        assert compact.size == size
        assert len(compact.hashes) == size.bit_count()
        assert compact.root() == ROOTS[size]


def test_the_frontier_reports_each_perfect_subtree_it_completes() -> None:
    compact = CompactRange()
    seen = []
    for i, leaf in enumerate(LEAVES):
        for level, index, digest in compact.append(leaf):
            start, end = index << level, (index + 1) << level
            assert end == i + 1
            assert digest == mth(ENTRIES[start:end])
            seen.append((level, index))
    # A tree of 64 leaves has 32 + 16 + 8 + 4 + 2 + 1 interior perfect subtrees.
    assert len(seen) == 63


@settings(max_examples=50, deadline=None)
@given(size=st.integers(0, 300))
def test_the_frontier_survives_being_stored_and_loaded(size: int) -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(size + 5)]
    compact = CompactRange()
    for leaf in leaves[:size]:
        compact.append(leaf)
    loaded = CompactRange.from_bytes(size, compact.to_bytes())
    for leaf in leaves[size:]:
        loaded.append(leaf)
    assert loaded.root() == root(leaves)


def test_a_frontier_with_the_wrong_number_of_hashes_is_refused() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, [LEAVES[0]])
    with pytest.raises(ValueError):
        CompactRange.from_bytes(1, b"short")

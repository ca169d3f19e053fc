"""Tamper-evident audit log: RFC 9162 Merkle tree, append-only store, checkpoints, replay."""

"""Canonical JSON, Ed25519 signing and verification, and the network's PKI (CA, certs, CRL)."""

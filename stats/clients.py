"""Clients are kept as a keyed hash of their address, never the address itself.

The key is made once and kept in DATA/secrets/stats-client-key: the same client gets
the same hash across loads (so distinct clients can be counted), and without the key
nobody can test a guessed address against the table. Delete the key to unlink all
future hashes from past ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from worker.settings import data_secret


def client_key(data_dir: Path) -> bytes:
    """The hashing key, made on first use in DATA/secrets/stats-client-key."""
    return bytes.fromhex(data_secret(data_dir, "stats-client-key"))


class ClientHasher:
    """Maps an address to 16 hex digits of a keyed BLAKE2b hash."""

    def __init__(self, key: bytes, limit: int = 100_000) -> None:
        self.key = key[:64]
        self.limit = limit
        self.cache: dict[str, str] = {}

    def __call__(self, address: str) -> str:
        hashed = self.cache.get(address)
        if hashed is None:
            if len(self.cache) >= self.limit:
                self.cache.clear()
            hashed = hashlib.blake2b(address.encode("utf-8", "surrogateescape"),
                                     key=self.key, digest_size=8).hexdigest()
            self.cache[address] = hashed
        return hashed

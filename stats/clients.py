"""Clients are kept as a keyed hash of their address, never the address itself.

The key is made once and kept in DATA/secrets/stats-client-key: the same client gets
the same hash across loads (so distinct clients can be counted), and without the key
nobody can test a guessed address against the table. Delete the key to unlink all
future hashes from past ones.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

KEY_FILE = Path("secrets") / "stats-client-key"


def client_key(data_dir: Path) -> bytes:
    """The hashing key, made on first use (mode 0600, in a 0700 directory)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        # Two processes may race here; the rename makes one of them win whole.
        if not path.exists():
            tmp.rename(path)
        else:
            tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


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

"""Node identity (docs/contracts.md): a name and a numeric Raft id derived from it."""

from __future__ import annotations

import hashlib


def member_id(name: str) -> int:
    """The first 6 bytes of sha256(name) as a big-endian int, or 1 if that is 0.

    6 bytes keep ids exact in JSON (below 2**53) and collisions negligible for
    clusters of a handful of members."""
    value = int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big")
    return value or 1

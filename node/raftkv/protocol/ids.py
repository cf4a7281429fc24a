"""Member ids (docs/contracts.md "Node identity")."""

from __future__ import annotations

import hashlib

MAX_ID = 2**53  # ids stay exact in JSON


def member_id(name: str) -> int:
    """A founding member's Raft id: the first 6 bytes of sha256(name) as a
    big-endian int, or 1 if that is 0.

    Every founder computes every founder's id from `--initial-cluster`, and the
    operator computes them from the pod names. 6 bytes keep ids exact in JSON
    (below 2**53) and collisions negligible for clusters of a handful of members.
    A node that joins later draws a fresh id per incarnation instead (the node's
    `runtime/identity.py`); only its own /v1/status tells it."""
    value = int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big")
    return value or 1

"""Granted leases and the keys attached to them.

Only the granted TTL lives here: deadlines are wall-clock time, which the
leader's runtime tracks (and resets from `dump()` when it becomes leader). The
key sets are an index rebuilt from the keys' records on restore, so they never
enter a snapshot and their (set) order never matters: callers sort.
"""

from __future__ import annotations

from raftkv.fsm.commands import MAX_INT64


class Lease:
    __slots__ = ("id", "ttl", "keys")

    def __init__(self, lease_id: int, ttl: int) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.keys: set[bytes] = set()


class LeaseTable:
    __slots__ = ("_leases",)

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def get(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def free_id(self, start: int) -> int:
        """The smallest id >= start not granted: deterministic auto-assignment
        (the machine starts from the entry's index, unique per entry)."""
        lease_id = max(start, 1)
        while lease_id in self._leases:
            lease_id += 1
        if lease_id > MAX_INT64:  # unreachable in practice: ids are log indexes
            raise OverflowError("lease ids exhausted")
        return lease_id

    def grant(self, lease_id: int, ttl: int) -> Lease:
        lease = self._leases[lease_id] = Lease(lease_id, ttl)
        return lease

    def pop(self, lease_id: int) -> Lease:
        return self._leases.pop(lease_id)

    def attach(self, lease_id: int, key: bytes) -> None:
        self._leases[lease_id].keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    def dump(self) -> list[tuple[int, int]]:
        """(id, ttl) sorted by id: the canonical snapshot section."""
        return [(lease_id, self._leases[lease_id].ttl) for lease_id in sorted(self._leases)]

    @classmethod
    def load(cls, rows: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> LeaseTable:
        table = cls()
        for lease_id, ttl in rows:
            if type(lease_id) is not int or type(ttl) is not int or lease_id in table._leases:
                raise ValueError(f"bad lease row {lease_id!r}")
            table.grant(lease_id, ttl)
        return table

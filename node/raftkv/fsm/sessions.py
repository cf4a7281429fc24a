"""Client sessions: the last (seq, result) per client, so a retried proposal
applies once (Raft thesis §6.3).

Bounded: beyond `capacity` clients, the one applied least recently is dropped.
Every member applies the same entries in the same order, so every member drops
the same sessions; the capacity is part of the snapshot for the same reason.
The table is kept in order of last applied index, which is also its canonical
snapshot order (each index records at most one session). Results are stored as
private canonical copies: the runtime may do what it likes with the dicts it
gets, a snapshot never sees it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

DEFAULT_SESSION_CAPACITY = 10_000

NEW = "new"
DUPLICATE = "duplicate"
STALE = "stale"


class _Entry:
    __slots__ = ("seq", "index", "result")

    def __init__(self, seq: int, index: int, result: dict[str, Any]) -> None:
        self.seq = seq
        self.index = index
        self.result = result


class SessionTable:
    __slots__ = ("capacity", "_entries")

    def __init__(self, capacity: int = DEFAULT_SESSION_CAPACITY) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"session capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, client_id: str, seq: int) -> tuple[str, dict[str, Any] | None]:
        """-> (NEW, None) | (DUPLICATE, recorded result) | (STALE, None)."""
        entry = self._entries.get(client_id)
        if entry is None or seq > entry.seq:
            return NEW, None
        if seq == entry.seq:
            return DUPLICATE, canonical(entry.result)
        return STALE, None

    def record(self, client_id: str, seq: int, index: int, result: dict[str, Any]) -> None:
        entries = self._entries
        entries[client_id] = _Entry(seq, index, canonical(result))
        entries.move_to_end(client_id)
        while len(entries) > self.capacity:
            entries.popitem(last=False)

    def dump(self) -> list[tuple[str, int, int, Any]]:
        """(client_id, seq, index, result) by applied index; results canonical."""
        return [(cid, e.seq, e.index, e.result) for cid, e in self._entries.items()]

    @classmethod
    def load(cls, capacity: int, rows: list[tuple[str, int, int, Any]]) -> SessionTable:
        table = cls(capacity)
        last_index = -1
        for client_id, seq, index, result in rows:
            if type(client_id) is not str or client_id in table._entries:
                raise ValueError(f"bad session row {client_id!r}")
            if type(seq) is not int or type(index) is not int or index <= last_index:
                raise ValueError(f"session {client_id!r} is out of order")
            if not isinstance(result, dict):
                raise ValueError(f"session {client_id!r} has no result")
            last_index = index
            table._entries[client_id] = _Entry(seq, index, canonical(result))
        if len(table._entries) > capacity:
            raise ValueError("more sessions than the capacity")
        return table


def canonical(value: Any) -> Any:
    """`value` with every dict's keys sorted, recursively: msgpack keeps dict
    insertion order, and snapshots must not depend on it."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value

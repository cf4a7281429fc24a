"""Client sessions: the last (seq, result) per client, so a retried proposal
applies once (Raft thesis §6.3).

Bounded in count: beyond `capacity` clients, the one applied least recently is
dropped. Every member applies the same entries in the same order, so every
member drops the same sessions; the capacity is part of the snapshot for the
same reason. The table is kept in order of last applied index, which is also
its canonical snapshot order (each index records at most one session).

Bounded in size: a result is kept whole only if its estimated encoded size
(`bounded_size`) is at most `RESULT_LIMIT` bytes. A bigger one (a txn of many
ranges, a put or delete with prev_kv of big values) is replaced by a small
*marker*: `{"error": "result_not_retained", "applied": true, "index", "revision",
...}`. A retry of that (client_id, seq) answers the marker: it says the command
WAS applied, at which log index and store revision, and is never applied again.
Why that is safe for exactly-once: exactly-once needs two things of the table,
(1) a retry must not apply the command again, and (2) a retry must not be told
anything false. (1) only needs the seq, which is always kept; only the bytes of
the answer are dropped, and the marker answers "applied" truthfully (the client
then reads the current state, which is what it would do after any lost answer).
Without the bound, one client could make every member keep 10,000 x 8 MB of
answers and write them into every snapshot and checkpoint.

The decision is deterministic: it depends only on the result (a function of the
log) and a constant of this code, never on configuration, so every member keeps
the same marker and snapshots stay byte-identical. The limit is a constant, not
a setting, for that reason: members configured differently would diverge.

Results are stored as private canonical copies: the runtime may do what it
likes with the dicts it gets, a snapshot never sees it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

DEFAULT_SESSION_CAPACITY = 10_000
# Results estimated bigger than this are not kept (a marker is). 2 KiB keeps
# every fixed-shape answer (put, delete count, lease, lock, checkpoint: well under
# 300 bytes with normal names) and bounds the whole table to ~20 MiB at the
# default capacity. A constant of the state machine, like its encoding (above).
RESULT_LIMIT = 2048

RESULT_NOT_RETAINED = "result_not_retained"

NEW = "new"
DUPLICATE = "duplicate"
STALE = "stale"

# What `bounded_size` charges per item beyond its payload (msgpack headers, ints).
_SCALAR_BYTES = 9
_HEADER_BYTES = 5
_NO_LIMIT = 1 << 62


def bounded_size(value: Any, limit: int) -> int:
    """An estimate of `value`'s msgpack size (every int counts 9 bytes, every
    header 5: an upper bound of the real encoding), exact enough to bound memory.
    Stops counting once past `limit` (the walk of an 8 MB answer costs what 2 KiB
    of it costs). Deterministic: a function of the value only."""
    total = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is bytes or kind is str:
            total += _HEADER_BYTES + len(item)
        elif kind is dict:
            total += _HEADER_BYTES
            for k, v in item.items():
                push(k)
                push(v)
        elif kind is list or kind is tuple:
            total += _HEADER_BYTES
            stack.extend(item)
        else:  # int, bool, None
            total += _SCALAR_BYTES
        if total > limit:
            return total
    return total


def _canonical_within(value: Any, budget: int) -> tuple[Any, int]:
    """(canonical(value), its bounded_size) in one walk (this runs for every write
    under a session); once the size passes `budget` it stops, and the copy is None."""
    if isinstance(value, dict):
        size = _HEADER_BYTES
        out = {}
        for k in sorted(value):
            item, item_size = _canonical_within(value[k], budget - size)
            size += item_size + (_HEADER_BYTES + len(k) if type(k) is str else _SCALAR_BYTES)
            if size > budget:
                return None, size
            out[k] = item
        return out, size
    if isinstance(value, list | tuple):
        size = _HEADER_BYTES
        items = []
        for v in value:
            item, item_size = _canonical_within(v, budget - size)
            size += item_size
            if size > budget:
                return None, size
            items.append(item)
        return items, size
    kind = type(value)
    return value, (_HEADER_BYTES + len(value) if kind is bytes or kind is str else _SCALAR_BYTES)


def retained(seq: int, index: int, result: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """What the session table keeps of `result`, and its estimated size: a canonical
    copy when it is at most RESULT_LIMIT bytes, else the marker (module docstring)."""
    copy, size = _canonical_within(result, RESULT_LIMIT)
    if size <= RESULT_LIMIT:
        return copy, size
    revision = result.get("revision")
    marker: dict[str, Any] = {
        "applied": True,
        "error": RESULT_NOT_RETAINED,
        "index": index,
        "message": (
            f"this request (session seq {seq}) was applied at log index {index}, store "
            f"revision {revision}; its answer is larger than the {RESULT_LIMIT} bytes kept "
            "for retries, so it is not repeated: read the current state instead"
        ),
        "revision": revision,
    }
    if type(result.get("succeeded")) is bool:  # a txn: which branch ran
        marker["succeeded"] = result["succeeded"]
    return marker, bounded_size(marker, _NO_LIMIT)


class _Entry:
    __slots__ = ("seq", "index", "result", "size")

    def __init__(self, seq: int, index: int, result: dict[str, Any], size: int) -> None:
        self.seq = seq
        self.index = index
        self.result = result
        self.size = size


class SessionTable:
    __slots__ = ("capacity", "_entries", "result_bytes")

    def __init__(self, capacity: int = DEFAULT_SESSION_CAPACITY) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"session capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.result_bytes = 0  # estimated size of every kept result (state size)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, client_id: str, seq: int) -> tuple[str, dict[str, Any] | None]:
        """-> (NEW, None) | (DUPLICATE, recorded result or marker) | (STALE, None)."""
        entry = self._entries.get(client_id)
        if entry is None or seq > entry.seq:
            return NEW, None
        if seq == entry.seq:
            return DUPLICATE, canonical(entry.result)
        return STALE, None

    def record(self, client_id: str, seq: int, index: int, result: dict[str, Any]) -> None:
        entries = self._entries
        entry = _Entry(seq, index, *retained(seq, index, result))
        old = entries.get(client_id)
        if old is not None:
            self.result_bytes -= old.size
        entries[client_id] = entry
        self.result_bytes += entry.size
        entries.move_to_end(client_id)
        while len(entries) > self.capacity:
            self.result_bytes -= entries.popitem(last=False)[1].size

    def dump(self) -> list[tuple[str, int, int, Any]]:
        """(client_id, seq, index, result) by applied index; results canonical."""
        return [(cid, e.seq, e.index, e.result) for cid, e in self._entries.items()]

    @classmethod
    def load(cls, capacity: int, rows: list[tuple[str, int, int, Any]]) -> SessionTable:
        """Inverse of `dump`. Results are loaded as they are (a snapshot of an older
        version may hold results above today's limit: every member restoring it
        holds the same, and they leave as their sessions move on)."""
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
            result = canonical(result)
            entry = table._entries[client_id] = _Entry(
                seq, index, result, bounded_size(result, _NO_LIMIT)
            )
            table.result_bytes += entry.size
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

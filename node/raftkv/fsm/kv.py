"""Keys with etcd-style revisions: a dict for lookups, a sorted index for ranges.

The index is a `sortedcontainers.SortedList`: O(log n) inserts and deletes of
new/removed keys (updates of existing keys never touch it) and O(log n + k)
range scans, which a plain list + bisect (O(n) inserts) cannot give at a
million keys. Revisions are decided by the caller (the machine): one revision
per command, however many keys it writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from sortedcontainers import SortedList

from raftkv.fsm.commands import ALL_KEYS_END
from raftkv.fsm.results import Record

# What a stored key costs beyond its key and value bytes in the snapshot's encoding
# (the record's four ints and the array headers): used by `size_bytes`.
RECORD_OVERHEAD_BYTES = 24


class KVStore:
    __slots__ = ("_records", "_index", "size_bytes")

    def __init__(self) -> None:
        self._records: dict[bytes, Record] = {}
        self._index = SortedList()
        # Estimated encoded size of every key-value (kept as they change: the
        # backend quota reads it on every proposal once near the quota).
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: bytes) -> bool:
        return key in self._records

    def get(self, key: bytes) -> Record | None:
        return self._records.get(key)

    def put(self, key: bytes, value: bytes, lease: int, revision: int) -> Record | None:
        """Write `key` at `revision`; return the previous record, if any."""
        records = self._records
        prev = records.get(key)
        if prev is None:
            records[key] = (value, revision, revision, 1, lease)
            self._index.add(key)
            self.size_bytes += len(key) + len(value) + RECORD_OVERHEAD_BYTES
        else:
            records[key] = (value, prev[1], revision, prev[3] + 1, lease)
            self.size_bytes += len(value) - len(prev[0])
        return prev

    def delete(self, key: bytes) -> Record | None:
        prev = self._records.pop(key, None)
        if prev is not None:
            self._index.remove(key)
            self.size_bytes -= len(key) + len(prev[0]) + RECORD_OVERHEAD_BYTES
        return prev

    def keys(self, key: bytes, range_end: bytes, limit: int = 0) -> list[bytes]:
        """Keys of the etcd range (key, range_end), sorted, at most `limit` (0: all)."""
        if not range_end:
            return [key] if key in self._records else []
        it: Iterator[bytes]
        if range_end == ALL_KEYS_END:
            it = self._index.irange(minimum=key)
        else:
            it = self._index.irange(key, range_end, inclusive=(True, False))
        return list(islice(it, limit)) if limit else list(it)

    def count(self, key: bytes, range_end: bytes) -> int:
        if not range_end:
            return 1 if key in self._records else 0
        index = self._index
        low = index.bisect_left(key)
        high = len(index) if range_end == ALL_KEYS_END else index.bisect_left(range_end)
        return max(0, high - low)

    def items(self) -> Iterable[tuple[bytes, Record]]:
        """Every (key, record), in no particular order."""
        return self._records.items()

    def dump(self) -> list[tuple[bytes, Record]]:
        """(key, record) pairs sorted by key: the canonical snapshot section."""
        records = self._records
        keys = list(self._index)
        return list(zip(keys, map(records.__getitem__, keys), strict=True))

    def frozen(self) -> tuple[list[bytes], dict[bytes, Record]]:
        """Sorted keys and a copy of the records: a view that later writes don't
        change (records are immutable tuples, so copying the dict is enough)."""
        return list(self._index), self._records.copy()

    @classmethod
    def load(cls, pairs: list[tuple[bytes, Record]] | tuple[tuple[bytes, Record], ...]) -> KVStore:
        """Inverse of `dump`. Raises ValueError unless keys are non-empty bytes,
        strictly increasing."""
        store = cls()
        records = dict(pairs)
        keys = list(records)
        if not all(type(key) is bytes and key for key in keys):
            raise ValueError("snapshot keys must be non-empty bytes")
        if len(keys) != len(pairs) or any(map(bytes.__ge__, keys, islice(keys, 1, None))):
            raise ValueError("snapshot keys are not strictly increasing")
        store._records = records
        store._index = SortedList(keys)
        store.size_bytes = sum(
            len(key) + len(record[0]) + RECORD_OVERHEAD_BYTES for key, record in records.items()
        )
        return store

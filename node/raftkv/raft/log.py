"""The in-memory view of the Raft log held by the core.

Entries after `offset` are kept in a list (entries[i].index == offset + 1 + i);
everything at or before `offset` is covered by a snapshot. `stable` is the last
index the caller has confirmed durable (via Ready/advance).
"""

from __future__ import annotations

from raftkv.raft.types import Entry, SnapshotMeta


class CompactedError(LookupError):
    """The requested index is at or below the log's offset (covered by a snapshot)."""


class RaftLog:
    __slots__ = (
        "offset",
        "offset_term",
        "entries",
        "committed",
        "applied",
        "unstable_from",
        "snapshot",
    )

    def __init__(
        self, snapshot: SnapshotMeta | None = None, entries: list[Entry] | None = None
    ) -> None:
        snap = snapshot or SnapshotMeta()
        self.snapshot: SnapshotMeta = snap  # newest snapshot the log starts after
        self.offset = snap.index
        self.offset_term = snap.term
        self.entries: list[Entry] = []
        for e in entries or ():
            if e.index <= self.offset:
                continue
            if e.index != self.offset + 1 + len(self.entries):
                raise ValueError(f"log has a gap before index {e.index}")
            self.entries.append(e)
        self.committed = snap.index
        self.applied = snap.index
        self.unstable_from = self.last_index() + 1  # everything given is durable

    # --- reading -------------------------------------------------------------
    def first_index(self) -> int:
        return self.offset + 1

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term(self, index: int) -> int:
        """Term of the entry at `index`; 0 past the end; CompactedError before the offset."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset:
            raise CompactedError(index)
        i = index - self.offset - 1
        if i >= len(self.entries):
            return 0
        return self.entries[i].term

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except CompactedError:
            return 0

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except CompactedError:
            return False

    def slice(self, lo: int, hi: int, max_bytes: int = 0, max_count: int = 0) -> list[Entry]:
        """Entries [lo, hi), capped by bytes and count (always at least one)."""
        if lo <= self.offset:
            raise CompactedError(lo)
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return []
        start = lo - self.offset - 1
        stop = hi - self.offset - 1
        if max_count and stop - start > max_count:
            stop = start + max_count
        if max_bytes:
            total = 0
            for j in range(start, stop):
                total += len(self.entries[j].data) + 16
                if total > max_bytes and j > start:
                    stop = j
                    break
        return self.entries[start:stop]

    def unstable_entries(self) -> list[Entry]:
        if self.unstable_from > self.last_index():
            return []
        return self.entries[self.unstable_from - self.offset - 1 :]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up to date as ours."""
        lt = self.last_term()
        return last_term > lt or (last_term == lt and last_index >= self.last_index())

    def find_conflict(self, entries: list[Entry]) -> int:
        """Index of the first entry that is new or disagrees with ours; 0 if none."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= `index` whose term is <= `term` (conflict hint search)."""
        if index > self.last_index():
            return index
        while index > self.offset:
            t = self.term(index)
            if t <= term:
                break
            index -= 1
        return index

    # --- writing -------------------------------------------------------------
    def append(self, entries: list[Entry]) -> int:
        """Append, truncating any suffix from entries[0].index. Returns last index."""
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        if after < self.committed:
            raise AssertionError(f"append after {after} would overwrite committed {self.committed}")
        keep = after - self.offset
        if keep < len(self.entries):
            del self.entries[keep:]
        self.entries.extend(entries)
        if self.unstable_from > after + 1:
            self.unstable_from = after + 1
        return self.last_index()

    def maybe_append(
        self, prev_index: int, prev_term: int, committed: int, entries: list[Entry]
    ) -> int | None:
        """Follower side of AppendEntries. Returns the new last index, or None on mismatch."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(f"entry {conflict} conflicts with committed {self.committed}")
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index
            return True
        return False

    def stable_to(self, index: int, term: int) -> None:
        if self.match_term(index, term) and index >= self.unstable_from:
            self.unstable_from = index + 1

    def restore(self, snap: SnapshotMeta) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.snapshot = snap
        self.offset = snap.index
        self.offset_term = snap.term
        self.entries = []
        self.committed = snap.index
        self.unstable_from = snap.index + 1

    def compact(self, snap: SnapshotMeta, keep: int = 0) -> None:
        """The application durably saved `snap`; drop entries up to snap.index - keep."""
        if snap.index > self.applied:
            raise AssertionError(f"compact {snap.index} beyond applied {self.applied}")
        if snap.index > self.snapshot.index:
            self.snapshot = snap
        new_offset = min(max(self.offset, snap.index - keep), self.unstable_from - 1)
        if new_offset <= self.offset:
            return
        new_term = self.term(new_offset)
        del self.entries[: new_offset - self.offset]
        self.offset, self.offset_term = new_offset, new_term

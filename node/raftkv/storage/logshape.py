"""Shape rules of the Raft log, shared by every RaftStore so that the durable
store and its in-memory twin accept and refuse exactly the same calls.

A refused call is a bug in the caller (the core or the runtime), never a
disk problem, so these raise ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.raft.types import Entry


def check_append(
    entries: Sequence[Entry], base_index: int, last_index: int, term_before: int
) -> None:
    """Refuse an append that would leave a gap, rewrite compacted entries, or
    make terms go backwards.

    `term_before` is the term of entry `entries[0].index - 1` (the base term when
    that is the base, 0 when unknown)."""
    first = entries[0].index
    if first <= base_index:
        raise ValueError(f"cannot write entry {first}: entries up to {base_index} are compacted")
    if first > last_index + 1:
        raise ValueError(f"gap in the log: last index is {last_index}, append starts at {first}")
    expected = first
    previous_term = term_before
    for entry in entries:
        if entry.index != expected:
            raise ValueError(
                f"entries are not contiguous: expected index {expected}, got {entry.index}"
            )
        if entry.term < previous_term:
            raise ValueError(
                f"term goes backwards at index {entry.index}: {entry.term} < {previous_term}"
            )
        previous_term = entry.term
        expected += 1


def check_compact(index: int, last_index: int) -> None:
    if index > last_index:
        raise ValueError(f"cannot compact to {index}: the log ends at {last_index} (term unknown)")

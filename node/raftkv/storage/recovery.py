"""Start-up: combine the log (RaftStore) and the newest snapshot (SnapshotStore).

The RaftStore knows where its log starts (index and term of the entry before
its first one) but not the membership; the SnapshotStore holds the snapshot
data and its ConfState. The two are written at different moments, so a crash
can leave them slightly apart:

- snapshot saved, `compact`/`reset_to_snapshot` not yet done: the log still
  holds entries the snapshot covers (dropped here), or entries that diverge
  from it (dropped too: the snapshot is committed, they were not);
- newest snapshot damaged, an older one used instead: fine while the log still
  reaches back to it, an InconsistentStorageError when it does not (keep the
  log from the older retained snapshot on, i.e. compact one snapshot behind,
  to make that fallback useful).
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.raft.types import HardState, SnapshotMeta
from raftkv.storage.errors import InconsistentStorageError
from raftkv.storage.protocols import InitialState, RaftStore, SnapshotStore


@dataclass(slots=True)
class RecoveredState:
    """What the node starts from: the core's InitialState (whose `snapshot` is the
    SnapshotStore's meta, with ConfState) and the snapshot data to restore."""

    state: InitialState
    snapshot_data: bytes | None


def recover(log: RaftStore, snapshots: SnapshotStore) -> RecoveredState:
    """Load both stores and reconcile them (see the module docstring)."""
    return reconcile(log.load(), snapshots.latest())


def reconcile(log_state: InitialState,
              snapshot: tuple[SnapshotMeta, bytes] | None) -> RecoveredState:
    base = log_state.snapshot
    base_index = base.index if base is not None else 0
    hard_state = log_state.hard_state.copy()
    entries = log_state.entries
    if snapshot is None:
        if base_index:
            raise InconsistentStorageError(
                f"the log starts after index {base_index} but there is no usable snapshot"
            )
        _check_commit(hard_state, entries[-1].index if entries else 0)
        return RecoveredState(InitialState(hard_state, None, entries), None)

    meta, data = snapshot
    if meta.index < base_index:
        raise InconsistentStorageError(
            f"the log starts after index {base_index} but the newest usable snapshot is at "
            f"index {meta.index}: entries {meta.index + 1}..{base_index} are lost"
        )
    if base is not None and meta.index == base_index and meta.term != base.term:
        raise InconsistentStorageError(
            f"the log and the snapshot disagree about the term of entry {meta.index} "
            f"({base.term} vs {meta.term})"
        )
    if entries and entries[-1].index > meta.index:
        first = entries[0].index
        if meta.index >= first and entries[meta.index - first].term != meta.term:
            entries = []  # the log's suffix diverges from the (committed) snapshot
        else:
            entries = entries[max(meta.index - first + 1, 0):]
    else:
        entries = []
    hard_state.commit = max(hard_state.commit, meta.index)
    _check_commit(hard_state, entries[-1].index if entries else meta.index)
    return RecoveredState(InitialState(hard_state, meta, entries), data)


def _check_commit(hard_state: HardState, last_index: int) -> None:
    if hard_state.commit > last_index:
        raise InconsistentStorageError(
            f"hard state says entry {hard_state.commit} is committed but the log ends at "
            f"{last_index}"
        )

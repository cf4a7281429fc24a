"""Start-up: combine the log (RaftStore) and the newest snapshot (SnapshotStore).

The RaftStore knows where its log starts (index and term of the entry before
its first one) but not the membership; the SnapshotStore holds the snapshot
data and its ConfState. The two are written at different moments, so a crash
can leave them slightly apart:

- snapshot saved, `compact`/`reset_to_snapshot` not yet done: the log still
  holds entries the snapshot covers (dropped here), or entries that diverge
  from it (dropped too: the snapshot is committed, they were not), or ends
  before it (an installed snapshot: the log then has its `record_snapshot`);
  `recover` finishes the interrupted `reset_to_snapshot`;
- newest snapshot damaged, an older one used instead: fine while the log still
  reaches back to it, an InconsistentStorageError when it does not (keep the
  log from the older retained snapshot on, i.e. compact one snapshot behind,
  to make that fallback useful).

What a crash cannot explain is refused (LostLogError), naming the files:

- no log at all while a snapshot exists, or while other files prove the node
  had state (`prior_state`: e.g. identity.json, checkpoints): the WAL was
  deleted or emptied;
- a snapshot beyond the end of the log (or disagreeing with the log's entry
  at its index) that the log has no record of: a snapshot the node took itself
  is always inside its log, and one it installed is recorded in the log before
  its file is written (`RaftStore.record_snapshot`), so the log lost its end.

Starting anyway would bring the node back with an older term and vote (it
could vote twice in a term) and without acknowledged writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raftkv.raft.types import HardState, SnapshotMeta
from raftkv.storage.ballots import BallotLog, decode_state
from raftkv.storage.errors import InconsistentStorageError, LostLogError
from raftkv.storage.protocols import InitialState, RaftStore, SnapshotStore


@dataclass(slots=True)
class RecoveredState:
    """What the node starts from: the core's InitialState (whose `snapshot` is the
    SnapshotStore's meta, with ConfState) and the snapshot data to restore."""

    state: InitialState
    snapshot_data: bytes | None
    # The snapshot's install was interrupted before the log was reset: the log ends
    # before the snapshot or diverges from it (`recover` finishes the reset).
    reset_log: bool = False


def recover(
    log: RaftStore, snapshots: SnapshotStore, *, prior_state: Sequence[str] = ()
) -> RecoveredState:
    """Load both stores, reconcile them (see the module docstring) and repair
    what a crash interrupted. `prior_state`: files whose existence proves the
    node ran before (with a log). A new log is created only after every check
    passed, so a refused start leaves the directories as they were.

    The Multi-Paxos engine's log (`ballots.BallotLog`) is checked and repaired in
    its disk shape, where the rules are the same, then decoded for the core."""
    if isinstance(log, BallotLog):
        recovered = recover(log.disk, snapshots, prior_state=prior_state)
        return RecoveredState(
            decode_state(recovered.state), recovered.snapshot_data, recovered.reset_log
        )
    log_state = log.load()
    latest = snapshots.latest()
    location = snapshots.location(latest[0]) if latest is not None else ""
    recovered = merge_log_and_snapshot(
        log_state, latest, snapshot_location=location, prior_state=prior_state
    )
    state = recovered.state
    if recovered.reset_log:
        # Otherwise the next append after the snapshot would leave a gap in the log.
        assert state.snapshot is not None
        log.reset_to_snapshot(state.snapshot, state.hard_state)
    elif log_state.new_log:
        log.save(state.hard_state, [])  # the log exists from now on
    return recovered


def merge_log_and_snapshot(
    log_state: InitialState,
    snapshot: tuple[SnapshotMeta, bytes] | None,
    *,
    snapshot_location: str = "",
    prior_state: Sequence[str] = (),
) -> RecoveredState:
    base = log_state.snapshot
    base_index = base.index if base is not None else 0
    hard_state = log_state.hard_state.copy()
    entries = log_state.entries
    origin = log_state.origin or "the log"
    if log_state.new_log:
        evidence = list(prior_state)
        if snapshot is not None:
            meta = snapshot[0]
            evidence.append(snapshot_location or f"a snapshot at index {meta.index}")
        if evidence:
            raise LostLogError(
                f"{origin}: there is no log, but this node had state ({', '.join(evidence)}): "
                "its WAL was deleted or emptied. Starting would forget its term, its vote "
                "and acknowledged writes; refusing to start. Restore the WAL, or remove "
                "the member and add it back with an empty data directory"
            )
    if snapshot is None:
        if base_index:
            raise InconsistentStorageError(
                f"the log starts after index {base_index} but there is no usable snapshot"
            )
        _check_commit(hard_state, entries[-1].index if entries else 0)
        return RecoveredState(InitialState(hard_state, None, entries), None)

    meta, data = snapshot
    where = snapshot_location or "the snapshot store"
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
    recorded = log_state.snapshot_record == (meta.index, meta.term)
    last_index = entries[-1].index if entries else base_index
    reset_log = False
    if meta.index > last_index:
        if not recorded:
            raise LostLogError(
                f"snapshot {where} (index {meta.index}, term {meta.term}) is newer than "
                f"{origin}, which ends at index {last_index} and has no record of that "
                "snapshot: WAL segments are missing or were cut short. Starting would "
                "forget the node's term, vote and acknowledged writes; refusing to start"
            )
        entries, reset_log = [], True
    elif meta.index > base_index:
        first = entries[0].index
        if entries[meta.index - first].term != meta.term:
            if not recorded:
                raise LostLogError(
                    f"snapshot {where} (index {meta.index}, term {meta.term}) disagrees "
                    f"with {origin} (entry {meta.index} has term "
                    f"{entries[meta.index - first].term}) and the log has no record of "
                    "that snapshot; refusing to start"
                )
            # The log's suffix diverges from the (committed) snapshot.
            entries, reset_log = [], True
        else:
            entries = entries[meta.index - first + 1 :]
    hard_state.commit = max(hard_state.commit, meta.index)
    _check_commit(hard_state, entries[-1].index if entries else meta.index)
    return RecoveredState(InitialState(hard_state, meta, entries), data, reset_log)


def _check_commit(hard_state: HardState, last_index: int) -> None:
    if hard_state.commit > last_index:
        raise InconsistentStorageError(
            f"hard state says entry {hard_state.commit} is committed but the log ends at "
            f"{last_index}"
        )

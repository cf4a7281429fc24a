"""Snapshots, the log compaction that follows them, and checkpoints.

A snapshot is taken every `snapshot_entries` applied entries: the loop only
freezes the state at the exact index (`StateMachine.snapshot_view`: reference
copies, ~70 ms at a million keys instead of ~1 s to encode it all); the
encoding runs in the background thread, yielding to the loop between chunks,
and gives the same bytes on every member (checkpoints too). Compaction follows
once the snapshot is durable, run by the loop between Readies. A checkpoint is
the same frozen state written to the checkpoint store when its log entry applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from raftkv.consensus import AnyConsensus, HardState, Snapshot, SnapshotMeta
from raftkv.fsm import StateMachine
from raftkv.runtime.config import NodeConfig
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.waiters import Waiters
from raftkv.storage.checkpoints import CheckpointStore
from raftkv.storage.protocols import RaftStore, SnapshotStore

log = logging.getLogger("raftkv.node")


class Snapshotter:
    def __init__(
        self,
        cfg: NodeConfig,
        fsm: StateMachine,
        raft_store: RaftStore,
        snapshot_store: SnapshotStore,
        checkpoint_store: CheckpointStore | None,
        metrics: NodeMetrics,
        waiters: Waiters,
        *,
        run_in_loop: Callable[[Callable[[], None]], None],
        member_names: Callable[[], list[str]],
    ) -> None:
        self.cfg = cfg
        self.fsm = fsm
        self.raft_store = raft_store
        self.snapshot_store = snapshot_store
        self.checkpoint_store = checkpoint_store
        self.metrics = metrics
        self.waiters = waiters
        self._run_in_loop = run_in_loop  # between Readies, where the core may be touched
        self._member_names = member_names
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="raftkv-snap")
        self.snapshot_index = 0
        self._previous_snapshot_index = 0
        self._snapshotting = False
        self._newest_checkpoint_index = 0
        self.pending_compaction = 0  # WAL compaction for the loop to run between Readies

    def opened(self, snapshot_index: int) -> None:
        """Recovered at `snapshot_index` (0: no snapshot)."""
        self.snapshot_index = snapshot_index
        if self.checkpoint_store is not None:
            existing = self.checkpoint_store.list()
            self._newest_checkpoint_index = existing[-1]["index"] if existing else 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def take_compaction(self) -> int:
        upto, self.pending_compaction = self.pending_compaction, 0
        return upto

    # --- a Ready's snapshot (from the leader) --------------------------------
    def persist(self, snap: Snapshot, hs: HardState, durable_commit: int) -> None:
        """Save a snapshot received from the leader (in the storage thread)."""
        assert snap.data is not None
        # The log records the snapshot (with the term and vote) before its file
        # exists: a snapshot beyond the log with no record means a lost WAL
        # (storage.recovery). The commit index waits for the reset: the log does
        # not reach the snapshot yet.
        self.raft_store.record_snapshot(snap.meta, HardState(hs.term, hs.vote, durable_commit))
        self.snapshot_store.save(snap.meta, snap.data)
        self.raft_store.reset_to_snapshot(snap.meta, hs)

    def installed(self, meta: SnapshotMeta) -> None:
        """The state machine now holds the leader's snapshot at `meta`."""
        self._previous_snapshot_index = self.snapshot_index
        self.snapshot_index = meta.index
        self.metrics.snapshots.labels("installed").inc()

    # --- our own snapshots ----------------------------------------------------
    def maybe_snapshot(self, core: AnyConsensus) -> None:
        if self._snapshotting:
            return
        applied = core.applied
        if applied - self.snapshot_index < self.cfg.snapshot_entries:
            return
        if applied != self.fsm.applied_index:
            return  # mid-way through a Ready's entries: try after the next advance
        started = time.perf_counter()
        meta = core.snapshot_meta()
        view = self.fsm.snapshot_view()  # the state at exactly meta.index
        self.metrics.snapshot_pause.observe(time.perf_counter() - started)
        self._snapshotting = True

        def encode_and_save() -> None:
            self.snapshot_store.save(meta, view.pack(_yield_to_loop))

        fut = asyncio.get_running_loop().run_in_executor(self._pool, encode_and_save)

        def saved(f: asyncio.Future[None]) -> None:
            self._snapshotting = False
            if f.cancelled() or f.exception() is not None:
                log.error(
                    "saving snapshot at %d failed: %s",
                    meta.index,
                    None if f.cancelled() else f.exception(),
                )
                return
            self.metrics.snapshots.labels("taken").inc()
            self.metrics.snapshot_duration.observe(time.perf_counter() - started)
            self._previous_snapshot_index = self.snapshot_index
            self.snapshot_index = meta.index
            self._run_in_loop(lambda: self._compact(core, meta))

        fut.add_done_callback(saved)

    def _compact(self, core: AnyConsensus, meta: SnapshotMeta) -> None:
        keep = self.cfg.snapshot_catchup_entries
        core.compact(meta, keep)
        # Keep the log back to the previous snapshot too: if the newest snapshot file is
        # ever damaged, recovery falls back to the older one and needs the log from there.
        upto = min(meta.index - keep, self._previous_snapshot_index or meta.index)
        if upto > 0:
            # Run by the loop between Readies: WAL writes happen one at a time.
            self.pending_compaction = max(self.pending_compaction, upto)

    # --- checkpoints ----------------------------------------------------------
    def write_checkpoint(self, checkpoint_id: str, index: int, term: int) -> None:
        """The checkpoint entry (index, term) applied: write the state as of it."""
        store = self.checkpoint_store
        if store is None:
            return
        if index <= self._newest_checkpoint_index and store.get(checkpoint_id) is None:
            return  # replayed after a restart, and already removed by retention
        started = time.perf_counter()
        view = self.fsm.snapshot_view()  # the state at exactly this entry
        self.metrics.snapshot_pause.observe(time.perf_counter() - started)
        members = self._member_names()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._newest_checkpoint_index = max(self._newest_checkpoint_index, index)

        def encode_and_write() -> dict[str, Any]:
            return store.write(
                checkpoint_id, index, term, view.pack(_yield_to_loop), members, stamp
            )

        fut = asyncio.get_running_loop().run_in_executor(self._pool, encode_and_write)

        def written(f: asyncio.Future[dict[str, Any]]) -> None:
            exc = None if f.cancelled() else f.exception()
            if f.cancelled() or exc is not None:
                self.metrics.checkpoints.labels("failure").inc()
                log.error("checkpoint %s at index %d failed: %s", checkpoint_id, index, exc)
                self.waiters.checkpoint_failed(
                    checkpoint_id, exc or RuntimeError("checkpoint cancelled")
                )
                return
            manifest = f.result()
            self.metrics.checkpoints.labels("success").inc()
            self.metrics.checkpoint_duration.observe(time.perf_counter() - started)
            self.metrics.last_checkpoint.set(time.time())
            log.info("checkpoint %s written at index %d", checkpoint_id, index)
            self.waiters.checkpoint_written(checkpoint_id, manifest)

        fut.add_done_callback(written)


def _yield_to_loop() -> None:
    """Between two chunks of a snapshot encoded in the background thread: give the
    GIL to the event loop thread if it wants it (a sleep, however short, lets it
    take the GIL; a bare release would often be won back by this thread)."""
    time.sleep(0.0001)

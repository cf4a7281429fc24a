"""Where a node starts from: what is on disk (storage.recovery), or, for a founding
member of a new cluster with nothing on disk, the identical first entries every
founder writes (optionally seeded from a checkpoint: --restore-from)."""

from __future__ import annotations

import json
import logging

from raftkv.consensus import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    SnapshotMeta,
    bootstrap_entries,
)
from raftkv.fsm import StateMachine
from raftkv.runtime.config import NodeConfig
from raftkv.storage.checkpoints import read_checkpoint
from raftkv.storage.protocols import InitialState, RaftStore, SnapshotStore
from raftkv.storage.recovery import recover

log = logging.getLogger("raftkv.node")


def recover_or_bootstrap(
    cfg: NodeConfig,
    raft_store: RaftStore,
    snapshot_store: SnapshotStore,
    prior_state: list[str] | None,
) -> tuple[InitialState, bytes | None]:
    """The state to start from and its snapshot's bytes (None: no snapshot).
    `prior_state`: files proving this node ran before; with no log beside them the
    start is refused (storage.recovery)."""
    recovered = recover(raft_store, snapshot_store, prior_state=prior_state or ())
    state = recovered.state
    if _is_blank(state) and _should_bootstrap(cfg):
        return _bootstrap(cfg, raft_store, snapshot_store)
    return state, recovered.snapshot_data


def member_context(name: str, peer_url: str, client_url: str) -> bytes:
    """A membership change's context: the member's entry in the replicated directory."""
    return json.dumps(
        {"name": name, "peer_url": peer_url, "client_url": client_url},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def _is_blank(state: InitialState) -> bool:
    return state.snapshot is None and not state.entries and state.hard_state == HardState()


def _should_bootstrap(cfg: NodeConfig) -> bool:
    if cfg.initial_cluster_state != "new":
        return False
    return any(m.name == cfg.name for m in cfg.initial_cluster)


def _bootstrap(
    cfg: NodeConfig, raft_store: RaftStore, snapshot_store: SnapshotStore
) -> tuple[InitialState, bytes | None]:
    """The founding members' identical start: one ADD_VOTER per initial member
    (with its name and peer URL as context, so the directory knows them), or,
    with --restore-from, a snapshot of the checkpoint plus that membership."""
    members = sorted(cfg.initial_cluster, key=lambda m: m.id)
    entries, hard_state = bootstrap_entries(cfg.consensus, [m.id for m in members])
    contexts = {m.id: member_context(m.name, m.peer_url, "") for m in members}
    entries = [
        Entry(
            e.term,
            e.index,
            e.type,
            ConfChange(ConfChangeType.ADD_VOTER, cc.node_id, contexts[cc.node_id]).encode(),
        )
        for e in entries
        for cc in [ConfChange.decode(e.data)]
    ]
    if cfg.restore_from is None:
        raft_store.save(hard_state, entries)
        log.info("bootstrapped a new cluster of %s", [m.name for m in members])
        return InitialState(hard_state, None, entries), None
    manifest, data = read_checkpoint(cfg.restore_from)
    seed = StateMachine()
    seed.restore(data)
    # Replace the checkpoint's membership by ours, deterministically on every founder.
    index = seed.applied_index
    new_ids = {m.id for m in members}
    for old_id in sorted(set(seed.members) - new_ids):
        index += 1
        seed.apply_conf_change(index, ConfChange(ConfChangeType.REMOVE, old_id))
    for m in members:
        index += 1
        seed.apply_conf_change(index, ConfChange(ConfChangeType.ADD_VOTER, m.id, contexts[m.id]))
    # The engine's founding term (Raft 1; Multi-Paxos 0, below every ballot).
    founding = hard_state.term
    meta = SnapshotMeta(index, founding, ConfState(frozenset(new_ids), frozenset()))
    snap_data = seed.snapshot_bytes()
    hard_state = HardState(term=founding, vote=NONE, commit=index)
    raft_store.record_snapshot(meta)  # before the file: see storage.recovery
    snapshot_store.save(meta, snap_data)
    raft_store.reset_to_snapshot(meta, hard_state)
    log.info(
        "bootstrapped from checkpoint %s (index %d) at index %d",
        manifest.get("id"),
        manifest.get("index"),
        index,
    )
    return InitialState(hard_state, meta, []), snap_data

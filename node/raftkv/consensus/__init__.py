"""One interface, two engines: what `runtime/` knows of a consensus core.

`Consensus` (interface.py) is the typed contract; `make_core` (engines.py)
builds the Raft or the Multi-Paxos engine behind it. The log's plain data
(entries, hard state, snapshots, membership changes, read states, roles) is
shared by both cores and re-exported here, so the runtime imports this package
and never a core directly (import-linter enforces it).
"""

from raftkv.consensus.engines import (
    ENGINES,
    EngineName,
    PaxosEngine,
    RaftEngine,
    bootstrap_entries,
    make_core,
)
from raftkv.consensus.interface import AnyConsensus, Consensus, ReadyBatch, sends_before_persist
from raftkv.paxos.types import ballot, ballot_round
from raftkv.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    NotLeader,
    ProposalDropped,
    ReadState,
    Snapshot,
    SnapshotMeta,
    SoftState,
    StateRole,
)

__all__ = [
    "ENGINES",
    "NONE",
    "AnyConsensus",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Consensus",
    "EngineName",
    "Entry",
    "EntryType",
    "HardState",
    "NotLeader",
    "PaxosEngine",
    "ProposalDropped",
    "RaftEngine",
    "ReadState",
    "ReadyBatch",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "StateRole",
    "ballot",
    "ballot_round",
    "bootstrap_entries",
    "make_core",
    "sends_before_persist",
]

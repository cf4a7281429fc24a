"""The two engines behind `Consensus`, and the one place that builds them.

Each engine is its core plus the few status views the interface asks for that
the core does not spell the same way. They subclass the cores, so the hot path
(`step`, `propose_batch`, `ready`) runs the core's own methods with no wrapper
in between, and they use only the cores' public API.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal, get_args

from raftkv import paxos, raft
from raftkv.consensus.interface import Consensus, ReadyBatch
from raftkv.raft.core import bootstrap_entries as raft_bootstrap_entries
from raftkv.raft.types import NONE, Entry, EntryType, HardState, SnapshotMeta, StateRole

EngineName = Literal["raft", "multipaxos"]
ENGINES: Final[tuple[str, ...]] = get_args(EngineName)


class RaftEngine(raft.Raft):
    ENGINE: ClassVar[str] = "raft"
    LEADER_SENDS_BEFORE_PERSIST: ClassVar[bool] = True
    OUTCOME_BY_VALUE: ClassVar[bool] = False

    def last_term(self) -> int:
        return self.log.last_term()

    def shown_term(self, term: int) -> int:
        return term

    def match_index(self, peer: int) -> int | None:
        if self.role != StateRole.LEADER:
            return None
        pr = self.prs.get(peer)
        return pr.match if pr is not None else None

    def snapshot_acceptable(self, m: raft.Message) -> bool:
        # Only from the leader of our term: it replaces the whole log and state.
        return m.term == self.term and self.leader == m.frm and m.frm != self.id


class PaxosEngine(paxos.Paxos):
    ENGINE: ClassVar[str] = "multipaxos"
    LEADER_SENDS_BEFORE_PERSIST: ClassVar[bool] = paxos.Paxos.SENDS_BEFORE_PERSIST
    OUTCOME_BY_VALUE: ClassVar[bool] = True

    def __init__(
        self,
        config: paxos.Config,
        *,
        hard_state: HardState | None = None,
        snapshot: SnapshotMeta | None = None,
        entries: list[Entry] | None = None,
    ) -> None:
        super().__init__(config, hard_state=hard_state, snapshot=snapshot, entries=entries)
        self._disk_last = self.last_index()  # the last slot on disk (its tail is never a hole)

    @property
    def term(self) -> int:
        """The promised ballot's round: it grows whenever the ballot does and fits JSON
        and gauges (a whole ballot is up to 128 bits). Two successive leaders may share
        a round (ballots (r, a) < (r, b)); `leader` tells them apart."""
        return paxos.ballot_round(self.promised)

    def last_term(self) -> int:
        last = self.log.get(self.last_index())
        return paxos.ballot_round(last.term) if last is not None else 0

    def shown_term(self, term: int) -> int:
        return paxos.ballot_round(term)

    def ready(self) -> paxos.Ready:
        """The core's Ready, its entries in the Raft log's shape (storage.ballots):
        one contiguous run from the lowest changed slot (or the first slot past what
        is on disk, or past a snapshot that resets the log) to the last slot, holes
        as ballot-0 no-ops. Storage then overwrites a slot by truncating the suffix
        from it, and writes back what followed: no accepted value is ever lost."""
        rd = super().ready()
        if rd.snapshot is not None:
            self._disk_last = rd.snapshot.meta.index  # the log is reset to the snapshot
        if rd.entries or (rd.snapshot is not None and self.last_index() > self._disk_last):
            first = min(
                rd.entries[0].index if rd.entries else self._disk_last + 1, self._disk_last + 1
            )
            last = self.last_index()
            log = self.log
            rd.entries = [
                log.get(s) or Entry(0, s, EntryType.NORMAL, b"") for s in range(first, last + 1)
            ]
            self._disk_last = last
        return rd

    def snapshot_meta(self) -> SnapshotMeta:
        # A snapshot's term is 0: the slots of a prefix carry ballots in any order, and a
        # chosen slot's ballot may still rise; storage checks terms, and 0 always agrees.
        meta = super().snapshot_meta()
        return SnapshotMeta(meta.index, 0, meta.conf_state)

    def match_index(self, peer: int) -> int | None:
        if self.role != StateRole.LEADER:
            return None
        if peer == self.id:
            return self.commit
        return self.peer_commit.get(peer)

    def snapshot_acceptable(self, m: paxos.Message) -> bool:
        # A snapshot holds only chosen values (its sender's compacted prefix), and it
        # answers this node's CATCHUP, which may go to any member that knows more, or
        # to the leader it follows: a member added with an empty data directory knows
        # no configuration yet, and once the leader has compacted its log a snapshot
        # from it is the only way in.
        return m.frm != self.id and (m.frm in self.conf.members() or m.frm == self.leader)

    # Paxos has no per-follower replication state to reset.
    def report_unreachable(self, peer: int) -> None:
        return None

    def leader_unreachable(self, leader: int) -> None:
        """The transport saw the leader's process die (its connections ended and a
        redial was refused; a live process never refuses). Like the Raft engine: end
        our lease on it now, so that we promise the next ballot at once, and campaign
        after 1, 3, 5, ... ticks by rank among the other voters, so that the
        survivors do not duel. If the leader speaks again, its heartbeat resets the
        timer as usual. Safety never depends on the lease or the timer."""
        if (
            leader == NONE
            or leader != self.leader
            or self.role != StateRole.FOLLOWER
            or not self.is_voter()
        ):
            return
        others = sorted(v for v in self.conf.voters if v != leader)
        rank = others.index(self.id)
        self.election_elapsed = max(self.election_elapsed, self.cfg.election_tick)
        self.randomized_election_timeout = self.election_elapsed + 1 + 2 * rank

    def report_snapshot(self, peer: int, ok: bool) -> None:
        return None  # a lagging acceptor pulls again (CATCHUP) if the snapshot got lost


def make_core(
    engine: str,
    node_id: int,
    *,
    election_tick: int,
    heartbeat_tick: int,
    hard_state: HardState | None,
    snapshot: SnapshotMeta | None,
    entries: list[Entry],
) -> RaftEngine | PaxosEngine:
    """The core of `engine` (one of ENGINES), started from what is on disk."""
    if engine == "raft":
        return RaftEngine(
            raft.Config(id=node_id, election_tick=election_tick, heartbeat_tick=heartbeat_tick),
            hard_state=hard_state,
            snapshot=snapshot,
            entries=entries,
        )
    if engine == "multipaxos":
        return PaxosEngine(
            paxos.Config(id=node_id, election_tick=election_tick, heartbeat_tick=heartbeat_tick),
            hard_state=hard_state,
            snapshot=snapshot,
            entries=entries,
        )
    raise ValueError(f"unknown consensus engine {engine!r}: one of {', '.join(ENGINES)}")


def bootstrap_entries(engine: str, voters: list[int]) -> tuple[list[Entry], HardState]:
    """The identical first entries every founding member of a new cluster writes."""
    if engine == "multipaxos":
        return paxos.bootstrap_entries(voters)
    return raft_bootstrap_entries(voters)


def _conforms(
    r: RaftEngine, p: PaxosEngine, rr: raft.Ready, pr: paxos.Ready
) -> tuple[
    Consensus[raft.Message, raft.Ready],
    Consensus[paxos.Message, paxos.Ready],
    ReadyBatch[raft.Message],
    ReadyBatch[paxos.Message],
]:
    """Never called: mypy checks here that both engines and both Readies satisfy the
    interface, so a change to either core that breaks it fails the type check."""
    return r, p, rr, pr

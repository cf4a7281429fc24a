"""Deliberately broken Multi-Paxos cores: each overrides ONE method of Paxos.

The Paxos simulator must report a violation for each within a few hundred
seeds (tests/sim/test_paxos_sim.py): the proof that its faults and checks can
fail.
"""

from __future__ import annotations

from raftkv.paxos import Message, Paxos
from raftkv.raft import NONE, ConfState, Entry, HardState


class AcceptsLowerBallot(Paxos):
    """An acceptor accepts a value at a ballot below the one it promised."""

    def _accepts(self, b: int) -> bool:
        return True


class AdoptsLowestBallot(Paxos):
    """A new leader adopts the value of the LOWEST ballot reported for a slot
    instead of the highest."""

    @staticmethod
    def _highest_accepted(promises: list[Message], above: int) -> dict[int, Entry]:
        best: dict[int, Entry] = {}
        for p in promises:
            for e in p.entries:
                if e.index > above:
                    cur = best.get(e.index)
                    if cur is None or e.term < cur.term:
                        best[e.index] = e
        return best


class ForgetsPromise(Paxos):
    """The promised ballot is kept in memory but never persisted: a restarted
    acceptor forgets what it promised."""

    def _hard_state(self) -> HardState:
        # What it writes instead only ever grows: the highest ballot it accepted a value
        # at (so the persisted-promise-never-decreases check alone does not catch it).
        floor = self._prev_hs.term  # what it last wrote (from disk at a restart)
        for e in self.log.values():
            floor = max(floor, e.term)
        return HardState(floor, NONE, self.commit)


class ReadWithoutQuorum(Paxos):
    """A read barrier is answered at once, without a quorum round of the ballot
    (a deposed leader serves stale reads)."""

    def _read_quorum(self, acks: set[int]) -> bool:
        return True


class PhaseOneWithoutQuorum(Paxos):
    """A proposer leads with promises from a minority (counting only itself twice)."""

    def _phase1_configs(self, promises: list[Message]) -> list[ConfState]:
        return [ConfState(frozenset({self.id}), frozenset())]


VARIANTS: dict[str, type[Paxos]] = {
    "accepts_lower_ballot": AcceptsLowerBallot,
    "adopts_lowest_ballot": AdoptsLowestBallot,
    "forgets_promise": ForgetsPromise,
    "read_without_quorum": ReadWithoutQuorum,
    "phase1_without_quorum": PhaseOneWithoutQuorum,
}

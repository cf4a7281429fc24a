"""The consensus interface: both engines behind it, built by name, and what the
node loop's Ready plan is told about each (a Paxos leader never sends first)."""

from __future__ import annotations

from typing import Any

import pytest

from raftkv.consensus import (
    ENGINES,
    AnyConsensus,
    HardState,
    PaxosEngine,
    RaftEngine,
    StateRole,
    bootstrap_entries,
    make_core,
    sends_before_persist,
)
from raftkv.runtime import ready

IDS = [1, 2, 3]


def _cluster(engine: str) -> dict[int, AnyConsensus]:
    entries, hs = bootstrap_entries(engine, IDS)
    return {
        i: make_core(
            engine,
            i,
            election_tick=10,
            heartbeat_tick=1,
            hard_state=hs.copy(),
            snapshot=None,
            entries=list(entries),
        )
        for i in IDS
    }


def _settle(cores: dict[int, AnyConsensus], rounds: int = 50) -> None:
    """Deliver every message until quiet: persist is a no-op (nothing crashes here)."""
    for _ in range(rounds):
        moved = False
        for core in cores.values():
            while core.has_ready():
                rd: Any = core.ready()
                moved = True
                for m in rd.messages:
                    if m.to in cores:
                        cores[m.to].step(m)
                core.advance(rd)
        if not moved:
            return


def _elect(cores: dict[int, AnyConsensus], leader: int) -> None:
    cores[leader].campaign()  # type: ignore[attr-defined]
    _settle(cores)
    assert cores[leader].role == StateRole.LEADER


def test_engines_by_name() -> None:
    assert ENGINES == ("raft", "multipaxos")
    assert isinstance(_cluster("raft")[1], RaftEngine)
    assert isinstance(_cluster("multipaxos")[1], PaxosEngine)
    assert RaftEngine.ENGINE == "raft" and PaxosEngine.ENGINE == "multipaxos"
    with pytest.raises(ValueError, match="unknown consensus engine 'paxos'"):
        make_core(
            "paxos",
            1,
            election_tick=10,
            heartbeat_tick=1,
            hard_state=HardState(),
            snapshot=None,
            entries=[],
        )


@pytest.mark.parametrize("engine", ENGINES)
def test_both_engines_elect_commit_and_report_status(engine: str) -> None:
    cores = _cluster(engine)
    _elect(cores, 1)
    leader = cores[1]
    _, index = leader.propose(b"hello")
    _settle(cores)
    assert leader.commit >= index
    assert all(c.leader == 1 for c in cores.values())
    assert leader.last_term() == leader.term  # the proposal is the last entry
    for _ in range(2):  # a heartbeat round: Paxos learns what each acceptor knows
        leader.tick()
        _settle(cores)
    for peer in (2, 3):
        assert leader.match_index(peer) == leader.commit
    assert cores[2].match_index(1) is None  # only the leader tracks its peers


@pytest.mark.parametrize(("engine", "early"), [("raft", True), ("multipaxos", False)])
def test_the_plan_lets_only_a_raft_leader_send_before_its_fsync(engine: str, early: bool) -> None:
    cores = _cluster(engine)
    _elect(cores, 1)
    leader = cores[1]
    assert not sends_before_persist(cores[2])  # a follower never does
    assert sends_before_persist(leader) is early
    leader.propose(b"x")
    rd: Any = leader.ready()
    assert rd.entries and rd.messages
    steps = ready.plan(
        rd, leader=sends_before_persist(leader), durable=HardState(leader.term), deferred=None
    )
    kinds = [type(s) for s in steps]
    sent, persisted = kinds.index(ready.Send), kinds.index(ready.Persist)
    assert (sent < persisted) is early


def _ticks_to_a_new_leader(cores: dict[int, AnyConsensus], dead: int, report: bool) -> int:
    """Ticks until the survivors agree on a new leader once `dead` stops (its messages
    are lost both ways), with or without the transport's report of its death."""
    alive = {i: c for i, c in cores.items() if i != dead}
    if report:
        for core in alive.values():
            core.leader_unreachable(dead)
    for ticks in range(1, 100):
        for core in alive.values():
            core.tick()
        _settle(alive)
        leaders = {c.leader for c in alive.values()}
        if len(leaders) == 1 and leaders != {dead} and 0 not in leaders:
            return ticks
    raise AssertionError("no new leader")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_reported_dead_leader_is_replaced_within_a_few_ticks(engine: str) -> None:
    reported = _cluster(engine)
    _elect(reported, 1)
    silent = _cluster(engine)
    _elect(silent, 1)
    fast = _ticks_to_a_new_leader(reported, 1, report=True)
    slow = _ticks_to_a_new_leader(silent, 1, report=False)
    assert fast <= 5 < 10 <= slow  # 10: the election timeout in ticks


@pytest.mark.parametrize("engine", ENGINES)
def test_a_report_about_a_live_leader_deposes_nobody(engine: str) -> None:
    """A minority's report (a flaky link) while the leader keeps its heartbeats."""
    cores = _cluster(engine)
    _elect(cores, 1)
    term = cores[1].term
    cores[2].leader_unreachable(1)
    for _ in range(30):
        for i in (1, 2, 3):  # the leader's heartbeat reaches them within each tick
            cores[i].tick()
            _settle(cores)
    assert cores[1].role == StateRole.LEADER and cores[1].term == term
    assert all(c.leader == 1 for c in cores.values())


def test_a_fresh_paxos_learner_takes_a_snapshot_from_the_leader_it_follows() -> None:
    """A member added with an empty data directory knows no configuration yet; when the
    leader has compacted its log, a snapshot is its only way in (found by
    tests/integration/test_recover.py: the re-added members never caught up)."""
    from raftkv.consensus import Snapshot, SnapshotMeta
    from raftkv.paxos import Config, Message, MsgType, ballot

    learner = PaxosEngine(Config(id=4))
    assert not learner.conf.members()
    leader_ballot = ballot(3, 1)
    snap = Message(MsgType.SNAP, to=4, frm=1, snapshot=Snapshot(SnapshotMeta(index=40)))
    stranger = Message(MsgType.SNAP, to=4, frm=2, snapshot=Snapshot(SnapshotMeta(index=40)))
    assert not learner.snapshot_acceptable(snap)  # nobody to trust yet
    learner.step(Message(MsgType.COMMIT, to=4, frm=1, ballot=leader_ballot, commit=40))
    assert learner.leader == 1
    assert learner.snapshot_acceptable(snap)
    assert not learner.snapshot_acceptable(stranger)  # neither a member nor the leader

"""Core bugs the simulator found, pinned as small deterministic tests."""

from __future__ import annotations

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    Raft,
    SnapshotMeta,
    StateRole,
)
from raftkv.raft.core import bootstrap_entries


def _drain(core: Raft) -> None:
    while core.has_ready():
        core.advance(core.ready())


def test_campaign_after_compacting_past_the_last_membership_change() -> None:
    """Found by the simulator (seed 10 of the first sweep): a follower whose log was
    compacted beyond its last applied membership change raised CompactedError from
    tick() when its election timer fired, because _hup scanned the log for unapplied
    membership changes starting at the last one it had applied."""
    entries, hs = bootstrap_entries([1, 2, 3])
    core = Raft(Config(id=1, pre_vote=False), hard_state=hs, entries=entries)
    _drain(core)
    new = [Entry(2, i, data=b"w%d" % i) for i in range(4, 11)]
    core.step(
        Message(MsgType.APP, to=1, frm=2, term=2, log_term=1, index=3, entries=new, commit=10)
    )
    _drain(core)
    assert core.applied == 10
    core.compact(core.snapshot_meta(), keep=0)
    assert core.log.offset == 10
    for _ in range(2 * core.cfg.election_tick):
        core.tick()
    assert core.role == StateRole.CANDIDATE
    assert core.term == 3


def test_snapshot_after_restart_records_membership_as_of_its_index() -> None:
    """Found by the simulator (seed 5145): after a restart the core applies committed
    membership changes eagerly, and snapshot_meta() returned that membership even
    though the state machine had not applied them yet (max_committed_per_ready cut
    the first Ready short), so a snapshot at index 4 claimed node 3 was already gone
    although its removal is entry 5."""
    conf = ConfState(frozenset({1, 2, 3}), frozenset())
    snap = SnapshotMeta(3, 1, conf)
    entries = [
        Entry(1, 4, data=b"w4"),
        Entry(1, 5, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.REMOVE, 3).encode()),
    ]
    core = Raft(
        Config(id=1, max_committed_per_ready=1),
        hard_state=HardState(1, 0, 5),
        snapshot=snap,
        entries=entries,
    )
    rd = core.ready()
    assert [e.index for e in rd.committed_entries] == [4]
    core.advance(rd)
    meta = core.snapshot_meta()
    assert (meta.index, sorted(meta.conf_state.voters)) == (4, [1, 2, 3])
    _drain(core)
    meta = core.snapshot_meta()
    assert (meta.index, sorted(meta.conf_state.voters)) == (5, [1, 2])


def test_a_stale_candidate_cannot_keep_an_up_to_date_voter_from_campaigning() -> None:
    """Found by the simulator (seed 2076 of a 20,000-seed sweep, pre-vote off): a voter
    whose log was behind campaigned every few ticks on a faster clock; each of its vote
    requests, refused for the stale log, still reset the up-to-date voter's election
    timer, so the only voter that could win never campaigned and the cluster had no
    leader for good. Raft resets the timer only on granting a vote or hearing from the
    leader (Figure 2), so refusing a vote must leave it running."""
    entries, hs = bootstrap_entries([2, 3])
    core = Raft(Config(id=2, pre_vote=False, check_quorum=False), hard_state=hs, entries=entries)
    _drain(core)
    ahead = [Entry(2, i, data=b"w%d" % i) for i in range(3, 9)]
    core.step(
        Message(MsgType.APP, to=2, frm=3, term=2, log_term=1, index=2, entries=ahead, commit=8)
    )
    _drain(core)
    term = core.term
    for _ in range(20):
        for _ in range(core.cfg.election_tick - 1):
            core.tick()
            if core.role != StateRole.FOLLOWER:
                break
        if core.role != StateRole.FOLLOWER:
            break
        term += 1  # the stale node's next campaign: a higher term, a shorter log
        core.step(Message(MsgType.VOTE, to=2, frm=3, term=term, index=2, log_term=1))
        _drain(core)
        assert core.vote != 3
    assert core.role == StateRole.CANDIDATE

"""RaftLog: the core's in-memory log (append/truncate, follower append,
conflict search, compaction, capped slices)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.raft import ConfState, Entry, SnapshotMeta
from raftkv.raft.log import CompactedError, RaftLog


def ents(*spec: tuple[int, int], data: bytes = b"") -> list[Entry]:
    """ents((term, index), ...)"""
    return [Entry(t, i, data=data) for t, i in spec]


def log_of(*terms: int, offset: int = 0, offset_term: int = 0) -> RaftLog:
    """A durable log whose entry offset+1+k has term terms[k]."""
    snap = SnapshotMeta(offset, offset_term, ConfState()) if offset else None
    return RaftLog(snap, [Entry(t, offset + 1 + k) for k, t in enumerate(terms)])


def terms(log: RaftLog) -> list[int]:
    return [e.term for e in log.entries]


# --- construction and reading ------------------------------------------------
def test_a_new_log_starts_after_its_snapshot_and_treats_given_entries_as_durable() -> None:
    log = RaftLog(SnapshotMeta(5, 2, ConfState()), ents((2, 4), (2, 5), (3, 6), (3, 7)))
    assert (log.first_index(), log.last_index(), log.last_term()) == (6, 7, 3)
    assert (log.committed, log.applied) == (5, 5)
    assert log.unstable_entries() == []  # entries given at construction are durable
    assert [e.index for e in log.entries] == [6, 7]  # 4 and 5 are covered by the snapshot


def test_a_gap_in_the_given_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="gap before index 3"):
        RaftLog(None, ents((1, 1), (1, 3)))


def test_term_lookup_at_offset_past_end_and_below_offset() -> None:
    log = log_of(3, 4, offset=5, offset_term=2)
    assert [log.term(i) for i in (5, 6, 7, 8)] == [2, 3, 4, 0]
    with pytest.raises(CompactedError):
        log.term(4)
    assert log.term_or_zero(4) == 0
    assert not log.match_term(4, 0)
    assert log.match_term(5, 2)


@pytest.mark.parametrize(
    ("last_index", "last_term", "up_to_date"),
    [
        (3, 3, True),  # higher last term wins even with a shorter log
        (4, 2, True),  # same term, longer
        (3, 2, True),  # same term, same length
        (2, 2, False),  # same term, shorter
        (9, 1, False),  # lower term loses however long
    ],
)
def test_election_restriction(last_index: int, last_term: int, up_to_date: bool) -> None:
    log = log_of(1, 2, 2)  # last 2/3
    assert log.is_up_to_date(last_index, last_term) is up_to_date


# --- append / truncate -------------------------------------------------------
def test_append_truncates_a_conflicting_suffix_and_marks_it_unstable() -> None:
    log = log_of(1, 1, 2, 2)
    assert log.append(ents((3, 3))) == 3
    assert terms(log) == [1, 1, 3]
    assert [(e.term, e.index) for e in log.unstable_entries()] == [(3, 3)]


def test_append_never_overwrites_committed_entries() -> None:
    log = log_of(1, 1, 2)
    log.commit_to(2)
    with pytest.raises(AssertionError, match="overwrite committed"):
        log.append(ents((3, 2)))
    assert terms(log) == [1, 1, 2]


def test_stable_to_ignores_an_ack_for_an_entry_since_overwritten() -> None:
    log = log_of(1)
    log.append(ents((2, 2), (2, 3)))
    log.append(ents((3, 3)))  # 2/3 replaced before its write was confirmed
    log.stable_to(3, 2)
    assert [(e.term, e.index) for e in log.unstable_entries()] == [(2, 2), (3, 3)]
    log.stable_to(3, 3)
    assert log.unstable_entries() == []


# --- follower append -----------------------------------------------------------
def test_maybe_append_rejects_when_prev_does_not_match() -> None:
    log = log_of(1, 2)
    assert log.maybe_append(2, 3, 0, ents((3, 3))) is None
    assert log.maybe_append(5, 2, 0, ents((3, 6))) is None  # beyond our last index
    assert terms(log) == [1, 2]


def test_a_stale_shorter_append_does_not_truncate_newer_entries() -> None:
    # Raft §5.3: only a *conflicting* entry truncates; a delayed append carrying a
    # prefix of what we have must not throw away later entries.
    log = log_of(1, 1, 1, 1)
    assert log.maybe_append(1, 1, 0, ents((1, 2))) == 2
    assert terms(log) == [1, 1, 1, 1]


def test_maybe_append_replaces_from_the_first_conflict_and_commits_no_further_than_it_knows() -> (
    None
):
    log = log_of(1, 1, 2, 2, 2)  # stale term-2 suffix at 3..5
    last_new = log.maybe_append(2, 1, 9, ents((1, 3), (3, 4)))
    assert last_new == 4
    assert terms(log) == [1, 1, 1, 3]
    # The leader's commit (9) is beyond what this append proves we share (4).
    assert log.committed == 4


def test_commit_is_capped_by_the_last_new_entry_not_by_our_last_index() -> None:
    log = log_of(1, 1, 1, 1)  # our entries 3, 4 may disagree with the leader's
    assert log.maybe_append(1, 1, 4, ents((1, 2))) == 2
    assert log.committed == 2


def test_a_conflict_with_a_committed_entry_is_an_invariant_violation() -> None:
    log = log_of(1, 1, 1)
    log.commit_to(3)
    with pytest.raises(AssertionError, match="conflicts with committed"):
        log.maybe_append(1, 1, 3, ents((2, 2)))


def test_commit_to_never_goes_back_and_never_past_the_log() -> None:
    log = log_of(1, 1, 1)
    assert log.commit_to(2)
    assert not log.commit_to(1)
    assert log.committed == 2
    with pytest.raises(AssertionError, match="beyond last index"):
        log.commit_to(4)


# --- conflict search ---------------------------------------------------------
def test_find_conflict() -> None:
    log = log_of(1, 2, 2)
    assert log.find_conflict(ents((1, 1), (2, 2))) == 0
    assert log.find_conflict(ents((2, 3), (2, 4))) == 4  # 4 is new
    assert log.find_conflict(ents((2, 2), (3, 3))) == 3


@pytest.mark.parametrize(
    ("index", "term", "expected"),
    [
        (6, 3, 6),  # term(6)=3 <= 3: the probe point itself
        (6, 2, 3),  # skip the whole term-3 run 4..6
        (6, 1, 1),  # ... and the term-2 run 2..3
        (6, 0, 0),  # nothing has term <= 0: the start of the log
        (9, 2, 9),  # beyond our log: returned unchanged (callers clamp first)
    ],
)
def test_find_conflict_by_term(index: int, term: int, expected: int) -> None:
    log = log_of(1, 2, 2, 3, 3, 3)
    assert log.find_conflict_by_term(index, term) == expected


def test_find_conflict_by_term_stops_at_the_snapshot() -> None:
    log = log_of(5, 5, offset=4, offset_term=4)
    assert log.find_conflict_by_term(6, 1) == 4


# --- slices --------------------------------------------------------------------
def test_slice_is_half_open_and_clamped_to_the_log() -> None:
    log = log_of(1, 1, 2, 2)
    assert [e.index for e in log.slice(2, 4)] == [2, 3]
    assert [e.index for e in log.slice(3, 99)] == [3, 4]
    assert log.slice(5, 9) == []
    with pytest.raises(CompactedError):
        log_of(2, offset=3, offset_term=1).slice(3, 5)


def test_slice_count_and_byte_caps_keep_at_least_one_entry() -> None:
    log = RaftLog(None, [Entry(1, i, data=b"x" * 10) for i in range(1, 6)])  # 26 B each
    assert len(log.slice(1, 6, max_count=2)) == 2
    assert len(log.slice(1, 6, max_bytes=60)) == 2  # 52 <= 60 < 78
    assert len(log.slice(1, 6, max_bytes=52)) == 2  # exactly at the cap still fits
    assert len(log.slice(1, 6, max_bytes=10)) == 1  # oversize first entry still goes
    assert len(log.slice(1, 6, max_bytes=1000, max_count=3)) == 3


@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=20),
    max_bytes=st.integers(0, 200),
    max_count=st.integers(0, 25),
)
def test_capped_slices_are_the_longest_prefix_within_both_caps(
    sizes: list[int], max_bytes: int, max_count: int
) -> None:
    log = RaftLog(None, [Entry(1, i + 1, data=b"x" * n) for i, n in enumerate(sizes)])
    got = log.slice(1, len(sizes) + 1, max_bytes=max_bytes, max_count=max_count)
    assert got == log.entries[: len(got)]
    assert len(got) >= 1
    within_count = not max_count or len(got) <= max_count
    within_bytes = not max_bytes or sum(e.size() for e in got) <= max_bytes or len(got) == 1
    assert within_count and within_bytes
    if len(got) < len(sizes):  # one more would break a cap
        more = log.entries[: len(got) + 1]
        assert (max_count and len(more) > max_count) or (
            max_bytes and sum(e.size() for e in more) > max_bytes
        )


# --- compaction and restore ------------------------------------------------------
def test_compact_drops_entries_up_to_the_snapshot_minus_keep() -> None:
    log = log_of(1, 1, 2, 2, 3)
    log.commit_to(5)
    log.applied = 5
    log.compact(SnapshotMeta(4, 2, ConfState()), keep=1)
    assert (log.first_index(), log.offset_term, log.snapshot.index) == (4, 2, 4)
    assert [e.index for e in log.entries] == [4, 5]
    log.compact(SnapshotMeta(5, 3, ConfState()))
    assert (log.first_index(), log.last_index(), log.last_term()) == (6, 5, 3)
    assert log.term(5) == 3


def test_compact_refuses_unapplied_and_keeps_unstable_entries() -> None:
    log = log_of(1, 1)
    log.append(ents((1, 3)))  # not yet durable
    log.commit_to(3)
    log.applied = 2
    with pytest.raises(AssertionError, match="beyond applied"):
        log.compact(SnapshotMeta(3, 1, ConfState()))
    log.applied = 3
    log.compact(SnapshotMeta(3, 1, ConfState()))
    assert [e.index for e in log.entries] == [3]  # still owed to the disk
    assert log.snapshot.index == 3


def test_compact_to_an_older_snapshot_changes_nothing() -> None:
    log = log_of(1, 1, 1)
    log.commit_to(3)
    log.applied = 3
    log.compact(SnapshotMeta(2, 1, ConfState()))
    log.compact(SnapshotMeta(1, 1, ConfState()))
    assert (log.offset, log.snapshot.index) == (2, 2)


def test_restore_replaces_the_whole_log() -> None:
    log = log_of(1, 1, 2)
    meta = SnapshotMeta(10, 4, ConfState(frozenset({1})))
    log.restore(meta)
    assert (log.first_index(), log.last_index(), log.last_term(), log.committed) == (11, 10, 4, 10)
    assert log.entries == [] and log.unstable_entries() == []
    assert log.snapshot is meta

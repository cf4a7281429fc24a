"""Progress and Inflights: the leader's per-follower flow control."""

from __future__ import annotations

from raftkv.raft.progress import Inflights, Progress, ProgressState


def progress(next_index: int = 5, max_count: int = 3, max_bytes: int = 0) -> Progress:
    return Progress(next_index, Inflights(max_count, max_bytes))


# --- Inflights -------------------------------------------------------------------
def test_inflights_fill_up_by_count() -> None:
    inf = Inflights(max_count=2, max_bytes=0)
    inf.add(5, 100)
    assert not inf.full()
    inf.add(6, 100)
    assert inf.full()


def test_inflights_fill_up_by_bytes_before_count() -> None:
    inf = Inflights(max_count=10, max_bytes=100)
    inf.add(5, 60)
    assert not inf.full()
    inf.add(6, 40)  # reaching the cap exactly is full
    assert inf.full() and inf.bytes == 100


def test_free_le_releases_acked_messages_in_order() -> None:
    inf = Inflights(max_count=3, max_bytes=0)
    for last, size in ((5, 10), (7, 20), (9, 30)):
        inf.add(last, size)
    inf.free_le(6)  # covers only the first message (last index 5)
    assert [q[0] for q in inf.queue] == [7, 9] and inf.bytes == 50
    inf.free_le(9)
    assert not inf.queue and inf.bytes == 0
    inf.free_le(100)  # nothing left: harmless
    assert inf.bytes == 0


def test_free_first_and_reset() -> None:
    inf = Inflights(max_count=2, max_bytes=0)
    inf.add(5, 10)
    inf.add(6, 10)
    inf.free_first()
    assert [q[0] for q in inf.queue] == [6] and not inf.full()
    inf.reset()
    assert not inf.queue and inf.bytes == 0
    inf.free_first()  # on empty: harmless
    assert inf.bytes == 0


# --- Progress --------------------------------------------------------------------
def test_a_new_progress_probes_one_message_at_a_time() -> None:
    pr = progress()
    assert pr.state == ProgressState.PROBE and (pr.match, pr.next) == (0, 5)
    assert not pr.is_paused()
    pr.probe_sent = True
    assert pr.is_paused()


def test_maybe_update_moves_match_and_next_forward_only() -> None:
    pr = progress(next_index=5)
    pr.probe_sent = True
    assert pr.maybe_update(7)
    assert (pr.match, pr.next) == (7, 8) and not pr.probe_sent
    assert not pr.maybe_update(6)  # stale ack
    assert (pr.match, pr.next) == (7, 8)
    pr.next = 12  # optimistic pipelining went ahead
    assert pr.maybe_update(9)
    assert (pr.match, pr.next) == (9, 12)  # next is not pulled back


def test_become_replicate_restarts_after_match_and_forgets_the_probe() -> None:
    pr = progress(next_index=20)
    pr.match, pr.probe_hi = 7, 12
    pr.inflights.add(30, 10)
    pr.become_replicate()
    assert pr.state == ProgressState.REPLICATE and pr.next == 8
    assert pr.probe_hi == 0 and not pr.inflights.queue


def test_replicate_pauses_only_when_the_window_is_full() -> None:
    pr = progress(max_count=2)
    pr.become_replicate()
    pr.probe_sent = True  # irrelevant in replicate
    assert not pr.is_paused()
    pr.inflights.add(3, 1)
    pr.inflights.add(4, 1)
    assert pr.is_paused()
    pr.inflights.free_le(3)
    assert not pr.is_paused()


def test_become_probe_from_replicate_resends_after_match() -> None:
    pr = progress()
    pr.become_replicate()
    pr.match, pr.next = 7, 15
    pr.inflights.add(14, 10)
    pr.become_probe()
    assert pr.state == ProgressState.PROBE and pr.next == 8
    assert not pr.inflights.queue and not pr.is_paused()


def test_a_snapshot_pauses_until_its_outcome_and_then_probes_after_it() -> None:
    pr = progress()
    pr.match = 3
    pr.become_snapshot(10)
    assert pr.state == ProgressState.SNAPSHOT and pr.pending_snapshot == 10
    assert pr.is_paused()
    pr.become_probe()
    # After a snapshot the follower has at least the snapshot's index.
    assert pr.state == ProgressState.PROBE and pr.next == 11 and pr.pending_snapshot == 0


def test_a_failed_snapshot_probes_after_match() -> None:
    pr = progress()
    pr.match = 3
    pr.become_snapshot(10)
    pr.pending_snapshot = 0  # what report_snapshot(ok=False) does before become_probe
    pr.become_probe()
    assert pr.next == 4

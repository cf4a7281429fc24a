"""Deliberately wrong Ready plans: each bends ONE rule of `raftkv.runtime.ready.plan`.

Production's plan departs from the textbook order (persist, send, apply, advance)
in three places; each wrong plan in PLAN_VARIANTS goes one step too far at one of
them. The simulator runs every node's Readies through the plan it is given, and
must report a violation for each within a bounded number of seeds
(tests/sim/test_checker_catches_bugs.py): the proof that its crash points and
checks see the Ready order at all.

HARMLESS_REORDERINGS are two orders that look wrong but are safe in this runtime,
so no check can (or should) flag them; the reason is the loop discipline that
makes the real plan's departures safe too. A node handles one Ready at a time
and its core is never stepped while it does (RaftNode._run; the simulator runs
a Ready's steps back to back). So:

- a leader that advances before its fsync counts itself towards a commit, but
  no follower can have acknowledged entries it is only now sending, and no
  acknowledgement is stepped before the fsync completes: nothing is committed on
  that count, and whatever advance() queues leaves with the NEXT Ready, after
  the fsync. (It becomes a bug as soon as the core is stepped, or a second Ready
  taken, while the fsync is in flight: pipelining the loop needs a new argument.)
- applying this Ready's committed entries before they are on this disk hands out
  answers for entries that are committed, i.e. already durable on a majority;
  a crash loses only this node's in-memory state machine, rebuilt from disk.
"""

from __future__ import annotations

from raftkv.raft import HardState, Ready
from raftkv.runtime import ready
from raftkv.runtime.ready import Step


def follower_acks_before_fsync(
    rd: Ready, *, leader: bool, durable: HardState, deferred: HardState | None
) -> list[Step]:
    """Departure 1 widened: every node, not just the leader, sends before its fsync, so
    a follower acknowledges entries (and a voter grants votes) that are not on its disk."""
    return ready.plan(rd, leader=True, durable=durable, deferred=deferred)


def leader_counts_itself_before_fsync(
    rd: Ready, *, leader: bool, durable: HardState, deferred: HardState | None
) -> list[Step]:
    """Departure 1 without its guard: the leader advances (counts its new entries
    towards a commit) before its own fsync. Harmless in this loop: see above."""
    steps = ready.plan(rd, leader=leader, durable=durable, deferred=deferred)
    if not leader:
        return steps
    persist = next((i for i, s in enumerate(steps) if isinstance(s, ready.Persist)), None)
    if persist is None:
        return steps
    rest = [s for s in steps[persist:] if not isinstance(s, ready.Advance)]
    return [*steps[:persist], ready.ADVANCE, *rest]


def applies_past_durable_commit(
    rd: Ready, *, leader: bool, durable: HardState, deferred: HardState | None
) -> list[Step]:
    """Departure 2 without its split: every committed entry is applied before the
    persist, also those that arrive in this very Ready and are not yet on this disk.
    Harmless: see above."""
    steps = ready.plan(rd, leader=leader, durable=durable, deferred=deferred)
    if rd.snapshot is not None or not rd.committed_entries:
        return steps
    others = [s for s in steps if not isinstance(s, ready.Apply)]
    return [ready.Apply(rd.committed_entries), *others]


def defers_any_hard_state(
    rd: Ready, *, leader: bool, durable: HardState, deferred: HardState | None
) -> list[Step]:
    """Departure 3 widened: a hard state without entries is deferred even when its term
    or vote changed, so a vote is granted before it is on disk."""
    steps = ready.plan(rd, leader=leader, durable=durable, deferred=deferred)
    if rd.hard_state is None or rd.entries or rd.snapshot is not None:
        return steps
    return [
        ready.DeferHardState(rd.hard_state) if isinstance(s, ready.Persist) else s for s in steps
    ]


def applies_before_snapshot(
    rd: Ready, *, leader: bool, durable: HardState, deferred: HardState | None
) -> list[Step]:
    """Departure 2 without its snapshot guard: committed entries that follow a snapshot
    this Ready installs are applied early, before the snapshot is restored."""
    steps = ready.plan(rd, leader=leader, durable=durable, deferred=deferred)
    if rd.snapshot is None or not rd.committed_entries:
        return steps
    others = [s for s in steps if not isinstance(s, ready.Apply)]
    return [ready.Apply(rd.committed_entries), *others]


PLAN_VARIANTS: dict[str, ready.Planner] = {
    "follower_acks_before_fsync": follower_acks_before_fsync,
    "defers_any_hard_state": defers_any_hard_state,
    "applies_before_snapshot": applies_before_snapshot,
}

HARMLESS_REORDERINGS: dict[str, ready.Planner] = {
    "leader_counts_itself_before_fsync": leader_counts_itself_before_fsync,
    "applies_past_durable_commit": applies_past_durable_commit,
}

"""Membership changes, one voter or learner at a time (Raft thesis 4.1).

A change takes effect in `conf` as soon as it is committed (eagerly: it will be
applied anyway), while `_applied_conf` follows the entries handed back through
advance() (what a snapshot at `applied` must record). A leader proposes a change
only when the previous one is applied and an entry of its term is committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft import replication
from raftkv.raft.types import (
    NONE,
    ConfChange,
    Entry,
    EntryType,
    ProposalDropped,
    StateRole,
    validate_conf_change,
)

if TYPE_CHECKING:
    from raftkv.raft.core import Raft


def replay_committed(r: Raft) -> None:
    """At start: apply every committed conf change after `applied` to `conf`
    (`_conf_applied` then stops advance() from applying them twice)."""
    if r.log.committed > r.log.applied:
        for e in r.log.slice(r.log.applied + 1, r.log.committed + 1):
            if e.type == EntryType.CONF_CHANGE:
                r.conf = r._conf_after(r.conf, ConfChange.decode(e.data))
    r._conf_applied = r.log.committed


def check_proposal(r: Raft, cc: ConfChange) -> None:
    if r.pending_conf_index > r.log.applied:
        raise ProposalDropped("a membership change is already in progress")
    if not r._committed_entry_in_current_term():
        raise ProposalDropped("leader has not committed an entry of its term yet")
    validate_conf_change(r.conf, cc)


def has_unapplied_conf_change(r: Raft) -> bool:
    """A conf change is committed but not yet applied (campaigning now could use
    the wrong configuration)."""
    applied = max(r._conf_applied, r.log.applied)  # entries <= applied may be compacted
    if r.log.committed > applied:
        for e in r.log.slice(applied + 1, r.log.committed + 1):
            if e.type == EntryType.CONF_CHANGE:
                return True
    return False


def on_applied(r: Raft, committed: list[Entry]) -> None:
    """Committed entries came back through advance(): move the applied membership,
    and apply each change `conf` has not seen yet."""
    for e in committed:
        if e.type != EntryType.CONF_CHANGE:
            continue
        cc = ConfChange.decode(e.data)
        r._applied_conf = r._conf_after(r._applied_conf, cc)
        if e.index > r._conf_applied:
            apply_conf_change(r, cc)
            r._conf_applied = e.index


def apply_conf_change(r: Raft, cc: ConfChange) -> None:
    r.conf = r._conf_after(r.conf, cc)
    if r.role != StateRole.LEADER:
        return
    last = r.log.last_index()
    for node in r.conf.members():
        if node not in r.prs:
            r.prs[node] = replication.new_progress(r, node, last)
            r.prs[node].match = 0
        r.prs[node].is_learner = node in r.conf.learners
    for node in list(r.prs):
        if node not in r.conf.members():
            del r.prs[node]
    if r.lead_transferee != NONE and r.lead_transferee not in r.conf.voters:
        r.lead_transferee = NONE
    if r.id not in r.conf.voters:
        # A removed leader steps down; the rest elect a new one.
        r.become_follower(r.term, NONE)
        return
    r._maybe_commit()  # the quorum may have shrunk
    replication.bcast_append(r)

"""Majorities: the commit index a quorum has reached, and whether a quorum is alive."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raftkv.raft.core import Raft


def quorum(r: Raft) -> int:
    return len(r.conf.voters) // 2 + 1


def has_quorum(r: Raft, nodes: set[int]) -> bool:
    return len(nodes & r.conf.voters) >= r._quorum()


def committed_index_by_quorum(r: Raft) -> int:
    matches = sorted((r.prs[v].match for v in r.conf.voters if v in r.prs), reverse=True)
    q = r._quorum()
    return matches[q - 1] if len(matches) >= q else 0


def maybe_commit(r: Raft) -> bool:
    index = r._committed_index_by_quorum()
    # Raft figure 8: only entries of the current term are committed by counting.
    if index > r.log.committed and r.log.term_or_zero(index) == r.term:
        r.log.commit_to(index)
        r._on_commit_advanced()
        return True
    return False


def quorum_active(r: Raft) -> bool:
    """Check-quorum: has a quorum been heard from since the last check? Resets the marks."""
    active = {r.id}
    for node, pr in r.prs.items():
        if node != r.id and pr.recent_active:
            active.add(node)
        pr.recent_active = False
    return r._has_quorum(active)

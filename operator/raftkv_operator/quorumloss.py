"""Pure: is a cluster's quorum lost, what is missing, and which member to recover from.

Used by reconcile.py when no member leads. A voter "answers" when its pod's node answers
`/v1/status` as a member of its own configuration under the id the configuration knows: a
pod that came back on an empty volume answers too, but without its Raft state (a blank
joiner under a fresh id), and does not count. The configuration is the one of the answering
member with the most complete log; with none answering, the operator's last record
(status.members).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from raftkv_operator.members import NodeStatus
from raftkv_operator.models import quorum


def log_position(node: NodeStatus) -> tuple[int, int]:
    """(last log term, last index): how Raft orders logs (older nodes without `last_term`
    report their current term, which is never lower)."""
    term = node.last_term if node.last_term is not None else node.term
    return (term, node.last_index)


@dataclass(frozen=True)
class QuorumView:
    voters: tuple[str, ...]
    """The last known voters, by name."""
    answering: tuple[NodeStatus, ...]
    """Voters answering with their Raft state, the most complete log first."""
    missing: Mapping[str, str] = field(default_factory=dict)
    """Voter -> why it does not count."""

    @property
    def needed(self) -> int:
        return quorum(len(self.voters)) if self.voters else 1

    @property
    def lost(self) -> bool:
        """Fewer voters answer with their data than a quorum: no leader can be elected."""
        return bool(self.voters) and len(self.answering) < self.needed

    @property
    def survivor(self) -> NodeStatus | None:
        return self.answering[0] if self.answering else None

    def describe(self) -> str:
        """One line: how many answer, and what is missing and why."""
        count = len(self.voters)
        have = ", ".join(n.name for n in self.answering) or "none"
        missing = "; ".join(f"{name}: {why}" for name, why in sorted(self.missing.items()))
        head = (
            f"{len(self.answering)} of {count} voters answer with their data ({have}), "
            f"{self.needed} needed"
        )
        return f"{head}; missing: {missing}" if missing else head

    def candidates(self) -> str:
        """Each answering voter's (last term, last index), best first."""
        return ", ".join(
            f"{n.name} (term {log_position(n)[0]}, index {n.last_index})" for n in self.answering
        )


def assess(
    nodes: Mapping[str, NodeStatus],
    pods: Iterable[str],
    recorded_voters: Iterable[str],
) -> QuorumView:
    """The quorum as far as the answering nodes tell (`pods`: the member pods that exist)."""
    members = [n for n in nodes.values() if n.is_member]
    best = max(members, key=lambda n: (*log_position(n), n.name), default=None)
    if best is not None:
        voters = {m.name: m.id for m in best.members if m.voter}
    else:
        voters = {name: 0 for name in recorded_voters}
    existing = set(pods)
    answering: list[NodeStatus] = []
    missing: dict[str, str] = {}
    for name, member_id in voters.items():
        node = nodes.get(name)
        if node is not None and node.is_member and (member_id in (0, node.id)):
            answering.append(node)
        elif node is not None and member_id and node.id != member_id:
            missing[name] = (
                f"runs as a new incarnation (id {node.id}, the cluster knows {member_id}): "
                "its data is gone"
            )
        elif node is not None:
            missing[name] = "answers without its Raft state: its volume is new or empty"
        elif name not in existing:
            missing[name] = "no pod"
        else:
            missing[name] = "does not answer"
    answering.sort(key=lambda n: (*log_position(n), n.name), reverse=True)
    return QuorumView(voters=tuple(sorted(voters)), answering=tuple(answering), missing=missing)

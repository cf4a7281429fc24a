"""What a node says about itself and the cluster (`/v1/status`), as the planner reads
it: the shared document model (`raftkv.protocol.status`, also the client's) plus the
few questions the planner asks of it. No I/O here."""

from __future__ import annotations

from raftkv.protocol.status import NodeStatus as StatusDocument
from raftkv.protocol.status import StatusLeader, StatusMember, StatusPlaneTLS

Member = StatusMember
"""One member of the Raft configuration, as a node reports it (`voter`: not a learner)."""
LoadedTLS = StatusPlaneTLS
"""The TLS files one plane of a node was built from (`/v1/status` `tls.<plane>`)."""

__all__ = ["LoadedTLS", "Member", "NodeStatus", "StatusLeader"]


class NodeStatus(StatusDocument):
    """A node's `/v1/status`, with the planner's questions."""

    @property
    def leader_id(self) -> int | None:
        return self.leader.id if self.leader is not None else None

    @property
    def leader_name(self) -> str | None:
        return self.leader.name if self.leader is not None else None

    @property
    def peer_tls(self) -> LoadedTLS | None:
        """What the node's peer plane loaded (None: no TLS there, or an older node)."""
        return self.tls.peer

    @property
    def client_tls(self) -> LoadedTLS | None:
        return self.tls.client

    @property
    def is_member(self) -> bool:
        """The node finds itself in its own configuration (false for a blank node)."""
        return any(m.id == self.id for m in self.members)

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

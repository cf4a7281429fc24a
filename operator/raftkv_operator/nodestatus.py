"""What a node says about itself and the cluster (`/v1/status`), as plain data: the planner
reads it, the node client (members.py) parses it. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Member:
    """One member of the Raft configuration, as a node reports it."""

    id: int
    name: str
    peer_url: str
    client_url: str
    voter: bool
    match_index: int | None = None
    """Only on the leader's report."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        match = data.get("match_index")
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            peer_url=str(data.get("peer_url") or ""),
            client_url=str(data.get("client_url") or ""),
            voter=data.get("role") != "learner",
            match_index=int(match) if match is not None else None,
        )


_HEX = frozenset("0123456789abcdef")


def _sha256(value: object) -> str | None:
    """A hex SHA-256 from a node's report, or None (a node's answer is not trusted)."""
    if isinstance(value, str) and len(value) == 64 and set(value) <= _HEX:
        return value
    return None


@dataclass(frozen=True)
class LoadedTLS:
    """The TLS files one plane of a node was built from (`/v1/status` `tls.<plane>`)."""

    cert_sha256: str | None
    ca_sha256: str | None

    @classmethod
    def from_json(cls, data: object) -> LoadedTLS | None:
        if not isinstance(data, Mapping):
            return None
        return cls(_sha256(data.get("cert_sha256")), _sha256(data.get("ca_sha256")))


@dataclass(frozen=True)
class NodeStatus:
    """A node's `/v1/status`."""

    name: str
    id: int
    role: str
    """leader, follower, candidate, pre_candidate or learner."""
    term: int
    leader_id: int | None
    leader_name: str | None
    commit_index: int
    applied_index: int
    last_index: int
    ready: bool
    members: tuple[Member, ...]
    last_term: int | None = None
    """Term of the entry at last_index (None from a node that does not say)."""
    peer_tls: LoadedTLS | None = None
    client_tls: LoadedTLS | None = None
    """What the node's peer and client planes loaded (None: no TLS, or not said)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeStatus:
        leader = data.get("leader") or None
        tls = data.get("tls")
        tls = tls if isinstance(tls, Mapping) else {}
        return cls(
            name=str(data["name"]),
            id=int(data["id"]),
            role=str(data.get("role") or "unknown"),
            term=int(data.get("term") or 0),
            leader_id=int(leader["id"]) if leader else None,
            leader_name=str(leader.get("name") or "") if leader else None,
            commit_index=int(data.get("commit_index") or 0),
            applied_index=int(data.get("applied_index") or 0),
            last_index=int(data.get("last_index") or 0),
            ready=bool(data.get("ready")),
            members=tuple(Member.from_json(m) for m in data.get("members") or ()),
            last_term=int(data["last_term"]) if data.get("last_term") is not None else None,
            peer_tls=LoadedTLS.from_json(tls.get("peer")),
            client_tls=LoadedTLS.from_json(tls.get("client")),
        )

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"

    @property
    def is_member(self) -> bool:
        """The node finds itself in its own configuration (false for a blank node)."""
        return any(m.id == self.id for m in self.members)

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

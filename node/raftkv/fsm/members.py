"""The membership directory: who the members are and where to reach them.

The Raft core tracks ids and roles for quorum; this directory keeps the names
and URLs from each conf change's `context` (JSON `{"name", "peer_url",
"client_url"}`, put there by the runtime) so that they travel in snapshots and
checkpoints. A context that is not such JSON is recorded as empty strings:
membership must follow the log even when a context is odd.

It also keeps a tombstone (id -> last known name) for every id ever removed: a removed
id must never come back (the runtime refuses to re-add it, docs/contracts.md "Node
identity"), and since tombstones travel in snapshots every member refuses alike. They are
rows with role "removed" in the same snapshot section, sorted by id with the others.
"""

from __future__ import annotations

import json
from typing import Any

from raftkv.raft.types import ConfChange, ConfChangeType

VOTER = "voter"
LEARNER = "learner"
REMOVED = "removed"
_FIELDS = ("name", "peer_url", "client_url")


def _parse_context(context: bytes) -> dict[str, str]:
    try:
        parsed = json.loads(context) if context else {}
    except (ValueError, UnicodeDecodeError):
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    return {f: parsed[f] for f in _FIELDS if isinstance(parsed.get(f), str)}


class MemberDirectory:
    __slots__ = ("_members", "_removed")

    def __init__(self) -> None:
        self._members: dict[int, dict[str, str]] = {}
        self._removed: dict[int, str] = {}  # tombstones: id -> the name it had

    def __len__(self) -> int:
        return len(self._members)

    def apply(self, cc: ConfChange) -> dict[str, Any]:
        """Record the change; return `{"member": id, "change": ..., "role"?}`."""
        info = _parse_context(cc.context)
        change = cc.type.name.lower()
        if cc.type == ConfChangeType.REMOVE:
            gone = self._members.pop(cc.node_id, None)
            self._removed[cc.node_id] = gone["name"] if gone else info.get("name", "")
            return {"member": cc.node_id, "change": change}
        role = LEARNER if cc.type == ConfChangeType.ADD_LEARNER else VOTER
        # The log is the authority: an add that got past the runtime's check wins.
        self._removed.pop(cc.node_id, None)
        member = self._members.get(cc.node_id)
        if member is None:
            member = self._members[cc.node_id] = {f: "" for f in _FIELDS}
        member.update(info)  # a promote usually carries no context: keep what we know
        member["role"] = role
        return {"member": cc.node_id, "change": change, "role": role}

    def set_client_url(self, member: int, client_url: str) -> bool:
        """Record where a current member serves clients; False if it is no member."""
        entry = self._members.get(member)
        if entry is None:
            return False
        entry["client_url"] = client_url
        return True

    def as_dict(self) -> dict[int, dict[str, str]]:
        """A copy: {id: {"name", "peer_url", "client_url", "role"}}, sorted by id."""
        return {mid: dict(self._members[mid]) for mid in sorted(self._members)}

    def removed(self) -> dict[int, str]:
        """Tombstones: {id: name} of every id removed from the cluster, sorted by id."""
        return {mid: self._removed[mid] for mid in sorted(self._removed)}

    def dump(self) -> list[tuple[int, str, str, str, str]]:
        rows = [
            (mid, m["name"], m["peer_url"], m["client_url"], m["role"])
            for mid, m in self._members.items()
        ]
        rows += [(mid, name, "", "", REMOVED) for mid, name in self._removed.items()]
        return sorted(rows)

    @classmethod
    def load(cls, rows: list[tuple[int, str, str, str, str]]) -> MemberDirectory:
        directory = cls()
        for mid, name, peer_url, client_url, role in rows:
            if (
                type(mid) is not int
                or mid in directory._members
                or mid in directory._removed
                or role not in (VOTER, LEARNER, REMOVED)
            ):
                raise ValueError(f"bad member row {mid!r}")
            if role == REMOVED:
                directory._removed[mid] = name
                continue
            directory._members[mid] = {
                "name": name,
                "peer_url": peer_url,
                "client_url": client_url,
                "role": role,
            }
        return directory

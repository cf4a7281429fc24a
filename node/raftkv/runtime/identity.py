"""Node identity (docs/contracts.md "Node identity"): a name and a numeric Raft id.

Founding members use `member_id(name)`, so every founder can compute every founder's id
from `--initial-cluster`. Any other node (one that joins an existing cluster with an empty
data directory) draws a fresh *incarnation* id once and keeps it in
`<data-dir>/identity.json`: re-adding a wiped member under its old id would let a blank
disk answer for votes and log entries the old incarnation gave (the etcd lesson).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from raftkv.protocol.ids import MAX_ID, member_id

IDENTITY_FILE = "identity.json"
_STATE_DIRS = ("wal", "snapshots", "checkpoints")


def fresh_member_id(name: str) -> int:
    """A new incarnation id for `name`: member_id of the name plus 64 random bits."""
    return member_id(f"{name}#{secrets.token_hex(8)}")


class IdentityError(ValueError):
    """identity.json is unreadable or belongs to another node."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    id: int
    source: str
    """"persisted" (identity.json), "founder", "fresh" (just drawn) or "legacy"."""


def _has_state(data_dir: Path) -> bool:
    """Whether the directory already holds Raft state of the layout before identity.json."""
    for sub in _STATE_DIRS:
        path = data_dir / sub
        if path.is_dir() and any(path.iterdir()):
            return True
    return False


def _read_json_object(path: Path) -> dict[str, object] | None:
    """The JSON object in `path` (None: no such file); IdentityError if it is not one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IdentityError(f"{path}: not JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise IdentityError(f"{path}: expected an object")
    return parsed


def load_identity(data_dir: Path) -> tuple[str, int] | None:
    path = data_dir / IDENTITY_FILE
    parsed = _read_json_object(path)
    if parsed is None:
        return None
    name, mid = parsed.get("name"), parsed.get("id")
    if not isinstance(name, str) or not name:
        raise IdentityError(f"{path}: 'name' must be a non-empty string")
    if type(mid) is not int or not 0 < mid < MAX_ID:
        raise IdentityError(f"{path}: 'id' must be an int in (0, 2**53)")
    return name, mid


def save_identity(data_dir: Path, name: str, mid: int, *, fsync: bool = True) -> None:
    """Write identity.json atomically: temp file, fsync, rename, fsync the directory."""
    _write_json_atomic(data_dir / IDENTITY_FILE, {"name": name, "id": mid}, fsync=fsync)


def _write_json_atomic(path: Path, obj: dict[str, object], *, fsync: bool) -> None:
    """temp file, fsync, rename, fsync the directory (fsync off: unsafe test mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(json.dumps(obj, sort_keys=True).encode() + b"\n")
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def resolve_identity(data_dir: Path, name: str, *, founder: bool, fsync: bool = True) -> Identity:
    """This node's id, decided once per data directory and kept from then on.

    identity.json wins; a data directory with state but no identity.json (the older
    layout) keeps `member_id(name)`; an empty one is a founder (`member_id(name)`) or a
    joiner (a fresh id). A new decision is persisted before the node talks to anyone."""
    persisted = load_identity(data_dir)
    if persisted is not None:
        saved_name, mid = persisted
        if saved_name != name:
            raise IdentityError(
                f"{data_dir / IDENTITY_FILE} belongs to node {saved_name!r}, not {name!r}"
            )
        return Identity(name, mid, "persisted")
    if _has_state(data_dir):
        identity = Identity(name, member_id(name), "legacy")
    elif founder:
        identity = Identity(name, member_id(name), "founder")
    else:
        identity = Identity(name, fresh_member_id(name), "fresh")
    save_identity(data_dir, name, identity.id, fsync=fsync)
    return identity


# --- the cluster id ------------------------------------------------------------------
# docs/contracts.md "Cluster identity": 16 random bytes (hex) that name one cluster
# incarnation. Every peer handshake carries it; a peer of another cluster is refused. A
# recovered cluster (`raftkv recover`, issue 13) draws a new one: members that kept the
# old id are then refused, as members of another cluster.
CLUSTER_FILE = "cluster.json"


def new_cluster_id() -> str:
    return secrets.token_hex(16)


def load_cluster_id(data_dir: Path) -> str | None:
    path = data_dir / CLUSTER_FILE
    parsed = _read_json_object(path)
    if parsed is None:
        return None
    cid = parsed.get("cluster_id")
    if not isinstance(cid, str) or len(cid) != 32 or cid.strip("0123456789abcdef"):
        raise IdentityError(f"{path}: 'cluster_id' must be 32 lowercase hex digits")
    return cid


def save_cluster_id(data_dir: Path, cluster_id: str, *, fsync: bool = True) -> None:
    """Write cluster.json atomically (temp file, fsync, rename, fsync the directory)."""
    _write_json_atomic(data_dir / CLUSTER_FILE, {"cluster_id": cluster_id}, fsync=fsync)


def creates_cluster_id(name: str, initial_cluster: list[str], *, new_cluster: bool) -> bool:
    """Whether this node draws the cluster id when it has none: the founder with the
    lowest member id (one per cluster, known to every founder from --initial-cluster).
    Every other member learns the id from a member's handshake (docs/contracts.md)."""
    if not new_cluster or name not in initial_cluster:
        return False
    return member_id(name) == min(member_id(n) for n in initial_cluster)


# --- the consensus engine ------------------------------------------------------------
# docs/contracts.md "Consensus engine": the engine that wrote a data directory is
# recorded in it at first start; its log, hard state and snapshots mean something
# only to that engine, so a start with the other one is refused.
CONSENSUS_FILE = "consensus.json"


class EngineMismatchError(IdentityError):
    """The data directory was made by the other consensus engine."""


def load_engine(data_dir: Path) -> str | None:
    path = data_dir / CONSENSUS_FILE
    parsed = _read_json_object(path)
    if parsed is None:
        return None
    engine = parsed.get("engine")
    if not isinstance(engine, str) or not engine:
        raise IdentityError(f"{path}: 'engine' must be a non-empty string")
    return engine


def resolve_engine(data_dir: Path, engine: str, *, fsync: bool = True) -> str:
    """Check `engine` (--consensus) against the directory's record, writing the record
    at first start. A directory with state but no record predates the choice: Raft."""
    recorded = load_engine(data_dir)
    if recorded is None and _has_state(data_dir):
        recorded = "raft"
    if recorded is not None and recorded != engine:
        raise EngineMismatchError(
            f"{data_dir} holds the state of a {recorded} node, and this one was started "
            f"with --consensus {engine}: start it with --consensus {recorded} (an engine "
            "cannot read the other's log), or give it an empty data directory"
        )
    if load_engine(data_dir) is None:
        _write_json_atomic(data_dir / CONSENSUS_FILE, {"engine": engine}, fsync=fsync)
    return engine

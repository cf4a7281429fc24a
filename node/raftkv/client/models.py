"""Typed results and request builders of the client (pure: no IO).

Keys and values are bytes in every result; requests take `str` (UTF-8) or
`bytes`. The client asks the server for `encoding=base64` answers, so every
bytes field arrives as `<field>_b64` and decodes losslessly (`_bytes_field`
also accepts the text form, for answers relayed from elsewhere).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from raftkv.client.errors import ServerError
from raftkv.protocol.headers import CREATE_REVISION, LEASE, MOD_REVISION, VERSION
from raftkv.protocol.status import (
    NodeStatus,
    StatusFormatError,
    StatusLeader,
    StatusMember,
    WireModel,
)

_M = TypeVar("_M", bound=WireModel)

Bytes = str | bytes


def to_bytes(value: Bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")


def _bytes_field(obj: dict[str, Any], name: str) -> bytes:
    b64 = obj.get(name + "_b64")
    if b64 is not None:
        return base64.b64decode(b64)
    text = obj.get(name)
    return text.encode("utf-8") if isinstance(text, str) else b""


def bytes_json(name: str, value: bytes) -> dict[str, str]:
    """A request bytes field: text when it is UTF-8, else `<name>_b64`."""
    try:
        return {name: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {name + "_b64": base64.b64encode(value).decode("ascii")}


# --- key-value ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> KeyValue:
        return cls(
            _bytes_field(obj, "key"),
            _bytes_field(obj, "value"),
            int(obj.get("create_revision", 0)),
            int(obj.get("mod_revision", 0)),
            int(obj.get("version", 0)),
            int(obj.get("lease", 0)),
        )

    @classmethod
    def from_headers(cls, key: bytes, value: bytes, headers: Any) -> KeyValue:
        return cls(
            key,
            value,
            int(headers.get(CREATE_REVISION, 0)),
            int(headers.get(MOD_REVISION, 0)),
            int(headers.get(VERSION, 0)),
            int(headers.get(LEASE, 0)),
        )


def _kv_or_none(obj: Any) -> KeyValue | None:
    return KeyValue.from_json(obj) if isinstance(obj, dict) else None


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PutResult:
        return cls(int(obj["revision"]), _kv_or_none(obj.get("prev_kv")))


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """`revision` is None when nothing was deleted (the server answers 404 then)."""

    deleted: int
    revision: int | None = None
    prev_kvs: list[KeyValue] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DeleteResult:
        return cls(
            int(obj.get("deleted", 0)),
            int(obj["revision"]),
            [KeyValue.from_json(kv) for kv in obj.get("prev_kvs") or []],
        )


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    kvs: list[KeyValue]
    count: int
    more: bool = False

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RangeResult:
        return cls(
            int(obj.get("revision", 0)),
            [KeyValue.from_json(kv) for kv in obj["kvs"]],
            int(obj.get("count", 0)),
            bool(obj.get("more", False)),
        )


# --- transactions -------------------------------------------------------------------
CompareTarget = Literal["value", "version", "create_revision", "mod_revision", "lease", "exists"]
CompareOp = Literal["==", "!=", "<", ">"]
COMPARE_TARGETS: tuple[str, ...] = (
    "value",
    "version",
    "create_revision",
    "mod_revision",
    "lease",
    "exists",
)
COMPARE_OPS: tuple[str, ...] = ("==", "!=", "<", ">")


@dataclass(frozen=True, slots=True)
class Compare:
    """`target(key) op value`, e.g. `Compare("a", "version", "==", 0)` (a is absent).

    With `prefix=True` the compare must hold for every key with that prefix."""

    key: Bytes
    target: str
    op: str
    value: Bytes | int | bool
    prefix: bool = False

    def __post_init__(self) -> None:
        if self.target not in COMPARE_TARGETS:
            raise ValueError(f"compare target must be one of {COMPARE_TARGETS}")
        if self.op not in COMPARE_OPS:
            raise ValueError(f"compare op must be one of {COMPARE_OPS}")
        if self.target == "value" and not isinstance(self.value, str | bytes):
            raise ValueError("a value compare takes str or bytes")
        if self.target == "exists" and not isinstance(self.value, bool):
            raise ValueError("an exists compare takes a bool")
        if self.target not in ("value", "exists") and (
            isinstance(self.value, bool) or not isinstance(self.value, int)
        ):
            raise ValueError(f"a {self.target} compare takes an int")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **bytes_json("key", to_bytes(self.key)),
            "target": self.target,
            "op": self.op,
        }
        if self.target == "value":
            assert isinstance(self.value, str | bytes)
            out.update(bytes_json("value", to_bytes(self.value)))
        else:
            out["value"] = self.value
        if self.prefix:
            out["prefix"] = True
        return out


@dataclass(frozen=True, slots=True)
class TxnPut:
    key: Bytes
    value: Bytes
    lease: int = 0
    prev_kv: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op": "put",
            **bytes_json("key", to_bytes(self.key)),
            **bytes_json("value", to_bytes(self.value)),
        }
        if self.lease:
            out["lease"] = self.lease
        if self.prev_kv:
            out["prev_kv"] = True
        return out


@dataclass(frozen=True, slots=True)
class TxnDelete:
    key: Bytes
    prefix: bool = False
    prev_kv: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": "delete", **bytes_json("key", to_bytes(self.key))}
        if self.prefix:
            out["prefix"] = True
        if self.prev_kv:
            out["prev_kv"] = True
        return out


@dataclass(frozen=True, slots=True)
class TxnRange:
    key: Bytes
    prefix: bool = False
    limit: int = 0
    keys_only: bool = False
    count_only: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": "range", **bytes_json("key", to_bytes(self.key))}
        for name in ("prefix", "keys_only", "count_only"):
            if getattr(self, name):
                out[name] = True
        if self.limit:
            out["limit"] = self.limit
        return out


TxnOp = TxnPut | TxnDelete | TxnRange


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """The result of one op of the branch that ran; fields not of its kind are empty."""

    op: str
    kvs: list[KeyValue] = field(default_factory=list)
    count: int = 0
    more: bool = False
    deleted: int = 0
    prev_kv: KeyValue | None = None
    prev_kvs: list[KeyValue] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TxnResponse:
        return cls(
            str(obj.get("op", "")),
            [KeyValue.from_json(kv) for kv in obj.get("kvs") or []],
            int(obj.get("count", 0)),
            bool(obj.get("more", False)),
            int(obj.get("deleted", 0)),
            _kv_or_none(obj.get("prev_kv")),
            [KeyValue.from_json(kv) for kv in obj.get("prev_kvs") or []],
        )


@dataclass(frozen=True, slots=True)
class TxnResult:
    revision: int
    succeeded: bool
    responses: list[TxnResponse]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TxnResult:
        return cls(
            int(obj["revision"]),
            bool(obj["succeeded"]),
            [TxnResponse.from_json(r) for r in obj.get("responses") or []],
        )


def txn_op_from_json(obj: dict[str, Any]) -> TxnOp:
    """The inverse of `TxnPut/TxnDelete/TxnRange.to_json` (for `raftkv txn --file`)."""
    kind = obj.get("op")
    key = _bytes_field(obj, "key")
    if kind == "put":
        return TxnPut(
            key,
            _bytes_field(obj, "value"),
            int(obj.get("lease", 0)),
            bool(obj.get("prev_kv", False)),
        )
    if kind == "delete":
        return TxnDelete(key, bool(obj.get("prefix", False)), bool(obj.get("prev_kv", False)))
    if kind == "range":
        return TxnRange(
            key,
            bool(obj.get("prefix", False)),
            int(obj.get("limit", 0)),
            bool(obj.get("keys_only", False)),
            bool(obj.get("count_only", False)),
        )
    raise ValueError(f"a txn op's 'op' must be put, delete or range, not {kind!r}")


def compare_from_json(obj: dict[str, Any]) -> Compare:
    target = str(obj.get("target", "value"))
    value: Bytes | int | bool = (
        _bytes_field(obj, "value")  # type: ignore[assignment]
        if target == "value"
        else obj.get("value")
    )
    return Compare(
        _bytes_field(obj, "key"),
        target,
        str(obj.get("op", "==")),
        value,
        bool(obj.get("prefix", False)),
    )


# --- leases and locks ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int
    revision: int = 0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Lease:
        return cls(int(obj["id"]), int(obj["ttl"]), int(obj.get("revision", 0)))


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """`remaining` seconds are known on the leader only (None elsewhere)."""

    id: int
    ttl: int
    remaining: float | None
    keys: list[bytes] = field(default_factory=list)
    locks: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LeaseInfo:
        keys = [base64.b64decode(k) for k in obj.get("keys_b64") or []] or [
            _bytes_field(k, "key") if isinstance(k, dict) else str(k).encode()
            for k in obj.get("keys") or []
        ]
        remaining = obj.get("remaining")
        return cls(
            int(obj["id"]),
            int(obj["ttl"]),
            None if remaining is None else float(remaining),
            keys,
            [str(n) for n in obj.get("locks") or []],
        )


@dataclass(frozen=True, slots=True)
class LeaseRevoked:
    id: int
    revision: int
    deleted: int
    locks_released: list[str]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LeaseRevoked:
        return cls(
            int(obj.get("id", 0)),
            int(obj.get("revision", 0)),
            int(obj.get("deleted", 0)),
            [str(n) for n in obj.get("locks_released") or []],
        )


@dataclass(frozen=True, slots=True)
class Lock:
    """A held lock. `token` is the fencing token: pass it to the resource you
    protect, which must reject tokens smaller than the largest it has seen."""

    name: str
    lease: int
    token: int
    revision: int

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Lock:
        return cls(
            str(obj["name"]), int(obj["lease"]), int(obj["token"]), int(obj.get("revision", 0))
        )


@dataclass(frozen=True, slots=True)
class Unlocked:
    name: str
    lease: int
    revision: int
    released: bool
    dequeued: bool

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Unlocked:
        return cls(
            str(obj.get("name", "")),
            int(obj.get("lease", 0)),
            int(obj.get("revision", 0)),
            bool(obj.get("released", False)),
            bool(obj.get("dequeued", False)),
        )


@dataclass(frozen=True, slots=True)
class LockInfo:
    name: str
    holder: int
    token: int
    waiters: list[int]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LockInfo:
        return cls(
            str(obj["name"]),
            int(obj.get("holder") or 0),
            int(obj.get("token") or 0),
            [int(w) for w in obj.get("waiters") or []],
        )


# --- watch --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change (`type` "put" or "delete"; `kv.mod_revision` is its revision), or
    with `progress=True` a keep-alive (`type` "progress", `kv` None)."""

    type: str
    revision: int
    kv: KeyValue | None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> WatchEvent:
        kind = str(obj.get("type", ""))
        if kind == "progress":
            return cls(kind, int(obj.get("revision", 0)), None)
        kv = KeyValue.from_json(obj)
        return cls(kind, kv.mod_revision, kv)


# --- cluster ------------------------------------------------------------------------
# The /v1/status document and its parts are the shared model (raftkv.protocol.status,
# the operator's too): unknown fields are ignored, so a newer node answers this client.
LeaderInfo = StatusLeader
Member = StatusMember  # `role`: voter | learner


class Status(NodeStatus):
    """A node's `/v1/status`, and which endpoint answered it."""

    endpoint: str = ""

    @classmethod
    def from_json(cls, obj: Any, endpoint: str = "") -> Status:
        """Parse an answer; one that does not fit the document is a ServerError."""
        return _parsed(cls, obj, endpoint, endpoint=endpoint)


def member_from_json(obj: Any, endpoint: str = "") -> StatusMember:
    return _parsed(Member, obj, endpoint)


def _parsed(model: type[_M], obj: Any, answered_by: str, **extra: Any) -> _M:
    try:
        return model.parse(obj, **extra)
    except StatusFormatError as e:
        raise ServerError(str(e), code="malformed_answer", endpoint=answered_by) from None


@dataclass(frozen=True, slots=True)
class Members:
    members: list[Member]
    leader: int

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Members:
        return cls(
            [member_from_json(m) for m in obj.get("members") or []], int(obj.get("leader") or 0)
        )


@dataclass(frozen=True, slots=True)
class CheckpointManifest:
    id: str
    index: int
    term: int
    sha256: str
    size: int
    time: str
    members: list[str]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CheckpointManifest:
        return cls(
            str(obj["id"]),
            int(obj["index"]),
            int(obj["term"]),
            str(obj["sha256"]),
            int(obj["size"]),
            str(obj.get("time", "")),
            [str(m) for m in obj.get("members") or []],
            dict(obj),
        )

"""Commands carried in Raft log entries, and the results the state machine answers.

Encoding
========
The data of every NORMAL entry is one msgpack array (bytes as msgpack *bin*,
text as *str*)::

    [1, op, session, *args]

- ``1`` is the format version; any other value is an invalid command.
- ``op`` is the command code (table below).
- ``session`` is ``nil`` or ``[client_id: str, seq: int]``.
- ``args`` are positional; trailing arguments equal to their default are left out.

An empty entry (``b""``, the leader's no-op of its term) changes nothing.

A proposal may carry a request id in front of its command:
``0xC1 || request_id (16 bytes) || command`` (0xC1 is the one byte msgpack never
uses, so no command starts with it). The Multi-Paxos runtime adds one to every
client proposal: it learns a proposal's outcome by comparing the value chosen at
its slot with its own, and two identical commands (two PUTs without a session)
must not compare equal. The machine skips the id (:func:`strip_request_id`):
it changes nothing that is applied, and a replayed log applies the same.
Build entries with the typed constructors below and :func:`encode`; they validate
their input and raise :class:`InvalidCommand` with a clear message. The machine
decodes with :func:`decode`, which validates again: malformed data in a committed
entry yields an ``invalid_command`` error result on every member, never a crash.

Limits that are configuration (``--max-key-bytes``, ``--max-value-bytes``,
``--max-txn-ops``) are the runtime's job before proposing: members may be
configured differently, and the state machine must not be.

Revisions
=========
Like etcd, the store revision of an empty store is **1**; the first write makes
it 2. Each applied command that changes keys or locks increments the revision
exactly once (a whole txn, a whole lease revoke/expiry); a command that changes
nothing (a delete that matches no key, a txn whose ops write nothing, a re-acquire
by the current holder) leaves it alone. Lease grants do not touch the revision
(etcd neither). Per key: ``create_revision`` (revision that created it since its
last deletion), ``mod_revision`` (last write), ``version`` (writes since creation,
1 after creation; a deleted and re-created key starts again at 1), ``lease``
(0 = none). There is no history: reads see the newest state only.

Commands
========
====  ================  =======================================================
op    constructor       arguments
====  ================  =======================================================
1     ``Put``           key, value, lease=0, prev_kv=False
2     ``Delete``        key, range_end=b"", prev_kv=False
3     ``Range``         key, range_end=b"", limit=0, keys_only=False, count_only=False
4     ``Txn``           compares, success, failure
5     ``LeaseGrant``    ttl, id=0 (0: the machine assigns one)
6     ``LeaseRevoke``   id
7     ``LeaseExpire``   ids (proposed by the leader's runtime when deadlines pass)
8     ``LockAcquire``   name, lease
9     ``LockRelease``   name, lease
10    ``Checkpoint``    id
====  ================  =======================================================

``range_end`` follows etcd: ``b""`` means the single key ``key``; ``b"\\0"``
means every key ``>= key``; anything else means ``[key, range_end)`` and must be
greater than ``key``. ``Range.prefix(p)`` / ``Delete.prefix(p)`` build the range
of a prefix (:func:`prefix_end`); ``Range.all()`` is every key.

``Compare(key, target, op, operand, range_end=b"")``: ``target`` is one of
``value`` (bytes operand), ``version``, ``create_revision``, ``mod_revision``,
``lease`` (int operands), ``exists`` (bool operand, ``==``/``!=`` only); ``op``
is one of ``==``, ``!=``, ``<``, ``>``. As in etcd, a compare over a range holds
if it holds for every key in it; on a missing key the numeric targets read 0 and
a ``value`` compare is false. A txn runs ``success`` if every compare holds,
else ``failure``; ops are ``Put``, ``Delete`` and ``Range``, applied in order
(a ``Range`` sees the writes before it), atomically, at one revision. Like etcd,
a branch may not put the same key twice nor put a key that it also deletes.

Results
=======
Every result is a dict and carries ``"revision"``: the store revision after the
command. Byte strings stay ``bytes``; ``results.jsonable`` turns a result into
JSON-ready data (bytes as base64, like etcd's JSON gateway).
A key-value is ``{"key", "value", "create_revision", "mod_revision", "version",
"lease"}`` (see ``results.kv_dict``).

- Put: ``{"revision"}`` + ``"prev_kv": kv | None`` if asked.
- Delete: ``{"revision", "deleted": n}`` + ``"prev_kvs": [kv]`` if asked.
- Range: ``{"revision", "kvs": [kv], "count": n_in_range, "more": bool}``
  (sorted by key; ``more`` when ``limit`` cut it short; ``count_only`` gives no kvs;
  ``keys_only`` gives ``b""`` values).
- Txn: ``{"revision", "succeeded": bool, "responses": [r]}``; each ``r`` is the
  op's own result without ``"revision"`` plus ``"op": "put"|"delete"|"range"``.
- LeaseGrant: ``{"revision", "id", "ttl"}``.
- LeaseRevoke: ``{"revision", "id", "deleted": n_keys, "locks_released": [name]}``.
- LeaseExpire: ``{"revision", "expired": [id], "deleted": n_keys,
  "locks_released": [name]}`` (ids no longer granted are skipped, not an error).
- LockAcquire: ``{"revision", "name", "lease", "acquired": true, "token": t}`` or
  ``{"revision", "name", "lease", "acquired": false, "position": n}`` (1 = next).
  ``token`` is the revision at which the holder got the lock, so tokens strictly
  increase from holder to holder. Re-acquiring with the holder's lease returns the
  same token; with a waiting lease, its current position; neither changes anything.
  Every change of holder, an immediate acquisition included, is also listed in
  ``ApplyResult.lock_grants`` (how the runtime answers a waiting request).
- LockRelease: ``{"revision", "name", "lease", "released": bool, "dequeued": bool}``
  (``released``: the lease held it; ``dequeued``: it was waiting). The next waiter,
  if any, becomes holder in the same command (see ``ApplyResult.lock_grants``).
- Checkpoint: ``{"revision", "checkpoint": id, "index": index}``; the runtime
  writes ``snapshot_bytes()`` at once (``ApplyResult.checkpoint``).
- Errors: ``{"revision", "error": code, "message": text}`` with ``code`` one of
  ``invalid_command``, ``lease_not_found``, ``lease_exists``, ``lock_not_held``,
  ``stale_sequence``. An error changes nothing. (A duplicate may also answer
  ``result_not_retained``: see Sessions.)

For the runtime
===============
``StateMachine.apply`` returns an ``ApplyResult``: ``result`` (above) and the side
effects to act on — ``events`` (watch events: type, key, value, create/mod
revision, version, lease), ``lock_grants`` (answer those waiters),
``lock_waits_cancelled`` (fail those waiters: lease gone or gave up),
``lease_granted`` (start its deadline), ``revoked_leases`` (forget their deadlines), ``checkpoint`` (write one now),
``duplicate`` (a session replay). Local reads, for ReadIndex or serializable
reads: ``get``, ``range``, ``lease_info``, ``leases``, ``lock_info``,
``lock_status``, ``locks``, ``members``, ``stats``. Lease deadlines and
keep-alives live in the leader's runtime: it proposes ``LeaseExpire`` when they
pass and, on becoming leader, starts a full TTL for every lease in ``leases()``.

Sessions
========
With a session ``(client_id, seq)``, the machine keeps the result of the latest
``seq`` per client. The same ``(client_id, seq)`` applied again answers the
recorded result (``ApplyResult.duplicate``) without applying anything; a lower
``seq`` answers ``stale_sequence``. So a client id has one request in flight at a
time (a client with concurrent workers uses one id per worker), and seq grows.
Reads (``Range``) are idempotent and are not recorded. Sessions are evicted
least-recently-applied first beyond the machine's ``session_capacity`` (the same
on every member: it is part of the snapshot). A duplicate ``LockAcquire`` answers
what it answered first; the runtime asks ``StateMachine.lock_status`` for now.

Only small results are kept (``sessions.RESULT_LIMIT``, 2 KiB estimated): a
bigger one is recorded as ``{"revision", "error": "result_not_retained",
"applied": true, "index", "message"}`` (+ ``"succeeded"`` for a txn), and that is
what a duplicate answers: the command was applied (at that index and revision)
and is not applied again; its answer is gone. See ``sessions`` for why that is
safe for exactly-once.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Final

import msgpack

from raftkv.protocol.checkpoints import is_checkpoint_id

FORMAT_VERSION = 1
MAX_INT64 = 2**63 - 1
MAX_LEASE_TTL = 9_000_000_000  # seconds; etcd's MaxLeaseTTL
MAX_CLIENT_ID_CHARS = 256
MAX_SEQ = 2**64 - 1

ALL_KEYS_END = b"\0"  # etcd's range_end for "every key >= key"


class InvalidCommand(ValueError):
    """Input that is not a well-formed command. Raised by the constructors (so the
    runtime answers 400) and by :func:`decode` (so the machine answers an error)."""


# --- field checks (fast: `type(x) is T` also rejects bool where an int is due) ---


def _check_key(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise InvalidCommand(f"{name} must be bytes, got {type(value).__name__}")
    if not value:
        raise InvalidCommand(f"{name} must not be empty")


def _check_bytes(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise InvalidCommand(f"{name} must be bytes, got {type(value).__name__}")


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise InvalidCommand(f"{name} must be a bool, got {type(value).__name__}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int:
        raise InvalidCommand(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidCommand(f"{name} must be in [{low}, {high}], got {value}")


def _check_name(name: str, value: object, max_chars: int | None = None) -> None:
    if type(value) is not str:
        raise InvalidCommand(f"{name} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidCommand(f"{name} must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise InvalidCommand(f"{name} is longer than {max_chars} characters")


def _check_range(key: bytes, range_end: object) -> None:
    if not isinstance(range_end, bytes) or type(range_end) is not bytes:
        raise InvalidCommand(f"range_end must be bytes, got {type(range_end).__name__}")
    if range_end and range_end != ALL_KEYS_END and range_end <= key:
        raise InvalidCommand("range_end must be greater than key (or b'' or b'\\x00')")


def prefix_end(prefix: bytes) -> bytes:
    """The etcd range end of `prefix`: the smallest key greater than every key
    starting with it; b'\\0' (every key) when there is none (b'', b'\\xff...')."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return ALL_KEYS_END
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _prefix_bounds(prefix: bytes) -> tuple[bytes, bytes]:
    _check_bytes("prefix", prefix)
    return (prefix or b"\0"), prefix_end(prefix)


# --- sessions ---------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Session:
    """A client's request identity: the machine applies each (client_id, seq) once."""

    client_id: str
    seq: int

    def __post_init__(self) -> None:
        _check_name("client_id", self.client_id, MAX_CLIENT_ID_CHARS)
        _check_int("seq", self.seq, 0, MAX_SEQ)


# --- commands ------------------------------------------------------------------


class _Command:
    """Shared encoding: positional args in field order, trailing defaults dropped."""

    __slots__ = ()
    OP: ClassVar[int]
    NAME: ClassVar[str]
    _REQUIRED: ClassVar[int]  # number of fields without a default
    _DEFAULTS: ClassVar[tuple[Any, ...]]  # defaults of the optional fields, in order
    _N_FIELDS: ClassVar[int]
    _FIELD_NAMES: ClassVar[tuple[str, ...]]  # cached: dataclasses.fields() is slow per call

    def args(self) -> list[Any]:
        values = [getattr(self, name) for name in self._FIELD_NAMES]
        while len(values) > self._REQUIRED:
            default = self._DEFAULTS[len(values) - 1 - self._REQUIRED]
            last = values[-1]
            if type(last) is not type(default) or last != default:
                break
            values.pop()
        return values

    @classmethod
    def from_args(cls, args: list[Any]) -> Any:
        if not cls._REQUIRED <= len(args) <= cls._N_FIELDS:
            raise InvalidCommand(
                f"{cls.NAME} takes {cls._REQUIRED}..{cls._N_FIELDS} arguments, got {len(args)}"
            )
        return cls(*args)


def _command(op: int, name: str) -> Any:
    """Class decorator: register a command class under its op code."""

    def register(cls: Any) -> Any:
        cls.OP = op
        cls.NAME = name
        declared = fields(cls)
        cls._REQUIRED = sum(1 for f in declared if f.default is MISSING)
        cls._DEFAULTS = tuple(f.default for f in declared[cls._REQUIRED :])
        cls._N_FIELDS = len(declared)
        cls._FIELD_NAMES = tuple(f.name for f in declared)
        COMMANDS[op] = cls
        return cls

    return register


COMMANDS: dict[int, type[Any]] = {}


@_command(1, "put")
@dataclass(slots=True)
class Put(_Command):
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False

    def __post_init__(self) -> None:
        _check_key("key", self.key)
        _check_bytes("value", self.value)
        _check_int("lease", self.lease, 0, MAX_INT64)
        _check_bool("prev_kv", self.prev_kv)


@_command(2, "delete")
@dataclass(slots=True)
class Delete(_Command):
    """Delete `key`, or every key of [key, range_end) (etcd's DeleteRange)."""

    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False

    def __post_init__(self) -> None:
        _check_key("key", self.key)
        _check_range(self.key, self.range_end)
        _check_bool("prev_kv", self.prev_kv)

    @classmethod
    def prefix(cls, prefix: bytes, prev_kv: bool = False) -> Delete:
        key, end = _prefix_bounds(prefix)
        return cls(key, end, prev_kv)


@_command(3, "range")
@dataclass(slots=True)
class Range(_Command):
    """Read `key`, or the keys of [key, range_end) sorted, at most `limit` (0: all)."""

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    keys_only: bool = False
    count_only: bool = False

    def __post_init__(self) -> None:
        _check_key("key", self.key)
        _check_range(self.key, self.range_end)
        _check_int("limit", self.limit, 0, MAX_INT64)
        _check_bool("keys_only", self.keys_only)
        _check_bool("count_only", self.count_only)

    @classmethod
    def prefix(
        cls, prefix: bytes, limit: int = 0, keys_only: bool = False, count_only: bool = False
    ) -> Range:
        key, end = _prefix_bounds(prefix)
        return cls(key, end, limit, keys_only, count_only)

    @classmethod
    def all(cls, limit: int = 0, keys_only: bool = False, count_only: bool = False) -> Range:
        return cls(b"\0", ALL_KEYS_END, limit, keys_only, count_only)


COMPARE_TARGETS = ("value", "version", "create_revision", "mod_revision", "lease", "exists")
COMPARE_OPS = ("==", "!=", "<", ">")
_TARGET_CODES = {name: code for code, name in enumerate(COMPARE_TARGETS)}
_OP_CODES = {name: code for code, name in enumerate(COMPARE_OPS)}


@dataclass(slots=True)
class Compare:
    key: bytes
    target: str
    op: str
    operand: bytes | int | bool
    range_end: bytes = b""

    def __post_init__(self) -> None:
        _check_key("compare key", self.key)
        _check_range(self.key, self.range_end)
        if self.target not in _TARGET_CODES:
            raise InvalidCommand(f"compare target must be one of {COMPARE_TARGETS}")
        if self.op not in _OP_CODES:
            raise InvalidCommand(f"compare op must be one of {COMPARE_OPS}")
        if self.target == "value":
            _check_bytes("value compare operand", self.operand)
        elif self.target == "exists":
            _check_bool("exists compare operand", self.operand)
            if self.op not in ("==", "!="):
                raise InvalidCommand("an exists compare takes == or !=")
        else:
            _check_int(f"{self.target} compare operand", self.operand, 0, MAX_INT64)

    def encoded(self) -> list[Any]:
        out = [_TARGET_CODES[self.target], _OP_CODES[self.op], self.key, self.operand]
        if self.range_end:
            out.append(self.range_end)
        return out

    @classmethod
    def decoded(cls, raw: object) -> Compare:
        if type(raw) is not list or not 4 <= len(raw) <= 5:
            raise InvalidCommand("a compare is [target, op, key, operand, range_end?]")
        target, op = raw[0], raw[1]
        if type(target) is not int or not 0 <= target < len(COMPARE_TARGETS):
            raise InvalidCommand(f"unknown compare target code {target!r}")
        if type(op) is not int or not 0 <= op < len(COMPARE_OPS):
            raise InvalidCommand(f"unknown compare op code {op!r}")
        return cls(raw[2], COMPARE_TARGETS[target], COMPARE_OPS[op], raw[3], *raw[4:])


TxnOp = Put | Delete | Range
_TXN_OP_TYPES = (Put, Delete, Range)


def _in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    return key >= start and (end == ALL_KEYS_END or key < end)


def _check_branch(name: str, ops: object) -> None:
    if type(ops) is not list:
        raise InvalidCommand(f"txn {name} must be a list of ops")
    puts: set[bytes] = set()
    deletes: list[Delete] = []
    for op in ops:
        if type(op) not in _TXN_OP_TYPES:
            raise InvalidCommand(f"txn {name} ops must be Put, Delete or Range")
        if type(op) is Put:
            if op.key in puts:
                raise InvalidCommand(f"txn {name} puts key {op.key!r} twice")
            puts.add(op.key)
        elif type(op) is Delete:
            deletes.append(op)
    for d in deletes:
        for key in puts:
            if _in_range(key, d.key, d.range_end):
                raise InvalidCommand(f"txn {name} both puts and deletes key {key!r}")


@_command(4, "txn")
@dataclass(slots=True)
class Txn(_Command):
    compares: list[Compare]
    success: list[TxnOp]
    failure: list[TxnOp]

    def __post_init__(self) -> None:
        if type(self.compares) is not list or any(type(c) is not Compare for c in self.compares):
            raise InvalidCommand("txn compares must be a list of Compare")
        _check_branch("success", self.success)
        _check_branch("failure", self.failure)

    def args(self) -> list[Any]:
        return [
            [c.encoded() for c in self.compares],
            [[op.OP, *op.args()] for op in self.success],
            [[op.OP, *op.args()] for op in self.failure],
        ]

    @classmethod
    def from_args(cls, args: list[Any]) -> Txn:
        if len(args) != 3:
            raise InvalidCommand("txn takes [compares, success, failure]")
        compares, success, failure = args
        if type(compares) is not list:
            raise InvalidCommand("txn compares must be a list")
        return cls(
            [Compare.decoded(c) for c in compares],
            _decode_txn_ops("success", success),
            _decode_txn_ops("failure", failure),
        )


def _decode_txn_ops(name: str, raw: object) -> list[TxnOp]:
    if type(raw) is not list:
        raise InvalidCommand(f"txn {name} must be a list")
    ops: list[TxnOp] = []
    for item in raw:
        if type(item) is not list or not item:
            raise InvalidCommand(f"a txn op is [op, *args], got {item!r:.40}")
        cls = COMMANDS.get(item[0]) if type(item[0]) is int else None
        if cls not in _TXN_OP_TYPES:
            raise InvalidCommand(f"txn {name} ops must be put, delete or range")
        ops.append(cls.from_args(item[1:]))
    return ops


@_command(5, "lease_grant")
@dataclass(slots=True)
class LeaseGrant(_Command):
    """Grant a lease of `ttl` seconds; `id` 0 lets the machine choose one (the
    entry's index, or the next free id above it)."""

    ttl: int
    id: int = 0

    def __post_init__(self) -> None:
        _check_int("ttl", self.ttl, 1, MAX_LEASE_TTL)
        _check_int("lease id", self.id, 0, MAX_INT64)


@_command(6, "lease_revoke")
@dataclass(slots=True)
class LeaseRevoke(_Command):
    id: int

    def __post_init__(self) -> None:
        _check_int("lease id", self.id, 1, MAX_INT64)


@_command(7, "lease_expire")
@dataclass(slots=True)
class LeaseExpire(_Command):
    """Revoke leases whose deadline passed on the leader. Ids are kept sorted and
    unique, so equal sets of ids encode identically."""

    ids: list[int]

    def __post_init__(self) -> None:
        if type(self.ids) is not list or not self.ids:
            raise InvalidCommand("lease_expire ids must be a non-empty list")
        for lease_id in self.ids:
            _check_int("lease id", lease_id, 1, MAX_INT64)
        self.ids = sorted(set(self.ids))


@_command(8, "lock_acquire")
@dataclass(slots=True)
class LockAcquire(_Command):
    name: str
    lease: int

    def __post_init__(self) -> None:
        _check_name("lock name", self.name)
        _check_int("lease id", self.lease, 1, MAX_INT64)


@_command(9, "lock_release")
@dataclass(slots=True)
class LockRelease(_Command):
    name: str
    lease: int

    def __post_init__(self) -> None:
        _check_name("lock name", self.name)
        _check_int("lease id", self.lease, 1, MAX_INT64)


@_command(10, "checkpoint")
@dataclass(slots=True)
class Checkpoint(_Command):
    """Every member writes its state at this entry as checkpoint `id` (a safe
    directory name: letters, digits, '.', '_', '-', starting with a letter or digit)."""

    id: str

    def __post_init__(self) -> None:
        if not is_checkpoint_id(self.id):  # raftkv.protocol: the one rule
            raise InvalidCommand(
                "checkpoint id must be 1..128 of [A-Za-z0-9._-], starting with a letter or digit"
            )


@_command(11, "member_client_url")
@dataclass(slots=True)
class MemberClientUrl(_Command):
    """A member's client URL, put in the replicated directory (by the member itself
    when it becomes leader): member URLs come only from the replicated log."""

    member: int
    client_url: str

    def __post_init__(self) -> None:
        _check_int("member id", self.member, 1, MAX_INT64)
        if type(self.client_url) is not str or len(self.client_url) > 2048:
            raise InvalidCommand("client_url must be a string of at most 2048 characters")


Command = (
    Put
    | Delete
    | Range
    | Txn
    | LeaseGrant
    | LeaseRevoke
    | LeaseExpire
    | LockAcquire
    | LockRelease
    | Checkpoint
    | MemberClientUrl
)


REQUEST_ID_TAG: Final = 0xC1
REQUEST_ID_BYTES: Final = 16
_REQUEST_ID_HEAD: Final = 1 + REQUEST_ID_BYTES


def with_request_id(data: bytes, request_id: bytes) -> bytes:
    """`data` (a command) under the proposal's `request_id` (see the module doc)."""
    if len(request_id) != REQUEST_ID_BYTES:
        raise InvalidCommand(f"a request id is {REQUEST_ID_BYTES} bytes, not {len(request_id)}")
    return b"\xc1" + request_id + data


def strip_request_id(data: bytes) -> bytes:
    """The command of entry data, without its request id if it has one. Raises
    InvalidCommand if the data has the tag but is too short to hold an id."""
    if not data or data[0] != REQUEST_ID_TAG:
        return data
    if len(data) < _REQUEST_ID_HEAD:
        raise InvalidCommand("entry data is too short for its request id")
    return data[_REQUEST_ID_HEAD:]


def encode(command: Command, session: Session | None = None) -> bytes:
    """The entry data of `command`, optionally under a client session."""
    if type(command) not in COMMANDS.values():
        raise InvalidCommand(f"not a command: {type(command).__name__}")
    head: list[Any] = [
        FORMAT_VERSION,
        command.OP,
        None if session is None else [session.client_id, session.seq],
    ]
    return msgpack.packb(head + command.args(), use_bin_type=True)


# Commands that may add to the state (keys, leases, lock queues): a backend size
# quota refuses them and lets everything else (reads, deletes, revokes, releases,
# checkpoints) through, like etcd under its NOSPACE alarm.
GROWING_OPS = frozenset((Put.OP, Txn.OP, LeaseGrant.OP, LockAcquire.OP))


def op_of(data: bytes) -> int:
    """The op code of entry data without decoding it (0: the no-op or not a
    command). Every command is a msgpack fixarray `[1, op, ...]` (fewer than 16
    items) whose op is a positive fixint, so the op is the third byte."""
    if len(data) < 3 or not 0x93 <= data[0] <= 0x9F or data[1] != FORMAT_VERSION:
        return 0
    return data[2] if data[2] in COMMANDS else 0


def grows_state(command: Command) -> bool:
    """Could applying `command` make the state bigger? (A txn: if either branch puts.)"""
    if type(command) is Txn:
        return any(type(op) is Put for op in (*command.success, *command.failure))
    return type(command).OP in GROWING_OPS


def decode(data: bytes) -> tuple[Command, Session | None]:
    """Parse and validate entry data into (command, session or None); raise
    InvalidCommand for anything malformed."""
    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several types; all mean "not a command"
        raise InvalidCommand(f"entry is not msgpack: {type(exc).__name__}: {exc}") from None
    if type(raw) is not list or len(raw) < 3:
        raise InvalidCommand("entry is not a [version, op, session, ...] array")
    version, op, session_raw = raw[0], raw[1], raw[2]
    if version != FORMAT_VERSION or type(version) is not int:
        raise InvalidCommand(f"unsupported command format version {version!r}")
    cls = COMMANDS.get(op) if type(op) is int else None
    if cls is None:
        raise InvalidCommand(f"unknown command code {op!r}")
    session = None
    if session_raw is not None:
        if type(session_raw) is not list or len(session_raw) != 2:
            raise InvalidCommand("session must be [client_id, seq]")
        session = Session(session_raw[0], session_raw[1])
    try:
        command = cls.from_args(raw[3:])
    except TypeError as exc:  # a positional call that does not fit the fields
        raise InvalidCommand(f"bad {cls.NAME} arguments: {exc}") from None
    return command, session

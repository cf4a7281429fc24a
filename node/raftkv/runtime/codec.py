"""The peer wire format: length-prefixed msgpack frames carrying Raft messages.

A frame is a 4-byte big-endian length followed by one msgpack array whose first
item is the frame kind. Messages are positional arrays and entries are a flat
list `[term, index, type, data, term, index, ...]`, so the hot path builds no
dicts and no per-entry objects beyond the core's own `Entry`.

Why msgpack and not JSON: `python -m raftkv.runtime.codec` measures both on a
typical AppendEntries batch (one message of 64 entries with 256-byte values),
encode = message -> frame bytes, decode = bytes -> Message with Entry objects.
On this project's 2-core machine (CPython 3.11, msgpack 1.2 C extension; the
quietest of several runs, the machine being shared):

    msgpack  encode   25 us   decode   34 us   16.9 KB
    json     encode  259 us   decode  223 us   25.4 KB  (values base64-encoded)

About 10x less CPU per message, a third fewer bytes: JSON has no bytes type,
and base64 costs both CPU and size.

Every frame from a peer is hostile until checked: `decode_*` validate against
the schema below (types, ranges: ids in [1, 2^63), terms and indexes in
[0, 2^63); sizes, known kinds, entry counts, which fields a message type may
carry) and raise `FrameError(reason, ...)` with a reason from the bounded set
`REJECT_REASONS` (the label of `raftkv_peer_frames_rejected_total`). Nothing
that fails here reaches the Raft core.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import msgpack

from raftkv.consensus import ENGINES
from raftkv.raft.types import (
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 << 20
# In HELLO; a peer speaking another version is refused. 3: HELLO and WELCOME carry the
# consensus engine (docs/contracts.md "Peer plane": why a new version, not an optional field).
PROTOCOL_VERSION = 3

# Frame kinds (first item of every frame).
HELLO = 0  # [HELLO, version, cluster_id, from_id, to_id, from_name, engine]: dialer, first frame
MSGS = 1  # [MSGS, sender_commit, [message, ...]]: a batch of Raft messages (both ways)
SNAP_BEGIN = 2  # [SNAP_BEGIN, message, size]: a snapshot stream starts (own connection)
SNAP_CHUNK = 3  # [SNAP_CHUNK, data]
SNAP_END = 4  # [SNAP_END, sha256 hex]
SNAP_ACK = 5  # [SNAP_ACK, ok, reason]: receiver -> sender at the end of a stream
WELCOME = 6  # [WELCOME, cluster_id, id, name, engine]: acceptor's answer to an accepted HELLO
REFUSED = 7  # [REFUSED, reason]: acceptor's answer to a refused HELLO, then it closes
PAXOS_MSGS = 8  # [PAXOS_MSGS, sender_commit, [message, ...]]: the Multi-Paxos engine's
# (runtime/paxoscodec.py); a node expects only its own engine's kind after WELCOME
LAST_KIND = PAXOS_MSGS

# Limits of the schema.
LIMIT_63 = 1 << 63  # terms, indexes, sizes: [0, 2^63); ids: [1, 2^63)
MAX_NAME_CHARS = 253  # a DNS name
CLUSTER_ID_CHARS = 32  # hex of 16 random bytes ("" = not known yet)
MAX_CONTEXT_BYTES = 64  # read-request ids, the campaign-transfer marker
MAX_MSGS_PER_FRAME = 1 << 16
MAX_ENTRIES_PER_MSG = 1 << 14
MAX_SNAPSHOT_MEMBERS = 1 << 12
MAX_CHUNK_BYTES = 8 << 20
MAX_REASON_CHARS = 200
MAX_ENGINE_CHARS = 16  # "raft", "multipaxos"

# Why a frame (or a connection's handshake) was rejected: a bounded label set.
REJECT_REASONS = (
    "too_large",  # a frame over MAX_FRAME_BYTES, or a field over its size limit
    "malformed",  # not msgpack, or not the shape the schema says
    "out_of_range",  # an id, term, index or size outside its range
    "unknown_kind",  # a frame kind or message type that is not on the wire
    "unexpected",  # a valid frame at the wrong moment (MSGS before HELLO, ...)
    "version",  # HELLO of another protocol version
    "wrong_cluster",  # HELLO/WELCOME of another cluster id
    "wrong_consensus",  # HELLO/WELCOME of a peer that runs the other consensus engine
    "not_member",  # a sender that is not a current member (or not the one dialed)
    "removed",  # a member id that was removed from the cluster
    "certificate",  # a TLS certificate that does not name the claimed member
    "wrong_sender",  # a message whose from/to is not what the connection is bound to
    "snapshot",  # a snapshot stream that is not from the leader of the current term
    "too_many_connections",  # over the inbound connection bounds (transport.MAX_INBOUND*)
)

T = TypeVar("T")

# Message types a peer may send in MSGS (SNAP travels in SNAP_BEGIN; SNAP_STATUS
# and UNREACHABLE are local to a node and never on the wire).
_WIRE_TYPES = {
    int(t): t for t in MsgType if t not in (MsgType.SNAP, MsgType.SNAP_STATUS, MsgType.UNREACHABLE)
}
_ENTRY_TYPES = (EntryType.NORMAL, EntryType.CONF_CHANGE)
CONF_CHANGE_TYPES = frozenset(int(t) for t in ConfChangeType)


class FrameError(ValueError):
    """A peer sent bytes that are not a valid frame: drop the connection."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REJECT_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def check_uint(value: object, what: str) -> int:
    """An int in [0, 2^63) (bool is not an int here)."""
    if type(value) is not int:
        raise FrameError("malformed", f"{what} is not an integer")
    if not 0 <= value < LIMIT_63:
        raise FrameError("out_of_range", f"{what} {value} outside [0, 2^63)")
    return value


def check_message_type(mtype: object, wire: Mapping[int, T], snap: T, *, snapshot: bool) -> T:
    """A message's type: one of `wire` (the types a peer may send), or, inside a
    SNAP_BEGIN (`snapshot`), exactly the engine's `snap`."""
    if type(mtype) is not int:
        raise FrameError("malformed", "message type is not an integer")
    if snapshot:
        if mtype != snap:
            raise FrameError("unknown_kind", "SNAP_BEGIN must carry a SNAP message")
        return snap
    found = wire.get(mtype)
    if found is None:
        raise FrameError("unknown_kind", f"message type {mtype} is not on the wire")
    return found


def check_id(value: object, what: str) -> int:
    """A member id: an int in [1, 2^63)."""
    if type(value) is not int:
        raise FrameError("malformed", f"{what} is not an integer")
    if not 0 < value < LIMIT_63:
        raise FrameError("out_of_range", f"{what} {value} outside [1, 2^63)")
    return value


def check_str(value: object, what: str, max_chars: int) -> str:
    if type(value) is not str:
        raise FrameError("malformed", f"{what} is not a string")
    if len(value) > max_chars:
        raise FrameError("too_large", f"{what} longer than {max_chars}")
    return value


def check_cluster_id(value: object) -> str:
    cid = check_str(value, "cluster id", CLUSTER_ID_CHARS)
    if cid and (len(cid) != CLUSTER_ID_CHARS or cid.strip("0123456789abcdef")):
        raise FrameError("malformed", "cluster id is not 32 lowercase hex digits")
    return cid


def check_engine(value: object) -> str:
    """A consensus engine's name: one of ENGINES (checked before the gate compares it)."""
    engine = check_str(value, "consensus engine", MAX_ENGINE_CHARS)
    if engine not in ENGINES:
        raise FrameError("malformed", f"consensus engine {engine!r} is not one of {ENGINES}")
    return engine


def check_fields(payload: list[Any], n: int, what: str) -> list[Any]:
    if len(payload) != n:
        raise FrameError("malformed", f"{what} has {len(payload)} fields, not {n}")
    return payload


def encode_message(m: Message) -> list[Any]:
    flat: list[Any] = []
    for e in m.entries:
        flat += (e.term, e.index, int(e.type), e.data)
    snap = None
    if m.snapshot is not None:
        meta = m.snapshot.meta
        snap = [
            meta.index,
            meta.term,
            sorted(meta.conf_state.voters),
            sorted(meta.conf_state.learners),
        ]
    return [
        int(m.type),
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        m.commit,
        m.reject,
        m.reject_hint,
        m.context,
        flat,
        snap,
    ]


def decode_message(raw: Any, *, snapshot: bool = False) -> Message:
    """One message of a MSGS frame (or, with `snapshot`, the SNAP of a SNAP_BEGIN),
    checked against the schema."""
    if type(raw) is not list or len(raw) != 12:
        raise FrameError("malformed", "a message is a 12-field array")
    (mtype, to, frm, term, log_term, index, commit, reject, reject_hint, context, flat, snap) = raw
    t = check_message_type(mtype, _WIRE_TYPES, MsgType.SNAP, snapshot=snapshot)
    check_id(to, "to")
    check_id(frm, "from")
    if check_uint(term, "term") == 0:
        raise FrameError("out_of_range", "term 0 (every message carries its sender's term)")
    check_uint(log_term, "log term")
    check_uint(index, "index")
    check_uint(commit, "commit")
    check_uint(reject_hint, "reject hint")
    if type(reject) is not bool:
        raise FrameError("malformed", "reject is not a bool")
    if type(context) is not bytes:
        raise FrameError("malformed", "context is not bytes")
    if len(context) > MAX_CONTEXT_BYTES:
        raise FrameError("too_large", "context")
    if type(flat) is not list or len(flat) % 4:
        raise FrameError("malformed", "entries are not a flat list of 4-tuples")
    entries: list[Entry] = []
    if flat:
        if t != MsgType.APP:
            raise FrameError("malformed", f"a {t.name} message carries entries")
        entries = _decode_entries(flat, index, log_term, term)
    snap_obj = None
    if snap is not None:
        if t != MsgType.SNAP:
            raise FrameError("malformed", f"a {t.name} message carries a snapshot")
        snap_obj = _decode_snapshot_meta(snap, term)
    elif t == MsgType.SNAP:
        raise FrameError("malformed", "a SNAP message without its snapshot")
    return Message(
        t, to, frm, term, log_term, index, entries, commit, reject, reject_hint, context, snap_obj
    )


_INT_ONLY = {int}
_BYTES_ONLY = {bytes}


def _decode_entries(flat: list[Any], prev_index: int, prev_term: int, term: int) -> list[Entry]:
    """Entries follow `prev_index` one by one, with terms that never decrease,
    from the previous entry's up to the message's own. (Checked column by column:
    this is the hot path of every follower.)"""
    n = len(flat) // 4
    if n > MAX_ENTRIES_PER_MSG:
        raise FrameError("too_large", f"{n} entries in one message")
    terms, indexes, types, datas = flat[0::4], flat[1::4], flat[2::4], flat[3::4]
    if (
        set(map(type, terms)) != _INT_ONLY
        or set(map(type, indexes)) != _INT_ONLY
        or set(map(type, types)) != _INT_ONLY
    ):
        raise FrameError("malformed", "entry term, index and type are integers")
    if set(map(type, datas)) != _BYTES_ONLY:
        raise FrameError("malformed", "entry data is not bytes")
    if (
        indexes != list(range(prev_index + 1, prev_index + 1 + n))
        or prev_index + n >= LIMIT_63
        or terms[0] < prev_term
        or terms[-1] > term
        or terms != sorted(terms)
    ):
        raise FrameError("out_of_range", "entries are not consecutive in index and term")
    kinds = set(types)
    if not kinds <= {0, 1}:
        raise FrameError("unknown_kind", f"entry type {max(kinds - {0, 1})}")
    if 1 in kinds:
        for e_type, data in zip(types, datas, strict=True):
            if e_type == 1 and (len(data) < 9 or data[0] not in CONF_CHANGE_TYPES):
                raise FrameError("malformed", "a conf change entry that does not decode")
    normal, conf = EntryType.NORMAL, EntryType.CONF_CHANGE
    return [
        Entry(t, i, conf if ty else normal, d)
        for t, i, ty, d in zip(terms, indexes, types, datas, strict=True)
    ]


def _decode_snapshot_meta(snap: Any, term: int) -> Snapshot:
    if type(snap) is not list or len(snap) != 4:
        raise FrameError("malformed", "snapshot meta is a 4-field array")
    s_index, s_term, voters, learners = snap
    check_uint(s_index, "snapshot index")
    if check_uint(s_term, "snapshot term") > term:
        raise FrameError("out_of_range", "snapshot term beyond the message's term")
    sets = []
    for what, ids in (("voters", voters), ("learners", learners)):
        if type(ids) is not list:
            raise FrameError("malformed", f"snapshot {what} is not a list")
        if len(ids) > MAX_SNAPSHOT_MEMBERS:
            raise FrameError("too_large", f"snapshot {what}")
        sets.append(frozenset(check_id(v, f"snapshot {what[:-1]}") for v in ids))
    if sets[0] & sets[1]:
        raise FrameError("malformed", "a snapshot member is both voter and learner")
    return Snapshot(SnapshotMeta(s_index, s_term, ConfState(sets[0], sets[1])))


def decode_msgs(payload: list[Any]) -> tuple[int, list[Message]]:
    """[MSGS, sender_commit, [message, ...]] -> (sender commit, messages)."""
    _, sender_commit, raw = check_fields(payload, 3, "MSGS")
    check_uint(sender_commit, "sender commit")
    if type(raw) is not list:
        raise FrameError("malformed", "MSGS carries no message list")
    if len(raw) > MAX_MSGS_PER_FRAME:
        raise FrameError("too_large", f"{len(raw)} messages in one frame")
    return sender_commit, [decode_message(r) for r in raw]


class Hello:
    __slots__ = ("cluster_id", "frm", "to", "name", "engine")

    def __init__(self, cluster_id: str, frm: int, to: int, name: str, engine: str) -> None:
        self.cluster_id, self.frm, self.to, self.name = cluster_id, frm, to, name
        self.engine = engine


def pack_hello(cluster_id: str, frm: int, to: int, name: str, engine: str) -> bytes:
    return pack_frame([HELLO, PROTOCOL_VERSION, cluster_id, frm, to, name, engine])


def decode_hello(payload: list[Any]) -> Hello:
    if payload[0] != HELLO:
        raise FrameError("unexpected", "the first frame must be HELLO")
    if len(payload) >= 2 and payload[1] != PROTOCOL_VERSION:
        raise FrameError("version", f"protocol version {payload[1]!r}")
    _, _, cluster_id, frm, to, name, engine = check_fields(payload, 7, "HELLO")
    return Hello(
        check_cluster_id(cluster_id),
        check_id(frm, "from"),
        check_id(to, "to"),
        check_str(name, "name", MAX_NAME_CHARS),
        check_engine(engine),
    )


def pack_welcome(cluster_id: str, member: int, name: str, engine: str) -> bytes:
    return pack_frame([WELCOME, cluster_id, member, name, engine])


def decode_welcome(payload: list[Any]) -> tuple[str, int, str, str]:
    """-> (cluster id, member id, name, engine) of the member that admitted our HELLO."""
    if payload[0] == REFUSED and len(payload) == 2 and type(payload[1]) is str:
        reason = payload[1] if payload[1] in REJECT_REASONS else "unexpected"
        raise FrameError(reason, "the peer refused our HELLO")
    if payload[0] != WELCOME:
        raise FrameError("unexpected", "the first answer must be WELCOME")
    _, cluster_id, member, name, engine = check_fields(payload, 5, "WELCOME")
    return (
        check_cluster_id(cluster_id),
        check_id(member, "id"),
        check_str(name, "name", MAX_NAME_CHARS),
        check_engine(engine),
    )


def decode_snap_begin(payload: list[Any]) -> tuple[Message, int]:
    _, raw, size = check_fields(payload, 3, "SNAP_BEGIN")
    return decode_message(raw, snapshot=True), check_uint(size, "snapshot size")


def decode_snap_chunk(payload: list[Any]) -> bytes:
    _, data = check_fields(payload, 2, "SNAP_CHUNK")
    if type(data) is not bytes:
        raise FrameError("malformed", "SNAP_CHUNK data is not bytes")
    if len(data) > MAX_CHUNK_BYTES:
        raise FrameError("too_large", "SNAP_CHUNK")
    return data


def decode_snap_end(payload: list[Any]) -> str:
    _, digest = check_fields(payload, 2, "SNAP_END")
    return check_str(digest, "sha256", 64)


def decode_snap_ack(payload: list[Any]) -> tuple[bool, str]:
    if payload[0] != SNAP_ACK:
        raise FrameError("unexpected", "expected SNAP_ACK")
    _, ok, reason = check_fields(payload, 3, "SNAP_ACK")
    if type(ok) is not bool:
        raise FrameError("malformed", "SNAP_ACK ok is not a bool")
    return ok, check_str(reason, "reason", MAX_REASON_CHARS)


def pack_frame(payload: list[Any]) -> bytes:
    body: bytes = msgpack.packb(payload, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def unpack_payload(body: bytes) -> list[Any]:
    try:
        payload = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types; all mean "garbage"
        raise FrameError("malformed", f"frame is not msgpack: {type(exc).__name__}") from None
    if type(payload) is not list or not payload or type(payload[0]) is not int:
        raise FrameError("malformed", "frame is not a [kind, ...] array")
    if not HELLO <= payload[0] <= LAST_KIND:
        raise FrameError("unknown_kind", f"frame kind {payload[0]}")
    return payload


def pack_messages(sender_commit: int, messages: list[Message]) -> bytes:
    return pack_frame([MSGS, sender_commit, [encode_message(m) for m in messages]])


class Wire(Protocol):
    """One engine's messages on the peer transport: its frame kind for a batch, and
    the encoders and checked decoders of its messages. The framing, the handshake
    and the snapshot stream are shared."""

    MSGS: int
    ENGINE: str  # the engine's name in HELLO and WELCOME (one of ENGINES)

    def encode_message(self, m: Any) -> list[Any]: ...
    def pack_messages(self, sender_commit: int, messages: list[Any]) -> bytes: ...
    def decode_msgs(self, payload: list[Any]) -> tuple[int, list[Any]]: ...
    def decode_snap_begin(self, payload: list[Any]) -> tuple[Any, int]: ...


class RaftWire:
    """The Raft engine's messages on the peer transport (`Wire`)."""

    MSGS = MSGS
    ENGINE = "raft"
    encode_message = staticmethod(encode_message)
    pack_messages = staticmethod(pack_messages)
    decode_msgs = staticmethod(decode_msgs)
    decode_snap_begin = staticmethod(decode_snap_begin)


def _bench() -> None:  # pragma: no cover - a measurement, printed for humans
    import base64
    import json
    import timeit

    entries = [Entry(7, 1000 + i, EntryType.NORMAL, bytes(range(256))) for i in range(64)]
    msg = Message(
        MsgType.APP, to=2, frm=1, term=7, log_term=7, index=999, entries=entries, commit=990
    )

    def enc_json() -> bytes:
        return json.dumps(
            {
                "type": int(msg.type),
                "to": msg.to,
                "from": msg.frm,
                "term": msg.term,
                "log_term": msg.log_term,
                "index": msg.index,
                "commit": msg.commit,
                "entries": [
                    {
                        "term": e.term,
                        "index": e.index,
                        "type": int(e.type),
                        "data": base64.b64encode(e.data).decode(),
                    }
                    for e in msg.entries
                ],
            }
        ).encode()

    def dec_json(raw: bytes) -> Message:
        d = json.loads(raw)
        return Message(
            MsgType(d["type"]),
            d["to"],
            d["from"],
            d["term"],
            d["log_term"],
            d["index"],
            [
                Entry(e["term"], e["index"], EntryType(e["type"]), base64.b64decode(e["data"]))
                for e in d["entries"]
            ],
            d["commit"],
        )

    frame = pack_messages(990, [msg])
    js = enc_json()
    n = 2000
    results = {
        "msgpack encode": timeit.timeit(lambda: pack_messages(990, [msg]), number=n) / n,
        "msgpack decode": timeit.timeit(lambda: decode_msgs(unpack_payload(frame[4:])), number=n)
        / n,
        "json encode": timeit.timeit(enc_json, number=n) / n,
        "json decode": timeit.timeit(lambda: dec_json(js), number=n) / n,
    }
    for name, secs in results.items():
        print(f"{name:16s} {secs * 1e6:8.1f} us")
    print(f"{'msgpack size':16s} {len(frame):8d} B")
    print(f"{'json size':16s} {len(js):8d} B")


if __name__ == "__main__":  # pragma: no cover
    _bench()

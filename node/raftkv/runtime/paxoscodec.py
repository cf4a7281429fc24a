"""The peer wire format of the Multi-Paxos engine: its messages in the frames of
`runtime.codec` (HELLO/WELCOME, SNAP_* and the length-prefixed msgpack framing are
shared), under their own frame kind `PAXOS_MSGS`, so a Raft node that hears a
Paxos peer refuses the frame ("unexpected") instead of misreading it.

A message is a positional array
`[type, to, from, ballot_round, ballot_node, index, last, commit, context,
entries, snapshot, conf]`; entries are a flat list
`[ballot_round, ballot_node, index, type, data, ...]` (a ballot is up to 128
bits: msgpack carries 64, so its two halves travel apart).

Every frame is hostile until checked, with the same rules as Raft's (ids in
[1, 2^63), rounds, indexes and commits in [0, 2^63), bounded sizes and counts,
known types only) and Paxos's own: which message types may carry entries, a
snapshot or a membership; slot numbers strictly increasing (consecutive where
the protocol sends runs); entry ballots no higher than the message's where the
sender proposes them (ACCEPT); a conf-change value that decodes. A bad frame
raises `codec.FrameError` and changes no state; the transport drops the
connection.
"""

from __future__ import annotations

from typing import Any, Final

from raftkv.paxos.types import Message, MsgType, ballot, ballot_node, ballot_round
from raftkv.raft.types import ConfState, Entry, EntryType, Snapshot, SnapshotMeta
from raftkv.runtime import codec
from raftkv.runtime.codec import FrameError, check_id, check_message_type, check_uint

PAXOS_MSGS: Final = codec.PAXOS_MSGS
_FIELDS = 12

_WIRE_TYPES = {int(t): t for t in MsgType if t != MsgType.SNAP}
# Which message types may carry entries, and whether their slots must be consecutive.
_ENTRIES_CONSECUTIVE = {MsgType.ACCEPT: True, MsgType.CATCHUP_RESP: True, MsgType.PROMISE: False}
# Messages that need no ballot (pulls, forwarded requests, learnt values).
_BALLOT_OPTIONAL = frozenset(
    {
        MsgType.CATCHUP,
        MsgType.CATCHUP_RESP,
        MsgType.SNAP,
        MsgType.READ_INDEX,
        MsgType.TRANSFER_LEADER,
        MsgType.NACK,
    }
)


def _ballot(round_: object, node: object, what: str) -> int:
    r = check_uint(round_, f"{what} round")
    n = check_uint(node, f"{what} node")
    if n == 0 and r != 0:
        raise FrameError("out_of_range", f"{what} of round {r} without a node")
    return ballot(r, n)


def encode_message(m: Message) -> list[Any]:
    flat: list[Any] = []
    for e in m.entries:
        flat += (ballot_round(e.term), ballot_node(e.term), e.index, int(e.type), e.data)
    snap = None
    if m.snapshot is not None:
        meta = m.snapshot.meta
        snap = [
            meta.index,
            meta.term,
            sorted(meta.conf_state.voters),
            sorted(meta.conf_state.learners),
        ]
    conf = None
    if m.conf is not None:
        conf = [sorted(m.conf.voters), sorted(m.conf.learners)]
    return [
        int(m.type),
        m.to,
        m.frm,
        ballot_round(m.ballot),
        ballot_node(m.ballot),
        m.index,
        m.last,
        m.commit,
        m.context,
        flat,
        snap,
        conf,
    ]


def decode_message(raw: Any, *, snapshot: bool = False) -> Message:
    """One message of a PAXOS_MSGS frame (with `snapshot`: the SNAP of a SNAP_BEGIN)."""
    if type(raw) is not list or len(raw) != _FIELDS:
        raise FrameError("malformed", f"a message is a {_FIELDS}-field array")
    (mtype, to, frm, b_round, b_node, index, last, commit, context, flat, snap, conf) = raw
    t = check_message_type(mtype, _WIRE_TYPES, MsgType.SNAP, snapshot=snapshot)
    check_id(to, "to")
    check_id(frm, "from")
    b = _ballot(b_round, b_node, "ballot")
    if b == 0 and t not in _BALLOT_OPTIONAL:
        raise FrameError("out_of_range", f"a {t.name} message without a ballot")
    check_uint(index, "index")
    check_uint(last, "last")
    check_uint(commit, "commit")
    if type(context) is not bytes:
        raise FrameError("malformed", "context is not bytes")
    if len(context) > codec.MAX_CONTEXT_BYTES:
        raise FrameError("too_large", "context")
    if t == MsgType.ACCEPTED and not 0 < index <= last:
        raise FrameError("out_of_range", "ACCEPTED names no slots")
    if type(flat) is not list or len(flat) % 5:
        raise FrameError("malformed", "entries are not a flat list of 5-tuples")
    entries: list[Entry] = []
    if flat:
        consecutive = _ENTRIES_CONSECUTIVE.get(t)
        if consecutive is None:
            raise FrameError("malformed", f"a {t.name} message carries entries")
        entries = _decode_entries(flat, consecutive, b if t == MsgType.ACCEPT else None)
        if t == MsgType.CATCHUP_RESP and entries[0].index != index:
            raise FrameError("out_of_range", "CATCHUP_RESP entries do not start at its index")
        if t == MsgType.PROMISE and entries[0].index < index:
            raise FrameError("out_of_range", "PROMISE entries below the slot it answers")
    snap_obj = None
    if snap is not None:
        if t != MsgType.SNAP:
            raise FrameError("malformed", f"a {t.name} message carries a snapshot")
        snap_obj = _decode_snapshot_meta(snap)
    elif t == MsgType.SNAP:
        raise FrameError("malformed", "a SNAP message without its snapshot")
    conf_obj = None
    if conf is not None:
        if t != MsgType.PROMISE:
            raise FrameError("malformed", f"a {t.name} message carries a membership")
        conf_obj = _decode_conf(conf, "membership")
    return Message(t, to, frm, b, index, last, entries, commit, context, snap_obj, conf_obj)


def _decode_entries(flat: list[Any], consecutive: bool, at_most: int | None) -> list[Entry]:
    n = len(flat) // 5
    if n > codec.MAX_ENTRIES_PER_MSG:
        raise FrameError("too_large", f"{n} entries in one message")
    entries: list[Entry] = []
    previous = 0
    for i in range(0, len(flat), 5):
        r, node, index, e_type, data = flat[i : i + 5]
        b = _ballot(r, node, "entry ballot")
        if at_most is not None and b > at_most:
            raise FrameError("out_of_range", "an entry ballot above the message's")
        s = check_uint(index, "slot")
        if s == 0 or s <= previous or (consecutive and previous and s != previous + 1):
            raise FrameError("out_of_range", "slots are not in order")
        previous = s
        if type(e_type) is not int:
            raise FrameError("malformed", "entry type is not an integer")
        if e_type not in (0, 1):
            raise FrameError("unknown_kind", f"entry type {e_type}")
        if type(data) is not bytes:
            raise FrameError("malformed", "entry data is not bytes")
        if e_type == 1 and (len(data) < 9 or data[0] not in codec.CONF_CHANGE_TYPES):
            raise FrameError("malformed", "a conf change entry that does not decode")
        entries.append(Entry(b, s, EntryType.CONF_CHANGE if e_type else EntryType.NORMAL, data))
    return entries


def _decode_conf(conf: Any, what: str) -> ConfState:
    if type(conf) is not list or len(conf) != 2:
        raise FrameError("malformed", f"{what} is a [voters, learners] array")
    sets = []
    for name, ids in (("voters", conf[0]), ("learners", conf[1])):
        if type(ids) is not list:
            raise FrameError("malformed", f"{what} {name} is not a list")
        if len(ids) > codec.MAX_SNAPSHOT_MEMBERS:
            raise FrameError("too_large", f"{what} {name}")
        sets.append(frozenset(check_id(v, f"{what} {name[:-1]}") for v in ids))
    if sets[0] & sets[1]:
        raise FrameError("malformed", f"a {what} member is both voter and learner")
    return ConfState(sets[0], sets[1])


def _decode_snapshot_meta(snap: Any) -> Snapshot:
    if type(snap) is not list or len(snap) != 4:
        raise FrameError("malformed", "snapshot meta is a 4-field array")
    s_index, s_term, voters, learners = snap
    check_uint(s_index, "snapshot index")
    check_uint(s_term, "snapshot term")
    return Snapshot(SnapshotMeta(s_index, s_term, _decode_conf([voters, learners], "snapshot")))


def decode_msgs(payload: list[Any]) -> tuple[int, list[Message]]:
    """[PAXOS_MSGS, sender_commit, [message, ...]] -> (sender commit, messages)."""
    _, sender_commit, raw = codec.check_fields(payload, 3, "PAXOS_MSGS")
    check_uint(sender_commit, "sender commit")
    if type(raw) is not list:
        raise FrameError("malformed", "PAXOS_MSGS carries no message list")
    if len(raw) > codec.MAX_MSGS_PER_FRAME:
        raise FrameError("too_large", f"{len(raw)} messages in one frame")
    return sender_commit, [decode_message(r) for r in raw]


def pack_messages(sender_commit: int, messages: list[Message]) -> bytes:
    return codec.pack_frame([PAXOS_MSGS, sender_commit, [encode_message(m) for m in messages]])


def decode_snap_begin(payload: list[Any]) -> tuple[Message, int]:
    _, raw, size = codec.check_fields(payload, 3, "SNAP_BEGIN")
    return decode_message(raw, snapshot=True), check_uint(size, "snapshot size")


class PaxosWire:
    """The Multi-Paxos engine's messages on the peer transport (`codec.Wire`)."""

    MSGS = PAXOS_MSGS
    ENGINE = "multipaxos"
    encode_message = staticmethod(encode_message)
    pack_messages = staticmethod(pack_messages)
    decode_msgs = staticmethod(decode_msgs)
    decode_snap_begin = staticmethod(decode_snap_begin)

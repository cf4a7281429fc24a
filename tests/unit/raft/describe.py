"""One-line text forms of the core's data, for transcripts (etcd-io/raft style):
`1->2 MsgApp Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "foo"]`."""

from __future__ import annotations

import json
from collections.abc import Iterable

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MsgType,
    Ready,
    SnapshotMeta,
)

MSG_NAMES = {
    MsgType.APP: "MsgApp",
    MsgType.APP_RESP: "MsgAppResp",
    MsgType.VOTE: "MsgVote",
    MsgType.VOTE_RESP: "MsgVoteResp",
    MsgType.PRE_VOTE: "MsgPreVote",
    MsgType.PRE_VOTE_RESP: "MsgPreVoteResp",
    MsgType.HEARTBEAT: "MsgHeartbeat",
    MsgType.HEARTBEAT_RESP: "MsgHeartbeatResp",
    MsgType.SNAP: "MsgSnap",
    MsgType.SNAP_STATUS: "MsgSnapStatus",
    MsgType.UNREACHABLE: "MsgUnreachable",
    MsgType.TIMEOUT_NOW: "MsgTimeoutNow",
    MsgType.READ_INDEX: "MsgReadIndex",
    MsgType.READ_INDEX_RESP: "MsgReadIndexResp",
    MsgType.TRANSFER_LEADER: "MsgTransferLeader",
}
MSG_BY_NAME = {v: k for k, v in MSG_NAMES.items()}
CONF_CHANGE_NAMES = {
    ConfChangeType.ADD_LEARNER: "add-learner",
    ConfChangeType.PROMOTE: "promote",
    ConfChangeType.REMOVE: "remove",
    ConfChangeType.ADD_VOTER: "add-voter",
}
CONF_CHANGE_BY_NAME = {v: k for k, v in CONF_CHANGE_NAMES.items()}


def ids(xs: Iterable[int]) -> str:
    return "(" + ",".join(str(x) for x in sorted(xs)) + ")"


def fmt_conf(cs: ConfState) -> str:
    return f"voters={ids(cs.voters)} learners={ids(cs.learners)}"


def fmt_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        cc = ConfChange.decode(e.data)
        return f"{e.term}/{e.index} EntryConfChange {CONF_CHANGE_NAMES[cc.type]} {cc.node_id}"
    return f"{e.term}/{e.index} EntryNormal {json.dumps(e.data.decode('utf-8', 'replace'))}"


def fmt_snapshot(meta: SnapshotMeta) -> str:
    return f"Index:{meta.index} Term:{meta.term} {fmt_conf(meta.conf_state)}"


def fmt_msg(m: Message) -> str:
    out = [f"{m.frm}->{m.to} {MSG_NAMES[m.type]} Term:{m.term}"]
    if m.type == MsgType.APP_RESP and m.reject:
        out.append(f"Log:{m.index} Rejected (Hint: {m.reject_hint}/{m.log_term})")
    else:
        if m.type in (MsgType.APP, MsgType.VOTE, MsgType.PRE_VOTE):
            out.append(f"Log:{m.log_term}/{m.index}")
        elif m.type in (MsgType.APP_RESP, MsgType.READ_INDEX_RESP):
            out.append(f"Log:{m.index}")
        elif m.type == MsgType.TRANSFER_LEADER:
            out.append(f"To:{m.index}")
        if m.reject:
            out.append("Rejected")
    if m.type in (MsgType.APP, MsgType.HEARTBEAT):
        out.append(f"Commit:{m.commit}")
    if m.entries:
        out.append("Entries:[" + ", ".join(fmt_entry(e) for e in m.entries) + "]")
    if m.context:
        out.append(f"Context:{m.context.decode('utf-8', 'replace')}")
    if m.snapshot is not None:
        out.append(f"Snapshot:[{fmt_snapshot(m.snapshot.meta)}]")
    return " ".join(out)


def fmt_ready(rd: Ready) -> list[str]:
    out = [f"Ready MustSync={str(rd.must_sync()).lower()}:"]
    if rd.soft_state is not None:
        out.append(f"Lead:{rd.soft_state.leader} State:{rd.soft_state.role}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        out.append(f"HardState Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}")
    if rd.snapshot is not None:
        out.append(f"Snapshot {fmt_snapshot(rd.snapshot.meta)}")
    for title, items in (
        ("Entries:", [fmt_entry(e) for e in rd.entries]),
        ("Messages:", [fmt_msg(m) for m in rd.messages]),
        ("CommittedEntries:", [fmt_entry(e) for e in rd.committed_entries]),
        ("ReadStates:", [f"Index:{r.index} Context:{r.context.decode()}" for r in rd.read_states]),
    ):
        if items:
            out.append(title)
            out.extend(items)
    return out

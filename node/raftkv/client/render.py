"""How CLI results look: human text by default, JSON with `-o json` (pure).

JSON output uses the API's bytes convention: a key or value is `"key": text`
when it is UTF-8, else `"key_b64": base64`. Human output escapes bytes that are
not UTF-8 (`\\xff`).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from raftkv.client.models import (
    CheckpointManifest,
    KeyValue,
    LeaseInfo,
    LockInfo,
    Member,
    Status,
    TxnResponse,
    TxnResult,
    WatchEvent,
)


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _bytes_json(name: str, value: bytes) -> dict[str, str]:
    try:
        return {name: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {name + "_b64": base64.b64encode(value).decode("ascii")}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


# --- JSON shapes --------------------------------------------------------------------
def kv_json(kv: KeyValue) -> dict[str, Any]:
    return {
        **_bytes_json("key", kv.key),
        **_bytes_json("value", kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


def txn_response_json(r: TxnResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"op": r.op}
    if r.op == "range":
        out.update(kvs=[kv_json(kv) for kv in r.kvs], count=r.count, more=r.more)
    elif r.op == "delete":
        out["deleted"] = r.deleted
        if r.prev_kvs:
            out["prev_kvs"] = [kv_json(kv) for kv in r.prev_kvs]
    elif r.prev_kv is not None:
        out["prev_kv"] = kv_json(r.prev_kv)
    return out


def txn_json(result: TxnResult) -> dict[str, Any]:
    return {
        "revision": result.revision,
        "succeeded": result.succeeded,
        "responses": [txn_response_json(r) for r in result.responses],
    }


def event_json(ev: WatchEvent) -> dict[str, Any]:
    if ev.kv is None:
        return {"type": ev.type, "revision": ev.revision}
    return {"type": ev.type, **kv_json(ev.kv)}


def lease_json(info: LeaseInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"id": info.id, "ttl": info.ttl, "remaining": info.remaining}
    if info.keys or info.locks:
        out["keys"] = [_bytes_json("key", k) for k in info.keys]
        out["locks"] = list(info.locks)
    return out


def lock_json(info: LockInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "holder": info.holder,
        "token": info.token,
        "waiters": list(info.waiters),
    }


def member_json(m: Member) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "peer_url": m.peer_url,
        "client_url": m.client_url,
        "role": m.role,
        "match_index": m.match_index,
    }


def status_json(st: Status) -> dict[str, Any]:
    leader = (
        None
        if st.leader is None
        else {"id": st.leader.id, "name": st.leader.name, "client_url": st.leader.client_url}
    )
    return {
        "endpoint": st.endpoint,
        "name": st.name,
        "id": st.id,
        "role": st.role,
        "term": st.term,
        "leader": leader,
        "commit_index": st.commit_index,
        "applied_index": st.applied_index,
        "last_index": st.last_index,
        "ready": st.ready,
        "revision": st.revision,
        "members": [member_json(m) for m in st.members],
    }


def manifest_json(m: CheckpointManifest) -> dict[str, Any]:
    return m.raw or {
        "id": m.id,
        "index": m.index,
        "term": m.term,
        "sha256": m.sha256,
        "size": m.size,
        "time": m.time,
        "members": m.members,
    }


# --- human text ---------------------------------------------------------------------
def kv_line(kv: KeyValue, keys_only: bool = False) -> str:
    if keys_only:
        return text(kv.key)
    return f"{text(kv.key)}\t{text(kv.value)}"


def txn_lines(result: TxnResult) -> list[str]:
    lines = ["SUCCESS" if result.succeeded else "FAILURE"]
    for r in result.responses:
        if r.op == "put":
            lines.append("OK")
        elif r.op == "delete":
            lines.append(f"deleted {r.deleted}")
        else:
            lines.extend(kv_line(kv) for kv in r.kvs)
    lines.append(f"revision {result.revision}")
    return lines


def event_line(ev: WatchEvent) -> str:
    if ev.kv is None:
        return f"PROGRESS revision={ev.revision}"
    if ev.type == "delete":
        return f"DELETE {text(ev.kv.key)} revision={ev.revision}"
    return f"PUT {text(ev.kv.key)} {text(ev.kv.value)} revision={ev.revision}"


def table(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"

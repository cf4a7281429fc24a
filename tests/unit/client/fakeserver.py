"""A small fake of the raftkv HTTP API (aiohttp on 127.0.0.1) for client unit tests.

It keeps just enough state to check what the client does: a kv map with
revisions and (client_id, seq) dedup on the leader, leader/follower roles
(followers answer writes with 307 when asked, else forward in-process), status,
scripted watch streams and checkpoints. Faults are one-shot rules consulted
before each request: answer a 503, or apply and then drop the connection so the
answer is lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    node: str


@dataclass
class Fault:
    """On the next request matching `match`: `kind` is "503" (answer `code` with
    `retry_after`), "drop_after_apply" (serve it, then cut the connection),
    "drop" (cut the connection before doing anything) or "answer" (answer 200 with
    `body`, whatever it is)."""

    match: Callable[[web.Request], bool]
    kind: str
    code: str = "no_leader"
    retry_after: str | None = "1"
    times: int = 1
    body: Any = None


@dataclass
class FakeState:
    """State shared by the nodes of one fake cluster (the "replicated" part)."""

    kv: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    revision: int = 1
    sessions: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    applied: int = 0  # writes applied (duplicates not counted)
    checkpoints: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    term: int = 2


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(
    status: int, code: str, message: str = "", retry_after: str | None = None
) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return _json({"error": code, "message": message or code}, status, headers)


def _kv_json(key: bytes, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "key_b64": base64.b64encode(key).decode(),
        "value_b64": base64.b64encode(rec["value"]).decode(),
        "create_revision": rec["create"],
        "mod_revision": rec["mod"],
        "version": rec["version"],
        "lease": 0,
    }


class FakeNode:
    def __init__(self, name: str, state: FakeState, node_id: int) -> None:
        self.name = name
        self.id = node_id
        self.state = state
        self.cluster: FakeCluster | None = None
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.watch_streams: list[list[dict[str, Any] | str]] = []  # one per connection
        self.watch_revision = 1
        self.runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v1/status", self.status)
        app.router.add_route("*", "/v1/kv/{key:.*}", self.kv)
        app.router.add_get("/v1/watch", self.watch)
        app.router.add_post("/v1/checkpoints", self.checkpoint_create)
        app.router.add_get("/v1/checkpoints/{id}", self.checkpoint_get)
        app.router.add_get("/v1/checkpoints/{id}/data", self.checkpoint_data)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def is_leader(self) -> bool:
        return self.cluster is not None and self.cluster.leader is self

    # --- plumbing -------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.seen.append(
            Seen(
                request.method, request.path, dict(request.query), dict(request.headers), self.name
            )
        )
        for fault in list(self.faults):
            if fault.match(request):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                if fault.kind == "503":
                    return _error(503, fault.code, "injected", fault.retry_after)
                if fault.kind == "drop":
                    _drop(request)
                    return web.Response()
                if fault.kind == "answer":
                    return _json(fault.body)
                response = await handler(request)
                _drop(request)
                return response
        return await handler(request)

    def writes(self, method: str = "PUT") -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith("/v1/kv/")]

    # --- API --------------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        assert self.cluster is not None
        leader = self.cluster.leader
        return _json(
            {
                "name": self.name,
                "id": self.id,
                "role": "leader" if self.is_leader else "follower",
                "term": self.state.term,
                "leader": None
                if leader is None
                else {"id": leader.id, "name": leader.name, "client_url": leader.url},
                "commit_index": 10,
                "applied_index": 10,
                "last_index": 10,
                "ready": True,
                "revision": self.state.revision,
                "members": [
                    {
                        "id": n.id,
                        "name": n.name,
                        "peer_url": "x:1",
                        "client_url": n.url,
                        "role": "voter",
                        "match_index": None,
                    }
                    for n in self.cluster.nodes
                ],
            }
        )

    async def kv(self, request: web.Request) -> web.StreamResponse:
        key = unquote_to_bytes(request.raw_path.split("?", 1)[0][len("/v1/kv/") :])
        st = self.state
        if request.method == "GET":
            if request.query.get("prefix"):
                kvs = [_kv_json(k, r) for k, r in sorted(st.kv.items()) if k.startswith(key)]
                return _json(
                    {"revision": st.revision, "kvs": kvs, "count": len(kvs), "more": False}
                )
            rec = st.kv.get(key)
            if rec is None:
                return _error(404, "key_not_found")
            return web.Response(
                body=rec["value"],
                headers={
                    "X-Raftkv-Create-Revision": str(rec["create"]),
                    "X-Raftkv-Mod-Revision": str(rec["mod"]),
                    "X-Raftkv-Version": str(rec["version"]),
                    "X-Raftkv-Lease": "0",
                    "X-Raftkv-Revision": str(st.revision),
                },
            )
        if not self.is_leader:
            assert self.cluster is not None
            leader = self.cluster.leader
            if leader is None:
                return _error(503, "no_leader", retry_after="1")
            if request.query.get("redirect"):
                return web.Response(status=307, headers={"Location": leader.url + request.path_qs})
            return await leader.kv(request)  # "forwarding"
        if request.method == "PUT":
            value = await request.read()
            return _json(self._session_apply(request, lambda: self._put(key, value)))
        if request.method == "DELETE":
            result = self._session_apply(request, lambda: self._delete(key))
            if result["deleted"] == 0:
                return _error(404, "key_not_found")
            return _json(result)
        return _error(405, "method_not_allowed")

    def _session_apply(
        self, request: web.Request, apply: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        cid = request.headers.get("X-Raftkv-Client-Id")
        seq = request.headers.get("X-Raftkv-Seq")
        if cid is not None and seq is not None:
            last = self.state.sessions.get(cid)
            if last is not None and last[0] == int(seq):
                return last[1]
            result = apply()
            self.state.sessions[cid] = (int(seq), result)
            return result
        return apply()

    def _put(self, key: bytes, value: bytes) -> dict[str, Any]:
        st = self.state
        st.revision += 1
        st.applied += 1
        old = st.kv.get(key)
        st.kv[key] = {
            "value": value,
            "create": old["create"] if old else st.revision,
            "mod": st.revision,
            "version": (old["version"] if old else 0) + 1,
        }
        return {"revision": st.revision}

    def _delete(self, key: bytes) -> dict[str, Any]:
        st = self.state
        if key not in st.kv:
            return {"revision": st.revision, "deleted": 0}
        st.revision += 1
        st.applied += 1
        del st.kv[key]
        return {"revision": st.revision, "deleted": 1}

    async def watch(self, request: web.Request) -> web.StreamResponse:
        if not self.watch_streams:
            return _error(503, "not_ready", retry_after="0")
        lines = self.watch_streams.pop(0)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/x-ndjson",
                "X-Raftkv-Revision": str(self.watch_revision),
            }
        )
        await response.prepare(request)
        for line in lines:
            if line == "DROP":
                _drop(request)
                return response
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        return response

    async def checkpoint_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        cid = body["id"]
        data = f"state of {cid}".encode()
        manifest = {
            "id": cid,
            "index": 7,
            "term": 2,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "time": "2024-01-01T00:00:00Z",
            "members": ["a", "b"],
        }
        self.state.checkpoints.setdefault(cid, (manifest, data))
        return _json(self.state.checkpoints[cid][0])

    async def checkpoint_get(self, request: web.Request) -> web.Response:
        found = self.state.checkpoints.get(request.match_info["id"])
        if found is None:
            return _error(404, "checkpoint_not_found")
        return _json(found[0])

    async def checkpoint_data(self, request: web.Request) -> web.Response:
        found = self.state.checkpoints.get(request.match_info["id"])
        if found is None:
            return _error(404, "checkpoint_not_found")
        return web.Response(body=found[1], content_type="application/octet-stream")


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


class FakeCluster:
    def __init__(self, count: int = 2) -> None:
        self.state = FakeState()
        self.nodes = [FakeNode(f"n{i + 1}", self.state, 100 + i) for i in range(count)]
        for node in self.nodes:
            node.cluster = self
        self.leader: FakeNode | None = self.nodes[-1]

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def add_checkpoint(
        self, cid: str, data: bytes, *, sha256: str | None = None, size: int | None = None
    ) -> dict[str, Any]:
        manifest = {
            "id": cid,
            "index": 9,
            "term": 2,
            "sha256": sha256 or hashlib.sha256(data).hexdigest(),
            "size": len(data) if size is None else size,
            "time": "2024-01-01T00:00:00Z",
            "members": [n.name for n in self.nodes],
        }
        self.state.checkpoints[cid] = (manifest, data)
        return manifest

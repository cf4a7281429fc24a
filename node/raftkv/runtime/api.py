"""The client HTTP API (aiohttp). Reference: docs/api.md and docs/openapi.yaml.

Handlers are thin: parse and validate the request, build an fsm command, hand
it to the node, map the result. Writes need the leader: on a follower they are
forwarded to the leader over a keep-alive session (or answered with a 307 when
the client asks `?redirect=1`). Reads are linearizable (ReadIndex) unless
`?consistency=serializable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import aiohttp
import aiohttp.abc
from aiohttp import web

from raftkv.fsm import (
    ApplyResult,
    Checkpoint,
    Compare,
    Delete,
    InvalidCommand,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    LockRelease,
    Put,
    Range,
    Session,
    Txn,
    encode,
    prefix_end,
)
from raftkv.fsm.commands import ALL_KEYS_END
from raftkv.raft import NONE, ConfChange, ConfChangeType, NotLeader, ProposalDropped, StateRole
from raftkv.runtime import errors
from raftkv.runtime.errors import ApiError, bad_request, conflict, not_found, unavailable
from raftkv.runtime.identity import member_id
from raftkv.runtime.jsonbytes import encoding_of, get_bytes, to_json
from raftkv.runtime.limits import LimitExceeded, parse_json
from raftkv.runtime.metrics import CONTENT_TYPE
from raftkv.runtime.node import (
    PROMOTE_LAG_ENTRIES,
    NodeFailed,
    NodeStopped,
    OutcomeUnknown,
    ProposalLost,
    RaftNode,
    WaitInterrupted,
    member_context,
)
from raftkv.runtime.watch import Compacted

log = logging.getLogger("raftkv.api")

FORWARDED = "X-Raftkv-Forwarded"
CLIENT_ID = "X-Raftkv-Client-Id"
SEQ = "X-Raftkv-Seq"
MAX_WAIT_SECONDS = 300.0
WATCH_PROGRESS_SECONDS = 10.0
DEFAULT_LOCK_TIMEOUT = 30.0

# fsm result error codes -> HTTP status
_RESULT_STATUS = {
    "invalid_command": 400,
    "lease_not_found": 404,
    "lease_exists": 409,
    "lock_not_held": 409,
    "stale_sequence": 409,
    "result_not_retained": 409,  # a retry of an applied command whose answer was big
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KV_ROUTE = "/v1/kv/{key}"  # the route label of the single-key handlers


class RequestLike(Protocol):
    """What the parameter helpers read: aiohttp's Request, or fasthttp's parsed one."""

    @property
    def query(self) -> Mapping[str, str]: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class _Forward(Exception):
    """This node cannot serve the write: hand the request to the leader."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


def error_parts(exc: ApiError) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, JSON body) of an error answer."""
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return headers, {"error": exc.code, "message": exc.message}


def error_response(exc: ApiError) -> web.Response:
    headers, body = error_parts(exc)
    return json_response(body, exc.status, headers)


def wait_interrupted() -> ApiError:
    return unavailable("wait_interrupted", "the node is shutting down: the wait was cut "
                       "short; what the request proposed may have applied (a lock acquire "
                       "stays queued for its lease); retry on another member")


def proposal_error(exc: BaseException) -> ApiError | None:
    """The answer to a proposal whose future failed with `exc` (None: not one of ours)."""
    if isinstance(exc, TimeoutError):
        return unavailable("timeout", "the write did not commit in time; its outcome is "
                           "unknown (retry with the same session headers)")
    if isinstance(exc, NotLeader):
        return unavailable("not_leader", "leadership changed; retry")
    if isinstance(exc, ProposalLost):  # certainly not applied
        return unavailable("proposal_lost", str(exc))
    if isinstance(exc, OutcomeUnknown):
        return unavailable("outcome_unknown", str(exc))
    if isinstance(exc, ProposalDropped):
        return unavailable("proposal_dropped", str(exc))
    if isinstance(exc, LimitExceeded):
        return limit_error(exc)
    if isinstance(exc, WaitInterrupted):  # before NodeStopped: it may have applied
        return wait_interrupted()
    if isinstance(exc, NodeFailed):  # before NodeStopped: the outcome is unknown here
        return unavailable("node_failed", str(exc))
    if isinstance(exc, NodeStopped):
        return unavailable("shutting_down", "the node is shutting down")
    return None


def limit_error(exc: LimitExceeded) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def result_of(res: ApplyResult) -> dict[str, Any]:
    """The applied command's result; its error, if any, as an ApiError."""
    result = res.result
    code = result.get("error")
    if code is not None:
        # result_not_retained: the command WAS applied, at this revision.
        headers = ({"X-Raftkv-Revision": str(result.get("revision"))}
                   if code == "result_not_retained" else None)
        raise ApiError(_RESULT_STATUS.get(code, 400), code, result.get("message", code),
                       headers=headers)
    return result


def path_key(target: str | bytes) -> bytes:
    """The key of `/v1/kv/{key}` from the raw request target, %-decoded to raw bytes
    (`%FF` is the byte 0xFF). Origin-form `/v1/kv/k?q`, or absolute-form
    `http://host/v1/kv/k`, whose path part counts (RFC 9112 3.2.2). Both HTTP paths
    (aiohttp's handlers, runtime/fasthttp.py) take the key from here."""
    raw = target.encode("utf-8", "surrogateescape") if isinstance(target, str) else target
    query = raw.find(b"?")
    path = raw if query < 0 else raw[:query]
    if path.startswith(b"/v1/kv/") and b"#" not in path:  # the usual case, first
        return unquote_to_bytes(path[7:])
    if b"#" in path:
        raise bad_request("a request target has no fragment; send '#' in a key as %23",
                          "invalid_target")
    if not path.startswith(b"/"):
        _, sep, rest = path.partition(b"://")
        slash = rest.find(b"/")
        path = rest[slash:] if sep and slash > 0 else b""
    if not path.startswith(b"/v1/kv/"):
        raise bad_request("the request target is not /v1/kv/{key}", "invalid_target")
    return unquote_to_bytes(path[len(b"/v1/kv/"):])


def _flag(request: RequestLike, name: str) -> bool:
    value = request.query.get(name)
    if value is None:
        return False
    if value.lower() in ("", "1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise bad_request(f"query parameter {name!r} must be a boolean (1/0/true/false)")


def _int_param(request: RequestLike, name: str, default: int, low: int = 0,
               high: int = 2**63 - 1) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {name!r} must be an integer") from None
    if not low <= value <= high:
        raise bad_request(f"query parameter {name!r} must be in [{low}, {high}]")
    return value


def _float_param(request: RequestLike, name: str, default: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"query parameter {name!r} must be a number of seconds") from None
    if not 0 <= value <= high or value != value:
        raise bad_request(f"query parameter {name!r} must be in [0, {high}]")
    return value


def _json_int(obj: dict[str, Any], name: str, default: int | None = None, low: int = 0,
              high: int = 2**63 - 1) -> int:
    value = obj.get(name, default)
    if value is None:
        raise bad_request(f"missing {name!r}")
    if type(value) is not int:
        raise bad_request(f"{name!r} must be an integer")
    if not low <= value <= high:
        raise bad_request(f"{name!r} must be in [{low}, {high}]")
    return value


def _json_bool(obj: dict[str, Any], name: str) -> bool:
    value = obj.get(name, False)
    if type(value) is not bool:
        raise bad_request(f"{name!r} must be true or false")
    return value


class ClientApi:
    def __init__(self, node: RaftNode) -> None:
        self.node = node
        self.cfg = node.cfg
        self.metrics = node.metrics
        self.session: aiohttp.ClientSession | None = None
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    # ======================================================================
    # App wiring
    # ======================================================================
    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_request_bytes,
                              middlewares=[self._middleware])
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        r.add_get("/metrics", self.metrics_handler)
        r.add_get("/v1/status", self.get_status)
        r.add_get("/v1/kv/{key:.*}", self.kv_get)
        r.add_put("/v1/kv/{key:.*}", self._leader(self.kv_put))
        r.add_delete("/v1/kv/{key:.*}", self._leader(self.kv_delete))
        r.add_post("/v1/txn", self._leader(self.txn))
        r.add_get("/v1/leases", self.lease_list)
        r.add_post("/v1/leases", self._leader(self.lease_grant))
        r.add_get("/v1/leases/{id}", self.lease_get)
        r.add_post("/v1/leases/{id}/keepalive", self._leader(self.lease_keepalive))
        r.add_delete("/v1/leases/{id}", self._leader(self.lease_revoke))
        r.add_get("/v1/locks", self.lock_list)
        r.add_get("/v1/locks/{name}", self.lock_get)
        r.add_post("/v1/locks/{name}", self._leader(self.lock_acquire))
        r.add_delete("/v1/locks/{name}", self._leader(self.lock_release))
        r.add_get("/v1/watch", self.watch)
        r.add_get("/v1/members", self.members_list)
        r.add_post("/v1/members", self._leader(self.member_add))
        r.add_post("/v1/members/{id}/promote", self._leader(self.member_promote))
        r.add_delete("/v1/members/{id}", self._leader(self.member_remove))
        r.add_post("/v1/leader/transfer", self._leader(self.leader_transfer))
        r.add_get("/v1/checkpoints", self.checkpoint_list)
        r.add_post("/v1/checkpoints", self._leader(self.checkpoint_create))
        r.add_get("/v1/checkpoints/{id}", self.checkpoint_get)
        r.add_get("/v1/checkpoints/{id}/data", self.checkpoint_data)
        app.on_startup.append(self._open_session)
        app.on_cleanup.append(self._close_session)
        return app

    async def _open_session(self, app: web.Application) -> None:
        self.session = forwarding_session(self.cfg.resolve)

    async def _close_session(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = _route_name(request)
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc)
        except LimitExceeded as exc:  # JSON depth, watch caps (proposals: proposal_error)
            self.metrics.limit_refusals.labels(exc.limit).inc()
            response = error_response(limit_error(exc))
        except web.HTTPRequestEntityTooLarge:
            response = error_response(ApiError(
                413, "request_too_large",
                f"request body exceeds --max-request-bytes ({self.cfg.max_request_bytes})"))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            response = error_response(ApiError(exc.status, code, exc.reason))
        except NodeStopped as exc:  # NodeFailed too: node_failed (outcome unknown)
            response = error_response(proposal_error(exc) or unavailable(
                "shutting_down", "the node is shutting down"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = error_response(ApiError(500, "internal", "internal error; see the node log"))
        key = (route, request.method, response.status)
        children = self._http_children.get(key)
        if children is None:  # labels() costs a lock and a dict walk: once per key
            children = self._http_children[key] = (
                self.metrics.http_requests.labels(route, request.method, str(response.status)),
                self.metrics.http_duration.labels(route))
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        return response

    def _leader(self, handler: Handler) -> Handler:
        """Run `handler` here if this node leads, else forward or redirect to the leader."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            if self.node.core.role == StateRole.LEADER:
                try:
                    return await handler(request)
                except _Forward:
                    pass  # lost leadership before anything was proposed: forward after all
            return await self._to_leader(request)

        return wrapped

    async def _to_leader(self, request: web.Request) -> web.StreamResponse:
        node = self.node
        url = node.leader_client_url() or await node.leader_client_url_within(
            2 * node.cfg.election_timeout)
        leader = node.core.leader
        if leader == NONE or leader == node.id or url is None:
            raise errors.no_leader()
        if request.headers.get(FORWARDED):
            # Forwarded once already: the cluster moved on; let the client retry.
            raise unavailable("not_leader", f"not the leader; leader is {leader} at {url}")
        target = url.rstrip("/") + request.path_qs
        if _flag(request, "redirect"):
            raise ApiError(307, "redirect", f"the leader is at {url}",
                           headers={"Location": target})
        return await self._forward(request, target)

    async def _forward(self, request: web.Request, target: str) -> web.Response:
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower().startswith("x-raftkv-") or k.lower() == "content-type"}
        headers[FORWARDED] = self.cfg.name
        wait = _float_param(request, "timeout", 0, MAX_WAIT_SECONDS)
        relay = self._relay(request.method, target, body, headers, self.cfg.request_timeout + wait)
        if not wait:
            return await relay
        # A request that may wait at the leader (a queued lock acquire) must not hold up
        # this node's shutdown: it ends with 503 and the client retries elsewhere
        # (acquiring is idempotent per lease).
        relaying = asyncio.ensure_future(relay)
        stopping = asyncio.ensure_future(self.node.long_polls_ended.wait())
        try:
            await asyncio.wait((relaying, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not relaying.done():
                relaying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relaying
        if relaying.cancelled():
            raise wait_interrupted()
        return relaying.result()

    async def _relay(self, method: str, target: str, body: bytes, headers: dict[str, str],
                     budget: float) -> web.Response:
        assert self.session is not None
        try:
            async with self.session.request(
                    method, target, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=budget + 5)) as resp:
                payload = await resp.read()
                relay = {k: v for k, v in resp.headers.items()
                         if k.lower().startswith("x-raftkv-") or k.lower() in (
                             "retry-after", "location")}
                return web.Response(body=payload, status=resp.status, headers=relay,
                                    content_type=resp.content_type)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise unavailable("leader_unreachable",
                              f"forwarding to the leader failed: {exc!r}") from None

    # ======================================================================
    # Proposals and reads
    # ======================================================================
    def _session(self, request: RequestLike) -> Session | None:
        client_id = request.headers.get(CLIENT_ID)
        seq = request.headers.get(SEQ)
        if client_id is None and seq is None:
            return None
        if client_id is None or seq is None:
            raise bad_request(f"{CLIENT_ID} and {SEQ} go together")
        try:
            client_id.encode("utf-8")  # undecodable header bytes arrive as surrogates
            return Session(client_id, int(seq))
        except (ValueError, InvalidCommand) as exc:
            raise bad_request(f"bad session headers: {exc}") from None

    async def _submit(self, request: web.Request, command: Any, *,
                      with_session: bool = True) -> dict[str, Any]:
        """Propose and wait for the applied result; map result errors to statuses.
        `with_session=False` proposes without the request's session headers: for a
        follow-up command of the same request, which would otherwise reuse the
        request's (client id, seq) and be answered as a duplicate of it."""
        data = encode(command, self._session(request) if with_session else None)
        return result_of(await self._propose_bytes(data))

    def check_command_size(self, data: bytes) -> None:
        if len(data) > self.cfg.max_request_bytes + 4096:
            raise ApiError(413, "request_too_large", "the command exceeds --max-request-bytes")

    async def _propose_bytes(self, data: bytes) -> ApplyResult:
        self.check_command_size(data)
        try:
            fut = self.node.propose(data)
        except NotLeader:
            raise _Forward() from None
        try:
            return await fut  # the node fails it after --request-timeout
        except Exception as exc:
            error = proposal_error(exc)
            if error is None:
                raise
            raise error from None

    def read_needs_barrier(self, request: RequestLike) -> bool:
        """Does this read wait for a ReadIndex round (else it is served right away)?"""
        consistency = request.query.get("consistency", "linearizable")
        if consistency == "serializable":
            return False
        if consistency != "linearizable":
            raise bad_request("consistency must be linearizable or serializable")
        # --unsafe-local-reads: an UNSAFE test switch, no ReadIndex round.
        return not self.cfg.unsafe_local_reads

    async def _read_barrier(self, request: web.Request) -> None:
        if not self.read_needs_barrier(request):
            return
        try:
            fut = self.node.read_barrier()
        except NotLeader:
            raise errors.no_leader() from None
        try:
            await fut  # the node fails it after --request-timeout
        except NotLeader:
            raise errors.no_leader() from None
        except TimeoutError:
            raise unavailable("timeout", "no read index from the leader in time") from None

    async def _json_body(self, request: web.Request, *, optional: bool = False
                         ) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            if optional:
                return {}
            raise bad_request("a JSON object body is required")
        try:
            body = parse_json(raw, self.cfg.max_json_depth)  # LimitExceeded: too deep
        except (ValueError, UnicodeDecodeError):
            raise bad_request("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        return body

    def check_key(self, key: bytes) -> None:
        self._check_key(key)

    def _check_key(self, key: bytes) -> None:
        if not key:
            raise bad_request("the key must not be empty", "empty_key")
        if len(key) > self.cfg.max_key_bytes:
            raise ApiError(413, "key_too_large",
                           f"key of {len(key)} bytes exceeds --max-key-bytes "
                           f"({self.cfg.max_key_bytes})")

    def _check_value(self, value: bytes) -> None:
        if len(value) > self.cfg.max_value_bytes:
            raise ApiError(413, "value_too_large",
                           f"value of {len(value)} bytes exceeds --max-value-bytes "
                           f"({self.cfg.max_value_bytes})")

    # ======================================================================
    # Health, status, metrics
    # ======================================================================
    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"ok": True, "name": self.cfg.name})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.node.is_ready():
            return json_response({"ready": True})
        raise unavailable("not_ready", "not a member with a known leader, or not caught up")

    async def metrics_handler(self, request: web.Request) -> web.Response:
        self.node.update_slow_metrics()
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def get_status(self, request: web.Request) -> web.Response:
        wait = _float_param(request, "wait", 0.0, MAX_WAIT_SECONDS)
        if wait > 0:
            leader = request.query.get("leader")
            term = request.query.get("term")
            try:
                leader_id = int(leader) if leader not in (None, "") else None
                term_n = int(term) if term not in (None, "") else None
            except ValueError:
                raise bad_request("leader and term must be integers") from None
            await self.node.wait_status_change(leader_id, term_n, wait)
        return json_response(self.node.status())

    # ======================================================================
    # KV
    # ======================================================================
    def _path_key(self, request: web.Request) -> bytes:
        return path_key(request.raw_path)

    def single_get_answer(self, key: bytes) -> tuple[bytes, dict[str, str]]:
        """Body and headers of `GET /v1/kv/{key}` once the read may be served."""
        fsm = self.node.fsm
        kv = fsm.get(key)
        if kv is None:
            raise not_found(f"key {key!r} not found", "key_not_found")
        return kv.value, {
            "X-Raftkv-Create-Revision": str(kv.create_revision),
            "X-Raftkv-Mod-Revision": str(kv.mod_revision),
            "X-Raftkv-Version": str(kv.version),
            "X-Raftkv-Lease": str(kv.lease),
            "X-Raftkv-Revision": str(fsm.revision),
        }

    def plain_put(self, request: RequestLike, key: bytes, value: bytes) -> tuple[bytes, str]:
        """Check a `PUT /v1/kv/{key}` without conditions: its encoded command and the
        encoding of its answer (everything is checked before anything is proposed)."""
        self._check_key(key)
        self._check_value(value)
        put = Put(key, value, _int_param(request, "lease", 0), _flag(request, "prev_kv"))
        encoding = encoding_of(request.query)
        data = encode(put, self._session(request))
        self.check_command_size(data)
        return data, encoding

    async def kv_get(self, request: web.Request) -> web.Response:
        key = self._path_key(request)
        prefix = _flag(request, "prefix")
        encoding = encoding_of(request.query)
        if not prefix or len(key) > self.cfg.max_key_bytes:
            self._check_key(key)
        limit = _int_param(request, "limit", 0)
        keys_only = _flag(request, "keys_only")
        count_only = _flag(request, "count_only")
        await self._read_barrier(request)
        fsm = self.node.fsm
        if not prefix:
            value, headers = self.single_get_answer(key)
            return web.Response(body=value, content_type="application/octet-stream",
                                headers=headers)
        query = Range.prefix(key, limit=limit, keys_only=keys_only, count_only=count_only)
        result = fsm.range(query)
        return json_response(to_json(result, encoding),
                             headers={"X-Raftkv-Revision": str(result["revision"])})

    async def kv_put(self, request: web.Request) -> web.Response:
        key = self._path_key(request)
        self._check_key(key)
        value = await request.read()
        self._check_value(value)
        put = Put(key, value, _int_param(request, "lease", 0), _flag(request, "prev_kv"))
        compares = self._cas_compares(request, key)
        if not compares:
            data, encoding = self.plain_put(request, key, value)  # the fast path's checks
            result = result_of(await self._propose_bytes(data))
            return json_response(to_json(result, encoding))
        encoding_of(request.query)  # checked before anything is proposed
        result = await self._submit(request, Txn(compares, [put], [Range(key)]))
        return self._cas_answer(request, result, key)

    async def kv_delete(self, request: web.Request) -> web.Response:
        key = self._path_key(request)
        prefix = _flag(request, "prefix")
        if not prefix or len(key) > self.cfg.max_key_bytes:
            self._check_key(key)
        prev_kv = _flag(request, "prev_kv")
        delete = Delete.prefix(key, prev_kv) if prefix else Delete(key, b"", prev_kv)
        compares = [] if prefix else self._cas_compares(request, key)
        if compares:
            result = await self._submit(request, Txn(compares, [delete], [Range(key)]))
            return self._cas_answer(request, result, key)
        result = await self._submit(request, delete)
        if not prefix and result.get("deleted", 0) == 0:
            raise not_found(f"key {key!r} not found", "key_not_found")
        return json_response(to_json(result, encoding_of(request.query)))

    def _cas_compares(self, request: web.Request, key: bytes) -> list[Compare]:
        compares = []
        q = request.query
        if "if_mod_revision" in q:
            compares.append(Compare(key, "mod_revision", "==", _int_param(
                request, "if_mod_revision", 0)))
        if "if_version" in q:
            compares.append(Compare(key, "version", "==", _int_param(request, "if_version", 0)))
        if "if_exists" in q:
            compares.append(Compare(key, "exists", "==", _flag(request, "if_exists")))
        if "if_value" in q:
            compares.append(Compare(key, "value", "==", get_bytes(dict(q), "if_value")))
        return compares

    def _cas_answer(self, request: web.Request, result: dict[str, Any], key: bytes
                    ) -> web.Response:
        if result["succeeded"]:
            inner = result["responses"][0]
            inner.pop("op", None)
            return json_response(to_json({"revision": result["revision"], **inner},
                                         encoding_of(request.query)))
        current = result["responses"][0].get("kvs") or []
        detail = to_json(current[0], "utf8") if current else None
        body = {"error": "compare_failed",
                "message": f"the condition on key {key!r} does not hold",
                "revision": result["revision"], "current": detail}
        return json_response(body, 409)

    # ======================================================================
    # Txn
    # ======================================================================
    async def txn(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        for field in body:
            if field not in ("compare", "success", "failure"):
                raise bad_request(f"unknown txn field {field!r}")
        compares_raw = body.get("compare", [])
        success_raw = body.get("success", [])
        failure_raw = body.get("failure", [])
        for name, value in (("compare", compares_raw), ("success", success_raw),
                            ("failure", failure_raw)):
            if not isinstance(value, list):
                raise bad_request(f"txn {name!r} must be a list")
        total = len(compares_raw) + len(success_raw) + len(failure_raw)
        if total > self.cfg.max_txn_ops:
            raise bad_request(f"txn has {total} compares and ops; --max-txn-ops is "
                              f"{self.cfg.max_txn_ops}", "too_many_ops")
        try:
            command = Txn([self._parse_compare(c) for c in compares_raw],
                          [self._parse_op(o) for o in success_raw],
                          [self._parse_op(o) for o in failure_raw])
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_txn") from None
        result = await self._submit(request, command)
        return json_response(to_json(result, encoding_of(request.query)))

    def _range_of(self, obj: dict[str, Any], key: bytes) -> bytes:
        if _json_bool(obj, "prefix"):
            if "range_end" in obj or "range_end_b64" in obj:
                raise bad_request("give prefix or range_end, not both")
            return prefix_end(key)
        if obj.get("all"):
            return ALL_KEYS_END
        return get_bytes(obj, "range_end", required=False)

    def _parse_compare(self, obj: Any) -> Compare:
        if not isinstance(obj, dict):
            raise bad_request("a compare must be an object")
        key = get_bytes(obj, "key")
        self._check_key(key)
        target = obj.get("target", "value")
        op = obj.get("op", "==")
        if not isinstance(target, str) or not isinstance(op, str):
            raise bad_request("compare target and op must be strings")
        operand: bytes | int | bool
        if target == "value":
            operand = get_bytes(obj, "value")
        else:
            given: Any = obj.get("value")
            if target == "exists" and type(given) is not bool:
                raise bad_request("an exists compare takes a boolean value")
            if target != "exists" and type(given) is not int:
                raise bad_request(f"a {target} compare takes an integer value")
            operand = given
        range_end = self._range_of(obj, key)
        try:
            return Compare(key, target, op, operand, range_end)
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_txn") from None

    def _parse_op(self, obj: Any) -> Put | Delete | Range:
        if not isinstance(obj, dict):
            raise bad_request("a txn op must be an object")
        kind = obj.get("op")
        key = get_bytes(obj, "key")
        if kind == "put":
            self._check_key(key)
            value = get_bytes(obj, "value")
            self._check_value(value)
            return Put(key, value, _json_int(obj, "lease", 0), _json_bool(obj, "prev_kv"))
        if kind == "delete":
            if not _json_bool(obj, "prefix"):
                self._check_key(key)
            range_end = self._range_of(obj, key)
            return Delete(key or b"\0", range_end, _json_bool(obj, "prev_kv"))
        if kind == "range":
            if not _json_bool(obj, "prefix"):
                self._check_key(key)
            range_end = self._range_of(obj, key)
            return Range(key or b"\0", range_end, _json_int(obj, "limit", 0),
                         _json_bool(obj, "keys_only"), _json_bool(obj, "count_only"))
        raise bad_request("a txn op's 'op' must be put, delete or range")

    # ======================================================================
    # Leases
    # ======================================================================
    def _lease_id(self, request: web.Request) -> int:
        try:
            value = int(request.match_info["id"])
        except ValueError:
            raise bad_request("lease id must be an integer") from None
        if not 1 <= value <= 2**63 - 1:
            raise bad_request("lease id out of range")
        return value

    async def lease_grant(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        ttl = _json_int(body, "ttl", None, 1, 9_000_000_000)
        lease_id = _json_int(body, "id", 0)
        result = await self._submit(request, LeaseGrant(ttl, lease_id))
        return json_response({"id": result["id"], "ttl": result["ttl"],
                              "revision": result["revision"]})

    async def lease_keepalive(self, request: web.Request) -> web.Response:
        lease_id = self._lease_id(request)
        info = self.node.fsm.lease_info(lease_id)
        if info is None:
            raise not_found(f"lease {lease_id} is not granted", "lease_not_found")
        self.node.leases.keepalive(lease_id, info["ttl"], time.monotonic())
        return json_response({"id": lease_id, "ttl": info["ttl"]})

    async def lease_revoke(self, request: web.Request) -> web.Response:
        result = await self._submit(request, LeaseRevoke(self._lease_id(request)))
        return json_response(to_json(result))

    async def lease_get(self, request: web.Request) -> web.Response:
        lease_id = self._lease_id(request)
        await self._read_barrier(request)
        info = self.node.fsm.lease_info(lease_id)
        if info is None:
            raise not_found(f"lease {lease_id} is not granted", "lease_not_found")
        info["remaining"] = self.node.leases.remaining(lease_id, time.monotonic())
        return json_response(to_json(info, encoding_of(request.query)))

    async def lease_list(self, request: web.Request) -> web.Response:
        await self._read_barrier(request)
        now = time.monotonic()
        clock = self.node.leases
        return json_response({"leases": [
            {"id": lid, "ttl": ttl, "remaining": clock.remaining(lid, now)}
            for lid, ttl in self.node.fsm.leases()]})

    # ======================================================================
    # Locks
    # ======================================================================
    def _lock_name(self, request: web.Request) -> str:
        name = request.match_info["name"]
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            raise bad_request("lock name must be valid UTF-8") from None
        if not name or size > self.cfg.max_key_bytes:
            raise bad_request("lock name must be 1..max-key-bytes bytes")
        return name

    async def lock_acquire(self, request: web.Request) -> web.Response:
        name = self._lock_name(request)
        body = await self._json_body(request, optional=True)
        lease = body.get("lease") if body else None
        if lease is None and "lease" in request.query:
            lease = _int_param(request, "lease", 0, 1)
        if type(lease) is not int or lease < 1:
            raise bad_request("a lock needs a lease: {\"lease\": id}")
        no_wait = "wait" in request.query and not _flag(request, "wait")
        timeout = _float_param(request, "timeout", DEFAULT_LOCK_TIMEOUT, MAX_WAIT_SECONDS)
        grant = self.node.wait_lock(name, lease)  # before proposing: never miss the grant
        try:
            result = await self._submit(request, LockAcquire(name, lease))
            if result["acquired"]:
                return json_response(self._lock_answer(name, lease, result["token"],
                                                       result["revision"]))
            if not no_wait:
                try:
                    token = await asyncio.wait_for(asyncio.shield(grant), timeout)
                except TimeoutError:
                    token = None
                else:
                    if token is None:
                        raise conflict("lock_wait_cancelled",
                                       f"lease {lease} stopped waiting for lock {name!r} "
                                       "(revoked or expired)")
                    return json_response(self._lock_answer(name, lease, token,
                                                           self.node.fsm.revision))
            # Not acquired: leave the queue so a later grant does not go unclaimed.
            # Not under the request's session: its (client id, seq) is the acquire's,
            # so the release would be deduplicated away and the lease stay queued.
            with contextlib.suppress(ApiError, _Forward):
                await self._submit(request, LockRelease(name, lease), with_session=False)
            if no_wait:
                raise conflict("lock_held", f"lock {name!r} is held by another lease")
            raise conflict("lock_timeout", f"lock {name!r} not acquired within {timeout}s")
        finally:
            grant.cancel()

    @staticmethod
    def _lock_answer(name: str, lease: int, token: int, revision: int) -> dict[str, Any]:
        return {"name": name, "lease": lease, "token": token, "revision": revision,
                "acquired": True}

    async def lock_release(self, request: web.Request) -> web.Response:
        name = self._lock_name(request)
        body = await self._json_body(request, optional=True)
        lease = body.get("lease") if body else None
        if lease is None:
            lease = _int_param(request, "lease", 0, 1)
        if type(lease) is not int or lease < 1:
            raise bad_request("give the lease that holds the lock: ?lease=id")
        result = await self._submit(request, LockRelease(name, lease))
        return json_response(result)

    async def lock_get(self, request: web.Request) -> web.Response:
        name = self._lock_name(request)
        await self._read_barrier(request)
        info = self.node.fsm.lock_info(name)
        if info is None:
            raise not_found(f"lock {name!r} is free", "lock_not_found")
        return json_response(info)

    async def lock_list(self, request: web.Request) -> web.Response:
        await self._read_barrier(request)
        return json_response({"locks": self.node.fsm.locks()})

    # ======================================================================
    # Watch
    # ======================================================================
    async def watch(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        key = get_bytes(dict(q), "key", required=False)
        prefix = _flag(request, "prefix")
        encoding = encoding_of(q)
        start = _int_param(request, "start_revision", 0)
        if not key and not prefix:
            raise bad_request("give a key (or key_b64), or prefix=1 to watch every key")
        if len(key) > self.cfg.max_key_bytes:
            self._check_key(key)
        if prefix:
            end = prefix_end(key) if key else ALL_KEYS_END

            def match(k: bytes) -> bool:
                return k >= key and (end == ALL_KEYS_END or k < end)
        else:
            def match(k: bytes) -> bool:
                return k == key
        hub = self.node.watch
        try:
            watcher = hub.subscribe(match, start, self.node.fsm.revision,
                                    request.remote or "")  # LimitExceeded: caps
        except Compacted as exc:
            raise ApiError(410, "compacted", str(exc)) from None
        response = web.StreamResponse(headers={
            "Content-Type": "application/x-ndjson",
            "X-Raftkv-Revision": str(self.node.fsm.revision)})
        await response.prepare(request)
        try:
            while True:
                try:
                    ev = await asyncio.wait_for(watcher.queue.get(), WATCH_PROGRESS_SECONDS)
                except TimeoutError:
                    line = {"type": "progress", "revision": self.node.fsm.revision}
                    await response.write(json.dumps(line).encode() + b"\n")
                    continue
                if ev is None:
                    line = {"type": "error", "error": watcher.closed_reason,
                            "message": "the watch was closed by the server; re-watch"}
                    await response.write(json.dumps(line).encode() + b"\n")
                    break
                batch = [ev]
                while not watcher.queue.empty() and len(batch) < 512:
                    nxt = watcher.queue.get_nowait()
                    if nxt is None:
                        watcher.queue.put_nowait(None)
                        break
                    batch.append(nxt)
                out = b"".join(json.dumps(to_json(e._asdict(), encoding)).encode() + b"\n"
                               for e in batch)
                await response.write(out)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.unsubscribe(watcher)
        return response

    # ======================================================================
    # Membership and leadership
    # ======================================================================
    def _member_param(self, request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise bad_request("member id must be an integer") from None

    async def members_list(self, request: web.Request) -> web.Response:
        return json_response({"members": self.node.members(), "leader": self.node.core.leader})

    async def _conf_change(self, cc: ConfChange) -> None:
        try:
            await asyncio.wait_for(self.node.propose_conf_change(cc), self.cfg.request_timeout)
        except NotLeader:
            raise _Forward() from None
        except ProposalDropped as exc:
            text = str(exc)
            if "not committed an entry" in text or "transfer" in text:
                raise unavailable("not_ready", text) from None
            raise conflict("membership_change_refused", text) from None
        except TimeoutError:
            raise unavailable("timeout", "the membership change did not commit in time") \
                from None
        except ProposalLost as exc:
            raise unavailable("proposal_lost", str(exc)) from None
        except OutcomeUnknown as exc:
            raise unavailable("outcome_unknown", str(exc)) from None

    async def member_add(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        name, peer_url, client_url = (body.get(f) for f in ("name", "peer_url", "client_url"))
        if not isinstance(name, str) or not name:
            raise bad_request("'name' is required")
        if not isinstance(peer_url, str) or ":" not in peer_url:
            raise bad_request("'peer_url' (host:port) is required")
        if client_url is None:
            client_url = ""
        if not isinstance(client_url, str):
            raise bad_request("'client_url' must be a string")
        # The joining node's own id (its /v1/status); absent = member_id(name), which is
        # only right for a founder's name (legacy): a joiner draws a fresh id.
        mid = body.get("id", member_id(name))
        if type(mid) is not int or not 0 < mid < 2**53:
            raise bad_request("'id' must be an integer in (0, 2**53)")
        core = self.node.core
        members = self.node.members()
        if mid in core.conf.members():
            existing = next(m for m in members if m["id"] == mid)
            return json_response({**existing, "existing": True})
        if mid in self.node.fsm.removed_members:
            raise conflict("member_id_removed",
                           f"member id {mid} was removed from this cluster and never comes "
                           "back: start the node with an empty data directory for a fresh id")
        same_name = next((m for m in members if m["name"] == name), None)
        if same_name is not None:
            raise conflict("member_name_in_use",
                           f"member {same_name['id']} is already named {name!r}: remove that "
                           "incarnation first")
        await self._conf_change(ConfChange(ConfChangeType.ADD_LEARNER, mid,
                                           member_context(name, peer_url, client_url)))
        return json_response({"id": mid, "name": name, "peer_url": peer_url,
                              "client_url": client_url, "role": "learner"})

    async def member_promote(self, request: web.Request) -> web.Response:
        mid = self._member_param(request)
        conf = self.node.core.conf
        if mid in conf.voters:
            return json_response({"id": mid, "role": "voter"})
        if mid not in conf.learners:
            raise not_found(f"member {mid} is not a learner of this cluster", "member_not_found")
        lag = self.node.learner_lag(mid)
        if lag is None or lag > PROMOTE_LAG_ENTRIES or self.node.core.prs[mid].match == 0:
            raise conflict("not_caught_up",
                           f"learner {mid} is {lag} entries behind the commit index; "
                           f"promote it once within {PROMOTE_LAG_ENTRIES}")
        await self._conf_change(ConfChange(ConfChangeType.PROMOTE, mid))
        return json_response({"id": mid, "role": "voter"})

    async def member_remove(self, request: web.Request) -> web.Response:
        mid = self._member_param(request)
        if mid not in self.node.core.conf.members():
            raise not_found(f"member {mid} is not in the cluster", "member_not_found")
        await self._conf_change(ConfChange(ConfChangeType.REMOVE, mid))
        return json_response({"id": mid, "removed": True})

    async def leader_transfer(self, request: web.Request) -> web.Response:
        body = await self._json_body(request, optional=True)
        node = self.node
        core = node.core
        target = body.get("to")
        if target is None:
            target = node.transfer_target()
            if target is None:
                raise conflict("no_transfer_target", "there is no other voter to lead")
        if type(target) is not int:
            raise bad_request("'to' must be a member id")
        if target == node.id:
            return json_response({"leader": node.id})
        if target not in core.conf.voters:
            raise bad_request(f"member {target} is not a voter", "not_a_voter")
        new_leader = await node.transfer_leadership(target, 3 * self.cfg.election_timeout + 1)
        if new_leader is None:
            raise conflict("transfer_failed", f"leadership did not move to {target} in time")
        return json_response({"leader": new_leader})

    # ======================================================================
    # Checkpoints
    # ======================================================================
    def _checkpoints(self) -> Any:
        store = self.node.checkpoint_store
        if store is None:
            raise unavailable("no_checkpoints", "this node keeps no checkpoints")
        return store

    def _checkpoint_id(self, request: web.Request) -> str:
        cid = request.match_info["id"]
        try:
            Checkpoint(cid)
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_checkpoint_id") from None
        return cid

    async def checkpoint_create(self, request: web.Request) -> web.Response:
        store = self._checkpoints()
        body = await self._json_body(request, optional=True)
        cid = body.get("id") or (time.strftime("ckpt-%Y%m%dT%H%M%SZ-", time.gmtime())
                                 + secrets.token_hex(3))
        if not isinstance(cid, str):
            raise bad_request("'id' must be a string")
        try:
            command = Checkpoint(cid)
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_checkpoint_id") from None
        existing = store.get(cid)
        if existing is not None:
            return json_response(existing)
        written = self.node.wait_checkpoint(cid)
        try:
            result = await self._submit(request, command)
            recorded = result.get("checkpoint")
            if recorded != cid:
                # A retry (same session headers): the log answered the first attempt's
                # result, and no new checkpoint is written. Answer the first one.
                written.cancel()
                if not isinstance(recorded, str):
                    raise conflict("session_reused", "this request's session (client id, seq) "
                                   "was already used by a request of another kind")
                cid = recorded
                written = self.node.wait_checkpoint(cid)  # before looking: never miss it
                existing = store.get(cid)
                if existing is not None:
                    return json_response(existing)
            manifest = await asyncio.wait_for(asyncio.shield(written),
                                              self.cfg.request_timeout + 60)
        except TimeoutError:
            raise unavailable("timeout", f"checkpoint {cid} was not written in time (or was "
                              "already removed by retention)") from None
        finally:
            written.cancel()
        return json_response(manifest)

    async def checkpoint_list(self, request: web.Request) -> web.Response:
        store = self._checkpoints()
        manifests = await asyncio.get_running_loop().run_in_executor(None, store.list)
        return json_response({"checkpoints": manifests})

    async def checkpoint_get(self, request: web.Request) -> web.Response:
        cid = self._checkpoint_id(request)
        manifest = self._checkpoints().get(cid)
        if manifest is None:
            raise not_found(f"checkpoint {cid!r} not found", "checkpoint_not_found")
        return json_response(manifest)

    async def checkpoint_data(self, request: web.Request) -> web.StreamResponse:
        cid = self._checkpoint_id(request)
        store = self._checkpoints()
        manifest = store.get(cid)
        path = store.data_path(cid)
        if manifest is None or path is None:
            raise not_found(f"checkpoint {cid!r} not found", "checkpoint_not_found")
        return web.FileResponse(path, headers={
            "Content-Type": "application/octet-stream",
            "X-Raftkv-Checkpoint-Sha256": manifest["sha256"],
            "X-Raftkv-Checkpoint-Index": str(manifest["index"])})


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


def _resolver(resolve: dict[str, str]) -> aiohttp.abc.AbstractResolver:
    base = aiohttp.ThreadedResolver()
    if not resolve:
        return base

    class StaticFirst(aiohttp.abc.AbstractResolver):
        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
            return await base.resolve(resolve.get(host, host), port, family)

        async def close(self) -> None:
            await base.close()

    return StaticFirst()


def forwarding_session(resolve: dict[str, str]) -> aiohttp.ClientSession:
    """The session a follower forwards writes to the leader with.

    It must never re-send a request by itself: aiohttp silently retries an
    "idempotent" PUT/DELETE once when a kept-alive connection drops before the
    answer, so a write the leader applied just before the drop would be applied
    twice (a linearizability bug the chaos suite's checker reasons about). aiohttp
    has no public switch; its private flag is turned off, and where it is gone
    connections are not kept alive, which also rules the retry out."""
    keep_alive = "_retry_connection" in getattr(aiohttp.ClientSession, "ATTRS", ())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=30, force_close=not keep_alive,
                                       resolver=_resolver(resolve)),
        auto_decompress=False)
    if keep_alive:
        session._retry_connection = False
    return session

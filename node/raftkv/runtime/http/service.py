"""The transport-neutral KV service: validation, commands, proposals and reads.

Both front doors call it -- the aiohttp handlers (runtime/http/*) and the fast
path (runtime/fasthttp.py) -- so a request is checked by the same code, once,
whichever path serves it. Nothing here knows about aiohttp or sockets; requests
are read through `RequestLike` (query + headers).
"""

from __future__ import annotations

import asyncio
from typing import Any

from raftkv.consensus import ConfChange, NotLeader
from raftkv.fsm import ApplyResult, InvalidCommand, Put, Session, encode
from raftkv.protocol.headers import (
    CLIENT_ID,
    CREATE_REVISION,
    LEASE,
    MOD_REVISION,
    REVISION,
    SEQ,
    VERSION,
)
from raftkv.runtime.errors import ApiError, bad_request, not_found
from raftkv.runtime.http.auth import (
    Authenticator,
    Identity,
    check_command,
    check_ranges,
    permission_denied,
)
from raftkv.runtime.http.errors import api_error
from raftkv.runtime.http.params import RequestLike, flag, int_param, parse_json_object, read_body
from raftkv.runtime.http.routing import IDENTITY
from raftkv.runtime.jsonbytes import encoding_of
from raftkv.runtime.node import RaftNode

# fsm result error codes -> HTTP status
_RESULT_STATUS = {
    "invalid_command": 400,
    "lease_not_found": 404,
    "lease_exists": 409,
    "lock_not_held": 409,
    "stale_sequence": 409,
    "result_not_retained": 409,  # a retry of an applied command whose answer was big
}


class Forward(Exception):
    """This node cannot serve the write: hand the request to the leader."""


def result_of(res: ApplyResult) -> dict[str, Any]:
    """The applied command's result; its error, if any, as an ApiError."""
    result = res.result
    code = result.get("error")
    if code is not None:
        # result_not_retained: the command WAS applied, at this revision.
        headers = {REVISION: str(result.get("revision"))} if code == "result_not_retained" else None
        raise ApiError(
            _RESULT_STATUS.get(code, 400), code, result.get("message", code), headers=headers
        )
    return result


def identity_of(request: object) -> Identity:
    """The identity the front door authenticated (aiohttp: request[IDENTITY]; the fast
    path: its parsed request's `identity`). None set is a bug: refuse (fail closed)."""
    found = getattr(request, "identity", None)
    if found is None and hasattr(request, "get"):
        found = request.get(IDENTITY)
    if not isinstance(found, Identity):
        raise permission_denied("the request carries no authenticated identity")
    return found


class KvService:
    def __init__(self, node: RaftNode, auth: Authenticator | None = None) -> None:
        self.node = node
        self.cfg = node.cfg
        self.metrics = node.metrics
        self.auth = auth or Authenticator(None)

    # --- checks ----------------------------------------------------------------------
    def check_key(self, key: bytes) -> None:
        if not key:
            raise bad_request("the key must not be empty", "empty_key")
        if len(key) > self.cfg.max_key_bytes:
            raise ApiError(
                413,
                "key_too_large",
                f"key of {len(key)} bytes exceeds --max-key-bytes ({self.cfg.max_key_bytes})",
            )

    def check_value(self, value: bytes) -> None:
        if len(value) > self.cfg.max_value_bytes:
            raise ApiError(
                413,
                "value_too_large",
                f"value of {len(value)} bytes exceeds --max-value-bytes "
                f"({self.cfg.max_value_bytes})",
            )

    def check_command_size(self, data: bytes) -> None:
        if len(data) > self.cfg.max_request_bytes + 4096:
            raise ApiError(413, "request_too_large", "the command exceeds --max-request-bytes")

    def session(self, request: RequestLike) -> Session | None:
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

    def check_keys(self, request: RequestLike, key: bytes, range_end: bytes = b"") -> None:
        """403 unless the caller may touch `key` (or the fsm range [key, range_end))."""
        check_ranges(identity_of(request), ((key, range_end),))

    def check_command(self, request: RequestLike, command: Any) -> None:
        check_command(identity_of(request), command)

    def read_needs_barrier(self, request: RequestLike) -> bool:
        """Does this read wait for a ReadIndex round (else it is served right away)?"""
        consistency = request.query.get("consistency", "linearizable")
        if consistency == "serializable":
            return False
        if consistency != "linearizable":
            raise bad_request("consistency must be linearizable or serializable")
        # --unsafe-local-reads: an UNSAFE test switch, no ReadIndex round.
        return not self.cfg.unsafe_local_reads

    async def json_body(self, request: Any, *, optional: bool = False) -> dict[str, Any]:
        """The request's JSON object body (limits: --max-request-bytes, --max-json-depth)."""
        raw = await read_body(request, self.cfg.max_request_bytes)
        return parse_json_object(raw, self.cfg.max_json_depth, optional=optional)

    # --- the hot single-key requests (both paths) --------------------------------------
    def plain_put(self, request: RequestLike, key: bytes, value: bytes) -> tuple[bytes, str]:
        """Check a `PUT /v1/kv/{key}` without conditions: its encoded command and the
        encoding of its answer (everything is checked before anything is proposed)."""
        self.check_key(key)
        self.check_value(value)
        self.check_keys(request, key)
        put = Put(key, value, int_param(request, "lease", 0), flag(request, "prev_kv"))
        encoding = encoding_of(request.query)
        data = self.node.fsm.encoded_here(put, self.session(request))
        self.check_command_size(data)
        return data, encoding

    def single_get_answer(self, key: bytes) -> tuple[bytes, dict[str, str]]:
        """Body and headers of `GET /v1/kv/{key}` once the read may be served."""
        fsm = self.node.fsm
        kv = fsm.get(key)
        if kv is None:
            raise not_found(f"key {key!r} not found", "key_not_found")
        return kv.value, {
            CREATE_REVISION: str(kv.create_revision),
            MOD_REVISION: str(kv.mod_revision),
            VERSION: str(kv.version),
            LEASE: str(kv.lease),
            REVISION: str(fsm.revision),
        }

    # --- proposals and reads (awaiting) ------------------------------------------------
    async def propose(self, data: bytes) -> ApplyResult:
        """Propose encoded command bytes and wait until applied. `Forward` when this
        node does not lead (nothing was proposed)."""
        self.check_command_size(data)
        try:
            fut = self.node.propose(data)
        except NotLeader:
            raise Forward() from None
        try:
            return await fut  # the node fails it after --request-timeout
        except Exception as exc:
            raise api_error(exc, "write") from None

    async def submit(
        self, request: RequestLike, command: Any, *, with_session: bool = True
    ) -> dict[str, Any]:
        """Propose and wait for the applied result; map result errors to statuses.
        `with_session=False` proposes without the request's session headers: for a
        follow-up command of the same request, which would otherwise reuse the
        request's (client id, seq) and be answered as a duplicate of it."""
        self.check_command(request, command)
        data = encode(command, self.session(request) if with_session else None)
        return result_of(await self.propose(data))

    async def read_barrier(self, request: RequestLike) -> None:
        if not self.read_needs_barrier(request):
            return
        try:
            await self.node.read_barrier()  # the node fails it after --request-timeout
        except Exception as exc:
            raise api_error(exc, "read") from None

    async def conf_change(self, cc: ConfChange) -> None:
        try:
            await asyncio.wait_for(self.node.propose_conf_change(cc), self.cfg.request_timeout)
        except NotLeader:
            raise Forward() from None
        except Exception as exc:
            raise api_error(exc, "conf") from None

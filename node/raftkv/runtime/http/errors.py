"""The one exception -> HTTP answer mapping of the client port.

Every path that answers a client (the aiohttp middleware, the fast path in
runtime/fasthttp.py, a proposal's or a read barrier's completion) turns a
failure into an answer here and nowhere else. `stage` says what failed, because
the same exception means different things: a `NotLeader` on a read means there
is no leader to ask for a read index; on a write, that leadership moved.
"""

from __future__ import annotations

import json
import logging
from typing import Literal

from aiohttp import web

from raftkv.consensus import NotLeader, ProposalDropped
from raftkv.runtime.errors import ApiError, conflict, no_leader, unavailable
from raftkv.runtime.limits import LimitExceeded
from raftkv.runtime.outcomes import (
    NodeFailed,
    NodeStopped,
    OutcomeUnknown,
    ProposalLost,
    WaitInterrupted,
)

log = logging.getLogger("raftkv.api")

Stage = Literal["write", "read", "conf"]

_TIMEOUTS = {
    "write": "the write did not commit in time; its outcome is unknown (retry with the "
    "same session headers)",
    "read": "no read index from the leader in time",
    "conf": "the membership change did not commit in time",
}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def api_error(exc: BaseException, stage: Stage = "write", where: str = "") -> ApiError:
    """The answer to `exc`. Anything unexpected is logged (with `where`, the request)
    and answered 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return ApiError(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    if isinstance(exc, LimitExceeded):
        return ApiError(exc.status, exc.code, exc.message)
    if isinstance(exc, WaitInterrupted):  # before NodeStopped: it may have applied
        return wait_interrupted()
    if isinstance(exc, NodeFailed):  # before NodeStopped: the outcome is unknown here
        return unavailable("node_failed", str(exc))
    if isinstance(exc, NodeStopped):
        return unavailable("shutting_down", "the node is shutting down")
    if isinstance(exc, TimeoutError):
        return unavailable("timeout", _TIMEOUTS[stage])
    if isinstance(exc, NotLeader):
        return (
            no_leader()
            if stage == "read"
            else unavailable("not_leader", "leadership changed; retry")
        )
    if isinstance(exc, ProposalLost):  # certainly not applied
        return unavailable("proposal_lost", str(exc))
    if isinstance(exc, OutcomeUnknown):  # may have applied: retry with the same session
        return unavailable("outcome_unknown", str(exc))
    if isinstance(exc, ProposalDropped):
        if stage != "conf":
            return unavailable("proposal_dropped", str(exc))
        text = str(exc)
        if "not committed an entry" in text or "transfer" in text:
            return unavailable("not_ready", text)
        return conflict("membership_change_refused", text)
    log.error("unhandled error in %s", where or "a request", exc_info=exc)
    return ApiError(500, "internal", "internal error; see the node log")


def wait_interrupted() -> ApiError:
    return unavailable(
        "wait_interrupted",
        "the node is shutting down: the wait was cut "
        "short; what the request proposed may have applied (a lock acquire "
        "stays queued for its lease); retry on another member",
    )


def error_parts(exc: ApiError) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, JSON body) of an error answer."""
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return headers, {"error": exc.code, "message": exc.message}


def error_body(exc: ApiError) -> bytes:
    return json.dumps(error_parts(exc)[1], separators=(",", ":")).encode()

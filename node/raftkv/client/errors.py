"""Typed exceptions of the client, mapped from the server's JSON error codes.

Every server error is `{"error": code, "message": text}` with a status code
(docs/api.md). `error_from_response` turns one into the most specific class
below; code that only cares about the kind of failure catches the base classes
(`NotFoundError`, `ConflictError`, `UnavailableError`, ...).
"""

from __future__ import annotations

from typing import Any


class RaftkvError(Exception):
    """Base of every error raised by the client."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int = 0,
        body: dict[str, Any] | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.body = body or {}
        self.endpoint = endpoint

    def __str__(self) -> str:
        if self.code:
            return f"{self.code}: {self.message}"
        return self.message


# --- by HTTP status -----------------------------------------------------------------
class BadRequestError(RaftkvError):
    """400: the request is malformed (a bug in the caller, not a cluster problem)."""


class TooLargeError(BadRequestError):
    """413: key, value or request over the node's limits."""


class NotFoundError(RaftkvError):
    """404: no such key, lease, lock, member or checkpoint."""


class KeyNotFoundError(NotFoundError):
    pass


class LeaseNotFoundError(NotFoundError):
    pass


class LockNotFoundError(NotFoundError):
    pass


class MemberNotFoundError(NotFoundError):
    pass


class CheckpointNotFoundError(NotFoundError):
    pass


class ConflictError(RaftkvError):
    """409: the request conflicts with the current state."""


class CompareFailedError(ConflictError):
    """A conditional put/delete whose condition does not hold.

    `current` is the key's current value as a `KeyValue`, or None if it does
    not exist; `revision` is the store revision the condition was checked at.
    """

    def __init__(
        self, message: str, *, current: Any = None, revision: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.current = current
        self.revision = revision


class LeaseExistsError(ConflictError):
    pass


class LockHeldError(ConflictError):
    """`wait=False` and another lease holds the lock."""


class LockTimeoutError(ConflictError):
    """The lock was not granted within the timeout (the lease left the queue)."""


class LockWaitCancelledError(ConflictError):
    """The lease expired or was revoked while waiting for the lock."""


class LockNotHeldError(ConflictError):
    pass


class StaleSequenceError(ConflictError):
    """A session seq lower than one already applied (a client-id reused concurrently)."""


class AuthError(RaftkvError):
    """401 or 403: the credentials are missing or wrong, or do not allow this."""


class UnauthenticatedError(AuthError):
    """401: no credentials, or a token the cluster does not know."""


class PermissionDeniedError(AuthError):
    """403: the identity's role (or key prefixes) does not allow this request."""


class ResultNotRetainedError(ConflictError):
    """A retry (same session) of a write that WAS applied, whose answer was too big
    for the server to keep for retries: read the current state instead."""


class LimitExceededError(ConflictError):
    """429 / 507: refused by a limit of the cluster (--max-leases, --max-lock-waiters,
    --max-watches*, the backend quota); nothing was applied. Not retried."""


class QuotaExceededError(LimitExceededError):
    """507 quota_exceeded: the store is at --quota-backend-bytes; writes that grow
    it are refused until keys are deleted (reads and deletes still work)."""


class CompactedError(RaftkvError):
    """410: a watch start revision older than the node's history."""


class ServerError(RaftkvError):
    """500 or an answer that is not the documented JSON: a server bug."""


class UnavailableError(RaftkvError):
    """The cluster could not serve the request in time: 503s, connection errors,
    timeouts. For a write the outcome may be unknown (see `outcome_unknown`)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


class NoLeaderError(UnavailableError):
    """no_leader / not_leader / leader_unreachable: an election is under way."""


class OutcomeUnknownError(UnavailableError):
    """outcome_unknown / node_failed: the server cannot tell whether the write
    applied (a snapshot replaced its entry, the node failed, the leader it was
    forwarded to stopped answering). `outcome_unknown` is always True. With a session
    (the default) retrying the same call is safe: the session table applies it at
    most once and answers a duplicate with the first result."""


class ConnectError(UnavailableError):
    """No endpoint could be reached."""


class CheckpointVerifyError(RaftkvError):
    """A downloaded checkpoint does not match its manifest (size or sha256)."""


_BY_CODE: dict[str, type[RaftkvError]] = {
    "key_not_found": KeyNotFoundError,
    "lease_not_found": LeaseNotFoundError,
    "lock_not_found": LockNotFoundError,
    "member_not_found": MemberNotFoundError,
    "checkpoint_not_found": CheckpointNotFoundError,
    "compare_failed": CompareFailedError,
    "lease_exists": LeaseExistsError,
    "lock_held": LockHeldError,
    "lock_timeout": LockTimeoutError,
    "lock_wait_cancelled": LockWaitCancelledError,
    "lock_not_held": LockNotHeldError,
    "stale_sequence": StaleSequenceError,
    "result_not_retained": ResultNotRetainedError,
    "quota_exceeded": QuotaExceededError,
    "compacted": CompactedError,
    "no_leader": NoLeaderError,
    "not_leader": NoLeaderError,
    "leader_unreachable": NoLeaderError,
    "outcome_unknown": OutcomeUnknownError,
    "node_failed": OutcomeUnknownError,
    "key_too_large": TooLargeError,
    "value_too_large": TooLargeError,
    "request_too_large": TooLargeError,
}

_BY_STATUS: dict[int, type[RaftkvError]] = {
    400: BadRequestError,
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: BadRequestError,
    409: ConflictError,
    410: CompactedError,
    413: TooLargeError,
    429: LimitExceededError,
    503: UnavailableError,
    507: LimitExceededError,
}

# 503 codes after which a write was certainly not applied (it never reached the log,
# or `proposal_lost`: another leader's entry replaced it). Every other 503 to a write
# (`outcome_unknown`, `node_failed`, `timeout`, `wait_interrupted`, ...) may have applied.
NOT_APPLIED_CODES = frozenset(
    {
        "no_leader",
        "not_leader",
        "leader_unreachable",
        "not_ready",
        "shutting_down",
        "proposal_dropped",
        "proposal_lost",
    }
)


def error_class(status: int, code: str) -> type[RaftkvError]:
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError


def error_from_response(
    status: int, body: Any, *, endpoint: str = "", retry_after: float | None = None
) -> RaftkvError:
    """The exception for a non-2xx answer (`body` is its parsed JSON, if any)."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code: str = body["error"]
        message = str(body.get("message") or code)
    else:
        code = ""
        message = f"HTTP {status} without a raftkv error body"
    cls = error_class(status, code)
    kwargs: dict[str, Any] = {
        "code": code,
        "status": status,
        "body": body if isinstance(body, dict) else None,
        "endpoint": endpoint,
    }
    if issubclass(cls, UnavailableError):
        return cls(
            message,
            retry_after=retry_after,
            outcome_unknown=code not in NOT_APPLIED_CODES,
            **kwargs,
        )
    if cls is CompareFailedError:
        from raftkv.client.models import KeyValue  # models import nothing from here

        current = body.get("current") if isinstance(body, dict) else None
        return CompareFailedError(
            message,
            current=KeyValue.from_json(current) if current else None,
            revision=int(body.get("revision", 0)) if isinstance(body, dict) else 0,
            **kwargs,
        )
    return cls(message, **kwargs)

"""The raftkv Python client: asyncio (`AsyncClient`) and blocking (`Client`).

It speaks only the public HTTP API (docs/api.md): writes follow the leader and
carry a session so a retried write applies once; reads follow the endpoint
strategy (`leader`, `random`, `round-robin`); results are dataclasses
(`models`), failures are typed exceptions (`errors`). The `raftkv` CLI's
client subcommands live in `raftkv.client.cli`.
"""

from raftkv.client.aio import AsyncClient
from raftkv.client.credentials import Credentials, credentials_from_env
from raftkv.client.endpoints import DEFAULT_ENDPOINT, STRATEGIES
from raftkv.client.errors import (
    AuthError,
    BadRequestError,
    CheckpointNotFoundError,
    CheckpointVerifyError,
    CompactedError,
    CompareFailedError,
    ConflictError,
    ConnectError,
    KeyNotFoundError,
    LeaseExistsError,
    LeaseNotFoundError,
    LimitExceededError,
    LockHeldError,
    LockNotFoundError,
    LockNotHeldError,
    LockTimeoutError,
    LockWaitCancelledError,
    MemberNotFoundError,
    NoLeaderError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QuotaExceededError,
    RaftkvError,
    ResultNotRetainedError,
    ServerError,
    StaleSequenceError,
    TooLargeError,
    UnauthenticatedError,
    UnavailableError,
)
from raftkv.client.models import (
    CheckpointManifest,
    Compare,
    DeleteResult,
    KeyValue,
    LeaderInfo,
    Lease,
    LeaseInfo,
    LeaseRevoked,
    Lock,
    LockInfo,
    Member,
    Members,
    PutResult,
    RangeResult,
    Status,
    TxnDelete,
    TxnPut,
    TxnRange,
    TxnResponse,
    TxnResult,
    Unlocked,
    WatchEvent,
)
from raftkv.client.retry import RetryPolicy
from raftkv.client.sync import Client

__all__ = [
    "DEFAULT_ENDPOINT", "STRATEGIES",
    "AsyncClient", "Client", "Credentials", "RetryPolicy", "credentials_from_env",
    # results and request builders
    "CheckpointManifest", "Compare", "DeleteResult", "KeyValue", "LeaderInfo", "Lease",
    "LeaseInfo", "LeaseRevoked", "Lock", "LockInfo", "Member", "Members", "PutResult",
    "RangeResult", "Status", "TxnDelete", "TxnPut", "TxnRange", "TxnResponse", "TxnResult",
    "Unlocked", "WatchEvent",
    # errors
    "AuthError", "BadRequestError", "CheckpointNotFoundError", "CheckpointVerifyError",
    "CompactedError", "PermissionDeniedError", "UnauthenticatedError",
    "CompareFailedError", "ConflictError", "ConnectError", "KeyNotFoundError",
    "LeaseExistsError", "LeaseNotFoundError", "LockHeldError", "LockNotFoundError",
    "LockNotHeldError", "LockTimeoutError", "LockWaitCancelledError", "MemberNotFoundError",
    "NoLeaderError", "NotFoundError", "RaftkvError", "ServerError", "StaleSequenceError",
    "TooLargeError", "UnavailableError", "LimitExceededError", "QuotaExceededError",
    "ResultNotRetainedError", "OutcomeUnknownError",
]

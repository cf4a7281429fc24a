"""The HTTP error model: every failure is a status code and `{"error", "message"}`."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to a client as `{"error": code, "message": message}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.headers = headers or {}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str, code: str = "not_found") -> ApiError:
    return ApiError(404, code, message)


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


def unavailable(code: str, message: str, retry_after: float = 1.0) -> ApiError:
    return ApiError(503, code, message, retry_after=retry_after)


def no_leader() -> ApiError:
    return unavailable("no_leader", "the cluster has no known leader; retry shortly")

"""Request parameters: query flags and numbers, JSON bodies and their fields, the
key in a `/v1/kv/{key}` path. Pure functions over anything with `query` and
`headers` (aiohttp's Request or the fast path's parsed head)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from aiohttp import web

from raftkv.runtime.errors import ApiError, bad_request
from raftkv.runtime.limits import parse_json

MAX_WAIT_SECONDS = 300.0


class RequestLike(Protocol):
    """What the parameter helpers read: aiohttp's Request, or fasthttp's parsed one."""

    @property
    def query(self) -> Mapping[str, str]: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


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
        raise bad_request(
            "a request target has no fragment; send '#' in a key as %23", "invalid_target"
        )
    if not path.startswith(b"/"):
        _, sep, rest = path.partition(b"://")
        slash = rest.find(b"/")
        path = rest[slash:] if sep and slash > 0 else b""
    if not path.startswith(b"/v1/kv/"):
        raise bad_request("the request target is not /v1/kv/{key}", "invalid_target")
    return unquote_to_bytes(path[len(b"/v1/kv/") :])


def flag(request: RequestLike, name: str) -> bool:
    value = request.query.get(name)
    if value is None:
        return False
    if value.lower() in ("", "1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise bad_request(f"query parameter {name!r} must be a boolean (1/0/true/false)")


def int_param(
    request: RequestLike, name: str, default: int, low: int = 0, high: int = 2**63 - 1
) -> int:
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


def float_param(request: RequestLike, name: str, default: float, high: float) -> float:
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


def json_int(
    obj: dict[str, Any], name: str, default: int | None = None, low: int = 0, high: int = 2**63 - 1
) -> int:
    value = obj.get(name, default)
    if value is None:
        raise bad_request(f"missing {name!r}")
    if type(value) is not int:
        raise bad_request(f"{name!r} must be an integer")
    if not low <= value <= high:
        raise bad_request(f"{name!r} must be in [{low}, {high}]")
    return value


def json_bool(obj: dict[str, Any], name: str) -> bool:
    value = obj.get(name, False)
    if type(value) is not bool:
        raise bad_request(f"{name!r} must be true or false")
    return value


def match_int(request: web.Request, name: str, what: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise bad_request(f"{what} must be an integer") from None


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body; over `max_bytes` (the app's client_max_size) is a 413."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, "request_too_large", f"request body exceeds --max-request-bytes ({max_bytes})"
        ) from None


def parse_json_object(raw: bytes, max_depth: int, *, optional: bool = False) -> dict[str, Any]:
    if not raw.strip():
        if optional:
            return {}
        raise bad_request("a JSON object body is required")
    try:
        body = parse_json(raw, max_depth)  # LimitExceeded: nested too deep
    except (ValueError, UnicodeDecodeError):
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body

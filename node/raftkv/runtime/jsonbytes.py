"""Bytes in JSON bodies (keys and values are arbitrary bytes).

Requests: a bytes field `f` is given either as `"f": "<utf-8 text>"` or as
`"f_b64": "<base64>"`. Responses: with `encoding=utf8` (the default) a bytes
field is `"f": "<text>"` when it is valid UTF-8, else `"f_b64": "<base64>"`;
with `encoding=base64` it is always `"f_b64"`. A list of bytes (a lease's `keys`)
is `"f": [text, ...]` when every item is valid UTF-8, else `"f_b64": [base64, ...]`.
Lossless both ways.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from raftkv.runtime.errors import bad_request

ENCODINGS = ("utf8", "base64")


def to_json(value: Any, encoding: str = "utf8") -> Any:
    """A result tree with bytes turned into text fields (see the module docstring).

    A list of bytes under field `f` follows the same rule as a whole (a field name
    can't say per item which form it holds): `"f": [text, ...]` when every item is
    valid UTF-8 (and the encoding is utf8), else `"f_b64": [base64, ...]`."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(v, bytes):
                text = _text(v, encoding)
                if text is not None:
                    out[k] = text
                else:
                    out[k + "_b64"] = _b64(v)
            elif isinstance(v, (list, tuple)) and v and all(isinstance(i, bytes) for i in v):
                texts = [_text(i, encoding) for i in v]
                if None in texts:
                    out[k + "_b64"] = [_b64(i) for i in v]
                else:
                    out[k] = texts
            else:
                out[k] = to_json(v, encoding)
        return out
    if isinstance(value, (list, tuple)):
        # Bytes items not under a named field (nested lists) have no field to mark
        # them: always base64.
        return [_b64(v) if isinstance(v, bytes) else to_json(v, encoding) for v in value]
    if isinstance(value, bytes):
        return _b64(value)
    return value


def _text(value: bytes, encoding: str) -> str | None:
    if encoding != "utf8":
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def get_bytes(
    obj: dict[str, Any], field: str, *, required: bool = True, default: bytes = b""
) -> bytes:
    """Field `field` (text) or `field_b64` (base64) of a request object."""
    text = obj.get(field)
    b64 = obj.get(field + "_b64")
    if text is not None and b64 is not None:
        raise bad_request(f"give {field!r} or {field + '_b64'!r}, not both")
    if text is not None:
        if not isinstance(text, str):
            raise bad_request(f"{field!r} must be a string (use {field + '_b64'!r} for bytes)")
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (from undecodable input)
            raise bad_request(f"{field!r} is not valid UTF-8; use {field + '_b64'!r}") from None
    if b64 is not None:
        if not isinstance(b64, str):
            raise bad_request(f"{field + '_b64'!r} must be a base64 string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{field + '_b64'!r} is not valid base64") from None
    if required:
        raise bad_request(f"missing {field!r} (or {field + '_b64'!r})")
    return default


def encoding_of(query: Any) -> str:
    enc = query.get("encoding", "utf8")
    if enc not in ENCODINGS:
        raise bad_request(f"encoding must be one of {ENCODINGS}")
    return str(enc)

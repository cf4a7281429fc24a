"""The fast path's put answer formatted without json.dumps is byte for byte what
json.dumps gives (a shortcut beside the general encoder needs its differential test)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from raftkv.runtime.fastkv import put_answer
from raftkv.runtime.jsonbytes import to_json

RESULTS: list[dict[str, Any]] = [
    {"revision": 0},
    {"revision": 1},
    {"revision": 2**63 - 1},
    {"revision": 12345, "prev_kv": None},
    {
        "revision": 7,
        "prev_kv": {"key": b"k", "value": b"\xff\x00", "mod_revision": 6, "version": 2},
    },
    {"revision": 9, "prev_kv": {"key": "text", "value": b"v"}},
    {"revision": True},  # not an int: the general encoder, never "%d" of a bool
    {"other": 5},
]


@pytest.mark.parametrize("encoding", ["utf8", "base64"])
@pytest.mark.parametrize("result", RESULTS, ids=[str(i) for i in range(len(RESULTS))])
def test_put_answer_is_what_json_dumps_gives(result: dict[str, Any], encoding: str) -> None:
    expected = json.dumps(to_json(result, encoding), separators=(",", ":")).encode()
    assert put_answer(result, encoding) == expected

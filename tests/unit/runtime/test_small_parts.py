"""Runtime pieces with no IO: lease deadlines, the watch history, bytes in JSON."""

from __future__ import annotations

import pytest

from raftkv.fsm import WatchEvent
from raftkv.runtime.errors import ApiError
from raftkv.runtime.jsonbytes import get_bytes, to_json
from raftkv.runtime.leases import LeaseClock
from raftkv.runtime.watch import Compacted, WatchHub


def test_lease_clock_expires_once_and_retries_later() -> None:
    clock = LeaseClock()
    clock.reset([(1, 10), (2, 5)], now=100.0)
    assert clock.due(104.0) == []
    assert clock.due(105.0) == [2]
    assert clock.due(106.0) == []  # proposed already: not again right away
    assert clock.due(105.0 + LeaseClock.RETRY_AFTER) == [2]  # ... unless it never applied
    clock.keepalive(1, 10, now=109.0)
    assert clock.due(115.0) == [2]
    assert clock.remaining(1, 115.0) == pytest.approx(4.0)
    clock.forget(2)
    assert clock.due(1000.0) == [1]


def _ev(key: bytes, rev: int) -> WatchEvent:
    return WatchEvent("put", key, b"v", rev, rev, 1, 0)


def test_watch_history_replays_and_reports_compaction() -> None:
    hub = WatchHub(capacity=3)
    hub.publish([_ev(b"a", 2), _ev(b"b", 3)])
    w = hub.subscribe(lambda k: k == b"a", start_revision=2, current_revision=3)
    assert w.queue.get_nowait() == _ev(b"a", 2)
    hub.publish([_ev(b"a", 4), _ev(b"a", 5)])  # the history drops revision 2
    assert [w.queue.get_nowait() for _ in range(2)] == [_ev(b"a", 4), _ev(b"a", 5)]
    with pytest.raises(Compacted):
        hub.subscribe(lambda k: True, start_revision=2, current_revision=5)
    assert hub.subscribe(lambda k: True, 3, 5).queue.qsize() == 3
    hub.reset(10)
    assert w.queue.get_nowait() is None and w.closed_reason == "compacted"


def test_json_bytes_are_lossless() -> None:
    out = to_json({"key": b"text", "value": b"\xff\x00", "n": [{"key": b"k"}]})
    assert out == {"key": "text", "value_b64": "/wA=", "n": [{"key": "k"}]}
    assert to_json({"key": b"text"}, "base64") == {"key_b64": "dGV4dA=="}
    assert get_bytes({"key": "text"}, "key") == b"text"
    assert get_bytes({"key_b64": "/wA="}, "key") == b"\xff\x00"
    for bad in ({"key": 1}, {"key_b64": "!!"}, {"key": "a", "key_b64": "YQ=="}, {}):
        with pytest.raises(ApiError):
            get_bytes(bad, "key")

"""KV semantics, checked against etcd's documented data model:

- "When the store is created, the initial revision is 1. Each atomic mutative
  operation ... creates a new revision on the key space." (learning/data_model)
- KeyValue: create_revision "is the revision of last creation on this key",
  mod_revision "of last modification", version: "A deletion resets the version
  to zero and any modification of the key increases its version." (mvccpb/kv.proto)
- A DeleteRange that deletes nothing does not create a revision (etcd's txn only
  bumps the revision when it changed something).
"""

from __future__ import annotations

import pytest

from raftkv.fsm import Delete, Put, Range, StateMachine, WatchEvent, prefix_end
from tests.unit.fsm.support import Log, kv_of


def test_empty_store_is_at_revision_1_and_first_put_creates_revision_2() -> None:
    log = Log()
    assert log.machine.revision == 1
    assert log.ok(Put(b"foo", b"bar")) == {"revision": 2}
    assert kv_of(log.machine, b"foo") == (b"bar", 2, 2, 1, 0)


def test_revisions_and_versions_follow_etcd_through_update_delete_and_recreate() -> None:
    log = Log()
    log.ok(Put(b"foo", b"1"))  # rev 2
    log.ok(Put(b"other", b"x"))  # rev 3
    assert log.ok(Put(b"foo", b"2")) == {"revision": 4}
    assert kv_of(log.machine, b"foo") == (b"2", 2, 4, 2, 0)
    assert kv_of(log.machine, b"other") == (b"x", 3, 3, 1, 0)  # untouched

    assert log.ok(Delete(b"foo")) == {"revision": 5, "deleted": 1}
    assert kv_of(log.machine, b"foo") is None

    log.ok(Put(b"foo", b"3"))  # re-created: a new life, version starts again
    assert kv_of(log.machine, b"foo") == (b"3", 6, 6, 1, 0)
    assert log.machine.revision == 6


def test_a_delete_that_matches_nothing_keeps_the_revision() -> None:
    log = Log()
    log.ok(Put(b"a", b"1"))
    assert log.ok(Delete(b"missing")) == {"revision": 2, "deleted": 0}
    assert log.ok(Delete.prefix(b"zzz")) == {"revision": 2, "deleted": 0}
    assert log.machine.revision == 2


def test_put_and_delete_return_previous_key_values_when_asked() -> None:
    log = Log()
    assert log.ok(Put(b"k", b"v1", prev_kv=True)) == {"revision": 2, "prev_kv": None}
    result = log.ok(Put(b"k", b"v2", prev_kv=True))
    assert result["prev_kv"] == {
        "key": b"k",
        "value": b"v1",
        "create_revision": 2,
        "mod_revision": 2,
        "version": 1,
        "lease": 0,
    }
    deleted = log.ok(Delete(b"k", prev_kv=True))
    assert deleted["prev_kvs"] == [
        {
            "key": b"k",
            "value": b"v2",
            "create_revision": 2,
            "mod_revision": 3,
            "version": 2,
            "lease": 0,
        }
    ]


def test_put_emits_a_put_event_with_the_new_key_value() -> None:
    log = Log()
    log.ok(Put(b"k", b"v1"))
    outcome = log.apply(Put(b"k", b"v2"))
    assert outcome.events == [WatchEvent("put", b"k", b"v2", 2, 3, 2, 0)]


def test_delete_by_prefix_is_one_revision_with_one_event_per_key_in_key_order() -> None:
    log = Log()
    for key in (b"app/b", b"app/a", b"apple", b"app/c", b"b"):
        log.ok(Put(key, key.upper()))
    outcome = log.apply(Delete.prefix(b"app/", prev_kv=True))
    assert outcome.result["revision"] == 7
    assert outcome.result["deleted"] == 3
    assert [kv["key"] for kv in outcome.result["prev_kvs"]] == [b"app/a", b"app/b", b"app/c"]
    assert outcome.events == [
        WatchEvent("delete", b"app/a", b"", 0, 7, 0, 0),
        WatchEvent("delete", b"app/b", b"", 0, 7, 0, 0),
        WatchEvent("delete", b"app/c", b"", 0, 7, 0, 0),
    ]
    remaining = log.ok(Range.all())
    assert [kv["key"] for kv in remaining["kvs"]] == [b"apple", b"b"]


def test_delete_of_a_half_open_range_keeps_the_end_key() -> None:
    log = Log()
    for key in (b"a", b"b", b"c", b"d"):
        log.ok(Put(key, b""))
    assert log.ok(Delete(b"b", b"d"))["deleted"] == 2
    assert [kv["key"] for kv in log.ok(Range.all())["kvs"]] == [b"a", b"d"]


@pytest.fixture
def populated() -> Log:
    log = Log()
    for key in (b"k3", b"k1", b"k5", b"k2", b"k4", b"j", b"l", b"k\xff", b"k\xff\xff"):
        log.ok(Put(key, b"value-" + key))
    return log


def _keys(result: dict) -> list[bytes]:
    return [kv["key"] for kv in result["kvs"]]


def test_range_by_prefix_is_sorted_by_key(populated: Log) -> None:
    result = populated.ok(Range.prefix(b"k"))
    assert _keys(result) == [b"k1", b"k2", b"k3", b"k4", b"k5", b"k\xff", b"k\xff\xff"]
    assert result["count"] == 7
    assert result["more"] is False
    assert result["kvs"][0]["value"] == b"value-k1"


def test_range_with_limit_reports_more_and_the_full_count(populated: Log) -> None:
    result = populated.ok(Range.prefix(b"k", limit=2))
    assert _keys(result) == [b"k1", b"k2"]
    assert result["count"] == 7
    assert result["more"] is True
    exact = populated.ok(Range.prefix(b"k", limit=7))
    assert exact["more"] is False


def test_range_half_open_interval_and_all_keys(populated: Log) -> None:
    assert _keys(populated.ok(Range(b"k2", b"k4"))) == [b"k2", b"k3"]
    assert _keys(populated.ok(Range(b"k4", b"\0"))) == [
        b"k4",
        b"k5",
        b"k\xff",
        b"k\xff\xff",
        b"l",
    ]
    assert populated.ok(Range.all())["count"] == 9
    assert _keys(populated.ok(Range.prefix(b""))) == _keys(populated.ok(Range.all()))


def test_range_of_a_prefix_ending_in_0xff(populated: Log) -> None:
    assert _keys(populated.ok(Range.prefix(b"k\xff"))) == [b"k\xff", b"k\xff\xff"]


def test_range_single_key_keys_only_and_count_only(populated: Log) -> None:
    single = populated.ok(Range(b"k3"))
    assert _keys(single) == [b"k3"] and single["count"] == 1
    missing = populated.ok(Range(b"k33"))
    assert missing == {"revision": populated.machine.revision, "kvs": [], "count": 0, "more": False}
    keys_only = populated.ok(Range.prefix(b"k", keys_only=True, limit=1))
    assert keys_only["kvs"][0]["value"] == b"" and keys_only["kvs"][0]["key"] == b"k1"
    assert populated.ok(Range.prefix(b"k", count_only=True)) == {
        "revision": populated.machine.revision,
        "kvs": [],
        "count": 7,
        "more": False,
    }


def test_range_is_a_read_it_changes_no_revision(populated: Log) -> None:
    before = populated.machine.revision
    populated.ok(Range.all())
    assert populated.machine.revision == before


def test_local_range_read_matches_applied_range(populated: Log) -> None:
    query = Range(b"k1", b"k9", limit=3)
    assert populated.machine.range(query) == populated.ok(query)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"a", b"b"),
        (b"a\xff", b"b"),
        (b"ab\xff\xff", b"ac"),
        (b"\xff", b"\0"),
        (b"\xff\xff", b"\0"),
        (b"", b"\0"),
        (b"\x00", b"\x01"),
    ],
)
def test_prefix_end_matches_etcd(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_get_returns_the_key_value_or_none() -> None:
    machine = StateMachine()
    assert machine.get(b"nope") is None
    Log(machine).ok(Put(b"k", b"v"))
    kv = machine.get(b"k")
    assert kv is not None
    assert (kv.key, kv.value, kv.version) == (b"k", b"v", 1)

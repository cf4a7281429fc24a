"""Typed results, request builders, error mapping and the CLI txn syntax."""

from __future__ import annotations

import base64

import pytest

from raftkv.client import errors
from raftkv.client.models import (
    Compare,
    KeyValue,
    Status,
    TxnDelete,
    TxnPut,
    TxnRange,
    TxnResult,
    compare_from_json,
    txn_op_from_json,
)
from raftkv.client.txnparse import TxnSyntaxError, parse_compare, parse_op


def test_kv_decodes_text_and_base64_fields_losslessly() -> None:
    raw = {
        "key_b64": base64.b64encode(b"k\xff").decode(),
        "value": "v",
        "create_revision": 2,
        "mod_revision": 3,
        "version": 2,
        "lease": 5,
    }
    assert KeyValue.from_json(raw) == KeyValue(b"k\xff", b"v", 2, 3, 2, 5)


def test_txn_ops_and_compares_round_trip_through_json() -> None:
    ops: list[TxnPut | TxnDelete | TxnRange] = [
        TxnPut(b"a\xfe", "1", lease=3, prev_kv=True),
        TxnDelete("p/", prefix=True),
        TxnRange("r", limit=2, keys_only=True),
    ]
    for op in ops:
        back = txn_op_from_json(op.to_json())
        assert back.to_json() == op.to_json()
    cmp = Compare("a", "version", ">", 1, prefix=True)
    assert compare_from_json(cmp.to_json()) == Compare(b"a", "version", ">", 1, True)


@pytest.mark.parametrize(
    ("target", "value"),
    [("value", 1), ("version", "x"), ("exists", 1), ("version", True), ("colour", 1)],
)
def test_compare_rejects_mismatched_operands(target: str, value: object) -> None:
    with pytest.raises(ValueError):
        Compare("a", target, "==", value)  # type: ignore[arg-type]


def test_txn_result_and_status_parse_server_json() -> None:
    res = TxnResult.from_json(
        {
            "revision": 9,
            "succeeded": False,
            "responses": [
                {
                    "op": "range",
                    "kvs": [
                        {
                            "key": "a",
                            "value": "1",
                            "create_revision": 1,
                            "mod_revision": 1,
                            "version": 1,
                            "lease": 0,
                        }
                    ],
                    "count": 1,
                    "more": False,
                }
            ],
        }
    )
    assert not res.succeeded and res.responses[0].kvs[0].value == b"1"
    st = Status.from_json(
        {"name": "n1", "id": 1, "role": "follower", "term": 3, "leader": None, "members": []},
        "http://x:1",
    )
    assert st.leader is None and st.endpoint == "http://x:1"


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "key_not_found", errors.KeyNotFoundError),
        (404, "something_new", errors.NotFoundError),
        (409, "lock_held", errors.LockHeldError),
        (409, "lease_exists", errors.LeaseExistsError),
        (410, "compacted", errors.CompactedError),
        (413, "value_too_large", errors.TooLargeError),
        (400, "invalid_txn", errors.BadRequestError),
        (503, "no_leader", errors.NoLeaderError),
        (503, "timeout", errors.UnavailableError),
        (500, "internal", errors.ServerError),
        (418, "", errors.ServerError),
    ],
)
def test_errors_map_to_the_most_specific_class(
    status: int, code: str, cls: type[errors.RaftkvError]
) -> None:
    exc = errors.error_from_response(status, {"error": code, "message": "m"} if code else None)
    assert type(exc) is cls
    assert exc.status == status


def test_a_503_timeout_leaves_the_outcome_unknown_but_no_leader_does_not() -> None:
    timeout = errors.error_from_response(503, {"error": "timeout", "message": "m"}, retry_after=1.0)
    assert isinstance(timeout, errors.UnavailableError)
    assert timeout.outcome_unknown and timeout.retry_after == 1.0
    no_leader = errors.error_from_response(503, {"error": "no_leader", "message": "m"})
    assert isinstance(no_leader, errors.UnavailableError) and not no_leader.outcome_unknown


def test_compare_failed_carries_the_current_value() -> None:
    exc = errors.error_from_response(
        409,
        {
            "error": "compare_failed",
            "message": "m",
            "revision": 7,
            "current": {
                "key": "a",
                "value": "now",
                "create_revision": 1,
                "mod_revision": 6,
                "version": 3,
                "lease": 0,
            },
        },
    )
    assert isinstance(exc, errors.CompareFailedError)
    assert exc.revision == 7 and exc.current is not None and exc.current.value == b"now"


def test_cli_txn_syntax() -> None:
    assert parse_compare("version(a) == 0") == Compare("a", "version", "==", 0)
    assert parse_compare("value(a b) != 'x y'") == Compare("a b", "value", "!=", "x y")
    assert parse_compare("exists(k) == false") == Compare("k", "exists", "==", False)
    assert parse_compare("version(jobs/) > 1 prefix") == Compare("jobs/", "version", ">", 1, True)
    assert parse_op("put k 'v v' --lease 5") == TxnPut("k", "v v", 5)
    assert parse_op("del p/ --prefix") == TxnDelete("p/", True)
    assert parse_op("get k --limit 3") == TxnRange("k", limit=3)


@pytest.mark.parametrize(
    "expr",
    [
        "version(a) = 0",
        "size(a) == 1",
        "version(a) == x",
        "exists(a) == maybe",
        "value(a) == 'open",
    ],
)
def test_cli_txn_syntax_errors_say_what_is_wrong(expr: str) -> None:
    with pytest.raises(TxnSyntaxError, match="bad compare"):
        parse_compare(expr)


@pytest.mark.parametrize("expr", ["", "put k", "frob k", "get k --limit", "del k --lease 1"])
def test_cli_txn_op_errors(expr: str) -> None:
    with pytest.raises(TxnSyntaxError):
        parse_op(expr)


def test_lease_info_accepts_keys_as_text_base64_or_objects() -> None:
    from raftkv.client.models import LeaseInfo

    base = {"id": 1, "ttl": 5, "remaining": None, "locks": ["l"]}
    assert LeaseInfo.from_json({**base, "keys": ["a", "b"]}).keys == [b"a", b"b"]
    assert LeaseInfo.from_json({**base, "keys_b64": ["/w=="]}).keys == [b"\xff"]
    assert LeaseInfo.from_json({**base, "keys": [{"key_b64": "/w=="}]}).keys == [b"\xff"]

"""Endpoint parsing and the leader / random / round-robin strategies."""

from __future__ import annotations

import random

import pytest

from raftkv.client.endpoints import EndpointSelector, normalize_endpoint, parse_endpoints


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:7379", "http://127.0.0.1:7379"),
        ("http://a:1/", "http://a:1"),
        (" https://a.b:443 ", "https://a.b:443"),
        ("http://[::1]:7379", "http://[::1]:7379"),
    ],
)
def test_endpoints_are_normalized(raw: str, expected: str) -> None:
    assert normalize_endpoint(raw) == expected


@pytest.mark.parametrize("raw", ["", "ftp://a:1", "http://a:1/v1", "http://a:99999", "http://:1"])
def test_bad_endpoints_are_refused_with_the_reason(raw: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        normalize_endpoint(raw)


def test_comma_separated_endpoints_keep_order_and_drop_duplicates() -> None:
    assert parse_endpoints("a:1, b:2,,a:1") == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError, match="no endpoints"):
        parse_endpoints(" , ")


def test_round_robin_reads_visit_endpoints_in_turn() -> None:
    sel = EndpointSelector(["a:1", "b:2", "c:3"], "round-robin")
    sel.set_leader(7, "http://c:3")
    assert [sel.for_read() for _ in range(6)] == ["http://a:1", "http://b:2", "http://c:3"] * 2
    assert sel.for_write() == "http://c:3"  # writes still go to the leader


def test_random_reads_follow_the_rng_and_cover_every_endpoint() -> None:
    sel = EndpointSelector(["a:1", "b:2", "c:3"], "random", rng=random.Random(4))
    picks = [sel.for_read() for _ in range(300)]
    assert set(picks) == set(sel.endpoints)
    again = EndpointSelector(["a:1", "b:2", "c:3"], "random", rng=random.Random(4))
    assert [again.for_read() for _ in range(300)] == picks


def test_leader_strategy_reads_and_writes_go_to_the_leader_once_known() -> None:
    sel = EndpointSelector(["a:1", "b:2"], "leader")
    assert sel.for_write() in sel.endpoints  # unknown leader: any endpoint forwards
    sel.set_leader(2, "http://b:2/")
    assert {sel.for_read() for _ in range(5)} == {"http://b:2"}
    sel.forget_leader()
    assert {sel.for_write() for _ in range(2)} == set(sel.endpoints)
    assert sel.usable_leader() is None


def test_an_unreachable_advertised_leader_url_falls_back_to_the_endpoints() -> None:
    sel = EndpointSelector(["a:1", "b:2"], "leader")
    sel.set_leader(9, "http://pod-0.svc.cluster.local:7379")
    assert sel.for_write() == "http://pod-0.svc.cluster.local:7379"
    sel.leader_unreachable("http://pod-0.svc.cluster.local:7379")
    sel.set_leader(9, "http://pod-0.svc.cluster.local:7379")  # status says it again
    assert sel.for_write() in sel.endpoints
    sel.set_leader(10, "http://pod-1.svc.cluster.local:7379")  # a new leader: try it
    assert sel.for_write() == "http://pod-1.svc.cluster.local:7379"


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        EndpointSelector(["a:1"], "fastest")

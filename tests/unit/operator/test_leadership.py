"""Leader election's pure decisions (operator/raftkv_operator/leadership.py) and the
Lease objects it writes."""

from __future__ import annotations

from datetime import UTC, datetime

import kubernetes_validate
import pytest

from raftkv_operator import leadership
from raftkv_operator.leadership import LeaseRecord, LeaseTimings, decide
from raftkv_operator.models import SUPPORTED_KUBERNETES_VERSIONS

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def record(holder: str | None, renew: str = "t1", rv: str = "7") -> LeaseRecord:
    return LeaseRecord(holder=holder, renew_time=renew, transitions=2, resource_version=rv)


def test_a_missing_or_released_lease_is_taken_at_once() -> None:
    assert decide(None, "a", 0.0, 8.0) == "acquire"
    assert decide(record(None), "a", 0.0, 8.0) == "acquire"


def test_the_holder_renews() -> None:
    assert decide(record("a"), "a", 100.0, 8.0) == "renew"


def test_a_standby_waits_until_the_record_stayed_unchanged_for_the_whole_lease() -> None:
    assert decide(record("b"), "a", 7.9, 8.0) == "wait"
    assert decide(record("b"), "a", 8.1, 8.0) == "acquire"


def test_timings_must_let_the_holder_stop_before_a_standby_takes_over() -> None:
    LeaseTimings(8, 5, 1)
    for bad in ((8, 8, 1), (8, 5, 5), (8, 9, 1), (8, 5, 0)):
        with pytest.raises(ValueError):
            LeaseTimings(*bad)


def test_taking_over_counts_a_transition_and_keeps_the_resource_version() -> None:
    body = leadership.lease_body("op", "ns", "a", LeaseTimings(), NOW, previous=record("b"))
    spec = body["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 3
    assert spec["acquireTime"] == spec["renewTime"] == "2026-01-02T03:04:05.678901Z"
    assert body["metadata"]["resourceVersion"] == "7"  # a racing standby gets a 409
    renewed = leadership.lease_body("op", "ns", "a", LeaseTimings(), NOW, previous=record("a"))
    assert renewed["spec"]["leaseTransitions"] == 2 and "acquireTime" not in renewed["spec"]


def test_release_names_no_holder() -> None:
    body = leadership.lease_body("op", "ns", None, LeaseTimings(), NOW, previous=record("a"))
    assert body["spec"]["holderIdentity"] is None
    assert body["spec"]["leaseDurationSeconds"] == 1


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
def test_lease_objects_are_valid_kubernetes(version: str) -> None:
    for previous in (None, record("b"), record("a")):
        body = leadership.lease_body("op", "ns", "a", LeaseTimings(), NOW, previous=previous)
        kubernetes_validate.validate(body, version, strict=True)
    released = leadership.lease_body("op", "ns", None, LeaseTimings(), NOW, previous=record("a"))
    released["spec"].pop("holderIdentity")  # null: omitted by the API server's schema
    kubernetes_validate.validate(released, version, strict=True)


def test_record_reads_a_lease_object() -> None:
    obj = {
        "metadata": {"resourceVersion": "12"},
        "spec": {"holderIdentity": "a", "renewTime": "x", "leaseTransitions": 4},
    }
    assert LeaseRecord.from_object(obj) == LeaseRecord("a", "x", 4, "12")
    assert LeaseRecord.from_object(None) is None

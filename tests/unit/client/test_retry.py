"""Backoff, Retry-After and the session pool."""

from __future__ import annotations

import random

import pytest

from raftkv.client.retry import RetryPolicy, SessionPool


def test_backoff_grows_exponentially_within_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (40, 1.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)


def test_retry_after_is_honored_except_for_leader_changes() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=0.02)
    assert policy.delay(0, "timeout", 3.0) == 3.0
    assert policy.delay(0, "not_ready", 2.0) == 2.0
    # A leader change is handled by finding the new leader, not by waiting a second.
    assert policy.delay(0, "no_leader", 3.0) <= 0.02
    assert (
        RetryPolicy(base_delay=0.01, max_delay=0.02, honor_retry_after=False).delay(
            0, "timeout", 3.0
        )
        <= 0.02
    )


def test_attempt_limit() -> None:
    assert RetryPolicy(max_attempts=3).may_retry(1)
    assert not RetryPolicy(max_attempts=3).may_retry(2)
    assert RetryPolicy(max_attempts=0).may_retry(10_000)
    with pytest.raises(ValueError):
        RetryPolicy(deadline=0)


def test_concurrent_writes_get_distinct_client_ids_and_seqs_keep_growing() -> None:
    pool = SessionPool("me")
    s1, seq1 = pool.acquire()
    s2, seq2 = pool.acquire()
    assert s1.client_id != s2.client_id and (seq1, seq2) == (1, 1)
    pool.release(s1)
    s3, seq3 = pool.acquire()
    assert s3 is s1 and seq3 == 2  # reused id, next seq
    assert pool.size == 2


def test_random_prefix_per_pool() -> None:
    assert SessionPool().prefix != SessionPool().prefix

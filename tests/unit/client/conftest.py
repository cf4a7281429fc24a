"""Fixtures of the client unit tests: a fake cluster on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from raftkv.client import AsyncClient, RetryPolicy
from tests.unit.client.fakeserver import FakeCluster

# Fast retries: the fake answers at once, waiting would only slow the tests.
FAST_RETRY = RetryPolicy(deadline=5.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCluster]:
    cluster = FakeCluster(2)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def client(fake: FakeCluster) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(fake.urls, retry=FAST_RETRY) as c:
        yield c

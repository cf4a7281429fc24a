"""Fixtures of the integration tier: real node processes, always killed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import Cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))
    c = Cluster(tmp_path, session)
    try:
        yield c
    finally:
        c.close()
        await session.close()


@pytest.fixture
async def three_nodes(cluster: Cluster) -> Cluster:
    cluster.create(3)
    cluster.start_all()
    await cluster.wait_leader()
    return cluster

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


ENGINES = ("raft", "multipaxos")


@pytest.fixture
def engine() -> str:
    """The consensus engine of `three_nodes`: Raft, or each engine in turn for tests
    marked `both_engines` (pytest_generate_tests below)."""
    return "raft"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("both_engines") is None:
        return
    metafunc.parametrize("engine", ENGINES)


@pytest.fixture
async def three_nodes(cluster: Cluster, engine: str) -> Cluster:
    cluster.engine = engine  # also for the nodes a test adds later
    cluster.create(3)
    cluster.start_all()
    await cluster.wait_leader()
    return cluster

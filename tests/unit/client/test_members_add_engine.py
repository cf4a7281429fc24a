"""`members add --client-url` compares the joiner's consensus engine with the cluster's
before proposing anything; a node that does not say its engine is let through.
(The end-to-end case, with real nodes: tests/integration/test_engine_mismatch.py.)"""

from __future__ import annotations

import argparse
import io
from typing import Any, cast

import pytest

from raftkv.client.aio import AsyncClient
from raftkv.client.commands import Output, cmd_members_add
from raftkv.client.errors import ConflictError
from raftkv.client.models import Member, Status

JOINER_URL = "http://joiner:7379"


class StubClient:
    """Answers `status` for the joiner and for the cluster; records `add_member`."""

    def __init__(self, joiner: str | None, cluster: str | None) -> None:
        self.engines = {JOINER_URL: joiner, None: cluster}
        self.added: list[tuple[Any, ...]] = []

    async def status(self, endpoint: str | None = None) -> Status:
        name, member_id = ("n4", 44) if endpoint == JOINER_URL else ("n1", 1)
        return Status(name=name, id=member_id, consensus=self.engines[endpoint])

    async def add_member(self, *args: Any) -> Member:
        self.added.append(args)
        return Member(id=args[3], name=args[0], peer_url=args[1], role="learner")


async def add(stub: StubClient) -> str:
    args = argparse.Namespace(name="n4", peer_url="joiner:7380", client_url=JOINER_URL, id=None)
    out = io.StringIO()
    await cmd_members_add(cast(AsyncClient, stub), args, Output("human", out))
    return out.getvalue()


async def test_a_joiner_of_the_other_engine_is_refused_before_anything_is_proposed() -> None:
    stub = StubClient(joiner="multipaxos", cluster="raft")
    with pytest.raises(ConflictError) as refused:
        await add(stub)
    assert refused.value.code == "wrong_consensus"
    assert "n4 runs multipaxos but the cluster runs raft" in refused.value.message
    assert "--consensus raft on an empty data directory" in refused.value.message
    assert stub.added == []


@pytest.mark.parametrize(
    ("joiner", "cluster"),
    [("raft", "raft"), ("multipaxos", "multipaxos"), (None, "raft"), ("raft", None)],
)
async def test_the_same_engine_or_a_node_that_does_not_say_is_added(
    joiner: str | None, cluster: str | None
) -> None:
    stub = StubClient(joiner, cluster)
    assert await add(stub) == "added n4 (id 44) as a learner\n"
    assert stub.added == [("n4", "joiner:7380", JOINER_URL, 44)]

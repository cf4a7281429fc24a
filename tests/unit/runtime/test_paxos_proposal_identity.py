"""On Multi-Paxos a proposal learns its outcome by comparing the value chosen at
its slot with what it proposed (a later leader may choose it again at its own
ballot). Two client requests with the same command (two identical PUTs without
a session) must still be told apart: one must never be told "applied" because
the other was chosen in its slot.

The scenario, on one in-process Multi-Paxos node (real loop, core and state
machine): request A is given slot s but its value never reaches an acceptor (as
if its leader lost its ballot first); request B, the same PUT from another
client, is the value a later leader chooses at slot s. A must learn that its
write was lost, and the state machine must apply the PUT once, unchanged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from raftkv.fsm import Put, encode
from raftkv.runtime.outcomes import ProposalLost
from tests.unit.runtime.solo import solo_node

T = TypeVar("T")


async def _until(predicate: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while (value := predicate()) is None or value is False:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return value


async def test_an_identical_proposal_chosen_in_my_slot_is_not_my_outcome(
    tmp_path: Path,
) -> None:
    async with solo_node(tmp_path, consensus="multipaxos", request_timeout=30.0) as server:
        node = server.node
        core = node.core
        await _until(lambda: node.fsm.applied_index >= core.last_index(), "the start applied")
        real_propose_batch = core.propose_batch
        captured: list[bytes] = []
        slot = core.last_index() + 1

        def lost_at_slot(offset: int) -> Callable[[list[bytes]], tuple[int, int]]:
            # The loop believes its batch sits at `slot + offset`; it reaches no acceptor.
            def propose_batch(datas: list[bytes]) -> tuple[int, int]:
                assert len(datas) == 1
                captured.append(datas[0])
                return core.promised, slot + offset

            return propose_batch

        put = encode(Put(b"k", b"v"))  # no session: nothing else tells the two apart
        core.propose_batch = lost_at_slot(0)  # type: ignore[method-assign]
        mine = node.propose(put)
        await _until(lambda: len(captured) == 1, "request A proposed")
        core.propose_batch = lost_at_slot(1000)  # type: ignore[method-assign]
        theirs = node.propose(put)
        await _until(lambda: len(captured) == 2, "request B proposed")
        core.propose_batch = real_propose_batch  # type: ignore[method-assign]

        # The later leader chooses B's value at A's slot.
        chosen = await node.call(lambda: core.propose(captured[1]))
        assert chosen[1] == slot

        with pytest.raises(ProposalLost):
            await asyncio.wait_for(mine, 10)
        # The PUT applied once, as the plain command would have.
        kv = node.fsm.get(b"k")
        assert kv is not None and kv.value == b"v"
        assert kv.mod_revision == node.fsm.revision == 2
        theirs.cancel()

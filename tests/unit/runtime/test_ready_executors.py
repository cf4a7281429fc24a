"""The node loop and the simulator execute the same Ready plan (raftkv/runtime/ready.py).

For every Ready an in-process three-node cluster handles (leaders, followers, a
snapshot install to a member that fell behind the compaction), the effects the
node had, in order, are exactly the steps `ready.plan` gave for it, and its core
was not stepped until the Ready was done (the plan is safe only so). The
simulator is checked the same way over a few seeds. If either executor skips,
reorders or re-implements a step, these fail: the 20,000 simulated seeds then
no longer speak for production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raftkv.raft import HardState, Raft, Ready
from raftkv.runtime import ready
from raftkv.runtime.config import InitialMember, NodeConfig
from raftkv.runtime.node import RaftNode
from raftkv.runtime.server import Server
from raftkv.storage import CheckpointStore, MemoryRaftStore, MemorySnapshotStore
from raftkv.tools.ports import free_port
from tests.sim import cluster as sim_cluster
from tests.sim.run import DEFAULT_STEPS, nodes_for


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _effect(step: ready.Step) -> tuple[Any, ...] | None:
    """What executing `step` must visibly do on a RaftNode (None: nothing observable
    but the node's deferred hard state, checked separately)."""
    match step:
        case ready.Send():
            return ("send", id(step.messages))
        case ready.Apply():
            return ("apply", id(step.entries))
        case ready.Persist():
            return ("save", id(step.hard_state), id(step.entries))
        case ready.PersistSnapshot():
            return ("persist_snapshot", step.snapshot.meta.index, id(step.hard_state))
        case ready.RestoreSnapshot():
            return ("restore", step.snapshot.meta.index)
        case ready.Advance():
            return ("advance",)
        case ready.ReleaseReads():
            return ("release_reads",)
        case ready.DeferHardState():
            return None
    raise AssertionError(step)


class Recorder:
    """Wraps one node's effects and checks each Ready's against its plan."""

    def __init__(
        self, node: RaftNode, planned: dict[int, list[ready.Step]], kinds: set[type]
    ) -> None:
        self.node = node
        self.planned = planned
        self.kinds = kinds
        self.effects: list[tuple[Any, ...]] = []
        self.mismatches: list[str] = []
        self.readies = 0
        self._wrap(node, "send", lambda msgs: ("send", id(msgs)))
        self._wrap(node, "_apply_entries", lambda entries: ("apply", id(entries)))
        self._wrap(node.raft_store, "save", lambda hs, entries: ("save", id(hs), id(entries)))
        self._wrap(
            node,
            "_persist_snapshot",
            lambda snap, hs: ("persist_snapshot", snap.meta.index, id(hs)),
        )
        self._wrap(node, "_restore_snapshot", lambda snap: ("restore", snap.meta.index))
        self._wrap(node.core, "advance", lambda rd: ("advance",))
        self._wrap(node, "_release_reads", lambda: ("release_reads",))
        # What makes the plan's departures safe (docs/architecture.md): the core is
        # never stepped while a Ready is handled, even while its write is in flight
        # in the storage thread (forced here, so the loop does yield meanwhile).
        node._durable.inline_max_entries = -1
        self.in_ready = False
        for name in (
            "step",
            "tick",
            "propose",
            "propose_batch",
            "read_index",
            "campaign",
            "transfer_leadership",
            "propose_conf_change",
            "report_unreachable",
            "report_snapshot",
            "compact",
        ):
            self._guard(node.core, name)
        original = node._handle_ready

        async def handle_ready(rd: Ready) -> None:
            # (No assert in here: an exception kills the node loop, and the process.)
            self.effects.clear()
            self.in_ready = True
            try:
                await original(rd)
            finally:
                self.in_ready = False
            steps = self.planned.pop(id(rd))
            expected = [e for e in map(_effect, steps) if e is not None]
            if self.effects != expected:
                self.mismatches.append(f"node {node.id}: planned {steps}, did {self.effects}")
            defers = [s for s in steps if isinstance(s, ready.DeferHardState)]
            if defers and node._deferred_hs is not defers[-1].hard_state:
                self.mismatches.append(f"node {node.id}: {defers[-1]} not kept")
            self.kinds.update(type(s) for s in steps)
            self.readies += 1

        node._handle_ready = handle_ready  # type: ignore[method-assign]

    def _guard(self, core: Raft, name: str) -> None:
        inner = getattr(core, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.in_ready:
                self.mismatches.append(f"node {self.node.id}: core.{name} inside a Ready")
            return inner(*args, **kwargs)

        setattr(core, name, guarded)

    def _wrap(self, obj: Any, name: str, describe: Callable[..., tuple[Any, ...]]) -> None:
        inner = getattr(obj, name)

        def wrapper(*args: Any) -> Any:
            self.effects.append(describe(*args))
            return inner(*args)

        setattr(obj, name, wrapper)


async def test_the_node_executes_exactly_the_planned_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned: dict[int, list[ready.Step]] = {}
    real_plan = ready.plan

    def recording_plan(
        rd: Ready, *, leader: bool, durable: HardState, deferred: HardState | None
    ) -> list[ready.Step]:
        steps = real_plan(rd, leader=leader, durable=durable, deferred=deferred)
        planned[id(rd)] = steps
        return steps

    monkeypatch.setattr(ready, "plan", recording_plan)
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = [InitialMember(f"m{i}", f"127.0.0.1:{p}") for i, (_, p) in enumerate(ports)]
    stores = [(MemoryRaftStore(), MemorySnapshotStore()) for _ in range(3)]
    kinds: set[type] = set()
    recorders: list[Recorder] = []

    def make(i: int) -> Server:
        client, peer = ports[i]
        cfg = NodeConfig(
            f"m{i}",
            tmp_path / f"m{i}",
            listen_host="127.0.0.1",
            client_port=client,
            peer_port=peer,
            advertise_client_url=f"http://127.0.0.1:{client}",
            advertise_peer_url=f"127.0.0.1:{peer}",
            initial_cluster=initial,
            tick_ms=20,
            snapshot_entries=20,
            snapshot_catchup_entries=1,
            client_insecure=True,
            peer_insecure=True,
        )
        # A restart finds what the stopped member had on "disk" (a crash image).
        stores[i] = (stores[i][0].copy(), stores[i][1].copy())
        return Server(
            cfg,
            raft_store=stores[i][0],
            snapshot_store=stores[i][1],
            checkpoint_store=CheckpointStore(tmp_path / f"ck{i}"),
        )

    async def start(i: int) -> Server:
        server = make(i)
        await server.start()
        recorders.append(Recorder(server.node, planned, kinds))
        return server

    servers = [await start(i) for i in range(3)]
    try:

        def leader() -> Server | None:
            ids = {s.node.core.leader for s in servers}
            return next((s for s in servers if ids == {s.node.id}), None)

        await _wait(lambda: leader() is not None, 10, "a leader")
        lead = leader()
        assert lead is not None
        behind = next(i for i, s in enumerate(servers) if s is not lead)
        url = lead.cfg.advertise_client_url
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                async with http.put(f"{url}/v1/kv/a{i}", data=b"v") as r:
                    assert r.status == 200
            await servers[behind].shutdown(transfer_timeout=0.5)
            # Enough for the leader to snapshot and compact past the stopped member.
            for i in range(60):
                async with http.put(f"{url}/v1/kv/b{i}", data=b"v") as r:
                    assert r.status == 200
            async with http.get(f"{url}/v1/kv/b0") as r:  # a ReadIndex read
                assert r.status == 200
            await _wait(lambda: lead.node.core.log.offset > 10, 10, "the leader to compact")
            servers[behind] = await start(behind)
            await _wait(
                lambda: servers[behind].node.fsm.get(b"b59") is not None,
                20,
                "the restarted member to catch up from a snapshot",
            )
    finally:
        for s in servers:
            await s.shutdown(transfer_timeout=0.5)
    assert [m for r in recorders for m in r.mismatches] == []
    assert sum(r.readies for r in recorders) > 50
    assert kinds == set(ready.STEP_KINDS), f"never planned: {set(ready.STEP_KINDS) - kinds}"


def test_the_simulator_executes_exactly_the_planned_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Ready's executed steps are its plan, or a prefix of it when the node
    crashed inside it (an armed crash point)."""
    planned: list[list[ready.Step]] = []
    executed: list[ready.Step] = []
    kinds: set[type] = set()
    readies = crashed = 0

    def recording_plan(
        rd: Ready, *, leader: bool, durable: HardState, deferred: HardState | None
    ) -> list[ready.Step]:
        steps = ready.plan(rd, leader=leader, durable=durable, deferred=deferred)
        planned.append(steps)
        return steps

    real_execute = sim_cluster.Cluster._execute_step
    real_handle = sim_cluster.Cluster._handle_ready

    def execute_step(
        self: sim_cluster.Cluster, node: Any, core: Raft, rd: Ready, step: ready.Step
    ) -> bool:
        executed.append(step)
        kinds.add(type(step))
        return real_execute(self, node, core, rd, step)

    def handle_ready(self: sim_cluster.Cluster, node: Any, core: Raft) -> bool:
        nonlocal readies, crashed
        planned.clear()
        executed.clear()
        done = real_handle(self, node, core)
        (steps,) = planned
        if done:
            assert executed == steps
        else:
            crashed += 1
            assert executed == steps[: len(executed)] and len(executed) < len(steps)
        readies += 1
        return done

    monkeypatch.setattr(sim_cluster.Cluster, "_execute_step", execute_step)
    monkeypatch.setattr(sim_cluster.Cluster, "_handle_ready", handle_ready)
    for seed in range(6):
        result = sim_cluster.run_seed(
            seed, nodes_for(seed, [3, 5]), DEFAULT_STEPS, planner=recording_plan
        )
        assert result.ok, (seed, result.invariant, result.detail)
    assert readies > 1000 and crashed > 0
    assert kinds == set(ready.STEP_KINDS), f"never executed: {set(ready.STEP_KINDS) - kinds}"

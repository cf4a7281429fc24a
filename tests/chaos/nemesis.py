"""Faults, injected on a seeded schedule while the workloads run.

Primary faults (one at a time: start, hold, heal):
    partition   majority/minority halves, the leader isolated, a bridge (one node
                sees both sides), or asymmetric drops (a node hears nobody / nobody
                hears it)
    kill        kill -9 the leader or a minority, restart on heal
    pause       SIGSTOP the leader or a node for longer than an election timeout
    power-loss  kill -9 then drop every write the WAL had not fsynced (the leader
                or a minority), restart on heal
    power-loss-all  the same on every node at once (a data centre's power cut)
    slow        delay every link (loopback mode only: netem is unavailable)
Side actions (during a primary fault's hold, or alone if nothing else is on):
    member      add a fresh node (learner, then promote) or remove a voter
    transfer    leadership transfer to a random voter

Every step goes to the timeline (`nemesis.jsonl`): time, fault, detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.chaos.cluster import ELECTION_TIMEOUT, Cluster, NodeProc
from tests.chaos.history import Recorder
from tests.chaos.net import Network

PRIMARY = ("partition", "kill", "pause", "power-loss", "power-loss-all", "slow")
# How often each primary fault is picked, relatively: a whole-cluster power cut leaves
# nothing to observe while it lasts, so it comes less often.
WEIGHTS = {"partition": 3, "kill": 2, "pause": 2, "power-loss": 2, "power-loss-all": 1, "slow": 2}
SIDE = ("member", "transfer")
# How long a joiner may take to serve its id; a loaded 2-core machine has taken 12 s.
JOINER_START_TIMEOUT = 30.0
NEMESES = PRIMARY + SIDE


def parse_nemeses(text: str) -> tuple[str, ...]:
    if text in ("mixed", "all"):
        return NEMESES
    if text in ("none", ""):
        return ()
    chosen = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in chosen if n not in NEMESES]
    if unknown:
        raise ValueError(f"unknown nemeses {unknown}; choose from {NEMESES} or 'mixed'")
    return chosen


@dataclass
class Nemesis:
    cluster: Cluster
    net: Network
    rng: random.Random
    recorder: Recorder
    enabled: tuple[str, ...]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def log(self, fault: str, event: str, **detail: Any) -> None:
        self.timeline.append(
            {"time": self.recorder.now(), "fault": fault, "event": event, **detail}
        )

    async def _sleep(self, seconds: float) -> None:
        """Wait, but wake early when the run stops (pacing, not synchronisation)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def run(self) -> None:
        primaries = [n for n in self.enabled if n in PRIMARY and (n != "slow" or self.net.can_slow)]
        sides = [n for n in self.enabled if n in SIDE]
        if "slow" in self.enabled and not self.net.can_slow:
            self.log("slow", "unavailable", mode=self.net.mode)
        while not self.stopping.is_set():
            await self._sleep(self.rng.uniform(0.5, 1.5))
            if self.stopping.is_set():
                break
            if not primaries:
                if sides:
                    await self._side(self.rng.choice(sides))
                    continue
                await self._sleep(1.0)
                continue
            fault = self.rng.choices(primaries, [WEIGHTS[p] for p in primaries])[0]
            self.counts[fault] = self.counts.get(fault, 0) + 1
            undo = await self._start(fault)
            hold = self.rng.uniform(1.0, 4.0)
            if sides and self.rng.random() < 0.5:
                await self._sleep(hold / 2)
                await self._side(self.rng.choice(sides))
                await self._sleep(hold / 2)
            else:
                await self._sleep(hold)
            await undo()
            self.log(fault, "stop")

    # --- primary faults ----------------------------------------------------------------

    async def _start(self, fault: str) -> Any:
        starter = {
            "partition": self._partition,
            "kill": self._kill,
            "pause": self._pause,
            "power-loss": self._power_loss,
            "power-loss-all": self._power_loss_all,
            "slow": self._slow,
        }[fault]
        return await starter()

    def _members(self) -> list[str]:
        return sorted(n.name for n in self.cluster.active())

    async def _leader_name(self) -> str | None:
        leader = await self.cluster.leader()
        return leader.name if leader else None

    async def _heal_net(self) -> None:
        await self.net.heal()

    async def _partition(self) -> Any:
        nodes = self._members()
        self.rng.shuffle(nodes)
        kind = self.rng.choice(["halves", "leader", "bridge", "asymmetric"])
        leader = await self._leader_name()
        cuts: list[tuple[str, str]] = []
        detail: dict[str, Any] = {"kind": kind}
        if kind == "leader" and leader in nodes:
            others = [n for n in nodes if n != leader]
            cuts = [(leader, o) for o in others] + [(o, leader) for o in others]
            detail["isolated"] = leader
        elif kind == "bridge" and len(nodes) >= 3:
            bridge, rest = nodes[0], nodes[1:]
            left, right = rest[: len(rest) // 2], rest[len(rest) // 2 :]
            cuts = [(a, b) for a in left for b in right] + [(b, a) for a in left for b in right]
            detail.update(bridge=bridge, left=left, right=right)
        elif kind == "asymmetric":
            victim = leader if (leader in nodes and self.rng.random() < 0.5) else nodes[0]
            others = [n for n in nodes if n != victim]
            deaf = self.rng.random() < 0.5
            cuts = [(o, victim) for o in others] if deaf else [(victim, o) for o in others]
            detail.update(victim=victim, hears_nobody=deaf, nobody_hears_it=not deaf)
        else:
            detail["kind"] = "halves"
            size = self.rng.randint(1, max(1, (len(nodes) - 1) // 2))
            minority, majority = nodes[:size], nodes[size:]
            cuts = [(a, b) for a in minority for b in majority]
            cuts += [(b, a) for a in minority for b in majority]
            detail.update(minority=minority, majority=majority)
        for src, dst in cuts:
            await self.net.block(src, dst)
        self.log("partition", "start", **detail)
        return self._heal_net

    async def _victims(self, allow_leader_only: bool = True) -> list[str]:
        nodes = [n.name for n in self.cluster.active() if n.running()]
        if not nodes:
            return []
        leader = await self._leader_name()
        if allow_leader_only and leader in nodes and self.rng.random() < 0.4:
            return [leader]
        self.rng.shuffle(nodes)
        limit = max(1, (len(self.cluster.active()) - 1) // 2)
        return sorted(nodes[: self.rng.randint(1, limit)])

    def _restarter(self, names: list[str]) -> Any:
        async def restart() -> None:
            for name in names:
                self.cluster.start(name)

        return restart

    async def _kill(self) -> Any:
        victims = await self._victims()
        for name in victims:
            self.cluster.kill(name)
        self.log("kill", "start", nodes=victims)
        return self._restarter(victims)

    async def _pause(self) -> Any:
        victims = await self._victims()
        for name in victims:
            self.cluster.pause(name)
        self.log("pause", "start", nodes=victims, election_timeout=ELECTION_TIMEOUT)

        async def resume() -> None:
            for name in victims:
                self.cluster.resume(name)

        return resume

    async def _power_loss_all(self) -> Any:
        return await self._power_loss(everyone=True)

    async def _power_loss(self, everyone: bool = False) -> Any:
        if everyone:
            victims = [n.name for n in self.cluster.active() if n.running()]
        else:
            victims = await self._victims()
        dropped = {name: self.cluster.power_loss(name) for name in victims}
        self.log(
            "power-loss-all" if everyone else "power-loss",
            "start",
            nodes=victims,
            unsynced_bytes_dropped={n: sum(d.values()) for n, d in dropped.items()},
        )
        return self._restarter(victims)

    async def _slow(self) -> Any:
        delay = self.rng.choice([0.02, 0.05, 0.1, 0.2])
        await self.net.slow(delay)
        self.log("slow", "start", delay=delay)
        return self._heal_net

    # --- side actions ------------------------------------------------------------------

    async def _side(self, action: str) -> None:
        self.counts[action] = self.counts.get(action, 0) + 1
        try:
            if action == "transfer":
                await self._transfer()
            else:
                await self._membership()
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            self.log(action, "error", error=repr(exc))

    async def _any_live(self) -> NodeProc | None:
        live = self.cluster.live()
        return self.rng.choice(live) if live else None

    async def _transfer(self) -> None:
        voters = await self.cluster.voters()
        node = await self._any_live()
        if not voters or node is None:
            self.log("transfer", "skipped", reason="no leader")
            return
        target = self.cluster.nodes[self.rng.choice(voters)]
        code, body = await self.cluster.request(
            "POST", node, "/v1/leader/transfer", {"to": target.id}, timeout=5
        )
        self.log(
            "transfer",
            "done",
            to=target.name,
            code=code,
            answer=body if isinstance(body, dict) else None,
        )

    async def _membership(self) -> None:
        voters = await self.cluster.voters()
        node = await self._any_live()
        if voters is None or node is None:
            self.log("member", "skipped", reason="no leader")
            return
        spares = self.cluster.spares()
        if spares and (len(voters) <= 3 or self.rng.random() < 0.5):
            await self._add(spares[0], node)
        elif len(voters) > 3:
            await self._remove(self.rng.choice(voters), node)
        else:
            self.log("member", "skipped", reason="no spare node and only 3 voters")

    async def _joiner_id(self, spare: NodeProc) -> int | None:
        """The id the joiner drew, as it serves it (it persists the id before it serves
        anything); None if it does not answer within JOINER_START_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOINER_START_TIMEOUT
        while loop.time() < deadline:
            st = await self.cluster.status(spare)
            if st and isinstance(st.get("id"), int):
                return int(st["id"])
            await asyncio.sleep(0.2)
        return None

    async def _add(self, spare: NodeProc, via: NodeProc) -> None:
        spare.state = "existing"
        self.cluster.start(spare.name)
        ep = spare.endpoint
        # Under its own id, never a guess: a member under an id nobody holds is a
        # phantom learner, and the joiner is left outside the cluster.
        joiner = await self._joiner_id(spare)
        if joiner is None:
            self.log(
                "member",
                "skipped",
                node=spare.name,
                reason=f"the joiner did not serve its id within {JOINER_START_TIMEOUT}s",
            )
            return
        code, body = await self.cluster.request(
            "POST",
            via,
            "/v1/members",
            {
                "name": spare.name,
                "id": joiner,
                "peer_url": ep.peer_url,
                "client_url": ep.client_url,
            },
            timeout=8,
        )
        self.log(
            "member",
            "add",
            node=spare.name,
            code=code,
            answer=body if isinstance(body, dict) else None,
        )
        if code != 200:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        while loop.time() < deadline:
            target = await self._any_live()
            if target is None:
                break
            try:
                code, body = await self.cluster.request(
                    "POST", target, f"/v1/members/{joiner}/promote", timeout=4
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                code, body = 0, repr(exc)
            if code == 200:
                break
            await asyncio.sleep(0.3)
        self.log(
            "member",
            "promote",
            node=spare.name,
            code=code,
            answer=body if isinstance(body, (dict, str)) else None,
        )

    async def _remove(self, name: str, via: NodeProc) -> None:
        victim = self.cluster.nodes[name]
        code, body = await self.cluster.request(
            "DELETE", via, f"/v1/members/{victim.id}", timeout=8
        )
        self.log(
            "member",
            "remove",
            node=name,
            code=code,
            answer=body if isinstance(body, dict) else None,
        )
        if code == 200:
            self.cluster.retire(name)

    # --- the end ------------------------------------------------------------------------

    async def heal_all(self) -> None:
        """Heal the network, resume paused nodes, restart killed ones."""
        await self.net.heal()
        for node in self.cluster.nodes.values():
            if node.paused:
                self.cluster.resume(node.name)
        for node in self.cluster.active():
            if not node.running():
                self.cluster.start(node.name)
        self.log("heal", "all")

    async def settle_membership(self) -> None:
        """Retire started nodes that never became members (an add that did not finish),
        by id: a member of the same name under another id is not this process."""
        members = None
        for _ in range(20):
            leader = await self.cluster.leader()
            st = await self.cluster.status(leader) if leader else None
            if st:
                members = {m["id"] for m in st["members"]}
                break
            await asyncio.sleep(0.25)
        if members is None:
            return
        for node in self.cluster.active():
            if node.id not in members:
                self.cluster.retire(node.name)
                self.log("member", "retired", node=node.name, reason="not a member at the end")

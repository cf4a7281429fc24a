"""What a node shows of itself: its role, the members and their URLs, readiness,
the /v1/status document, the Prometheus gauges, and waits for the leader or term
to change. Read-only over the node: nothing here changes the core or the state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from raftkv.consensus import NONE, StateRole
from raftkv.runtime.limits import over_quota

if TYPE_CHECKING:
    from raftkv.runtime.loop import NodeLoop

READY_LAG_ENTRIES = 1000  # a member this close to the leader's commit counts as caught up


class NodeView:
    def __init__(self, node: NodeLoop) -> None:
        self.node = node
        self._changed = asyncio.Event()  # replaced by a fresh one at every change
        # (member id, name) label values of each member's leader-side series.
        self._member_labels: dict[int, tuple[str, str]] = {}

    # --- roles and members ----------------------------------------------------
    def role_name(self) -> str:
        core = self.node.core
        if self.node.id in core.conf.learners:
            return "learner"
        if self.node.id not in core.conf.members():
            return "none"  # waiting to be added (or removed): no part in any quorum
        return str(core.role)

    def member_info(self, member: int) -> dict[str, str]:
        """Name and URLs of a member: the replicated directory, then the initial
        cluster flags. Never what a peer says about itself on the wire."""
        cfg = self.node.cfg
        info = {"name": "", "peer_url": "", "client_url": ""}
        known = self.node.fsm.members.get(member)
        if known:
            info.update({k: known.get(k, "") for k in info})
        if member == self.node.id:
            info.update(
                name=cfg.name, peer_url=cfg.advertise_peer_url, client_url=cfg.advertise_client_url
            )
        if not info["peer_url"] or not info["name"]:
            for m in cfg.initial_cluster:
                if m.id == member:
                    info["name"] = info["name"] or m.name
                    info["peer_url"] = info["peer_url"] or m.peer_url
        return info

    def member_name(self, member: int) -> str:
        return self.member_info(member)["name"] or str(member)

    def leader_client_url(self) -> str | None:
        leader = self.node.core.leader
        if leader == NONE:
            return None
        return self.member_info(leader)["client_url"] or None

    async def leader_client_url_within(self, timeout: float) -> str | None:
        """The leader's client URL, waiting up to `timeout` for it: a member that leads
        for the first time writes its URL into the replicated directory as its first
        entry (`NodeLoop._register_client_url`), so followers learn it one commit after
        the election, never from what the leader says on the wire."""
        deadline = time.monotonic() + timeout
        while True:
            url = self.leader_client_url()
            leader = self.node.core.leader
            if url is not None or leader in (NONE, self.node.id) or time.monotonic() >= deadline:
                return url
            await asyncio.sleep(0.01)

    def is_ready(self) -> bool:
        node, core = self.node, self.node.core
        if node.removed or node.id not in core.conf.members() or core.leader == NONE:
            return False
        if core.leader == node.id:
            return core.role == StateRole.LEADER
        leader_commit = max(node.peer_commit.get(core.leader, 0), core.commit)
        return node.fsm.applied_index + READY_LAG_ENTRIES >= leader_commit

    def members(self) -> list[dict[str, Any]]:
        core = self.node.core
        leader = core.role == StateRole.LEADER
        out = []
        for m in sorted(core.conf.members()):
            info = self.member_info(m)
            out.append(
                {
                    "id": m,
                    **info,
                    "role": "learner" if m in core.conf.learners else "voter",
                    "match_index": core.match_index(m) if leader else None,
                }
            )
        return out

    def status(self) -> dict[str, Any]:
        node, core = self.node, self.node.core
        leader: dict[str, Any] | None = None
        if core.leader != NONE:
            info = self.member_info(core.leader)
            leader = {"id": core.leader, "name": info["name"], "client_url": info["client_url"]}
        return {
            "name": node.cfg.name,
            "id": node.id,
            "cluster_id": node.cluster.value or None,
            "consensus": node.cfg.consensus,
            "engine_mismatch": node.engine_mismatch(),
            "role": self.role_name(),
            "term": core.term,
            "leader": leader,
            "commit_index": core.commit,
            "applied_index": node.fsm.applied_index,
            "last_index": core.last_index(),
            "last_term": core.last_term(),
            "ready": self.is_ready(),
            "revision": node.fsm.revision,
            "members": self.members(),
            "tls": node.tls_material(),
            "modes": node.peer_modes(),
        }

    def learner_lag(self, member: int) -> int | None:
        core = self.node.core
        match = core.match_index(member)
        if match is None:
            return None
        return max(0, core.commit - match)

    # --- waiting for a change of leader or term -------------------------------
    def changed(self) -> None:
        """The leader, the term or the role changed: wake whoever waits for that."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_status_change(
        self, leader: int | None, term: int | None, timeout: float
    ) -> None:
        node = self.node
        deadline = time.monotonic() + timeout
        while not node.long_polls_ended.is_set():
            if leader is not None and node.core.leader != leader:
                return
            if term is not None and node.core.term != term:
                return
            if leader is None and term is None:
                leader = node.core.leader  # "any change from now"
                term = node.core.term
            left = deadline - time.monotonic()
            if left <= 0:
                return
            event = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), left)

    async def wait_leader_moved(self, leader: int) -> int:
        """Wait until a member other than `leader` is known to lead (not merely "no
        leader": an election may re-elect it); return it (NONE: the node stops).
        A request forwarded to `leader` stops waiting for it then (issue 15 item 1)."""
        node = self.node
        while not node.long_polls_ended.is_set():
            event = self._changed
            now = node.core.leader
            if now not in (leader, NONE):
                return now
            await event.wait()
        return NONE

    def end_waits(self) -> None:
        self._changed.set()

    # --- metrics ----------------------------------------------------------------
    def update_metrics(self) -> None:
        m = self.node.metrics
        core = self.node.core
        m.term.set(core.term)
        m.commit_index.set(core.commit)
        m.applied_index.set(self.node.fsm.applied_index)
        m.last_index.set(core.last_index())

    def update_slow_metrics(self) -> None:
        """Gauges that cost a scan; refreshed when /metrics is scraped."""
        node = self.node
        stats = node.fsm.stats()
        m = node.metrics
        m.kv_keys.set(stats["keys"])
        m.leases.set(stats["leases"])
        m.locks_held.set(stats["locks_held"])
        m.members.labels("voter").set(len(node.core.conf.voters))
        m.members.labels("learner").set(len(node.core.conf.learners))
        m.watchers.set(len(node.watch.watchers))
        m.state_bytes.set(stats["size_bytes"])
        m.quota_alarm.set(1 if over_quota(node.admission, node.fsm) else 0)
        self.update_metrics()
        self.update_member_metrics()

    def update_member_metrics(self) -> None:
        node, core = self.node, self.node.core
        if core.role != StateRole.LEADER:
            return
        now = time.monotonic()
        recent = 2 * node.cfg.election_timeout
        for member in sorted(core.conf.members()):
            match = core.match_index(member)
            if match is None:
                continue
            # The id and the name (`node2`, `demo-1`): people and dashboards go by names.
            labels = (str(member), self.member_name(member))
            if self._member_labels.get(member, labels) != labels:
                self.forget_member_series(member)  # its name became known or changed
            self._member_labels[member] = labels
            lag = max(0, core.commit - match)
            node.metrics.member_lag.labels(*labels).set(lag)
            heard = member == node.id or now - node.peer_seen.get(member, -1e9) < recent
            healthy = heard and lag <= READY_LAG_ENTRIES
            node.metrics.member_healthy.labels(*labels).set(1 if healthy else 0)

    def forget_member_series(self, member: int) -> None:
        labels = self._member_labels.pop(member, None)
        if labels is None:
            return
        for gauge in (self.node.metrics.member_lag, self.node.metrics.member_healthy):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

"""Leader routing: the `raftkv.dev/role` pod labels the client Service selects on follow
the members' roles within moments of a leadership change."""

from __future__ import annotations

import asyncio
import contextlib
import time

import kopf

from raftkv_operator import desired, kube, metrics, planner
from raftkv_operator.connections import RUNTIME, node_url
from raftkv_operator.events import KopfLogger, info
from raftkv_operator.members import NodeError, NodeUnreachable
from raftkv_operator.nodestatus import NodeStatus
from raftkv_operator.observe import pod_state
from raftkv_operator.settings import SETTINGS


class LeaderRouter:
    """Keeps the `raftkv.dev/role` labels on a cluster's pods true to the members' roles.

    One long-poll per member pod (`/v1/status?wait=` returns as soon as that member sees a
    new leader or term); a dead member's poll fails at once (its connection resets). After
    any change the labels are recomputed (planner.role_labels) and the differing pods
    patched, the new leader first - a second line: the members label their own pods
    (nodeaccess.py), and a label a member wrote at a newer term than this view is left
    alone (planner.label_changes).
    """

    POD_REFRESH_SECONDS = 10.0
    RETRY_SECONDS = 0.5
    """After a failed label patch (e.g. the pod is gone), retry this much later."""

    def __init__(self, namespace: str, name: str, port: int, logger: KopfLogger) -> None:
        self.namespace = namespace
        self.name = name
        self.port = port
        self.logger = logger
        self.pods_changed = asyncio.Event()
        self.changed = asyncio.Event()
        self.statuses: dict[str, NodeStatus | None] = {}
        self.seen_at: float | None = None
        """When a poll first showed the change not yet reflected in the labels."""
        self.polls: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self.labels: dict[str, str | None] = {}
        self.role_terms: dict[str, int | None] = {}
        self.versions: dict[str, str | None] = {}
        """resourceVersion of each pod as last read or written: label writes are
        conditional on it, so a decision from a stale view never overwrites a label a
        member wrote meanwhile (it is read again and decided again)."""
        self.leader: tuple[str, int] | None = None

    async def run(self, stopped: kopf.DaemonStopped) -> None:
        refreshed = 0.0
        while not stopped:
            if (
                self.pods_changed.is_set()
                or time.monotonic() - refreshed > self.POD_REFRESH_SECONDS
            ):
                self.pods_changed.clear()
                refreshed = time.monotonic()
                try:
                    await self.refresh_pods()
                except Exception:
                    self.logger.exception("listing the pods of %s failed", self.name)
            self.changed.clear()
            pause = self.POD_REFRESH_SECONDS
            try:
                await self.apply()
            except Exception:
                self.logger.exception("moving the role labels of %s failed", self.name)
                pause = self.RETRY_SECONDS  # and the pods may have changed: list them again
                self.pods_changed.set()
            waiters = [
                asyncio.ensure_future(stopped.wait()),
                asyncio.ensure_future(self.changed.wait()),
            ]
            if pause == self.POD_REFRESH_SECONDS:
                waiters.append(asyncio.ensure_future(self.pods_changed.wait()))
            try:
                await asyncio.wait(waiters, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def refresh_pods(self) -> None:
        objects = await kube.list_pods(self.namespace, desired.label_selector(self.name))
        running: dict[str, str] = {}
        for obj in objects:
            state = pod_state(self.name, obj)
            if state is None:
                continue
            # The API is the truth: a recreated pod comes without the label its namesake had.
            self.labels[state.name] = state.role_label
            self.role_terms[state.name] = state.role_term
            self.versions[state.name] = state.resource_version
            if state.ip and not state.terminating:
                running[state.name] = state.ip
            if state.terminating:
                # A terminating pod never leads again: drop its label now.
                self.statuses[state.name] = None
        present = {
            state.name for state in (pod_state(self.name, o) for o in objects) if state is not None
        }
        for pod in list(self.labels):
            if pod not in present:
                self.labels.pop(pod, None)
                self.role_terms.pop(pod, None)
                self.versions.pop(pod, None)
                self.statuses.pop(pod, None)
        for pod, (ip, task) in list(self.polls.items()):
            if running.get(pod) != ip:
                task.cancel()
                del self.polls[pod]
                self.statuses[pod] = None
        for pod, ip in running.items():
            if pod not in self.polls:
                task = asyncio.create_task(self.poll(pod, ip), name=f"status-poll {pod}")
                self.polls[pod] = (ip, task)
        self.changed.set()

    async def poll(self, pod: str, ip: str) -> None:
        last: NodeStatus | None = None
        backoff = 0.1
        while True:
            try:
                # Per call: the cluster's credentials appear (or change) while polling.
                nodes = await RUNTIME.cluster_nodes(self.namespace, self.name)
                url = node_url(ip, self.port, secure=nodes.auth is not None)
                if last is None:
                    status = await nodes.status(url)
                else:
                    status = await nodes.status(
                        url,
                        wait=SETTINGS.status_wait_seconds,
                        leader=last.leader_id or 0,
                        term=last.term,
                    )
                backoff = 0.1
            except (NodeUnreachable, NodeError):
                status = None
            if status != last or (status is None and self.statuses.get(pod) is not None):
                self.statuses[pod] = status
                if self.seen_at is None:
                    self.seen_at = time.monotonic()
                self.changed.set()
            if status is None:
                # Retry backoff for a member that does not answer (restarting or dead).
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
            last = status

    async def apply(self) -> None:
        changes = planner.label_changes(self.statuses, self.labels, self.role_terms)
        moved = False
        for pod, value in changes.items():
            try:
                version = await kube.patch_pod_role(
                    self.namespace, pod, value, self.versions.get(pod)
                )
            except kube.PodChanged:
                self.pods_changed.set()  # read the pods again, then decide again
                break
            self.labels[pod] = value
            self.role_terms[pod] = None  # the operator's label now, not the member's
            self.versions[pod] = version
            moved = True
        leader = planner.find_leader(s for s in self.statuses.values() if s is not None)
        current = (leader.name, leader.term) if leader is not None else None
        if moved and self.seen_at is not None:
            metrics.LEADER_SWITCH.observe(time.monotonic() - self.seen_at)
        self.seen_at = None
        if current != self.leader and current is not None:
            previous = self.leader
            self.leader = current
            await kube.patch_cluster_status(
                self.namespace, self.name, {"leader": current[0], "term": current[1]}
            )
            if previous is None or previous[0] != current[0]:
                self.logger.info("leader of %s is now %s (term %d)", self.name, *current)
                body = await kube.get_cluster(self.namespace, self.name)
                if body is not None:
                    info(
                        body,
                        reason="LeaderChanged",
                        message=f"{current[0]} leads (term {current[1]})",
                    )

    async def close(self) -> None:
        for _, task in self.polls.values():
            task.cancel()
        for _, task in self.polls.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.polls.clear()

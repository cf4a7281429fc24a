"""Emulated Kubernetes: a rolling image change restarts members one at a time, followers first
and the leader last after a leadership transfer, keeping a quorum (and writes) throughout;
`paused` holds every change back."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from raftkv_operator import desired
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    condition,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    get_via_service,
    must_get,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    put_retrying,
    put_via_service,
    role_of,
    status,
    wait_available,
    wait_for,
)

NAME = "roll"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def three(emulated: EmulatedCluster, operator: Operator) -> str:
    emulated.create(CLUSTERS, cluster_manifest(NAME, 3), NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    return NAME


def template_hash(pod: dict[str, object]) -> str | None:
    meta = pod["metadata"]
    assert isinstance(meta, dict)
    return (meta.get("annotations") or {}).get(desired.POD_TEMPLATE_HASH_ANNOTATION)


class RollWatcher:
    """Samples pods and writes while the update runs."""

    def __init__(self, emulated: EmulatedCluster, name: str) -> None:
        self.emulated = emulated
        self.name = name
        self.stop = threading.Event()
        self.max_down = 0
        self.restarts: list[tuple[str, str | None]] = []  # (pod, its role just before)
        self.acknowledged: dict[str, str] = {}
        self.write_failures = 0
        self.threads = [
            threading.Thread(target=self.watch_pods, daemon=True),
            threading.Thread(target=self.write, daemon=True),
        ]

    def watch_pods(self) -> None:
        last: dict[str, tuple[str, str | None]] = {}
        while not self.stop.is_set():
            current = pods(self.emulated, self.name)
            down = 0
            for name, pod in current.items():
                ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or []
                )
                if not ready or pod["metadata"].get("deletionTimestamp"):
                    down += 1
                uid = pod["metadata"]["uid"]
                if name in last and last[name][0] != uid:
                    self.restarts.append((name, last[name][1]))
                last[name] = (uid, role_of(pod))
            down += 3 - len(current)
            self.max_down = max(self.max_down, down)
            self.stop.wait(0.02)

    def write(self) -> None:
        i = 0
        while not self.stop.is_set():
            key, value = f"roll-{i}", f"v{i}"
            if put_via_service(self.emulated, self.name, key, value) is not None:
                self.acknowledged[key] = value
            else:
                self.write_failures += 1
            i += 1
            self.stop.wait(0.05)

    def __enter__(self) -> RollWatcher:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def test_paused_cluster_is_not_changed(emulated: EmulatedCluster, three: str) -> None:
    emulated.patch(CLUSTERS, NAMESPACE, three, {"spec": {"paused": True}})
    wait_for(emulated, lambda: status(emulated, three).get("phase") == "Paused", 20, "phase Paused")
    sts_before = emulated.get("apps/v1/statefulsets", NAMESPACE, three)
    assert sts_before is not None
    emulated.patch(CLUSTERS, NAMESPACE, three, {"spec": {"image": "raftkv:paused"}})
    wait_for(
        emulated,
        lambda: (condition(emulated, three, "Progressing") or {}).get("reason") == "Paused",
        20,
        "Progressing=False Paused",
    )
    generation = must_get(emulated, CLUSTERS, three)["metadata"]["generation"]
    wait_for(
        emulated,
        lambda: status(emulated, three).get("observedGeneration") == generation,
        20,
        "the operator saw the change",
    )
    sts_after = emulated.get("apps/v1/statefulsets", NAMESPACE, three)
    assert sts_after is not None
    assert sts_after["spec"]["template"] == sts_before["spec"]["template"]
    emulated.patch(CLUSTERS, NAMESPACE, three, {"spec": {"paused": False, "image": "raftkv"}})
    wait_available(emulated, three, 3)


def test_rolling_image_change_restarts_followers_first_leader_last(
    emulated: EmulatedCluster, operator: Operator, three: str
) -> None:
    wait_available(emulated, three, 3)
    before = pods(emulated, three)
    old_hashes = {template_hash(p) for p in before.values()}
    assert len(old_hashes) == 1
    leader_before = status(emulated, three)["leader"]
    started = time.monotonic()
    with RollWatcher(emulated, three) as watcher:
        emulated.patch(CLUSTERS, NAMESPACE, three, {"spec": {"image": "raftkv:v2"}})
        # Restart the operator once the first member went down: the roll must resume from
        # status.operation (one member at a time, the leader last), not start over.
        wait_for(emulated, lambda: watcher.restarts, 60, "the first member restarts")
        operator.restart()

        def rolled() -> bool:
            current = pods(emulated, three)
            return (
                len(current) == 3
                and all(template_hash(p) not in old_hashes for p in current.values())
                and status(emulated, three).get("operation") is None
                and status(emulated, three).get("phase") == "Available"
            )

        wait_for(emulated, rolled, 120, "every member runs the new template")
        wait_available(emulated, three, 3)
    elapsed = time.monotonic() - started
    after = pods(emulated, three)
    assert all(p["spec"]["containers"][0]["image"] == "raftkv:v2" for p in after.values())
    restarted = [name for name, _ in watcher.restarts]
    assert sorted(restarted) == sorted(before), watcher.restarts
    # Followers first; the last one restarted was the leader until just before (handed
    # over), and nobody else was restarted while leading.
    assert restarted[-1] == leader_before, watcher.restarts
    assert all(role != desired.ROLE_LEADER for _, role in watcher.restarts), watcher.restarts
    assert watcher.max_down <= 1, f"{watcher.max_down} members down at once"
    assert len(watcher.acknowledged) > 10
    for key, value in watcher.acknowledged.items():
        assert get_via_service(emulated, three, key) == value, key
    put_retrying(emulated, three, "after-roll", "ok", 10)
    wait_for(
        emulated,
        lambda: (
            {"PodTemplateChanged", "MemberRestart", "LeaderTransfer"}
            <= event_reasons(emulated, three)
        ),
        30,
        "Events for each step",
    )
    # KopfRunner swaps sys.stdout while the operator runs: report on the real one.
    print(
        f"\nrolling update of 3 members: {elapsed:.1f}s, "
        f"{watcher.write_failures} unacknowledged writes of "
        f"{watcher.write_failures + len(watcher.acknowledged)}",
        file=sys.__stdout__,
    )

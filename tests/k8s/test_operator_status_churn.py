"""Emulated Kubernetes: a busy cluster's status is quiet.

Status holds no counter that moves with every write (commit index, lag: metrics), and the
reconcile daemon does not wake on its own status writes: under a steady write load a
1-member cluster gets at most one status PATCH in 10 s, and the reconciler runs at its
resync pace, not in a loop.
"""

from __future__ import annotations

import threading
import time

import pytest

from raftkv_operator import metrics
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    OPERATOR_ENV,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    operator_fixture,  # noqa: F401 - the `operator` fixture
    put_via_service,
    status,
    wait_available,
)

NAME = "busy"
WINDOW = 10.0
pytestmark = pytest.mark.timeout(180)


def status_patches(emulated: EmulatedCluster) -> int:
    """PATCHes of the cluster's status the API server received so far."""

    def count() -> int:
        return sum(
            1
            for r in list(emulated.server)
            if str(r.method).upper().endswith("PATCH")
            and r.name == NAME
            and r.subresource == "status"
            and r.resource is not None
            and r.resource.plural == "raftclusters"
        )

    return emulated.call(count)


def rounds() -> float:
    return metrics.RECONCILES.labels(NAME, NAMESPACE, "success")._value.get()


def test_a_busy_cluster_writes_its_status_rarely(
    emulated: EmulatedCluster, operator: Operator
) -> None:
    emulated.create(CLUSTERS, cluster_manifest(NAME, 1), NAMESPACE)
    wait_available(emulated, NAME, 1, timeout=60)

    stop = threading.Event()
    acknowledged = [0]

    def write() -> None:
        i = 0
        while not stop.is_set():
            if put_via_service(emulated, NAME, f"k{i % 50}", f"v{i}") is not None:
                acknowledged[0] += 1
            i += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        time.sleep(2.0)  # the load is steady before the window opens (not synchronisation)
        patches_before, rounds_before = status_patches(emulated), rounds()
        written_before = acknowledged[0]
        time.sleep(WINDOW)  # the measurement window itself
        patches, reconciles = status_patches(emulated) - patches_before, rounds() - rounds_before
        written = acknowledged[0] - written_before
    finally:
        stop.set()
        writer.join(10)
    print(f"{patches} status PATCHes, {reconciles} reconcile rounds, {written} writes")
    assert written > 50, f"only {written} writes in {WINDOW} s: not a load"
    assert patches <= 1, f"{patches} status PATCHes in {WINDOW} s under {written} writes"
    resync = float(OPERATOR_ENV["RAFTKV_OPERATOR_RESYNC_SECONDS"])
    assert reconciles <= WINDOW / resync + 2, f"{reconciles} reconcile rounds in {WINDOW} s"
    assert "commitIndex" not in status(emulated, NAME)
    text = metrics.exposition().decode()
    assert f'raftkv_operator_commit_index{{cluster="{NAME}",namespace="{NAMESPACE}"}}' in text
    assert "raftkv_operator_member_lag_entries{" in text

"""Emulated Kubernetes: an archive Job that cannot start for minutes (an image pull, a volume
not yet provisioned) is waited for up to its deadline (checkpoints.archive.timeoutSeconds),
not given up after ~2-3 minutes of counted retries; and a Job past that deadline is reported
as a failed archive."""

from __future__ import annotations

import time

import pytest

from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CHECKPOINTS,
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    wait_available,
    wait_for,
)

NAME = "slow"
CLAIM = "late-archive"
BLOCKED = 60.0
"""Twice what a budget counted in tries would last: the harness looks at a running archive
Job every 0.5 s (RAFTKV_OPERATOR_ARCHIVE_POLL_SECONDS), so the old 60 tries ran out in
~30-40 s; the deadline (timeoutSeconds, default an hour) is time."""
pytestmark = pytest.mark.timeout(300)


def checkpoint_status(emulated: EmulatedCluster) -> dict[str, object]:
    return dict((emulated.get(CHECKPOINTS, NAMESPACE, "slow-1") or {}).get("status") or {})


def test_a_slow_archive_job_is_waited_for(emulated: EmulatedCluster, operator: Operator) -> None:
    manifest = cluster_manifest(NAME, 1, checkpoints={"archive": {"claimName": CLAIM}})
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, NAME, 1, timeout=60)
    emulated.create(
        CHECKPOINTS,
        {
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCheckpoint",
            "metadata": {"name": "slow-1", "namespace": NAMESPACE},
            "spec": {"cluster": NAME, "id": "slow-1"},
        },
        NAMESPACE,
    )
    wait_for(
        emulated,
        lambda: checkpoint_status(emulated).get("phase") == "Succeeded",
        60,
        "the checkpoint is taken",
    )
    # The archive claim does not exist yet: the Job's pod stays Pending.
    started = time.monotonic()
    while time.monotonic() - started < BLOCKED:  # the window under test, polled
        st = checkpoint_status(emulated)
        assert not st.get("archived")
        assert "ArchiveFailed" not in event_reasons(emulated, "slow-1"), st
        assert "gave up" not in str(st.get("message")), st
        emulated.check()
        time.sleep(1.0)
    emulated.create(
        "v1/persistentvolumeclaims",
        {
            "metadata": {"name": CLAIM, "namespace": NAMESPACE},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "64Mi"}},
            },
        },
        NAMESPACE,
    )
    wait_for(
        emulated,
        lambda: checkpoint_status(emulated).get("archived"),
        90,
        "archived once the claim exists",
    )
    assert (emulated.pvc_path(NAMESPACE, CLAIM) / NAME / "slow-1" / "manifest.json").is_file()


def test_an_archive_past_its_deadline_is_reported_failed(
    emulated: EmulatedCluster, operator: Operator
) -> None:
    name = "late"
    archive = {"claimName": "never-archive", "timeoutSeconds": 60}
    emulated.create(
        CLUSTERS, cluster_manifest(name, 1, checkpoints={"archive": archive}), NAMESPACE
    )
    wait_available(emulated, name, 1, timeout=60)
    emulated.create(
        CHECKPOINTS,
        {
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCheckpoint",
            "metadata": {"name": "late-1", "namespace": NAMESPACE},
            "spec": {"cluster": name, "id": "late-1"},
        },
        NAMESPACE,
    )
    job = emulated.wait_for(
        lambda: emulated.get("batch/v1/jobs", NAMESPACE, "late-1-archive"), timeout=60
    )
    assert job["spec"]["activeDeadlineSeconds"] == 60
    wait_for(
        emulated,
        lambda: "ArchiveFailed" in event_reasons(emulated, "late-1"),
        120,
        "the archive is reported failed once its Job passed its deadline",
    )
    st = (emulated.get(CHECKPOINTS, NAMESPACE, "late-1") or {}).get("status") or {}
    assert st.get("phase") == "Succeeded" and not st.get("archived"), st

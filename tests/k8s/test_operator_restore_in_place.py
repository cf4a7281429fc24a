"""Emulated Kubernetes: restore a running cluster in place from one of its RaftCheckpoints.

spec.restoreInPlace: every member is stopped (writes stop), each volume is staged from the
same bytes with the RaftCheckpoint's sha256 checked, the old data is moved aside, and the
members bootstrap anew from the checkpoint: the writes after it are gone, those before it
are back. A copy whose sha256 does not match stops the restore before any member runs
again: every member's old data is put back and still serves.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from raftkv_operator import metrics
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CHECKPOINTS,
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    get_via_service,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    put_retrying,
    request_restore_in_place,
    restore_outcome,
    status,
    wait_available,
    wait_for,
)

NAME = "rip"
MEMBERS = [f"{NAME}-{i}" for i in range(3)]
pytestmark = pytest.mark.timeout(400)


def restoring() -> float | None:
    text = metrics.exposition().decode()
    pattern = (
        rf'^raftkv_operator_restore_in_progress\{{cluster="{NAME}",'
        rf'namespace="{NAMESPACE}"\}} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def take_checkpoint(emulated: EmulatedCluster, ident: str) -> dict[str, Any]:
    name = f"{NAME}-{ident}"
    emulated.create(
        CHECKPOINTS,
        {
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCheckpoint",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"cluster": NAME, "id": ident},
        },
        NAMESPACE,
    )

    def done() -> dict[str, Any] | None:
        obj = emulated.get(CHECKPOINTS, NAMESPACE, name) or {}
        st = obj.get("status") or {}
        return st if st.get("phase") == "Succeeded" and len(st.get("members") or []) == 3 else None

    return wait_for(emulated, done, 60, f"RaftCheckpoint {name} Succeeded on 3 members")


def request(emulated: EmulatedCluster, request_id: str, checkpoint: str) -> float:
    request_restore_in_place(emulated, NAME, request_id, checkpoint)
    return time.monotonic()


def restore_phase(emulated: EmulatedCluster, request_id: str) -> str | None:
    record = restore_outcome(emulated, NAME, request_id)
    return None if record is None else record["phase"]


def test_restore_in_place_then_a_corrupt_copy_is_refused_and_rolled_back(
    emulated: EmulatedCluster,
    operator: Operator,
    record_property: Callable[[str, object], None],
) -> None:
    emulated.create(CLUSTERS, cluster_manifest(NAME, 3), NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=120)
    for i in range(10):
        put_retrying(emulated, NAME, f"k{i}", f"v{i}")
    taken = take_checkpoint(emulated, "cp1")
    put_retrying(emulated, NAME, "k0", "changed-after-cp1")
    put_retrying(emulated, NAME, "late", "after-cp1")

    # ---- a restore that succeeds ----
    started = request(emulated, "r1", f"{NAME}-cp1")
    seen = False

    def finished() -> str | None:
        nonlocal seen
        seen = seen or restoring() == 1
        return restore_phase(emulated, "r1")

    assert wait_for(emulated, finished, 180, "restore r1 finished") == "Succeeded", status(
        emulated, NAME
    )
    wait_available(emulated, NAME, 3, timeout=120)
    took = time.monotonic() - started
    record_property("restore_in_place_seconds", round(took, 2))
    print(
        f"\nrestore in place (3 members): request -> 3 healthy members {took:.1f} s",
        file=sys.__stdout__,
        flush=True,
    )
    assert seen
    # The gauge is set at the end of the round that wrote status: wait for it.
    wait_for(emulated, lambda: restoring() == 0, 10, "restore_in_progress back to 0")
    record = status(emulated, NAME)["restore"]
    assert record["sha256"] == taken["sha256"] and record["source"] == "members", record
    assert get_via_service(emulated, NAME, "k0") == "v0"  # as at the checkpoint
    assert get_via_service(emulated, NAME, "late") is None  # written after it: gone
    for i in range(1, 10):
        assert get_via_service(emulated, NAME, f"k{i}") == f"v{i}"
    for member in MEMBERS:  # the old data, aside on every volume
        aside = emulated.pvc_path(NAMESPACE, f"data-{member}") / "pre-restore-r1"
        assert (aside / "wal").is_dir() and (aside / "checkpoints" / "cp1").is_dir(), member
    assert {
        "RestoreStarted",
        "RestorePrepared",
        "RestoreStaged",
        "Restored",
        "RestoreSucceeded",
    } <= event_reasons(emulated, NAME)
    put_retrying(emulated, NAME, "after-restore", "yes")

    # ---- a restore whose bytes differ on one member: nothing changes ----
    take_checkpoint(emulated, "cp2")
    put_retrying(emulated, NAME, "after-cp2", "kept")
    copy = emulated.pvc_path(NAMESPACE, f"data-{MEMBERS[2]}") / "data/checkpoints/cp2/data"
    copy.write_bytes(copy.read_bytes() + b"bit rot")
    request(emulated, "r2", f"{NAME}-cp2")
    assert (
        wait_for(emulated, lambda: restore_phase(emulated, "r2"), 180, "restore r2 finished")
        == "Failed"
    )
    wait_available(emulated, NAME, 3, timeout=120)
    message = status(emulated, NAME)["restore"]["message"]
    assert MEMBERS[2] in message, message
    # The old data is back and serves, the write after cp2 included.
    assert get_via_service(emulated, NAME, "after-cp2") == "kept"
    assert get_via_service(emulated, NAME, "after-restore") == "yes"
    for member in MEMBERS:
        volume = emulated.pvc_path(NAMESPACE, f"data-{member}")
        assert not (volume / "pre-restore-r2").exists() and not (volume / "restore").exists()
    assert hashlib.sha256(copy.read_bytes()).hexdigest() != taken["sha256"]
    assert "RestoreFailed" in event_reasons(emulated, NAME)
    put_retrying(emulated, NAME, "after-failed-restore", "writable")

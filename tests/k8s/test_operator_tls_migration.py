"""Emulated Kubernetes: a cluster made without TLS (as an earlier operator made every
cluster: `--client-insecure --peer-insecure`) is moved onto peer TLS by the operator,
P1 -> P2 -> P3 (tlsmigration.py), under a continuous writer and with an operator restart
in the middle: no acknowledged write is lost, at most one member is down at any moment,
every member ends reporting P3 in `modes.peer`, and plain-text HELLOs are refused by every
member at the end. The client port stays plain HTTP (docs/security.md), which the writer
relies on from start to end.

The earlier operator's cluster is made the way it exists in the field: a cluster that runs
`tls.mode: disabled` members, whose stored spec then reads as the secure default (the new
CRD's defaults), written around admission (CEL forbids that change through the API, as it
should for a user)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from raftkv.runtime import codec
from raftkv_operator.members import member_id
from tests.integration.peer_attacker import plain_hello
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    status,
    wait_available,
    wait_for,
)

NAME = "mig"
CLIENT_PORT = 7379
PEER_PORT = 7380
pytestmark = pytest.mark.timeout(600)

P3_MODES = {"accepts": ["tls"], "dials": "tls", "migration": None}


def plain_http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def member_status(emulated: EmulatedCluster, pod: str) -> dict[str, Any] | None:
    ip = emulated.pod_ip(NAMESPACE, pod)
    if not ip:
        return None
    try:
        code, body = plain_http("GET", f"http://{ip}:{CLIENT_PORT}/v1/status")
    except OSError:
        return None
    return json.loads(body) if code == 200 else None


class Writer:
    """Writes through the client Service in plain HTTP (the client port stays plain) and
    samples how many member pods are down, until stopped."""

    def __init__(self, emulated: EmulatedCluster) -> None:
        self.emulated = emulated
        self.stop = threading.Event()
        self.acknowledged: dict[str, str] = {}
        self.failures = 0
        self.max_down = 0
        self.longest_gap = 0.0
        self.threads = [
            threading.Thread(target=self.write, daemon=True),
            threading.Thread(target=self.watch_pods, daemon=True),
        ]

    def write(self) -> None:
        i = 0
        last_ack = time.monotonic()
        while not self.stop.is_set():
            key, value = f"mig-{i}", f"v{i}"
            try:
                url = self.emulated.service_url(NAMESPACE, NAME, "client", scheme="http")
                code, _ = plain_http("PUT", f"{url}/v1/kv/{key}", value.encode())
            except (OSError, LookupError):
                code = 0
            if code == 200:
                self.acknowledged[key] = value
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last_ack)
                last_ack = now
            else:
                self.failures += 1
            i += 1
            self.stop.wait(0.05)

    def watch_pods(self) -> None:
        while not self.stop.is_set():
            current = pods(self.emulated, NAME)
            down = 3 - len(current)
            for pod in current.values():
                ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or []
                )
                down += not ready or bool(pod["metadata"].get("deletionTimestamp"))
            self.max_down = max(self.max_down, down)
            self.stop.wait(0.02)

    def __enter__(self) -> Writer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def hello_answer(emulated: EmulatedCluster, target: str, sender: str, cluster_id: str) -> bytes:
    ip = emulated.pod_ip(NAMESPACE, target)
    assert ip
    frame = codec.pack_hello(cluster_id, member_id(sender), member_id(target), sender, "raft")
    return asyncio.run(plain_hello(ip, PEER_PORT, frame))


def make_pre_tls_cluster(emulated: EmulatedCluster, operator: Operator) -> None:
    """A running cluster with plain-text members whose RaftCluster reads as secure."""
    emulated.create(
        CLUSTERS,
        cluster_manifest(NAME, 3, tls={"mode": "disabled"}, auth={"enabled": False}),
        NAMESPACE,
    )
    wait_available(emulated, NAME, 3, timeout=90)
    operator.stop()
    store = emulated.runtime.store
    hooks = emulated.call(lambda: list(store.admission))
    emulated.call(store.admission.clear)
    try:
        emulated.patch(
            CLUSTERS,
            NAMESPACE,
            NAME,
            {"spec": {"tls": {"mode": "operator"}, "auth": {"enabled": True}}},
        )
    finally:
        emulated.call(lambda: store.admission.extend(hooks))
    sts = emulated.get("apps/v1/statefulsets", NAMESPACE, NAME)
    assert sts is not None
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peer-insecure" in args and "--client-insecure" in args


def stage(emulated: EmulatedCluster) -> str | None:
    record = status(emulated, NAME).get("tlsMigration") or {}
    if record.get("finishedAt"):
        return "done"
    return record.get("stage")


def test_a_pre_tls_cluster_is_moved_to_peer_tls_under_writes(
    emulated: EmulatedCluster, operator: Operator
) -> None:
    make_pre_tls_cluster(emulated, operator)
    cluster_id = (member_status(emulated, f"{NAME}-0") or {}).get("cluster_id")
    assert cluster_id
    # Before: plain text is how these members talk (the refusal at the end can fail).
    welcome = codec.pack_welcome(cluster_id, member_id(f"{NAME}-0"), f"{NAME}-0", "raft")
    assert hello_answer(emulated, f"{NAME}-0", f"{NAME}-1", cluster_id).startswith(welcome)

    started = time.monotonic()
    acked_in: dict[str, int] = {}
    with Writer(emulated) as writer:
        wait_for(emulated, lambda: len(writer.acknowledged) >= 20, 30, "writes before")
        operator.start()
        restarted = False
        while (current := stage(emulated)) != "done":
            if current is not None:
                acked_in.setdefault(current, len(writer.acknowledged))
            if current == "P2" and not restarted:
                operator.restart()  # mid-migration: it must resume at P2, not start over
                restarted = True
            emulated.check()
            assert time.monotonic() - started < 480, f"stuck in {current}: {status(emulated, NAME)}"
            time.sleep(0.2)
        total = len(writer.acknowledged)
        wait_for(emulated, lambda: len(writer.acknowledged) >= total + 20, 30, "writes after")
    elapsed = time.monotonic() - started

    assert list(acked_in) == ["P1", "P2", "P3"], acked_in
    # Writes were acknowledged in every stage.
    counts = [*acked_in.values(), len(writer.acknowledged)]
    assert all(a < b for a, b in zip(counts, counts[1:], strict=False)), counts
    assert writer.max_down <= 1, f"{writer.max_down} members down at once"
    reasons = event_reasons(emulated, NAME)
    assert {"TLSMigrationStarted", "TLSMigrationStage", "PeerTLSMigrated"} <= reasons
    assert "TLSSwitchRefused" not in reasons

    # Every member reports P3, and has every acknowledged write.
    members = sorted(pods(emulated, NAME))
    assert members == [f"{NAME}-{i}" for i in range(3)]
    for pod in members:
        reported = wait_for(
            emulated, lambda p=pod: member_status(emulated, p), 20, f"{pod} answers"
        )
        assert reported["modes"]["peer"] == P3_MODES, (pod, reported["modes"])
        ip = emulated.pod_ip(NAMESPACE, pod)
        lost = []
        for key, value in writer.acknowledged.items():
            code, body = plain_http(
                "GET", f"http://{ip}:{CLIENT_PORT}/v1/kv/{key}?consistency=serializable"
            )
            if code != 200 or body.decode() != value:
                lost.append(key)
        assert not lost, f"{pod} lacks {len(lost)} acknowledged writes, e.g. {lost[:3]}"
    # Plain text is refused by every member now, even a HELLO naming a real member.
    for target in members:
        sender = next(p for p in members if p != target)
        said = hello_answer(emulated, target, sender, cluster_id)
        assert not said.startswith(b"\x00"), (target, said)  # no frame came back
    record = status(emulated, NAME)["tlsMigration"]
    assert "plain HTTP" in record["clientPlane"]
    sts = emulated.get("apps/v1/statefulsets", NAMESPACE, NAME)
    assert sts is not None
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--client-insecure" in args and "--peer-insecure" not in args
    print(
        f"\ntls migration: P0 -> P3 in {elapsed:.1f} s, {len(writer.acknowledged)} writes "
        f"acknowledged ({writer.failures} not), longest gap between acknowledged writes "
        f"{writer.longest_gap:.2f} s, at most {writer.max_down} member down",
        file=sys.__stderr__,
    )

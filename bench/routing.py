"""Leader routing on (emulated) Kubernetes: how long after `kill -9` of the leader does the
client Service `<name>` name only the new leader? With the operator running, and with it
stopped (then only the members' own pod labels move it: runtime/podlabel.py).

    .venv/bin/python bench/routing.py [--kills 10] [--replicas 3]     (make bench-routing)

Not a test (nothing is asserted): it prints one line per kill and, per mode, the median and
max of
- `label`: kill -> the new leader's pod carries `raftkv.dev/role=leader`;
- `service`: kill -> the Service's ready endpoints are exactly the new leader's address
  (the figure issue 12 asks for; goal: median <= 1 s in both modes);
and how many polls, from the switch until the killed member is back, found the Service
naming any other pod (should be 0).
The emulated cluster is tests/k8s/harness (kmock API server, a StatefulSet controller,
endpoints, a kubelet running real `raftkv serve` processes on loopback addresses, HTTPS to
the API server for pods); the operator runs as its own process (`kopf run`, as in a
cluster: inside this process it would share the interpreter lock with the API server). Endpoints are polled every 5 ms. After each kill the next waits until the killed
member is back, Ready and labelled a follower. Raft timings: the tests' (tick 50 ms,
election 10 ticks).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/ is a directory of scripts; the harness is in tests/

from tests.k8s.harness.cluster import EmulatedCluster, repo_crds  # noqa: E402
from tests.k8s.harness.kubelet import SHIM_DIR  # noqa: E402
from tests.k8s.harness_ext import (  # noqa: E402
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    crd_admission,
    leader_endpoints,
    pods,
    role_of,
    wait_available,
)

from raftkv_operator import desired  # noqa: E402

POLL_SECONDS = 0.005
MISROUTED: list[str] = []
"""One entry per poll, after a switch, that found the Service naming a pod other than the
new leader (should stay empty)."""
NAME = "bench"


def say(*parts: object) -> None:
    print(*parts, flush=True)


def _pod_ready(pod: dict[str, object]) -> bool:
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []  # type: ignore[union-attr]
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _settled(emulated: EmulatedCluster, replicas: int) -> str | None:
    """The leader pod once every member is Ready, exactly one is labelled leader, the others
    follower, and the Service names the leader; else None."""
    present = pods(emulated, NAME)
    if len(present) != replicas or not all(_pod_ready(p) for p in present.values()):
        return None
    roles = {n: role_of(p) for n, p in present.items()}
    leaders = [n for n, r in roles.items() if r == desired.ROLE_LEADER]
    if len(leaders) != 1 or list(roles.values()).count(desired.ROLE_FOLLOWER) != replicas - 1:
        return None
    leader_ip = present[leaders[0]]["status"]["podIP"]
    return leaders[0] if leader_endpoints(emulated, NAME) == [leader_ip] else None


def kill_once(emulated: EmulatedCluster, replicas: int) -> tuple[float, float, str, str]:
    old = emulated.wait_for(
        lambda: _settled(emulated, replicas),
        timeout=120,
        interval=0.05,
        message="the cluster settles",
    )
    old_ip = emulated.pod_ip(NAMESPACE, old)
    killed_at = time.monotonic()
    emulated.kill_pod_process(NAMESPACE, old)
    labelled = service = None
    new = ""
    deadline = killed_at + 60
    while service is None or labelled is None:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError("no new leader routed within 60 s")
        if labelled is None:
            for name, pod in pods(emulated, NAME).items():
                if name != old and role_of(pod) == desired.ROLE_LEADER:
                    labelled, new = now - killed_at, name
        if service is None:
            endpoints = leader_endpoints(emulated, NAME)
            if len(endpoints) == 1 and endpoints[0] != old_ip:
                service = now - killed_at
        time.sleep(POLL_SECONDS)
    # Until the killed member is back and settled: does the Service ever name another pod
    # than the new leader (e.g. the restarted member while still labelled leader)?
    new_ip = emulated.pod_ip(NAMESPACE, new)
    while _settled(emulated, replicas) is None:
        if time.monotonic() > deadline + 60:
            raise TimeoutError("the cluster did not settle after the kill")
        if set(leader_endpoints(emulated, NAME)) - {new_ip}:
            MISROUTED.append(old)
        time.sleep(POLL_SECONDS * 4)
    return labelled, service, old, new


def run_mode(
    emulated: EmulatedCluster, replicas: int, kills: int, mode: str
) -> tuple[list[float], list[float]]:
    labels: list[float] = []
    services: list[float] = []
    for i in range(kills):
        labelled, service, old, new = kill_once(emulated, replicas)
        labels.append(labelled)
        services.append(service)
        say(
            f"  {mode:>16} kill {i + 1:2d}: {old} -> {new}  label {labelled * 1000:7.1f} ms"
            f"  service {service * 1000:7.1f} ms"
        )
    return labels, services


def summary(mode: str, labels: list[float], services: list[float]) -> str:
    def ms(values: list[float]) -> str:
        return (
            f"median {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms"
        )

    return f"{mode:>16}: label {ms(labels)} | service {ms(services)}"


class OperatorProcess:
    """The operator as its own process (`kopf run`), as in a real cluster: in this process it
    would share the interpreter lock with the emulated API server and slow it down."""

    def __init__(self, emulated: EmulatedCluster, log: Path) -> None:
        self.emulated = emulated
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # The operator's own defaults (not the tests' faster loop): as users run it.
        env = {
            **os.environ,
            "KUBECONFIG": str(self.emulated.kubeconfig_path),
            # Cluster DNS for the operator's own clients (harness/podshim).
            "PYTHONPATH": str(SHIM_DIR),
            "K8S_EMULATOR_HOSTS": str(self.emulated.runtime.network.hosts_file),
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "kopf"), *Operator.ARGS],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, tuple[list[float], list[float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="raftkv-bench-routing-") as tmp,
        EmulatedCluster(Path(tmp), crds=repo_crds()) as emulated,
    ):
        hook = crd_admission()
        emulated.call(lambda: emulated.runtime.store.admission.append(hook))
        emulated.create("v1/namespaces", {"metadata": {"name": NAMESPACE}})
        with emulated.as_default_kubeconfig():
            operator = OperatorProcess(emulated, Path(tmp) / "operator.log")
            operator.start()
            try:
                emulated.create(CLUSTERS, cluster_manifest(NAME, args.replicas), NAMESPACE)
                wait_available(emulated, NAME, args.replicas, timeout=180)
                say(f"{args.replicas}-member cluster available; {args.kills} kills per mode")
                results["operator running"] = run_mode(
                    emulated, args.replicas, args.kills, "operator running"
                )
            finally:
                operator.stop()
            results["operator stopped"] = run_mode(
                emulated, args.replicas, args.kills, "operator stopped"
            )
        if emulated.errors:
            print("harness errors:", *emulated.errors, sep="\n", file=sys.stderr)
    print(
        "\nkill -9 of the leader -> (label: new leader's pod labelled; service: the "
        "Service names only the new leader)"
    )
    for mode, (labels, services) in results.items():
        print(summary(mode, labels, services))
    print(f"polls after a switch that found the Service naming another pod: {len(MISROUTED)}")
    running, stopped = (statistics.median(results[m][1]) for m in results)
    print(f"service median, stopped/running: {stopped / running:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the operator scenarios add to the emulated cluster (tests/k8s/harness): the operator
running under kopf's KopfRunner, RaftCluster manifests with fast Raft timings, and helpers
that read the cluster the way a user would (Services' endpoints, pod labels, status).

Usage in a scenario module:

    from tests.k8s.harness_ext import emulated_fixture, operator_fixture  # noqa: F401
"""

from __future__ import annotations

import base64
import http.client as http_client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kopf.testing import KopfRunner

from raftkv.protocol.kubernetes import ROLE_TERM_ANNOTATION
from raftkv_operator import desired
from raftkv_operator.models import DEFAULT_CLIENT_PORT
from tests.k8s.harness.cluster import EmulatedCluster, repo_crds
from tests.k8s.harness.resources import ResourceSpec
from tests.k8s.harness.runtime import pod_ready
from tests.k8s.harness.store import ApiError, Obj, ObjectStore
from tests.unit.operator.admission import Admission, Rejected

T = TypeVar("T")
NAMESPACE = "raft"

CLUSTERS = "raftkv.dev/v1alpha1/raftclusters"
CHECKPOINTS = "raftkv.dev/v1alpha1/raftcheckpoints"
PODS = "v1/pods"

OPERATOR_ENV = {
    # Reconcile promptly in tests; events wake it sooner anyway.
    "RAFTKV_OPERATOR_BUSY_SECONDS": "0.3",
    "RAFTKV_OPERATOR_RESYNC_SECONDS": "3",
    "RAFTKV_OPERATOR_STATUS_WAIT_SECONDS": "5",
    "RAFTKV_OPERATOR_NODE_TIMEOUT_SECONDS": "0.5",
    "RAFTKV_OPERATOR_COMMIT_TIMEOUT_SECONDS": "10",
    "RAFTKV_OPERATOR_ARCHIVE_POLL_SECONDS": "0.5",
}
FAST_RAFT = {"tickMs": 50, "electionTicks": 10, "heartbeatTicks": 1}


def cluster_manifest(name: str, replicas: int = 3, **spec: Any) -> dict[str, Any]:
    """A RaftCluster running the local `raftkv` with short Raft ticks and small volumes."""
    body: dict[str, Any] = {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftCluster",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "image": "raftkv",
            "raft": dict(FAST_RAFT),
            # reclaimPolicy: the default (Retain), as users get it; tests that need Delete
            # say so.
            "storage": {"size": "64Mi"},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        },
    }
    body["spec"].update(spec)
    return body


def crd_admission() -> Callable[..., None]:
    """An admission hook for the emulated store: our custom resources are defaulted and
    validated against the generated CRDs' schemas (OpenAPI + CEL), as kube-apiserver does,
    with tests/unit/operator/admission.py. A rejected write answers 422 Invalid."""
    by_plural: dict[str, Admission] = {}
    for path in repo_crds():
        crd = yaml.safe_load(path.read_text())
        by_plural[crd["spec"]["names"]["plural"]] = Admission(crd)

    def admit(
        operation: str, spec: ResourceSpec, new: Obj, old: Obj | None, store: ObjectStore
    ) -> None:
        admission = by_plural.get(spec.plural)
        if spec.group != "raftkv.dev" or admission is None or operation not in ("CREATE", "UPDATE"):
            return
        try:
            admitted = admission.admit(new, old)
        except Rejected as e:
            raise ApiError(
                422,
                "Invalid",
                f'{spec.kind} "{new["metadata"].get("name")}" is invalid: {"; ".join(e.errors)}',
            ) from None
        for key, value in admitted.items():
            if key not in ("metadata", "apiVersion", "kind"):
                new[key] = value

    return admit


EMULATED_OPTIONS: dict[str, Any] = {}
"""ClusterOptions fields for the module's `emulated` cluster: a module sets
`EMULATED_OPTIONS = {...}` of its own (read from the requesting module)."""


@pytest.fixture(scope="module", name="emulated")
def emulated_fixture(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[EmulatedCluster]:
    workdir = Path(tmp_path_factory.mktemp("k8s"))
    options = getattr(request.module, "EMULATED_OPTIONS", EMULATED_OPTIONS)
    with EmulatedCluster(workdir, crds=repo_crds(), **options) as cluster:
        hook = crd_admission()
        cluster.call(lambda: cluster.runtime.store.admission.append(hook))
        cluster.create("v1/namespaces", {"metadata": {"name": NAMESPACE}})
        with cluster.as_default_kubeconfig():
            yield cluster
        cluster.check()


class Operator:
    """The operator under KopfRunner; restartable (stop + start is an operator restart)."""

    # --all-namespaces: kmock 0.8 cannot parse a list of namespaces (GET /api/v1/namespaces),
    # which kopf makes to resolve --namespace.
    ARGS = ["run", "--standalone", "--all-namespaces", "-m", "raftkv_operator.handlers"]

    def __init__(self) -> None:
        self.runner: KopfRunner | None = None
        self.outputs: list[str] = []

    def start(self) -> None:
        assert self.runner is None
        self.runner = KopfRunner(self.ARGS, timeout=60)
        self.runner.__enter__()

    def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is None:
            return
        runner.__exit__(None, None, None)
        self.outputs.append(runner.output)
        if runner.exception is not None:
            raise AssertionError(f"the operator failed: {runner.exception!r}\n{runner.output}")

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module", name="operator")
def operator_fixture(emulated: EmulatedCluster) -> Iterator[Operator]:
    saved = {k: os.environ.get(k) for k in OPERATOR_ENV}
    os.environ.update(OPERATOR_ENV)
    op = Operator()
    op.start()
    try:
        yield op
    finally:
        op.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- reading the cluster ---------------------------------------------------------------------


def wait_for(
    emulated: EmulatedCluster, predicate: Callable[[], T | None], timeout: float, message: str
) -> T:
    """predicate() until truthy (returned), TimeoutError after `timeout` seconds."""
    value = emulated.wait_for(predicate, timeout=timeout, interval=0.05, message=message)
    assert value is not None
    return value


def must_get(emulated: EmulatedCluster, resource: str, name: str) -> dict[str, Any]:
    obj = emulated.get(resource, NAMESPACE, name)
    assert obj is not None, f"{resource} {name} not found"
    return obj


def raft_cluster(
    emulated: EmulatedCluster, name: str, namespace: str = NAMESPACE
) -> dict[str, Any]:
    obj = emulated.get(CLUSTERS, namespace, name)
    assert obj is not None, f"RaftCluster {name} is gone"
    return obj


def status(emulated: EmulatedCluster, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    return dict(raft_cluster(emulated, name, namespace).get("status") or {})


def condition(
    emulated: EmulatedCluster, name: str, type_: str, namespace: str = NAMESPACE
) -> dict[str, Any] | None:
    for cond in status(emulated, name, namespace).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def is_available(
    emulated: EmulatedCluster, name: str, replicas: int, namespace: str = NAMESPACE
) -> bool:
    st = status(emulated, name, namespace)
    members = st.get("members") or []
    available = condition(emulated, name, "Available", namespace)
    return bool(
        st.get("phase") == "Available"
        and st.get("operation") is None
        and available
        and available["status"] == "True"
        and len(members) == replicas
        and all(m.get("healthy") for m in members)
        and sum(1 for m in members if m.get("role") == "Leader") == 1
    )


def wait_available(
    emulated: EmulatedCluster,
    name: str,
    replicas: int,
    timeout: float = 60.0,
    namespace: str = NAMESPACE,
) -> dict[str, Any]:
    wait_for(
        emulated,
        lambda: is_available(emulated, name, replicas, namespace),
        timeout,
        f"{name} Available with {replicas} healthy members",
    )
    return status(emulated, name, namespace)


def request_restore_in_place(
    emulated: EmulatedCluster, name: str, request_id: str, checkpoint: str
) -> None:
    """Set spec.restoreInPlace (confirmed) on RaftCluster `name`."""
    request = {"requestId": request_id, "checkpoint": checkpoint, "confirm": "ReplaceAllData"}
    emulated.patch(CLUSTERS, NAMESPACE, name, {"spec": {"restoreInPlace": request}})


def restore_outcome(emulated: EmulatedCluster, name: str, request_id: str) -> dict[str, Any] | None:
    """status.restore of request `request_id` once it has finished (else None)."""
    record = status(emulated, name).get("restore") or {}
    if record.get("requestId") != request_id:
        return None
    return record if record.get("phase") in ("Succeeded", "Failed", "Refused") else None


def pods(emulated: EmulatedCluster, name: str) -> dict[str, dict[str, Any]]:
    found = emulated.list(PODS, NAMESPACE, label_selector=desired.label_selector(name))
    return {p["metadata"]["name"]: p for p in found}


def role_of(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(desired.ROLE_LABEL)


def leader_endpoints(emulated: EmulatedCluster, name: str) -> list[str]:
    """IPs the client Service `<name>` routes to."""
    return sorted(ip for ip, _ in emulated.service_endpoints(NAMESPACE, name, "client"))


def events(emulated: EmulatedCluster, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in emulated.list("v1/events", NAMESPACE)
        if (e.get("involvedObject") or {}).get("name") == name
    ]


def event_reasons(emulated: EmulatedCluster, name: str) -> set[str]:
    return {str(e.get("reason")) for e in events(emulated, name)}


# ---- talking to raftkv through the Services --------------------------------------------------


@dataclass(frozen=True)
class ClusterTLS:
    """How a client in the cluster's namespace reaches a secured cluster: the admin Secret
    (`<name>-admin`: token and CA) and the Service name its certificate must carry."""

    context: ssl.SSLContext
    server_name: str
    token: str


class _NamedHTTPSConnection(http_client.HTTPSConnection):
    """HTTPS to an IP address, checking the certificate for a DNS name instead (what a
    client that resolved `<name>.<ns>.svc` to that IP would check)."""

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        server_name: str,
        context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self.server_name = server_name

    def connect(self) -> None:
        http_client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            self.sock, server_hostname=self.server_name
        )


def cluster_tls(
    emulated: EmulatedCluster, name: str, namespace: str = NAMESPACE
) -> ClusterTLS | None:
    """The admin credentials of cluster `name` (None: no admin Secret, an insecure cluster)."""
    admin = emulated.get("v1/secrets", namespace, f"{name}-admin")
    if admin is None:
        return None
    data = {k: base64.b64decode(v) for k, v in (admin.get("data") or {}).items()}
    if "ca.crt" not in data:
        return None
    context = ssl.create_default_context(cadata=data["ca.crt"].decode())
    return ClusterTLS(context, f"{name}.{namespace}.svc", data["token"].decode())


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 5.0,
    tls: ClusterTLS | None = None,
) -> tuple[int, bytes]:
    if tls is None:
        request = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    conn = _NamedHTTPSConnection(
        parts.hostname,
        parts.port,
        server_name=tls.server_name,
        context=tls.context,
        timeout=timeout,
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers={"Authorization": f"Bearer {tls.token}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def service_http(
    emulated: EmulatedCluster,
    name: str,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 5.0,
    namespace: str = NAMESPACE,
) -> tuple[int, bytes]:
    """A request through the client Service of cluster `name`, with its admin credentials
    when it is secured (https, the CA checked for `<name>.<ns>.svc`, the admin token)."""
    tls = cluster_tls(emulated, name, namespace)
    base = emulated.service_url(
        namespace, name, "client", scheme="https" if tls is not None else "http"
    )
    return http(method, f"{base}{path}", body, timeout=timeout, tls=tls)


# How long a request through the Service may find no leader to route to: an election
# (~1-2 s) plus, if the leader's readiness probe failed meanwhile (a loaded machine), the
# probe's period (5 s, desired.py) before the endpoint is back, twice over.
SERVICE_RETRY_SECONDS = 30.0


def put_via_service(
    emulated: EmulatedCluster,
    name: str,
    key: str,
    value: str,
    failures: list[str] | None = None,
) -> int | None:
    """PUT through the client Service (kube-proxy to the leader); the revision, or None
    when the write was not acknowledged (no endpoint, error, timeout), and then why
    appended to `failures`."""
    try:
        code, payload = service_http(emulated, name, "PUT", f"/v1/kv/{key}", value.encode())
    except (OSError, LookupError, http_client.HTTPException) as exc:
        if failures is not None:
            failures.append(repr(exc))
        return None
    if code != 200:
        if failures is not None:
            failures.append(f"{code} {payload[:200]!r}")
        return None
    return int(json.loads(payload)["revision"])


def get_via_service(
    emulated: EmulatedCluster,
    name: str,
    key: str,
    namespace: str = NAMESPACE,
    timeout: float = SERVICE_RETRY_SECONDS,
) -> str | None:
    """A linearizable GET through the client Service; None when the key is missing.
    Retried while the Service reaches no leader (no endpoint, a connection refused or
    reset, 503), as any client of a Service does across a change of leader; any other
    answer is final."""

    def attempt() -> tuple[int, bytes] | None:
        try:
            code, payload = service_http(
                emulated, name, "GET", f"/v1/kv/{key}", namespace=namespace
            )
        except (OSError, LookupError, http_client.HTTPException):
            return None
        return None if code == 503 else (code, payload)

    code, payload = wait_for(emulated, attempt, timeout, f"GET {key} through the Service of {name}")
    if code == 404:
        return None
    assert code == 200, f"GET {key}: {code} {payload!r}"
    return payload.decode()


def put_retrying(
    emulated: EmulatedCluster,
    name: str,
    key: str,
    value: str,
    timeout: float = SERVICE_RETRY_SECONDS,
) -> int:
    """A write through the client Service, retried until acknowledged (e.g. across an
    election); its revision."""
    failures: list[str] = []
    try:
        return retrying(
            emulated,
            lambda: put_via_service(emulated, name, key, value, failures),
            timeout,
            f"write {key} through the Service of {name}",
        )
    except TimeoutError as exc:
        raise TimeoutError(
            f"{exc}: {len(failures)} tries, the last: {failures[-3:]}\n"
            f"{routing_report(emulated, name)}"
        ) from None


def retrying(
    emulated: EmulatedCluster, fn: Callable[[], T | None], timeout: float, message: str
) -> T:
    """fn() until it gives a value (a write that found no leader is retried)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        emulated.check()
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.05)


def member_status(emulated: EmulatedCluster, name: str, pod: str) -> dict[str, Any] | str:
    """A member's own `/v1/status` (straight to its pod, with the admin credentials), or
    why it could not be read."""
    ip = emulated.pod_ip(NAMESPACE, pod)
    if not ip:
        return "no pod IP"
    tls = cluster_tls(emulated, name)
    scheme = "https" if tls is not None else "http"
    try:
        url = f"{scheme}://{ip}:{DEFAULT_CLIENT_PORT}/v1/status"
        code, body = http("GET", url, timeout=2, tls=tls)
    except (OSError, http_client.HTTPException) as exc:
        return repr(exc)
    if code != 200:
        return f"HTTP {code}: {body[:200]!r}"
    answer: dict[str, Any] = json.loads(body)
    return answer


def routing_report(emulated: EmulatedCluster, name: str) -> str:
    """What decides where the client Service routes, in one look: its endpoints, and per
    pod the Ready condition, role label (and the term it was written at), process, and
    the member's own view of the leader; the last lines of each pod's log. Timeouts of
    the routing helpers carry it, so a failure on CI says which link broke."""
    lines = [f"client Service {name} endpoints: {leader_endpoints(emulated, name)}"]
    for pod_name, pod in sorted(pods(emulated, name).items()):
        meta, st = pod.get("metadata") or {}, pod.get("status") or {}
        ready = next(
            (c.get("status") for c in st.get("conditions") or [] if c.get("type") == "Ready"),
            None,
        )
        restarts = [c.get("restartCount") for c in st.get("containerStatuses") or []]
        term = (meta.get("annotations") or {}).get(ROLE_TERM_ANNOTATION)
        member = member_status(emulated, name, pod_name)
        if isinstance(member, dict):
            keys = ("role", "term", "leader", "ready", "commit_index", "applied_index")
            member = {k: member.get(k) for k in keys if k in member}
        lines.append(
            f"  {pod_name}: ip={st.get('podIP')} phase={st.get('phase')} ready={ready} "
            f"role-label={role_of(pod)} role-term={term} restarts={restarts} "
            f"pid={emulated.pod_pid(NAMESPACE, pod_name)} member={member}"
        )
        try:
            tail = emulated.pod_logs(NAMESPACE, pod_name).splitlines()[-6:]
        except (OSError, LookupError) as exc:
            tail = [repr(exc)]
        lines += [f"    | {line[:300]}" for line in tail]
    return "\n".join(lines)


def wait_routed(
    emulated: EmulatedCluster,
    name: str,
    predicate: Callable[[], T | None],
    timeout: float,
    message: str,
) -> T:
    """wait_for, and on timeout the routing report of cluster `name` in the error."""
    try:
        return wait_for(emulated, predicate, timeout, message)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{routing_report(emulated, name)}") from None


def labelled_leader(emulated: EmulatedCluster, name: str, timeout: float = 30) -> str:
    """The one pod labelled leader, once there is exactly one (right after a change of
    leader the label is briefly on no pod, or on the old and the new one)."""

    def one() -> str | None:
        leaders = [n for n, p in pods(emulated, name).items() if role_of(p) == desired.ROLE_LEADER]
        return leaders[0] if len(leaders) == 1 else None

    found: str = wait_routed(emulated, name, one, timeout, "exactly one pod labelled leader")
    return found


def kill_leader_once(emulated: EmulatedCluster, name: str) -> float:
    """kill -9 the leader's process; seconds until the client Service selects only the new
    leader (the old one never again)."""
    replicas = len(pods(emulated, name))
    wait_members_ready(emulated, name, replicas)
    old = labelled_leader(emulated, name)
    before = pods(emulated, name)
    old_ip = before[old]["status"]["podIP"]
    wait_routed(
        emulated,
        name,
        lambda: leader_endpoints(emulated, name) == [old_ip],
        10,
        "the Service selects the current leader",
    )
    killed_at = time.monotonic()
    emulated.kill_pod_process(NAMESPACE, old)

    def switched() -> str | None:
        endpoints = leader_endpoints(emulated, name)
        if len(endpoints) == 1 and endpoints[0] != old_ip:
            return endpoints[0]
        return None

    new_ip = wait_routed(emulated, name, switched, 20, "the Service selects a new leader")
    elapsed = time.monotonic() - killed_at
    now = pods(emulated, name)
    new = next(n for n, p in now.items() if p["status"].get("podIP") == new_ip)
    assert new != old
    assert role_of(now[new]) == desired.ROLE_LEADER
    wait_for(
        emulated, lambda: status(emulated, name).get("leader") == new, 30, "status.leader follows"
    )
    # The killed member comes back (the kubelet restarts it) and rejoins as a follower.
    wait_available(emulated, name, replicas, timeout=60)
    wait_members_ready(emulated, name, replicas)
    return elapsed


def wait_members_ready(emulated: EmulatedCluster, name: str, replicas: int) -> None:
    """Every member's pod Ready (its /readyz: a member that knows the leader and has caught
    up). The operator's status can still show a killed member healthy for a moment; a
    test that kills the next leader before the last one is back takes the quorum away."""
    wait_routed(
        emulated,
        name,
        lambda: sum(1 for p in pods(emulated, name).values() if pod_ready(p)) == replicas,
        60,
        f"{replicas} members of {name} Ready",
    )

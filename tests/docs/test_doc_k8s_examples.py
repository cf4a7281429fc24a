"""The Kubernetes examples of the documentation (marked `doctest: k8s`) run with the real
`kubectl` against the emulated Kubernetes of tests/k8s (its API server serves what kubectl
needs: discovery, the OpenAPI document, tables, watches, the scale subresource).

The session stands in for what the examples take as done: `helm install` of the chart
(the CRDs applied, the operator running - here under kopf's KopfRunner, with the tests'
short resync timings) and, for docs/recovery.md, RaftCluster `demo` (examples/minimal.yaml)
running in namespace `prod`. The examples then run in document order, in bash, with
KUBECONFIG pointing at the cluster, like the local ones (tests/docs/README.md). Without a
`kubectl` on PATH they are skipped with that reason (`make install` installs Debian's
kubernetes-client where apt-get can)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.docs.examples import REPO, Example, all_examples
from tests.docs.runner import SANDBOX, Session, base_env, check, run_example

pytestmark = pytest.mark.slow

EXAMPLES = [e for e in all_examples() if e.kind == "k8s"]
PRECONDITION_NAMESPACE = "prod"  # docs/recovery.md's steps act on demo in prod
PRECONDITION_CLUSTER = REPO / "examples" / "minimal.yaml"
KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
def k8s_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if KUBECTL is None:
        pytest.skip(
            "no kubectl on PATH: the Kubernetes examples need the real client "
            "(make install installs Debian's kubernetes-client where apt-get can)"
        )
    # Imported here: the emulated cluster pulls in kopf and the operator.
    from tests.k8s.harness.cluster import EmulatedCluster, repo_crds
    from tests.k8s.harness_ext import OPERATOR_ENV, Operator, crd_admission, wait_available

    workdir = Path(tmp_path_factory.mktemp("doc-k8s"))
    directory = workdir / "session"
    shutil.copytree(SANDBOX, directory)
    saved = {k: os.environ.get(k) for k in OPERATOR_ENV}
    os.environ.update(OPERATOR_ENV)
    try:
        with EmulatedCluster(workdir / "k8s", crds=repo_crds()) as cluster:
            hook = crd_admission()  # CRD defaults, schema and CEL rules, as the API server
            cluster.call(lambda: cluster.runtime.store.admission.append(hook))
            with cluster.as_default_kubeconfig():
                operator = Operator()
                operator.start()
                try:
                    cluster.create("v1/namespaces", {"metadata": {"name": PRECONDITION_NAMESPACE}})
                    demo = yaml.safe_load(PRECONDITION_CLUSTER.read_text())
                    cluster.create("raftkv.dev/v1alpha1/raftclusters", demo, PRECONDITION_NAMESPACE)
                    wait_available(cluster, "demo", 3, namespace=PRECONDITION_NAMESPACE)
                    env = base_env()
                    env["KUBECONFIG"] = str(cluster.kubeconfig_path)
                    yield Session(directory, env, env)
                finally:
                    operator.stop()
            cluster.check()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_k8s_doc_example(example: Example, k8s_session: Session) -> None:
    check(example, run_example(example, k8s_session, k8s_session.env))


def test_the_kubernetes_examples_are_marked() -> None:
    """Every example that runs kubectl is marked k8s (runs here) or skip (says why): an
    unmarked one would run in the local session, where no API server answers."""
    unmarked = [e.id for e in all_examples() if e.kind == "run" and "kubectl " in e.code]
    assert not unmarked, f"kubectl examples without a k8s or skip marker: {unmarked}"

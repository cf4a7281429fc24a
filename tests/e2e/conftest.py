"""Fixtures of the kind suite: the cluster, the operator installed with Helm, a namespace."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.kind import (
    CHART,
    OPERATOR_NAMESPACE,
    RELEASE,
    Kube,
    missing_requirements,
    namespace,
    run,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = missing_requirements()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("kind") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def kube() -> Kube:
    kube = Kube.connect(os.environ.get("RAFTKV_KIND_CLUSTER", "raftkv"))
    kube.client_image = os.environ["RAFTKV_NODE_IMAGE"]  # its raftkv CLI is the client
    return kube


@pytest.fixture(scope="session")
def operator(kube: Kube) -> Iterator[str]:
    """The chart installed (images already loaded into kind by `make e2e-kind`)."""
    repository, _, tag = os.environ["RAFTKV_OPERATOR_IMAGE"].rpartition(":")
    run(
        "helm", "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    try:
        yield RELEASE
    finally:
        run("helm", "uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait")


@pytest.fixture
def ns(kube: Kube, operator: str) -> Iterator[str]:
    with namespace(kube, f"e2e-{uuid.uuid4().hex[:8]}") as name:
        yield name


@pytest.fixture(scope="session")
def node_image() -> str:
    return os.environ["RAFTKV_NODE_IMAGE"]

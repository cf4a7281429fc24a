from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from raftkv_operator import crdgen
from raftkv_operator.models import RaftCheckpoint, RaftCluster

from .admission import Admission

REPO = Path(__file__).resolve().parents[3]
EXAMPLES_DIR = REPO / "examples"
CRDS_DIR = REPO / "crds"
NAMESPACE = "prod"


def load_example(name: str) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all((EXAMPLES_DIR / name).read_text()) if d]
    assert len(documents) == 1, f"{name}: one object per example"
    return documents[0]


def example_cluster(name: str, **status: Any) -> RaftCluster:
    """An example RaftCluster as the operator sees it: in a namespace, with a uid."""
    body = copy.deepcopy(load_example(name))
    body["metadata"].update(namespace=NAMESPACE, uid=f"uid-{body['metadata']['name']}")
    if status:
        body["status"] = status
    return RaftCluster.model_validate(body)


@pytest.fixture(scope="session")
def cluster_crd() -> dict[str, Any]:
    return crdgen.crd(RaftCluster)


@pytest.fixture(scope="session")
def checkpoint_crd() -> dict[str, Any]:
    return crdgen.crd(RaftCheckpoint)


@pytest.fixture(scope="session")
def cluster_admission(cluster_crd: dict[str, Any]) -> Admission:
    return Admission(cluster_crd)


@pytest.fixture(scope="session")
def checkpoint_admission(checkpoint_crd: dict[str, Any]) -> Admission:
    return Admission(checkpoint_crd)

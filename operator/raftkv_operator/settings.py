"""The operator's timings and defaults (environment overrides) and where it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from raftkv_operator.models import DEFAULT_IMAGE_REPOSITORY


@dataclass
class Settings:
    """Timings and defaults; environment variables RAFTKV_OPERATOR_<FIELD> (upper-cased)
    override them when the operator starts."""

    resync_seconds: float = 10.0
    """Reconcile a quiet cluster at least this often."""
    busy_seconds: float = 1.0
    """Reconcile this often while something is in flight (events wake it sooner)."""
    status_wait_seconds: float = 5.0
    """Long-poll duration of `/v1/status?wait=`."""
    node_timeout_seconds: float = 2.0
    """Timeout of a node request that does not wait on the cluster."""
    commit_timeout_seconds: float = 30.0
    """Timeout of a node request that waits for a commit (remove, transfer)."""
    archive_poll_seconds: float = 5.0
    """How often a RaftCheckpoint's archive Job is looked at while it runs (it is given up
    by time, the Job's deadline, never by a number of looks)."""
    image_repository: str = DEFAULT_IMAGE_REPOSITORY
    """Image repository for clusters that give `version` but no `image`."""

    def load_env(self) -> None:
        for name, default in vars(Settings()).items():
            variable = f"RAFTKV_OPERATOR_{name.upper()}"
            raw = os.environ.get(variable)
            if not raw:
                continue
            if isinstance(default, str):
                setattr(self, name, raw)
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{variable}={raw!r} is not a number of seconds") from None
            if not value > 0:
                raise ValueError(f"{variable}={raw!r} must be positive")
            setattr(self, name, value)


SETTINGS = Settings()


def operator_namespace() -> str | None:
    """The operator's own namespace (the chart sets OPERATOR_NAMESPACE from the pod)."""
    return os.environ.get("OPERATOR_NAMESPACE") or None

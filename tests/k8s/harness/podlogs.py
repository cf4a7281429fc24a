"""The `log` subresource of pods (`kubectl logs pod/NAME`, `kubectl logs job/NAME`): what a
container printed, from the kubelet's log file (`<workdir>/logs/<ns>/<pod>/<container>.log`).

The file holds every start of the container, each after a line of the kubelet's
(`--- <time> emulated kubelet: start #N of ...`): the log of the current start is what
follows the last such line, `previous=true` the one before it, as the API server answers.
Served: `container` (required when the pod has more than one, as the API server says),
`previous`, `tailLines`, `limitBytes`. Answered 400 with the reason: `follow` (kubectl
logs -f), a container that never started, `previous` without an earlier start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from tests.k8s.harness.store import ApiError, Obj

START_MARK = b" emulated kubelet: start #"

LogPath = Callable[[str, str, str], Path]
"""(namespace, pod, container) -> the kubelet's log file."""


def _count(params: Mapping[str, str], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not value.isdigit():
        raise ApiError(400, "BadRequest", f"{key}: must be a whole number, not {value!r}")
    return int(value)


def container_log(pod: Obj, params: Mapping[str, str], log_path: LogPath) -> bytes:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    name = meta["name"]
    names = [c["name"] for c in spec.get("containers") or []]
    if params.get("follow") in ("true", "1"):
        raise ApiError(400, "BadRequest", "follow=true is not emulated (kubectl logs -f)")
    container = params.get("container")
    if container is None:
        if len(names) != 1:
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {name}, choose one of: {names}",
            )
        container = names[0]
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    if container not in names + init_names:
        raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
    path = log_path(meta["namespace"], name, container)
    if not path.exists():
        raise ApiError(
            400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start'
        )
    starts = starts_of(path.read_bytes())
    if params.get("previous") in ("true", "1"):
        if len(starts) < 2:
            raise ApiError(
                400,
                "BadRequest",
                f'previous terminated container "{container}" in pod "{name}" not found',
            )
        data = starts[-2]
    else:
        data = starts[-1] if starts else b""
    tail = _count(params, "tailLines")
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[len(lines) - tail :] if tail else [])
    limit = _count(params, "limitBytes")
    if limit is not None:
        data = data[:limit]
    return data


def starts_of(log: bytes) -> list[bytes]:
    """What the container printed in each start, oldest first (the kubelet's lines out)."""
    starts: list[bytes] = []
    current: list[bytes] | None = None
    for line in log.splitlines(keepends=True):
        if line.startswith(b"--- ") and START_MARK in line:
            if current is not None:
                starts.append(b"".join(current))
            current = []
        elif current is not None:
            current.append(line)
    if current is not None:
        starts.append(b"".join(current))
    return starts

"""Leader routing without the operator (the way Patroni runs Postgres on Kubernetes): the
node keeps its own pod's `raftkv.dev/role` label true, so the `<cluster>` Service, which
selects `raftkv.dev/role=leader`, follows leadership even while the operator is down.

A new leader labels itself `leader` as soon as it wins; a deposed leader (step-down,
check-quorum, transfer) relabels itself `follower`; a member waiting to be added or
removed drops the label. The operator keeps reconciling the labels as a second line (a
killed leader cannot relabel itself: its pod turns NotReady, and its restarted process
labels itself `follower` first thing).

The label is written with a JSON merge PATCH of the node's own pod through the API server
(in-cluster: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, the service
account's token and CA; the token is re-read when its file changes, as the kubelet rotates
it). It never blocks the Raft loop: a role change only wakes this task, which writes the
newest role (older ones are skipped), retrying with capped exponential back-off. Failures
are logged and counted (`raftkv_pod_label_errors_total`), never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from raftkv.protocol.kubernetes import ROLE_LABEL, ROLE_TERM_ANNOTATION
from raftkv.runtime.config import NodeConfig
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.tasks import stop_task
from raftkv.security.tls import file_stamp

log = logging.getLogger("raftkv.podlabel")

MERGE_PATCH = "application/merge-patch+json"

# Error reasons (the `reason` label of raftkv_pod_label_errors_total).
REASONS = (
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "server",
    "refused",
    "network",
    "config",
)


def label_for_role(role_name: str) -> str | None:
    """The label a member in `role_name` (RaftNode.role_name()) gives its pod; None: none.
    Candidates stay `follower`: without a leader nobody is `leader` (the operator's rule)."""
    if role_name == "leader":
        return "leader"
    if role_name == "learner":
        return "learner"
    if role_name == "none":
        return None
    return "follower"


@dataclass(frozen=True, slots=True)
class PodLabelConfig:
    api_url: str
    """`https://host:port` of the API server (never plain HTTP: the token would leak)."""
    namespace: str
    pod: str
    token_file: Path
    ca_file: Path

    @property
    def pod_url(self) -> str:
        return (
            f"{self.api_url}/api/v1/namespaces/{quote(self.namespace, safe='')}"
            f"/pods/{quote(self.pod, safe='')}"
        )


def in_cluster_api_url(env: Mapping[str, str]) -> str:
    """The API server as every pod sees it (KUBERNETES_SERVICE_HOST/PORT); IPv6 bracketed."""
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ValueError(
            "--pod-role-label: no --kube-api-url and no KUBERNETES_SERVICE_HOST "
            "(not running in a pod?)"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"https://{host}:{port}"


def make_config(
    *,
    api_url: str,
    namespace: str,
    pod: str,
    token_file: Path,
    ca_file: Path,
    env: Mapping[str, str] | None = None,
) -> PodLabelConfig:
    """Validated settings; ValueError names what is wrong."""
    url = (api_url or in_cluster_api_url(os.environ if env is None else env)).rstrip("/")
    if not url.startswith("https://"):
        raise ValueError(
            f"--kube-api-url must be https:// (the service account token must "
            f"not travel in clear), got {url!r}"
        )
    if not namespace:
        raise ValueError(
            "--pod-role-label needs --pod-namespace (RAFTKV_POD_NAMESPACE, from "
            "the downward API: metadata.namespace)"
        )
    if not pod:
        raise ValueError("--pod-role-label needs the pod name (--pod-name or --name)")
    return PodLabelConfig(url, namespace, pod, token_file, ca_file)


class _FileCache:
    """A small file's content, re-read only when its (inode, size, mtime) changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._data = b""

    def read(self) -> tuple[bytes, bool]:
        """(content, changed since the last read). OSError if unreadable."""
        stamp = file_stamp(self.path)
        if stamp == self._stamp and stamp != (-1, -1, -1):
            return self._data, False
        self._data = self.path.read_bytes()
        self._stamp = stamp
        return self._data, True

    def forget(self) -> None:
        self._stamp = None


class PodLabelError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PodLabelMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter(
            "raftkv_pod_label_errors_total",
            "Failed attempts to write this pod's raftkv.dev/role label",
            ["reason"],
            registry=registry,
        )
        self.writes = Counter(
            "raftkv_pod_label_writes_total",
            "This pod's raftkv.dev/role label written",
            registry=registry,
        )
        self.in_sync = Gauge(
            "raftkv_pod_label_in_sync",
            "1 when this pod's raftkv.dev/role label is known to match the node's role",
            registry=registry,
        )
        for reason in REASONS:
            self.errors.labels(reason)


class PodLabeler:
    """Keeps one pod's role label equal to `current()` (label, term); `changed()` says it
    may differ. The term is written beside the label (ROLE_TERM_ANNOTATION) when the label
    changes; a new term alone writes nothing. Every `reassert_seconds` the label is written
    again even if nothing changed here: the node may only patch its pod, never read it, so
    a label someone else changed (a human, a stale writer) is put right this way, not left
    to the operator alone."""

    REQUEST_TIMEOUT = 5.0
    REASSERT_SECONDS = 60.0

    def __init__(
        self,
        config: PodLabelConfig,
        current: Callable[[], tuple[str | None, int]],
        metrics: PodLabelMetrics,
        *,
        backoff: tuple[float, float] = (0.05, 5.0),
        reassert_seconds: float = REASSERT_SECONDS,
    ) -> None:
        self.config = config
        self.reassert_seconds = reassert_seconds
        self.current = current
        self.metrics = metrics
        self.backoff = backoff
        self.written: str | None | object = _UNKNOWN
        """The value the API server last accepted (_UNKNOWN until the first write)."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._token = _FileCache(config.token_file)
        self._ca = _FileCache(config.ca_file)
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def changed(self) -> None:
        """The role may have changed: non-blocking, callable from the node loop."""
        self.metrics.in_sync.set(0)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.REQUEST_TIMEOUT)
        )
        self._task = asyncio.create_task(self._run(), name="pod-label")
        self.changed()

    async def flush(self, timeout: float) -> bool:
        """Wait (bounded) until the label matches the role; True if it does."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            # Its cancellation can be lost (runtime.tasks): the loop also stops on _closed.
            self._wake.set()
            await stop_task(self._task, self.REQUEST_TIMEOUT + 1, "the pod label task")
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        delay = self.backoff[0]
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), self.reassert_seconds)
            except TimeoutError:
                self.written = _UNKNOWN  # write it again: it may have been changed since
            self._wake.clear()
            if self._closed:
                return
            wanted, term = self.current()
            if wanted == self.written:
                self._synced()
                continue
            try:
                await self._patch(wanted, term)
            except PodLabelError as e:
                self.metrics.errors.labels(e.reason).inc()
                log.warning(
                    "pod label %s=%s not written (retry in %.2fs): %s", ROLE_LABEL, wanted, delay, e
                )
                # Back off; a role change meanwhile is tried at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay * random.uniform(0.8, 1.2))
                self._wake.set()
                delay = min(self.backoff[1], delay * 2)
                continue
            delay = self.backoff[0]
            self.written = wanted
            self.metrics.writes.inc()
            log.info("pod %s labelled %s=%s (term %d)", self.config.pod, ROLE_LABEL, wanted, term)
            self._wake.set()  # check again: the role may have moved meanwhile

    def _synced(self) -> None:
        self.metrics.in_sync.set(1)
        self._idle.set()

    def _context(self) -> ssl.SSLContext:
        try:
            ca, changed = self._ca.read()
        except OSError as e:
            raise PodLabelError("config", f"cannot read CA {self.config.ca_file}: {e}") from e
        if changed or self._ssl is None:
            try:
                self._ssl = ssl.create_default_context(cadata=ca.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError) as e:
                self._ca.forget()
                raise PodLabelError("config", f"bad CA {self.config.ca_file}: {e}") from e
        return self._ssl

    def _bearer(self) -> str:
        try:
            token, _ = self._token.read()
        except OSError as e:
            raise PodLabelError("config", f"cannot read token {self.config.token_file}: {e}") from e
        text = token.decode("ascii", "replace").strip()
        if not text or any(c in text for c in "\r\n"):
            raise PodLabelError("config", f"no usable token in {self.config.token_file}")
        return text

    async def _patch(self, value: str | None, term: int) -> None:
        assert self._session is not None
        body = json.dumps(
            {
                "metadata": {
                    "labels": {ROLE_LABEL: value},
                    "annotations": {ROLE_TERM_ANNOTATION: str(term)},
                }
            }
        ).encode()
        headers = {
            "Authorization": f"Bearer {self._bearer()}",
            "Content-Type": MERGE_PATCH,
            "Accept": "application/json",
        }
        started = time.monotonic()
        try:
            async with self._session.patch(
                self.config.pod_url, data=body, headers=headers, ssl=self._context()
            ) as resp:
                status = resp.status
                # The answer is the pod; nothing in it is needed, so none of it is trusted.
                await resp.release()
        except PodLabelError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            raise PodLabelError(
                "network", f"PATCH {self.config.pod_url}: {type(e).__name__}: {e}"
            ) from e
        if 200 <= status < 300:
            log.debug("PATCH took %.3fs", time.monotonic() - started)
            return
        if status == 401:
            self._token.forget()  # rotated under us: read it again next time
        reason = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}.get(
            status, "server" if status >= 500 else "refused"
        )
        raise PodLabelError(reason, f"PATCH {self.config.pod_url}: HTTP {status}")


_UNKNOWN = object()


def pod_labeler(
    cfg: NodeConfig, role: Callable[[], tuple[str, int]], metrics: NodeMetrics
) -> PodLabeler | None:
    """The labeler `cfg` asks for (None without --pod-role-label); ValueError if misset.
    `role`: the node's role (RaftNode.role_name) and term now."""
    if not cfg.pod_role_label:
        return None
    config = make_config(
        api_url=cfg.kube_api_url,
        namespace=cfg.pod_namespace,
        pod=cfg.pod_name or cfg.name,
        token_file=cfg.kube_token_file,
        ca_file=cfg.kube_ca_file,
    )

    def current() -> tuple[str | None, int]:
        name, term = role()
        return label_for_role(name), term

    return PodLabeler(config, current, PodLabelMetrics(metrics.registry))

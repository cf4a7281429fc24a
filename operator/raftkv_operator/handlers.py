"""kopf handlers: thin glue between Kubernetes, the nodes (members.py) and the decisions
(planner.py). Run with `raftkv-operator` (see __main__.py) or `kopf run -m
raftkv_operator.handlers`.

Per RaftCluster:
- daemon `reconcile` (reconciler.py): observe -> planner.plan() -> persist
  status.operation -> one action -> status, in a loop woken by pod/StatefulSet/cluster events
  (and a resync period);
- daemon `route-leader` (routing.py): long-polls every member's `/v1/status?wait=` and moves
  the `raftkv.dev/role` pod labels the client Service selects on (runs even when paused:
  routing is not a change to the cluster);
- timer `checkpoint-schedule` (checkpointing.py): creates scheduled RaftCheckpoint objects;
- on delete: volumes per reclaimPolicy (owned objects go with their owner references).
Per RaftCheckpoint: `checkpoint` (checkpointing.py) takes it through the leader, records
the manifest, applies retention and runs the archive Job.

All state that must survive an operator restart is in the objects (status.operation,
status.bootstrapped, the member-volumes annotation); the in-memory parts are wake-ups and
caches only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from raftkv_operator import checkpointing, desired, kube, metrics
from raftkv_operator.connections import RUNTIME
from raftkv_operator.events import KopfLogger, info, namespaced
from raftkv_operator.models import API_GROUP, API_VERSION, ReclaimPolicy
from raftkv_operator.observe import DATA_CLAIM_PREFIX
from raftkv_operator.reconciler import Reconciler
from raftkv_operator.routing import LeaderRouter
from raftkv_operator.settings import SETTINGS

CLUSTERS = "raftclusters"
CHECKPOINTS = "raftcheckpoints"
FINALIZER = "raftkv.dev/finalizer"
SCHEDULE_INTERVAL = 5.0
"""How often each cluster's checkpoint schedule is checked (cron has minute resolution; the
check itself costs nothing unless a checkpoint is due)."""
CLUSTER_SCAN = True
"""kopf watches CRDs and namespaces cluster-wide (off for a namespaced-Role install:
`raftkv-operator --no-cluster-scan`)."""
METRICS_PORT_ENV = "RAFTKV_OPERATOR_METRICS_PORT"
"""Serve metrics on this port when the operator runs under plain `kopf run`."""


# ---- operator lifecycle ----------------------------------------------------------------------


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, logger: KopfLogger, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="raftkv.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="raftkv.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.scanning.disabled = not CLUSTER_SCAN
    SETTINGS.load_env()
    await asyncio.to_thread(functools.partial(kube.configure, reload=True))
    RUNTIME.session = aiohttp.ClientSession()
    port = os.environ.get(METRICS_PORT_ENV)
    if port:
        with contextlib.suppress(OSError):  # already served (the entry point does it)
            metrics.serve(int(port))
            logger.info("serving metrics on port %s", port)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if RUNTIME.session is not None:
        await RUNTIME.session.close()
        RUNTIME.session = None


# ---- wake-ups from the objects a cluster owns --------------------------------------------------


@kopf.on.event("pods", labels={desired.LABEL_MANAGED_BY: desired.MANAGED_BY})
async def pod_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    RUNTIME.wake(namespace, labels.get(desired.LABEL_INSTANCE))


@kopf.on.event("apps", "v1", "statefulsets", labels={desired.LABEL_MANAGED_BY: desired.MANAGED_BY})
async def statefulset_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    RUNTIME.wake(namespace, labels.get(desired.LABEL_INSTANCE))


@kopf.on.event(API_GROUP, API_VERSION, CLUSTERS)
async def cluster_event(
    namespace: str | None, name: str | None, meta: Mapping[str, Any], **_: Any
) -> None:
    """Wake the reconciler on a change of the spec (or deletion), never on status: the
    daemon's own status writes would otherwise wake it again, in a loop."""
    key = (namespace or "", name or "")
    seen = (meta.get("generation"), bool(meta.get("deletionTimestamp")))
    if RUNTIME.generations.get(key) == seen:
        return
    RUNTIME.generations[key] = seen
    event = RUNTIME.wakeups.get(key)
    if event is not None:
        event.set()


async def _sleep(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Until woken, stopped, or `seconds` pass (whichever is first)."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# ---- the reconcile daemon --------------------------------------------------------------------


@kopf.daemon(API_GROUP, API_VERSION, CLUSTERS, id="reconcile", cancellation_timeout=5.0)
async def reconcile_daemon(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, logger: KopfLogger, **_: Any
) -> None:
    namespace = namespaced(namespace)
    wake = RUNTIME.wakeups.setdefault((namespace, name), asyncio.Event())
    reconciler = Reconciler(namespace, name, logger)
    failures = 0
    try:
        while not stopped:
            wake.clear()
            started = time.monotonic()
            try:
                busy = await reconciler.once()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.RECONCILES.labels(name, namespace, "error").inc()
                logger.exception("reconcile of %s/%s failed", namespace, name)
                failures += 1
            else:
                metrics.RECONCILES.labels(name, namespace, "success").inc()
                failures = 0
            finally:
                metrics.RECONCILE_DURATION.observe(time.monotonic() - started)
            if failures:
                # Back off on repeated failures (an API outage must not become a log flood).
                pause = min(SETTINGS.resync_seconds, SETTINGS.busy_seconds * 2**failures)
            else:
                pause = SETTINGS.busy_seconds if busy else SETTINGS.resync_seconds
            await _sleep(wake, stopped, pause)
    finally:
        RUNTIME.wakeups.pop((namespace, name), None)
        RUNTIME.generations.pop((namespace, name), None)
        RUNTIME.node_auth.pop((namespace, name), None)


# ---- leader routing --------------------------------------------------------------------------


@kopf.daemon(API_GROUP, API_VERSION, CLUSTERS, id="route-leader", cancellation_timeout=5.0)
async def route_leader_daemon(
    name: str,
    namespace: str | None,
    spec: Mapping[str, Any],
    stopped: kopf.DaemonStopped,
    logger: KopfLogger,
    **_: Any,
) -> None:
    namespace = namespaced(namespace)
    port = int(((spec.get("service") or {}).get("ports") or {}).get("client") or 7379)
    router = LeaderRouter(namespace, name, port, logger)
    RUNTIME.pod_events[(namespace, name)] = router.pods_changed
    try:
        await router.run(stopped)
    finally:
        RUNTIME.pod_events.pop((namespace, name), None)
        await router.close()


# ---- deletion -----------------------------------------------------------------------------


@kopf.on.delete(API_GROUP, API_VERSION, CLUSTERS)
async def cluster_deleted(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    spec: Mapping[str, Any],
    logger: KopfLogger,
    **_: Any,
) -> None:
    """Owned objects go with their owner references; volumes go per reclaimPolicy."""
    namespace = namespaced(namespace)
    metrics.forget_cluster(namespace, name)
    policy = ((spec.get("storage") or {}).get("reclaimPolicy")) or ReclaimPolicy.RETAIN.value
    if policy != ReclaimPolicy.DELETE.value:
        info(
            body,
            reason="VolumesRetained",
            message="reclaimPolicy Retain: the members' volumes are kept",
        )
        return
    claims = await kube.list_volumes(namespace, desired.label_selector(name))
    deleted = 0
    for claim in claims:
        claim_name = claim["metadata"]["name"]
        if claim_name.startswith(f"{DATA_CLAIM_PREFIX}{name}-"):
            await kube.delete_volume(namespace, claim_name)
            deleted += 1
            logger.info("deleted volume %s", claim_name)
    info(
        body,
        reason="VolumesDeleted",
        message=f"reclaimPolicy Delete: deleted {deleted} member volumes",
    )


# ---- checkpoints ---------------------------------------------------------------------------


@kopf.timer(
    API_GROUP,
    API_VERSION,
    CLUSTERS,
    id="checkpoint-schedule",
    interval=SCHEDULE_INTERVAL,
    initial_delay=1.0,
)
async def checkpoint_schedule(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    await checkpointing.schedule(body, name, namespaced(namespace))


# No retry count: checkpointing.process gives up by time (a slow image pull is no failure).
@kopf.on.resume(API_GROUP, API_VERSION, CHECKPOINTS, id="checkpoint")
@kopf.on.create(API_GROUP, API_VERSION, CHECKPOINTS, id="checkpoint", backoff=2.0)
async def checkpoint_handler(
    body: kopf.Body, name: str, namespace: str | None, retry: int, **_: Any
) -> None:
    await checkpointing.process(body, name, namespaced(namespace), retry)

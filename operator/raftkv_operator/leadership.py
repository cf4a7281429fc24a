"""One active operator among replicas: a `coordination.k8s.io/v1` Lease, the way
client-go's leader election does it.

Why a Lease and not kopf peering: peering pauses every replica of equal priority (a
Deployment's replicas cannot be given distinct fixed priorities, and a hash collision would
freeze them all), and a crashed replica is only forgotten after its keep-alive lifetime.
A Lease names one holder; expiry is judged on the standby's own clock (how long the record
has not changed, never a comparison of two machines' clocks); the holder stops itself when
it cannot renew within `renew_deadline`, which is shorter than the lease, so it is gone
before a standby may take over.

The decisions (`decide`) are pure; `LeaderElector` does the I/O in a thread, so it can keep
renewing while kopf runs on its own event loop in the main thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from raftkv_operator import kube, metrics

LOG = logging.getLogger(__name__)

Decision = Literal["acquire", "renew", "wait"]


@dataclass(frozen=True)
class LeaseTimings:
    duration: float = 6.0
    """A standby takes over after the record stayed unchanged this long."""
    renew_deadline: float = 4.0
    """The holder exits when it could not renew for this long (< duration)."""
    retry_period: float = 1.0
    """How often the holder renews and a standby looks."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("need 0 < retry period < renew deadline < lease duration")


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    renew_time: str | None
    transitions: int
    resource_version: str | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any] | None) -> LeaseRecord | None:
        if obj is None:
            return None
        spec = obj.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or None,
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
        )


def decide(record: LeaseRecord | None, me: str, unchanged_for: float, duration: float) -> Decision:
    """What a replica does with the lease it just read.

    `unchanged_for`: seconds (on this replica's monotonic clock) since it first saw this
    exact record (holder and renew time); a released lease (no holder) is free at once.
    """
    if record is None or record.holder is None:
        return "acquire"
    if record.holder == me:
        return "renew"
    if unchanged_for > duration:
        return "acquire"
    return "wait"


def micro_time(now: datetime) -> str:
    """A Kubernetes MicroTime."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    name: str,
    namespace: str,
    holder: str | None,
    timings: LeaseTimings,
    now: datetime,
    *,
    previous: LeaseRecord | None = None,
) -> dict[str, Any]:
    """The Lease naming `holder` (None: released) renewed at `now`."""
    transitions = previous.transitions if previous is not None else 0
    taking_over = previous is not None and previous.holder != holder and holder is not None
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None and previous.resource_version:
        # Optimistic concurrency: two standbys taking over at once, only one wins (409).
        metadata["resourceVersion"] = previous.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": holder,
        "leaseDurationSeconds": max(1, round(timings.duration)) if holder else 1,
        "renewTime": micro_time(now),
        "leaseTransitions": transitions + (1 if taking_over else 0),
    }
    if previous is None or taking_over:
        spec["acquireTime"] = micro_time(now)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


class LeaderElector:
    """Blocks in `acquire()` until this replica holds the lease, then renews it in a thread;
    `on_lost` is called (default: exit the process) when it cannot."""

    def __init__(
        self,
        name: str,
        namespace: str,
        identity: str,
        timings: LeaseTimings | None = None,
        *,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.timings = timings or LeaseTimings()
        self.on_lost = on_lost or _exit_now
        self.stop = threading.Event()
        self.record: LeaseRecord | None = None
        self.renewed_at = 0.0
        self._seen: tuple[str | None, str | None] | None = None
        self._seen_at = 0.0
        self._thread: threading.Thread | None = None

    # ---- one attempt -------------------------------------------------------------------

    def try_once(self) -> bool:
        """Read the lease and acquire or renew it if due; True while this replica holds it."""
        now_mono = time.monotonic()
        try:
            record = LeaseRecord.from_object(kube.read_lease(self.namespace, self.name))
        except Exception as e:  # an API hiccup: judged by the renew deadline, not here
            LOG.warning("reading Lease %s/%s failed: %s", self.namespace, self.name, e)
            return False
        seen = (record.holder, record.renew_time) if record is not None else None
        if seen != self._seen:
            self._seen, self._seen_at = seen, now_mono
        decision = decide(record, self.identity, now_mono - self._seen_at, self.timings.duration)
        if decision == "wait":
            return False
        body = lease_body(
            self.name, self.namespace, self.identity, self.timings, datetime.now(UTC),
            previous=record,
        )  # fmt: skip
        try:
            written = (
                kube.create_lease(self.namespace, body)
                if record is None
                else kube.replace_lease(self.namespace, self.name, body)
            )
        except Exception as e:
            LOG.warning("writing Lease %s/%s failed: %s", self.namespace, self.name, e)
            return False
        if written is None:
            return False  # somebody else wrote first (409)
        self.record = LeaseRecord.from_object(written)
        self.renewed_at = now_mono
        if decision == "acquire":
            LOG.info("%s holds Lease %s/%s now", self.identity, self.namespace, self.name)
        return True

    # ---- the loops -----------------------------------------------------------------------

    def acquire(self) -> bool:
        """Until this replica holds the lease (True) or `stop` is set (False)."""
        metrics.set_active(False)
        LOG.info("%s: standing by for Lease %s/%s", self.identity, self.namespace, self.name)
        while not self.stop.is_set():
            if self.try_once():
                metrics.set_active(True)
                self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
                self._thread.start()
                return True
            self.stop.wait(self.timings.retry_period)
        return False

    def _renew(self) -> None:
        while not self.stop.wait(self.timings.retry_period):
            if self.try_once():
                continue
            if time.monotonic() - self.renewed_at > self.timings.renew_deadline:
                LOG.critical(
                    "%s could not renew Lease %s/%s for %.0f s: another replica may take "
                    "over; stopping now",
                    self.identity,
                    self.namespace,
                    self.name,
                    self.timings.renew_deadline,
                )
                metrics.set_active(False)
                self.on_lost()
                return

    def release(self) -> None:
        """Stop renewing and hand the lease back (a standby takes it at its next look)."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(self.timings.retry_period * 2)
        metrics.set_active(False)
        if self.record is None or self.record.holder != self.identity:
            return
        body = lease_body(
            self.name, self.namespace, None, self.timings, datetime.now(UTC), previous=self.record
        )
        try:
            kube.replace_lease(self.namespace, self.name, body)
            LOG.info("%s released Lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as e:
            LOG.warning("releasing Lease %s/%s failed: %s", self.namespace, self.name, e)


def _exit_now() -> None:
    # No cleanup that could still act on the clusters: a replica that lost the lease must
    # stop at once (its container restarts as a standby).
    logging.shutdown()
    os._exit(3)

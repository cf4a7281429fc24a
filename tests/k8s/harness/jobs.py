"""A minimal Job controller: pods from the template until `completions` succeed, or the Job
fails after more than `backoffLimit` failed pods or past `activeDeadlineSeconds`.

Pods are named `<job>-<random>`, labelled `job-name`/`controller-uid` (and the
`batch.kubernetes.io/` twins) and owned by the Job; the kubelet runs them. Failed pods are
replaced after a short back-off. Status: active, ready, succeeded, failed, startTime,
completionTime, conditions Complete or Failed (with SuccessCriteriaMet/FailureTarget).
`ttlSecondsAfterFinished` deletes the finished Job (and, through the garbage collector, its
pods). Indexed completion, pod failure policies and suspend/resume are not emulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
from collections.abc import Iterable
from typing import Any

from tests.k8s.harness.controller import Controller, Key
from tests.k8s.harness.runtime import controlled_by, owner_reference, pod_ready
from tests.k8s.harness.store import ApiError, Obj, WatchEvent, parse_rfc3339, rfc3339

JOBS = "batch/v1/jobs"
PODS = "v1/pods"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def job_finished(job: Obj) -> str | None:
    """'Complete' or 'Failed' once the Job has finished, else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


class JobController(Controller):
    name = "job-controller"
    watches = (JOBS, PODS)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._next_attempt: dict[Key, float] = {}

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        if event.resource.key == JOBS:
            return [(event.namespace or "", event.name)]
        refs = event.object["metadata"].get("ownerReferences") or []
        return [
            (event.namespace or "", r["name"])
            for r in refs
            if r.get("kind") == "Job" and r.get("controller")
        ]

    def all_keys(self) -> Iterable[Key]:
        return [(j["metadata"]["namespace"], j["metadata"]["name"]) for j in self.store.list(JOBS)]

    def _later(self, key: Key, seconds: float) -> None:
        asyncio.get_running_loop().call_later(max(seconds, 0.01), self.enqueue, key)

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        job = self.store.get(JOBS, namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            self._next_attempt.pop(key, None)
            return
        spec, status = job["spec"], dict(job.get("status") or {})
        finished = job_finished(job)
        if finished:
            ttl = spec.get("ttlSecondsAfterFinished")
            done_at = status.get("completionTime") or (status.get("conditions") or [{}])[-1].get(
                "lastTransitionTime"
            )
            if ttl is not None and done_at:
                left = (parse_rfc3339(done_at) - _now()).total_seconds() + float(ttl)
                if left <= 0:
                    self.store.delete(JOBS, namespace, name, propagation_policy="Background")
                else:
                    self._later(key, left)
            return
        uid = job["metadata"]["uid"]
        pods = [p for p in self.store.list(PODS, namespace) if controlled_by(p, uid)]
        phase = {p["metadata"]["name"]: (p.get("status") or {}).get("phase") for p in pods}
        succeeded = sum(1 for v in phase.values() if v == "Succeeded")
        failed = sum(1 for v in phase.values() if v == "Failed")
        active = [
            p
            for p in pods
            if phase[p["metadata"]["name"]] not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        status.setdefault("startTime", rfc3339())
        completions = int(spec.get("completions") or 1)
        conditions: list[Obj] = list(status.get("conditions") or [])
        outcome: tuple[str, str, str] | None = None
        deadline = spec.get("activeDeadlineSeconds")
        if succeeded >= completions:
            outcome = (
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
        elif failed > int(spec.get("backoffLimit", 6)):
            outcome = (
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        elif deadline is not None and (
            _now() - parse_rfc3339(status["startTime"])
        ).total_seconds() >= float(deadline):
            outcome = (
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )
        if outcome is not None:
            for pod in active:
                self._delete_pod(pod)
            now = rfc3339()
            pre = "SuccessCriteriaMet" if outcome[0] == "Complete" else "FailureTarget"
            for type_ in (pre, outcome[0]):
                conditions.append(
                    {
                        "type": type_,
                        "status": "True",
                        "reason": outcome[1],
                        "message": outcome[2],
                        "lastProbeTime": now,
                        "lastTransitionTime": now,
                    }
                )
            if outcome[0] == "Complete":
                status["completionTime"] = now
            active = []
        elif not spec.get("suspend"):
            want = min(int(spec.get("parallelism") or 1), completions - succeeded) - len(active)
            wait = self._next_attempt.get(key, 0.0) - asyncio.get_running_loop().time()
            if want > 0 and wait > 0:
                self._later(key, wait)
            elif want > 0:
                for _ in range(want):
                    active.append(self._create_pod(job))
                first, cap = self.rt.options.job_backoff
                self._next_attempt[key] = asyncio.get_running_loop().time() + (
                    min(first * 2 ** max(failed - 1, 0), cap) if failed else 0.0
                )
            if deadline is not None:
                left = (
                    float(deadline) - (_now() - parse_rfc3339(status["startTime"])).total_seconds()
                )
                self._later(key, left)
        status.update(
            {
                "active": len(active),
                "succeeded": succeeded,
                "failed": failed,
                "ready": sum(1 for p in active if pod_ready(p)),
                "conditions": conditions,
            }
        )
        if not conditions:
            status.pop("conditions")
        for field in ("active", "succeeded", "failed"):
            if not status[field]:
                status.pop(field)
        if status != (job.get("status") or {}):

            def apply(obj: Obj) -> Obj:
                obj["status"] = status
                return obj

            self.store.update(JOBS, namespace, name, apply, subresource="status")

    def _create_pod(self, job: Obj) -> Obj:
        template = copy.deepcopy(job["spec"]["template"])
        meta = template.get("metadata") or {}
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{job['metadata']['name']}-",
                "namespace": job["metadata"]["namespace"],
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": [owner_reference(job)],
            },
            "spec": template["spec"],
        }
        if meta.get("annotations"):
            body["metadata"]["annotations"] = dict(meta["annotations"])
        return self.store.create(PODS, body, job["metadata"]["namespace"])

    def _delete_pod(self, pod: Obj) -> None:
        with contextlib.suppress(ApiError):
            self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])

"""The lock workload's checker, judged by fencing tokens.

Events per lock name (`key`): `acquire` (input {"lease"}; ok output {"token"}),
`release` (input {"lease"}; ok output {"released": bool}). Every acquisition
uses a fresh lease, so a lease identifies one acquisition.

Checks:
1. tokens are unique: two acquisitions never get the same token;
2. tokens follow real time: if A's acquire completed before B's was invoked,
   A's token is smaller (the token is the revision of the grant, and grants
   are ordered like every other write);
3. no two holders at once: a release that answered `released: true` proves its
   lease held the lock from the grant until the release, so the intervals
   [acquire completed, release invoked] of two such acquisitions must not
   overlap. (A lease that expired answers `released: false`: a holder that was
   paused past its lease is exactly what fencing tokens exist for, and no
   violation of the lock service.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.chaos.history import Operation


@dataclass
class Acquisition:
    lock: str
    lease: int
    token: int
    acquired_at: int  # ns, acquire completed
    invoked_at: int  # ns, acquire invoked
    release_invoked: int | None = None
    released: bool = False  # a release answered released: true


@dataclass
class LockResult:
    verdict: str
    acquisitions: int = 0
    proven_intervals: int = 0
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        head = (
            f"lock: {self.verdict} ({self.acquisitions} acquisitions, "
            f"{self.proven_intervals} with a release that proves the hold)"
        )
        return "\n".join([head] + [f"  {p}" for p in self.problems[:20]])


def check_locks(ops: Sequence[Operation]) -> LockResult:
    acquisitions: dict[tuple[str, int], Acquisition] = {}
    for op in ops:
        if op.f == "acquire" and op.status == "ok" and op.ret is not None:
            lease = int(op.input["lease"])
            acquisitions[(str(op.key), lease)] = Acquisition(
                str(op.key), lease, int(op.output["token"]), op.ret, op.call
            )
    for op in ops:
        if op.f != "release":
            continue
        acq = acquisitions.get((str(op.key), int(op.input["lease"])))
        if acq is None:
            continue
        acq.release_invoked = op.call
        acq.released = op.status == "ok" and bool(op.output and op.output.get("released"))

    result = LockResult("ok", len(acquisitions))
    by_lock: dict[str, list[Acquisition]] = {}
    for acq in acquisitions.values():
        by_lock.setdefault(acq.lock, []).append(acq)
    for lock, acqs in sorted(by_lock.items()):
        seen: dict[int, Acquisition] = {}
        for acq in acqs:
            other = seen.get(acq.token)
            if other is not None:
                result.problems.append(
                    f"{lock}: token {acq.token} granted to leases {other.lease} and {acq.lease}"
                )
            seen[acq.token] = acq
        by_completion = sorted(acqs, key=lambda a: a.acquired_at)
        by_invocation = sorted(acqs, key=lambda a: a.invoked_at)
        # 2: for each B, every A completed before B was invoked has a smaller token.
        best: Acquisition | None = None
        i = 0
        for b in by_invocation:
            while i < len(by_completion) and by_completion[i].acquired_at < b.invoked_at:
                a = by_completion[i]
                if best is None or a.token > best.token:
                    best = a
                i += 1
            if best is not None and best.token >= b.token:
                result.problems.append(
                    f"{lock}: lease {b.lease} got token {b.token} after lease {best.lease}'s "
                    f"acquire (token {best.token}) had completed"
                )
        # 3: proven holds never overlap.
        proven = sorted(
            (a for a in acqs if a.released and a.release_invoked is not None),
            key=lambda a: a.acquired_at,
        )
        result.proven_intervals += len(proven)
        latest: Acquisition | None = None  # the proven hold that ends last so far
        for cur in proven:
            assert cur.release_invoked is not None
            if latest is not None:
                assert latest.release_invoked is not None
                if cur.acquired_at < latest.release_invoked:
                    result.problems.append(
                        f"{lock}: two holders at once: lease {latest.lease} (token "
                        f"{latest.token}) held it until {latest.release_invoked / 1e9:.3f}s "
                        f"and lease {cur.lease} (token {cur.token}) from "
                        f"{cur.acquired_at / 1e9:.3f}s"
                    )
            if latest is None or cur.release_invoked > (latest.release_invoked or 0):
                latest = cur
    if result.problems:
        result.verdict = "violation"
    return result

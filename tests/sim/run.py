"""Command line for the simulator: sweep many seeds, or replay one with a trace.

    python -m tests.sim.run --seeds 2000                   # seeds 0..1999, 3 and 5 nodes
    python -m tests.sim.run --seed 1234 --nodes 5 --trace  # replay one run, every event
    python -m tests.sim.run --seeds 200 --variant figure8  # a deliberately broken core
    python -m tests.sim.run --seeds 200 --plan follower_acks_before_fsync  # a wrong Ready plan

A seed with N nodes always makes the same run; `--nodes 3,5` (the default)
alternates the cluster size by seed. Exit status 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Iterator

from raftkv.raft import Raft
from raftkv.runtime import ready
from tests.sim.broken import VARIANTS
from tests.sim.broken_plans import HARMLESS_REORDERINGS, PLAN_VARIANTS
from tests.sim.cluster import Result, run_seed

DEFAULT_STEPS = 300


def nodes_for(seed: int, sizes: list[int]) -> int:
    return sizes[seed % len(sizes)]


PLANS: dict[str, ready.Planner] = {**PLAN_VARIANTS, **HARMLESS_REORDERINGS}


def _run_one(job: tuple[int, int, int, str, bool, bool, str]) -> Result:
    seed, nodes, steps, variant, wipe_readd, fresh_ids, plan = job
    factory = VARIANTS[variant] if variant else Raft
    planner = PLANS[plan] if plan else ready.plan
    return run_seed(
        seed, nodes, steps, factory, wipe_readd=wipe_readd, fresh_ids=fresh_ids, planner=planner
    )


def sweep(
    seeds: Iterable[int],
    sizes: list[int],
    steps: int = DEFAULT_STEPS,
    variant: str = "",
    jobs: int = 1,
    wipe_readd: bool = False,
    fresh_ids: bool = False,
    plan: str = "",
) -> Iterator[Result]:
    """Run the seeds (in parallel with jobs > 1); yields results as they finish."""
    work = [(s, nodes_for(s, sizes), steps, variant, wipe_readd, fresh_ids, plan) for s in seeds]
    if jobs <= 1:
        for job in work:
            yield _run_one(job)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(jobs) as pool:
        yield from pool.imap_unordered(_run_one, work, chunksize=8)


def replay_command(r: Result, variant: str = "", plan: str = "") -> str:
    cmd = f"python -m tests.sim.run --seed {r.seed} --nodes {r.nodes} --steps {r.steps}"
    if variant:
        cmd += f" --variant {variant}"
    if plan:
        cmd += f" --plan {plan}"
    if r.wipe_readd:
        cmd += " --wipe-readd"
    if r.fresh_ids:
        cmd += " --fresh-ids"
    return cmd + " --trace"


def describe_failure(r: Result, variant: str = "", plan: str = "") -> str:
    lines = [
        f"seed {r.seed} ({r.nodes} nodes, {r.steps} steps): {r.invariant} VIOLATED",
        f"  {r.detail}",
        f"  last {len(r.trace)} events:",
    ]
    lines += ["    " + t for t in r.trace]
    lines.append(f"  replay: {replay_command(r, variant, plan)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.sim.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--seed", type=int, help="run just this seed")
    ap.add_argument("--nodes", default="3,5", help="cluster sizes, alternated by seed")
    ap.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="ticks of faults before healing"
    )
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per CPU)")
    ap.add_argument("--trace", action="store_true", help="print every event (with --seed)")
    ap.add_argument(
        "--variant",
        default="",
        choices=["", *sorted(VARIANTS)],
        help="run a deliberately broken core",
    )
    ap.add_argument(
        "--plan",
        default="",
        choices=["", *sorted(PLANS)],
        help="run a deliberately wrong Ready plan (tests/sim/broken_plans.py)",
    )
    ap.add_argument(
        "--wipe-readd",
        action="store_true",
        help="experiment: re-add removed nodes under the same id with an empty disk",
    )
    ap.add_argument(
        "--fresh-ids",
        action="store_true",
        help="with --wipe-readd: the wiped node rejoins under a fresh id (the runtime's rule)",
    )
    ap.add_argument("--max-failures", type=int, default=5, help="failures printed in full")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.nodes.split(",")]
    factory = VARIANTS[args.variant] if args.variant else Raft

    if args.seed is not None:
        r = run_seed(
            args.seed,
            nodes_for(args.seed, sizes),
            args.steps,
            factory,
            args.trace,
            wipe_readd=args.wipe_readd,
            fresh_ids=args.fresh_ids,
            planner=PLANS[args.plan] if args.plan else ready.plan,
        )
        if r.ok:
            print(f"seed {r.seed}: ok {r.stats}")
            return 0
        print(describe_failure(r, args.variant, args.plan))
        return 1

    jobs = args.jobs or min(os.cpu_count() or 1, max(1, args.seeds // 50))
    t0 = time.monotonic()
    failures: list[Result] = []
    done = 0
    totals: dict[str, int] = {}
    seeds = range(args.start, args.start + args.seeds)
    for r in sweep(
        seeds, sizes, args.steps, args.variant, jobs, args.wipe_readd, args.fresh_ids, args.plan
    ):
        done += 1
        for k, v in r.stats.items():
            if k.startswith("liveness_"):
                totals["max_" + k] = max(totals.get("max_" + k, 0), v)
            elif k != "time":
                totals[k] = totals.get(k, 0) + v
        if not r.ok:
            failures.append(r)
            if len(failures) <= args.max_failures:
                print(describe_failure(r, args.variant, args.plan), flush=True)
            else:
                print(f"seed {r.seed}: {r.invariant}: {r.detail}", flush=True)
        if done % 500 == 0:
            print(
                f"... {done}/{args.seeds} seeds, {len(failures)} failed, "
                f"{time.monotonic() - t0:.0f}s",
                flush=True,
            )
    elapsed = time.monotonic() - t0
    print(
        f"{done} seeds ({args.start}..{args.start + args.seeds - 1}, nodes {args.nodes}, "
        f"steps {args.steps}) in {elapsed:.1f}s: {len(failures)} failed"
    )
    print("totals: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
    if failures:
        print(
            "failed seeds: " + " ".join(str(r.seed) for r in sorted(failures, key=lambda r: r.seed))
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

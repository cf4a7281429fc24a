"""Command line for the Multi-Paxos simulator.

    python -m tests.sim.paxos_run --seeds 20000 --jobs 2        # the long sweep
    python -m tests.sim.paxos_run --seed 1234 --nodes 5 --trace  # replay one run
    python -m tests.sim.paxos_run --seeds 300 --variant adopts_lowest_ballot

A seed with N nodes always makes the same run (3 nodes for even seeds, 5 for
odd ones). Exit status 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from raftkv.paxos import Paxos
from tests.sim.paxos_broken import VARIANTS
from tests.sim.paxos_cluster import Result, run_seed


def _one(job: tuple[int, int, str]) -> Result:
    seed, steps, variant = job
    return run_seed(seed, 3 if seed % 2 == 0 else 5, steps, VARIANTS[variant] if variant else Paxos)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--seed", type=int, help="replay one seed")
    ap.add_argument("--nodes", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--variant", default="", choices=["", *sorted(VARIANTS)])
    ap.add_argument("--trace", action="store_true")
    args = ap.parse_args(argv)
    factory = VARIANTS[args.variant] if args.variant else Paxos
    if args.seed is not None:
        nodes = args.nodes or (3 if args.seed % 2 == 0 else 5)
        r = run_seed(args.seed, nodes, args.steps, factory, trace=args.trace)
        print(f"seed {r.seed}: {'ok' if r.ok else r.invariant + ': ' + r.detail}")
        print(r.stats)
        return 0 if r.ok else 1
    jobs = [(s, args.steps, args.variant) for s in range(args.start, args.start + args.seeds)]
    started = time.monotonic()
    failed: list[Result] = []
    done = 0
    with multiprocessing.Pool(max(1, args.jobs)) as pool:
        for r in pool.imap_unordered(_one, jobs, chunksize=16):
            done += 1
            if not r.ok:
                failed.append(r)
                print(
                    f"FAIL seed {r.seed} ({r.nodes} nodes): {r.invariant}: {r.detail}", flush=True
                )
            if done % 200 == 0:
                print(
                    f"{done}/{len(jobs)} seeds, {len(failed)} failed, "
                    f"{time.monotonic() - started:.0f}s",
                    flush=True,
                )
    print(
        f"{len(jobs)} seeds ({args.start}..{args.start + len(jobs) - 1}, {args.steps} steps): "
        f"{len(failed)} failed in {time.monotonic() - started:.0f}s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run chaos runs: a real cluster, concurrent workloads, a nemesis, then the checkers.

    python -m tests.chaos.run --runs 3 --time 30 [--seed S] [--nemesis mixed]
        [--workload register,set,lock] [--mode auto|netns|loopback] [--nodes 3]
        [--consensus raft|multipaxos] [--node-arg=--unsafe-local-reads ...]
        [--expect ok|violation]

Each run happens in its own child process (a fresh network namespace set and
no state carried over) with seed `S + i`, and writes
results/chaos/<timestamp>-<seed>/: history.jsonl, nemesis.jsonl,
verdict.json, verdict.txt, command.txt and nodes/<name>.log. A failed run
prints the command that replays it. Exit status: 0 when every run met the
expectation (`ok`: no violation, healthy; `violation`: a safety violation was
found), else 1.

Verdicts: `violation` (a safety checker failed), `unhealthy` (no leader
accepting writes after healing, a node process died, or an HTTP 500),
`unknown` (the linearizability search ran out of time; never reported as ok),
`ok`, `error` (the harness could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.consensus import ENGINES

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = REPO / "results" / "chaos"
SPARE_NODES = 2


@dataclass
class RunOptions:
    seed: int
    time: float
    nemeses: tuple[str, ...]
    workloads: tuple[str, ...]
    mode: str
    nodes: int
    node_args: list[str]
    results: Path
    check_timeout: float
    keep_data: bool


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--time", type=float, default=30.0, help="seconds of faults per run")
    p.add_argument("--seed", type=int, default=None, help="default: random")
    p.add_argument(
        "--nemesis",
        default="mixed",
        help="comma list of partition,kill,pause,power-loss,slow,member,transfer; "
        "'mixed' = all; 'none'",
    )
    p.add_argument("--workload", default="register,set,lock")
    p.add_argument("--mode", default="auto", choices=["auto", "netns", "loopback"])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument(
        "--consensus",
        default="raft",
        choices=ENGINES,
        help="the members' consensus engine (`raftkv serve --consensus`)",
    )
    p.add_argument(
        "--node-arg",
        action="append",
        default=[],
        help="extra `raftkv serve` flag (repeatable), e.g. --node-arg=--unsafe-local-reads",
    )
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument(
        "--check-timeout",
        type=float,
        default=120.0,
        help="seconds the linearizability search may take per run",
    )
    p.add_argument("--expect", default="ok", choices=["ok", "violation"])
    p.add_argument("--keep-data", action="store_true", help="keep node data dirs of passing runs")
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.single:
        return _single(args)
    from tests.chaos.nemesis import parse_nemeses

    try:
        parse_nemeses(args.nemesis)
    except ValueError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    mode = resolve_mode(args.mode)
    base_seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    summaries = []
    failed = 0
    for i in range(args.runs):
        seed = base_seed + i
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = args.results / f"{stamp}-{seed}"
        suffix = 1
        while run_dir.exists():
            run_dir = args.results / f"{stamp}-{seed}.{suffix}"
            suffix += 1
        run_dir.mkdir(parents=True)
        child = [
            sys.executable,
            "-m",
            "tests.chaos.run",
            "--single",
            "--seed",
            str(seed),
            "--time",
            str(args.time),
            "--nemesis",
            args.nemesis,
            "--workload",
            args.workload,
            "--mode",
            mode,
            "--nodes",
            str(args.nodes),
            "--consensus",
            args.consensus,
            "--check-timeout",
            str(args.check_timeout),
            "--run-dir",
            str(run_dir),
            *[f"--node-arg={a}" for a in args.node_arg],
        ]
        if args.keep_data:
            child.append("--keep-data")
        budget = args.time + args.check_timeout + 180
        try:
            subprocess.run(child, cwd=REPO, timeout=budget, check=False)
        except subprocess.TimeoutExpired:
            print(f"chaos: run {seed} exceeded {budget:.0f}s", file=sys.stderr)
        verdict = _load_verdict(run_dir)
        summaries.append(verdict)
        met = (
            verdict.get("verdict") == "ok"
            if args.expect == "ok"
            else (verdict.get("verdict") == "violation")
        )
        print(
            f"chaos run seed={seed} mode={verdict.get('mode', mode)} "
            f"consensus={args.consensus} "
            f"verdict={verdict.get('verdict')} ops={verdict.get('operations', {})} "
            f"-> {run_dir}"
        )
        if not met:
            failed += 1
            replay = [
                "python",
                "-m",
                "tests.chaos.run",
                "--runs",
                "1",
                "--seed",
                str(seed),
                "--time",
                str(args.time),
                "--nemesis",
                args.nemesis,
                "--workload",
                args.workload,
                "--mode",
                mode,
                "--nodes",
                str(args.nodes),
                "--consensus",
                args.consensus,
                *[f"--node-arg={a}" for a in args.node_arg],
            ]
            if args.expect != "ok":
                replay += ["--expect", args.expect]
            print(
                f"chaos: run seed={seed} did not meet --expect {args.expect}: "
                f"{verdict.get('summary', verdict.get('error', ''))}\n"
                f"  replay: {shlex.join(replay)}",
                file=sys.stderr,
            )
    total_ops = sum(sum(s.get("operations", {}).values()) for s in summaries)
    print(
        f"chaos: {args.runs - failed} of {args.runs} runs met --expect {args.expect} "
        f"({total_ops} operations checked, mode {mode})"
    )
    return 0 if failed == 0 else 1


def resolve_mode(mode: str) -> str:
    from tests.chaos.net import install_system_tools, netns_unavailable_reason

    if mode == "loopback":
        return mode
    note = install_system_tools()
    if note:
        print(f"chaos: {note}", file=sys.stderr)
    reason = netns_unavailable_reason()
    if reason is None:
        return "netns"
    if mode == "netns":
        raise SystemExit(f"chaos: netns mode unavailable: {reason}")
    print(
        f"chaos: network namespaces unavailable ({reason}): loopback mode with proxies",
        file=sys.stderr,
    )
    return "loopback"


def _load_verdict(run_dir: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads((run_dir / "verdict.json").read_text())
        return loaded
    except (OSError, ValueError):
        return {"verdict": "error", "error": f"no verdict.json in {run_dir} (see its logs)"}


# --- one run (child process) ----------------------------------------------------------


def _consensus_args(engine: str) -> list[str]:
    """The serve flag for `engine` (none for the default, as the operator does)."""
    return [] if engine == "raft" else [f"--consensus={engine}"]


def _single(args: argparse.Namespace) -> int:
    from tests.chaos.nemesis import parse_nemeses
    from tests.chaos.net import make_network

    run_dir: Path = args.run_dir or (args.results / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.seed}")
    run_dir.mkdir(parents=True, exist_ok=True)
    opts = RunOptions(
        args.seed if args.seed is not None else 1,
        args.time,
        parse_nemeses(args.nemesis),
        tuple(w for w in args.workload.split(",") if w),
        args.mode,
        args.nodes,
        [*_consensus_args(args.consensus), *args.node_arg],
        run_dir,
        args.check_timeout,
        args.keep_data,
    )
    (run_dir / "command.txt").write_text(
        shlex.join([sys.executable, "-m", "tests.chaos.run", *sys.argv[1:]]) + "\n"
    )
    names = [f"n{i + 1}" for i in range(opts.nodes + SPARE_NODES)]
    net = make_network(opts.mode, names)
    verdict: dict[str, Any]
    try:
        net.setup()
        verdict = asyncio.run(_run(opts, net, names))
    except Exception as exc:
        verdict = {
            "verdict": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    finally:
        net.teardown()
    verdict.setdefault("seed", opts.seed)
    verdict.setdefault("mode", opts.mode)
    verdict.setdefault("consensus", args.consensus)
    (run_dir / "verdict.json").write_text(json.dumps(verdict, indent=2, default=str) + "\n")
    return 0 if verdict["verdict"] in ("ok", "violation") else 1


async def _run(opts: RunOptions, net: Any, names: list[str]) -> dict[str, Any]:
    from tests.chaos.checker.linearizable import check
    from tests.chaos.checker.locks import check_locks
    from tests.chaos.checker.register import RegisterModel
    from tests.chaos.checker.sets import check_set
    from tests.chaos.cluster import Cluster
    from tests.chaos.history import Recorder, pair, write_jsonl
    from tests.chaos.nemesis import Nemesis
    from tests.chaos.workloads import WorkloadOptions, Workloads

    rng = random.Random(opts.seed)
    await net.start()
    cluster = Cluster(net, opts.results, names[: opts.nodes], opts.node_args)
    await cluster.open()
    recorder = Recorder()
    nemesis = Nemesis(cluster, net, random.Random(rng.random()), recorder, opts.nemeses)
    try:
        for name in names[: opts.nodes]:
            cluster.start(name)
        problem = await cluster.wait_healthy(60)
        if problem is not None:
            return {"verdict": "error", "error": f"the cluster never became healthy: {problem}"}
        recorder = Recorder()  # time 0 = the workload starts
        nemesis.recorder = recorder
        workloads = Workloads(
            cluster, recorder, random.Random(rng.random()), WorkloadOptions(), opts.workloads
        )
        work = asyncio.create_task(workloads.run())
        chaos = asyncio.create_task(nemesis.run())
        watching = asyncio.Event()
        exit_watch = asyncio.create_task(cluster.watch_exits(watching))
        await asyncio.sleep(opts.time)
        nemesis.stopping.set()
        await asyncio.wait_for(chaos, 60)
        await nemesis.heal_all()
        await nemesis.settle_membership()
        liveness = await cluster.wait_healthy(30)
        nemesis.log("healthy" if liveness is None else "unhealthy", "check", problem=liveness)
        # A little more load on the healed cluster: reads that would expose lost writes.
        await asyncio.sleep(2.0)
        workloads.stopping.set()
        try:
            await asyncio.wait_for(work, 30)
        except TimeoutError:
            work.cancel()
        recorder.close_open()
        await workloads.final_set_read(asyncio.get_running_loop().time() + 20)
        watching.set()
        await exit_watch
        exits = cluster.check_exits()
    finally:
        await cluster.aclose()
        await net.close()

    write_jsonl(opts.results / "history.jsonl", recorder.events)
    with (opts.results / "nemesis.jsonl").open("w") as f:
        for entry in nemesis.timeline:
            f.write(json.dumps(entry, default=str) + "\n")

    ops = pair(recorder.events)
    model = RegisterModel()
    started = time.monotonic()
    lin = check(
        model,
        [op for op in ops if op.f in ("read", "write", "cas") and op.key != "set"],
        opts.check_timeout,
    )
    set_result = check_set([op for op in ops if op.key == "set"])
    lock_result = check_locks([op for op in ops if op.f in ("acquire", "release")])
    checker_seconds = time.monotonic() - started

    safety_bad = (
        lin.verdict == "violation"
        or set_result.verdict == "violation"
        or (lock_result.verdict == "violation")
    )
    unhealthy = liveness is not None or exits or workloads.errors_500
    verdict = (
        "violation"
        if safety_bad
        else "unhealthy"
        if unhealthy
        else "unknown"
        if lin.verdict == "unknown"
        else "ok"
    )
    counts: dict[str, int] = {}
    for op in ops:
        counts[f"{op.f}:{op.status}"] = counts.get(f"{op.f}:{op.status}", 0) + 1
    report = "\n".join(
        [
            f"verdict: {verdict} (seed {opts.seed}, mode {net.mode}, {len(ops)} operations)",
            lin.report(model),
            set_result.report(),
            lock_result.report(),
            f"liveness after heal: {liveness or 'ok'}",
            f"node processes that died on their own: {exits or 'none'}",
            f"HTTP 500 answers: {workloads.errors_500[:5] or 'none'}",
            f"nemesis: {nemesis.counts}",
        ]
    )
    (opts.results / "verdict.txt").write_text(report + "\n")
    print(report)
    if verdict == "ok" and not opts.keep_data:
        cluster.remove_data()
    return {
        "verdict": verdict,
        "seed": opts.seed,
        "mode": net.mode,
        "time": opts.time,
        "nemeses": list(opts.nemeses),
        "workloads": list(opts.workloads),
        "nemesis_counts": nemesis.counts,
        "operations": counts,
        "linearizability": {
            "verdict": lin.verdict,
            "seconds": round(lin.seconds, 3),
            "parts": [
                {
                    "name": p.name,
                    "verdict": p.verdict,
                    "operations": p.operations,
                    "dropped": p.dropped,
                    "seconds": round(p.seconds, 3),
                    "configurations": p.configurations,
                    "stuck": p.stuck.describe() if p.stuck else None,
                    "prefix_tail": [op.describe() for op in p.prefix[-10:]],
                }
                for p in lin.parts
            ],
        },
        "set": {
            "verdict": set_result.verdict,
            "lost": set_result.lost[:100],
            "unexpected": set_result.unexpected[:100],
            "acknowledged": set_result.acknowledged,
        },
        "lock": {
            "verdict": lock_result.verdict,
            "problems": lock_result.problems[:20],
            "acquisitions": lock_result.acquisitions,
        },
        "liveness": liveness,
        "node_exits": exits,
        "http_500": workloads.errors_500[:20],
        "checker_seconds": round(checker_seconds, 3),
        "summary": report.splitlines()[0],
    }


if __name__ == "__main__":
    sys.exit(main())

"""Summarise a fault campaign (many chaos runs) for the record in docs/chaos.md.

    python -m tests.chaos.campaign results/chaos/<stamp>-<seed> ...

Reads each run folder's verdict.json and nemesis.jsonl and prints, in Markdown:
the verdicts (with every run that was not ok), operations per kind and outcome,
faults per kind with the outcomes of the side actions (membership changes and
leadership transfers that the cluster accepted), what the checkers looked at, and
each run's wall time (command.txt is written when a run starts, verdict.json when
it ends). A folder without a verdict.json (a run cut short) counts as `error`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Campaign:
    runs: list[Path] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    not_ok: list[str] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    side_outcomes: Counter[str] = field(default_factory=Counter)
    checked: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    checker_seconds: list[float] = field(default_factory=list)


def _verdict(run: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads((run / "verdict.json").read_text())
        return loaded
    except (OSError, ValueError):
        return {"verdict": "error", "summary": f"no readable verdict.json in {run.name}"}


def _timeline(run: Path) -> list[dict[str, Any]]:
    try:
        lines = (run / "nemesis.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def summarise(runs: list[Path]) -> Campaign:
    c = Campaign(runs=sorted(runs))
    for run in c.runs:
        v = _verdict(run)
        c.verdicts[v["verdict"]] += 1
        if v["verdict"] != "ok":
            c.not_ok.append(f"{run.name}: {v.get('summary') or v.get('error', '')}")
        c.operations.update(v.get("operations", {}))
        c.faults.update(v.get("nemesis_counts", {}))
        lin = v.get("linearizability") or {}
        c.checked["register/cas operations checked for linearizability"] += sum(
            p.get("operations", 0) for p in lin.get("parts", [])
        )
        c.checked["acknowledged set adds"] += (v.get("set") or {}).get("acknowledged", 0)
        c.checked["set adds lost"] += len((v.get("set") or {}).get("lost", []))
        c.checked["lock acquisitions"] += (v.get("lock") or {}).get("acquisitions", 0)
        c.checked["lock problems"] += len((v.get("lock") or {}).get("problems", []))
        c.checked["node exits on their own"] += len(v.get("node_exits") or [])
        c.checked["HTTP 500 answers"] += len(v.get("http_500") or [])
        if "checker_seconds" in v:
            c.checker_seconds.append(float(v["checker_seconds"]))
        for entry in _timeline(run):
            if entry.get("fault") in ("member", "transfer"):
                code = entry.get("code")
                outcome = entry["event"] if code is None else f"{entry['event']} {code}"
                c.side_outcomes[f"{entry['fault']}: {outcome}"] += 1
        started, ended = run / "command.txt", run / "verdict.json"
        if started.exists() and ended.exists():
            c.seconds.append(ended.stat().st_mtime - started.stat().st_mtime)
    return c


def _table(title: str, counts: Counter[str]) -> list[str]:
    rows = [f"| {title} | count |", "|---|---:|"]
    rows += [f"| {k} | {n:,} |" for k, n in sorted(counts.items())]
    return rows


def _operations_table(ops: Counter[str]) -> list[str]:
    """One row per operation kind: ok (completed), fail (certainly not done), info
    (outcome unknown)."""
    kinds = sorted({k.split(":", 1)[0] for k in ops})
    rows = ["| operation | ok | fail | info |", "|---|---:|---:|---:|"]
    for f in kinds:
        rows.append(
            f"| {f} | "
            + " | ".join(f"{ops.get(f'{f}:{s}', 0):,}" for s in ("ok", "fail", "info"))
            + " |"
        )
    return rows


def render(c: Campaign) -> str:
    out = [
        f"- Runs: {len(c.runs)}; verdicts: "
        + ", ".join(f"{k} {n}" for k, n in sorted(c.verdicts.items()))
        + "."
    ]
    out += [f"  - not ok: {line}" for line in c.not_ok]
    if c.seconds:
        out.append(
            f"- Wall time per run: min {min(c.seconds):.0f} s, median "
            f"{statistics.median(c.seconds):.0f} s, max {max(c.seconds):.0f} s; "
            f"total {sum(c.seconds) / 60:.1f} min."
        )
    if c.checker_seconds:
        out.append(f"- Checker time per run: max {max(c.checker_seconds):.2f} s.")
    out.append(f"- Operations: {sum(c.operations.values()):,} in all.")
    out += [
        "",
        *_operations_table(c.operations),
        "",
        *_table("fault (primary, and side actions attempted)", c.faults),
        "",
        *_table("side action: event and HTTP answer", c.side_outcomes),
        "",
        *_table("checked", c.checked),
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos.campaign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", type=Path, help="run folders (results/chaos/...)")
    args = p.parse_args(argv)
    missing = [r for r in args.runs if not r.is_dir()]
    if missing:
        print(f"campaign: not a run folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    sys.stdout.write(render(summarise(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

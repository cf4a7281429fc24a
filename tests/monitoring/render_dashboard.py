"""Draw the dashboard's main panels from real Prometheus data to a PNG.

    python -m tests.monitoring.render_dashboard docs/dashboard.png [--seconds 90]

Starts the same stack as the live test (3-node `raftkv local up`, client load, Debian's
Prometheus scraping every second), lets it run, takes a checkpoint a third of the way and
kills one member two thirds of the way through (so the checkpoint, health and lag panels
show events), then queries each main
panel's expressions over the run and draws them with matplotlib.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.monitoring.dashboard_source import load_builder
from tests.monitoring.promql import substitute
from tests.monitoring.stack import CLUSTER, NAMESPACE, Stack, http, running_stack

VARIABLES = {"namespace": NAMESPACE, "cluster": CLUSTER, "__rate_interval": "10s"}


def _legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return re.sub(r"\{\{\w+\}\}", "", text).strip()  # as Grafana: absent labels print nothing


def _series(stack: Stack, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    data = stack.prometheus.query_range(substitute(expr, VARIABLES), start, end, step=1)
    result: list[dict[str, Any]] = data["result"]
    return result


def draw(stack: Stack, start: float, end: float, out: Path, kill_at: float | None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in load_builder().panels() if p.main]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.2 * rows), squeeze=False)
    figure.suptitle(f"raftkv cluster — {NAMESPACE}/{CLUSTER}, live data", fontsize=14)
    drawn = 0
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_title(panel.title, fontsize=10)
        lines = 0
        for target in panel.targets:
            for series in _series(stack, target.expr, start, end):
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if not math.isnan(v)]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=_legend(target.legend, series["metric"]), linewidth=1.2)
                lines += 1
        if kill_at is not None:
            ax.axvline(kill_at - start, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        if panel.unit != "short":
            ax.set_ylabel(panel.unit, fontsize=8)
        if lines:
            ax.legend(fontsize=6, loc="best")
            drawn += 1
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args(argv)
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("prometheus is not installed: make install-system", file=sys.stderr)
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="raftkv-dashboard-") as tmp,
        running_stack(prometheus, Path(tmp), load_seconds=args.seconds + 60) as stack,
    ):
        start = time.time()
        kill_at = start + args.seconds * 2 / 3
        time.sleep(args.seconds / 3)  # let the dashboard fill with history
        code, _ = http("POST", f"{stack.cluster.leader_url()}/v1/checkpoints", b"{}", timeout=30)
        if code != 200:
            print(f"checkpoint failed: {code}", file=sys.stderr)
        time.sleep(max(0.0, kill_at - time.time()))
        leader = stack.cluster.status(stack.cluster.leader_url())["leader"]["name"]
        victim = next(n["name"] for n in stack.cluster.nodes() if n["name"] != leader)
        stack.cluster.kill(victim)
        time.sleep(max(0.0, start + args.seconds - time.time()))
        end = time.time()
        drawn = draw(stack, start - 10, end, args.out, kill_at)
    print(
        f"wrote {args.out}: {drawn} panels with data (killed {victim} at +{args.seconds * 2 / 3:.0f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

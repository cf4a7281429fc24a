"""The Grafana dashboard: generated from monitoring/build_dashboard.py, well formed, and every
expression valid PromQL (checked offline by promtool when it is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.dashboard_source import load_builder
from tests.monitoring.promql import substitute
from tests.unit.chart.rendering import CHART_DIR

DASHBOARD = CHART_DIR / "files" / "grafana-dashboard.json"


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_shipped_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD.read_text() == load_builder().render(), (
        "files/grafana-dashboard.json is stale: run `python monitoring/build_dashboard.py`"
    )


def test_panels_are_well_formed() -> None:
    dashboard = _dashboard()
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["legendFormat"]
            assert target["datasource"]["uid"] == "${datasource}"
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in (
        "leader",
        "term",
        "health",
        "commit",
        "lag",
        "proposal",
        "fsync",
        "checkpoint",
        "http",
        "reconcile",
    ):
        assert topic in titles, f"no panel about {topic}"
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables == ["datasource", "namespace", "cluster"]


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool not installed (make install-system); tests/monitoring checks them live"
        )
    variables = {
        "namespace": "ns",
        "cluster": "demo",
        "__rate_interval": "1m",
        "datasource": "prom",
    }
    rules = [
        {"record": f"dashboard:expr{index}", "expr": substitute(target["expr"], variables)}
        for index, target in enumerate(
            t for p in _dashboard()["panels"] for t in p.get("targets", [])
        )
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout

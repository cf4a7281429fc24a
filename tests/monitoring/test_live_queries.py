"""Every PromQL expression of the dashboard and of the rules, run against a real Prometheus
scraping a real 3-node raftkv under load: each must parse and return data, because a panel
that shows nothing (or an alert whose signal is missing) is a bug. Then a member is killed
and the member-down and quorum alerts must fire while the no-leader alert stays quiet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import system
from tests.monitoring.operator_metrics import unavailable_reason
from tests.monitoring.promql import is_number, substitute, top_level_operands
from tests.monitoring.stack import (
    CLUSTER,
    NAMESPACE,
    RULES,
    Stack,
    has_data,
    running_stack,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "raftkv-operator" / "files" / "grafana-dashboard.json"
VARIABLES = {"namespace": NAMESPACE, "cluster": CLUSTER, "__rate_interval": "10s"}

pytestmark = pytest.mark.timeout(300)


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every dashboard target."""
    return [(name, expr) for name, expr, _ in dashboard_targets()]


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title / refId, expr, legend) of every dashboard target."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} {target['refId']}", target["expr"], target["legendFormat"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_expressions() -> list[tuple[str, str]]:
    """Recording rules whole; alerts by the operands of their comparisons (their signals)."""
    checks: list[tuple[str, str]] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                checks.append((rule["record"], rule["expr"]))
                continue
            operands = [o for o in top_level_operands(rule["expr"]) if not is_number(o)]
            for index, operand in enumerate(operands):
                # absent(X) is empty while all is well: the live signal to check is X.
                absent = re.fullmatch(r"absent\((.*)\)", operand.strip(), re.DOTALL)
                checks.append(
                    (f"{rule['alert']} operand {index}", absent[1] if absent else operand)
                )
    return checks


def _is_operator(expr: str) -> bool:
    return "raftkv_operator_" in expr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = system.binary("prometheus")
    with running_stack(binary, tmp_path_factory.mktemp("monitoring")) as running:
        yield running


def _check(stack: Stack, expr: str) -> dict[str, Any]:
    if _is_operator(expr) and stack.operator is None:
        pytest.skip(f"operator metrics unavailable: {unavailable_reason()}")
    query = substitute(expr, VARIABLES)
    # Parse errors fail at once (QueryError is not retried); data may need a few scrapes.

    def attempt() -> dict[str, Any] | None:
        result = stack.prometheus.query(query)
        return result if has_data(result) else None

    found: dict[str, Any] = wait_for(f"data for {query!r}", attempt, timeout=20)
    return found


@pytest.mark.parametrize(
    ("name", "expr"), dashboard_expressions(), ids=[n for n, _ in dashboard_expressions()]
)
def test_dashboard_expression_returns_data(stack: Stack, name: str, expr: str) -> None:
    assert has_data(_check(stack, expr)), name


@pytest.mark.parametrize(
    ("name", "expr", "legend"),
    [t for t in dashboard_targets() if re.search(r"\{\{\s*\w+\s*\}\}", t[2])],
    ids=[n for n, _, legend in dashboard_targets() if "{{" in legend],
)
def test_dashboard_legends_name_labels_the_series_carry(
    stack: Stack, name: str, expr: str, legend: str
) -> None:
    # A legend `{{member_name}}` over series without that label reads as an empty string;
    # member legends must show names (node2, demo-1), not numeric ids.
    labels = re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)
    for series in _check(stack, expr)["result"]:
        # (`{{route}} {{code}}` over a zero fallback series without `code` is fine.)
        assert any(series["metric"].get(label) for label in labels), (name, series["metric"])
        if "member" in labels or "member_name" in labels:
            assert all(series["metric"].get(label) for label in labels), series["metric"]
            value = series["metric"].get("member_name", series["metric"].get("member", ""))
            assert not value.isdigit(), f"{name}: legend shows a numeric id: {value}"


@pytest.mark.parametrize(
    ("name", "expr"), rule_expressions(), ids=[n for n, _ in rule_expressions()]
)
def test_rule_expression_returns_data(stack: Stack, name: str, expr: str) -> None:
    assert has_data(_check(stack, expr)), name


def test_dashboard_variables_offer_the_cluster(stack: Stack) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"] if v["type"] == "query"}
    assert set(variables) == {"namespace", "cluster"}
    assert NAMESPACE in stack.prometheus.label_values("namespace", "raftkv_info")
    match = substitute('raftkv_info{namespace=~"$namespace"}', VARIABLES)
    assert (
        variables["cluster"]["definition"]
        == 'label_values(raftkv_info{namespace=~"$namespace"}, cluster)'
    )
    assert CLUSTER in stack.prometheus.label_values("cluster", match)


def test_the_load_was_served(stack: Stack) -> None:
    served = stack.load.counts
    assert served.get("200", 0) > 50, served
    assert served.get("404", 0) > 10, served  # reads of missing keys


def _alert_expr(name: str) -> str:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return str(rule["expr"])
    raise KeyError(name)


def test_killing_a_member_fires_member_down_and_quorum_at_risk(stack: Stack) -> None:
    # Runs last in this module: it takes a member away for good.
    leader = stack.cluster.status(stack.cluster.leader_url())["leader"]
    victim = next(n for n in stack.cluster.nodes() if n["name"] != leader["name"])
    victim_id = str(
        next(
            m["id"]
            for m in stack.cluster.status(stack.cluster.urls[0])["members"]
            if m["name"] == victim["name"]
        )
    )
    for alert in ("RaftkvMemberDown", "RaftkvQuorumAtRisk", "RaftkvNoLeader"):
        assert not stack.prometheus.query(_alert_expr(alert))["result"], f"{alert} before the kill"
    stack.cluster.kill(victim["name"])
    down = wait_for(
        "RaftkvMemberDown's expression to name the killed member",
        lambda: stack.prometheus.query(_alert_expr("RaftkvMemberDown"))["result"],
        timeout=30,
    )
    assert [series["metric"]["member"] for series in down] == [victim_id]
    assert [series["metric"]["member_name"] for series in down] == [victim["name"]]
    at_risk = wait_for(
        "RaftkvQuorumAtRisk's expression",
        lambda: stack.prometheus.query(_alert_expr("RaftkvQuorumAtRisk"))["result"],
        timeout=30,
    )
    assert at_risk[0]["metric"]["cluster"] == CLUSTER
    assert float(at_risk[0]["value"][1]) == 2  # healthy members: the two that remain
    assert not stack.prometheus.query(_alert_expr("RaftkvNoLeader"))["result"]

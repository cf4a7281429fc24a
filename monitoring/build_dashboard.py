"""The raftkv Grafana dashboard, as code: panels and their PromQL in one readable place.

`python monitoring/build_dashboard.py` writes charts/raftkv-operator/files/grafana-dashboard.json,
the file the chart ships; tests/unit/chart/test_dashboard.py fails when the two drift, and
tests/monitoring/test_live_queries.py runs every expression against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = (
    Path(__file__).resolve().parent.parent / "charts/raftkv-operator/files/grafana-dashboard.json"
)

UID = "raftkv-cluster"
TITLE = "raftkv cluster"

# Node series: the selected RaftCluster(s).
NODE = 'namespace=~"$namespace", cluster=~"$cluster"'
RATE = "$__rate_interval"
# Attach the member's name (pod name) to a per-target series.
WITH_NAME = f"* on (namespace, cluster, instance) group_left (name) raftkv_info{{{NODE}}}"
# Keep only what the current leader exports (a stale ex-leader target is ignored).
FROM_LEADER = f"and on (namespace, cluster, instance) (raftkv_is_leader{{{NODE}}} == 1)"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 8
    height: int = 8
    main: bool = False  # drawn by tests/monitoring/render_dashboard.py
    options: dict[str, Any] = field(default_factory=dict)


def quantiles(metric: str, by: str, qs: tuple[float, ...] = (0.5, 0.9, 0.99)) -> tuple[Target, ...]:
    """histogram_quantile targets of a histogram, one per quantile."""
    grouping = f"{by}, le" if by else "le"
    prefix = "{{" + by.split(",")[-1].strip() + "}} " if by else ""
    return tuple(
        Target(
            f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}_bucket{{{NODE}}}[{RATE}])))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in qs
    )


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Cluster",
        (
            Panel(
                "Leader",
                (Target(f"(raftkv_is_leader{{{NODE}}} {WITH_NAME}) == 1", "{{name}}"),),
                kind="stat",
                width=6,
                height=4,
                description="The member that is leader now.",
                options={"textMode": "name"},
            ),
            Panel(
                "Term",
                (Target(f"max by (namespace, cluster) (raftkv_term{{{NODE}}})", "term"),),
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Members",
                (Target(f"max by (role) (raftkv_members{{{NODE}}})", "{{role}}s"),),
                kind="stat",
                width=6,
                height=4,
                description="Voters and learners in the committed configuration.",
            ),
            Panel(
                "Healthy members",
                (
                    Target(
                        f"sum by (namespace, cluster) (raftkv_member_healthy{{{NODE}}} {FROM_LEADER})",
                        "healthy",
                    ),
                ),
                kind="stat",
                width=6,
                height=4,
                description="Members the leader heard from recently (leader's view).",
            ),
            Panel(
                "Leader over time",
                (Target(f"raftkv_is_leader{{{NODE}}} {WITH_NAME}", "{{name}}"),),
                description="1 while the member is leader.",
                main=True,
            ),
            Panel(
                "Term over time",
                (Target(f"max by (namespace, cluster) (raftkv_term{{{NODE}}})", "term"),),
                main=True,
            ),
            Panel(
                "Member health (leader's view)",
                (Target(f"raftkv_member_healthy{{{NODE}}} {FROM_LEADER}", "{{member_name}}"),),
                main=True,
            ),
        ),
    ),
    (
        "Replication",
        (
            Panel(
                "Commit index per member",
                (Target(f"raftkv_commit_index{{{NODE}}} {WITH_NAME}", "{{name}}"),),
                main=True,
            ),
            Panel(
                "Applied index per member",
                (Target(f"raftkv_applied_index{{{NODE}}} {WITH_NAME}", "{{name}}"),),
            ),
            Panel(
                "Replication lag per member",
                (Target(f"raftkv_member_lag_entries{{{NODE}}} {FROM_LEADER}", "{{member_name}}"),),
                description="Entries each member is behind the leader's log (leader's view).",
                main=True,
            ),
        ),
    ),
    (
        "Proposals",
        (
            Panel(
                "Proposal rate",
                (
                    Target(
                        f"sum by (namespace, cluster) (rate(raftkv_proposals_committed_total{{{NODE}}}[{RATE}]))",
                        "committed",
                    ),
                    Target(
                        f"sum by (namespace, cluster) (rate(raftkv_proposals_failed_total{{{NODE}}}[{RATE}]))",
                        "failed",
                    ),
                ),
                unit="ops",
                main=True,
            ),
            Panel(
                "Proposal latency",
                quantiles("raftkv_proposal_duration_seconds", ""),
                unit="s",
                main=True,
            ),
            Panel(
                "Entries per append batch",
                quantiles("raftkv_append_batch_entries", "", (0.5, 0.99)),
                description="Batching: entries written per WAL append (one fsync each).",
            ),
        ),
    ),
    (
        "Storage",
        (
            Panel(
                "WAL fsync latency p99 per member",
                (
                    Target(
                        "histogram_quantile(0.99, sum by (namespace, cluster, instance, le) "
                        f"(rate(raftkv_wal_fsync_duration_seconds_bucket{{{NODE}}}[{RATE}]))) {WITH_NAME}",
                        "{{name}}",
                    ),
                ),
                unit="s",
                main=True,
            ),
            Panel(
                "WAL fsync latency",
                quantiles("raftkv_wal_fsync_duration_seconds", ""),
                unit="s",
            ),
            Panel(
                "Snapshots",
                (
                    Target(
                        f"sum by (namespace, cluster) (increase(raftkv_snapshots_total{{{NODE}}}[1h]))",
                        "last hour",
                    ),
                    *quantiles("raftkv_snapshot_duration_seconds", "", (0.99,)),
                ),
                description="Log compactions in the last hour, and the p99 duration.",
            ),
        ),
    ),
    (
        "Checkpoints",
        (
            Panel(
                "Checkpoints in the last hour",
                (
                    Target(
                        f"sum by (result) (increase(raftkv_checkpoints_total{{{NODE}}}[1h]))",
                        "{{result}}",
                    ),
                ),
                main=True,
            ),
            Panel(
                "Age of the newest checkpoint",
                (
                    Target(
                        f"time() - max by (namespace, cluster) (raftkv_last_checkpoint_timestamp_seconds{{{NODE}}} > 0)",
                        "age",
                    ),
                ),
                unit="s",
                description="Empty until the cluster's first checkpoint.",
            ),
            Panel(
                "Checkpoint duration",
                quantiles("raftkv_checkpoint_duration_seconds", "", (0.5, 0.99)),
                unit="s",
            ),
        ),
    ),
    (
        "HTTP",
        (
            Panel(
                "Requests by route",
                (
                    Target(
                        f"sum by (route) (rate(raftkv_http_requests_total{{{NODE}}}[{RATE}]))",
                        "{{route}}",
                    ),
                ),
                unit="reqps",
                main=True,
            ),
            Panel(
                "Errors by route and code",
                (
                    # `or ... * 0`: a flat zero per route when nothing failed, not "No data".
                    Target(
                        f'sum by (route, code) (rate(raftkv_http_requests_total{{{NODE}, code=~"[45].."}}[{RATE}]))'
                        f" or sum by (route) (rate(raftkv_http_requests_total{{{NODE}}}[{RATE}])) * 0",
                        "{{route}} {{code}}",
                    ),
                ),
                unit="reqps",
                main=True,
            ),
            Panel(
                "Latency p99 by route",
                quantiles("raftkv_http_request_duration_seconds", "route", (0.99,)),
                unit="s",
            ),
        ),
    ),
    (
        "Peers and state",
        (
            Panel(
                "Peer reachability",
                (Target(f"raftkv_peer_up{{{NODE}}} {WITH_NAME}", "{{name}} -> {{peer}}"),),
            ),
            Panel(
                "Peer RPC errors",
                (
                    Target(
                        f"sum by (instance, peer) (rate(raftkv_peer_rpc_errors_total{{{NODE}}}[{RATE}]))"
                        f" or sum by (instance, peer) (raftkv_peer_up{{{NODE}}}) * 0",
                        "{{instance}} -> {{peer}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Keys, leases and locks",
                (
                    Target(f"max by (namespace, cluster) (raftkv_kv_keys{{{NODE}}})", "keys"),
                    Target(f"max by (namespace, cluster) (raftkv_leases{{{NODE}}})", "leases"),
                    Target(
                        f"max by (namespace, cluster) (raftkv_locks_held{{{NODE}}})", "locks held"
                    ),
                ),
            ),
        ),
    ),
    (
        "Operator",
        (
            Panel(
                "Reconciles by result",
                (
                    Target(
                        f"sum by (result) (rate(raftkv_operator_reconciles_total{{{NODE}}}[{RATE}]))",
                        "{{result}}",
                    ),
                ),
                unit="ops",
                main=True,
            ),
            Panel(
                "Reconcile duration",
                (
                    Target(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(raftkv_operator_reconcile_duration_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Leader switch (leader change seen -> Service moved)",
                (
                    Target(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(raftkv_operator_leader_switch_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                    Target(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(raftkv_operator_leader_switch_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Clusters by phase",
                (Target("sum by (phase) (raftkv_operator_clusters)", "{{phase}}"),),
            ),
            Panel(
                "Operator checkpoints in the last hour",
                (
                    Target(
                        "sum by (result) (increase(raftkv_operator_checkpoints_total[1h]))",
                        "{{result}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Disaster recovery",
        (
            Panel(
                "Quorum lost",
                (
                    Target(
                        f"max by (namespace, cluster) (raftkv_operator_quorum_lost{{{NODE}}})",
                        "{{namespace}}/{{cluster}}",
                    ),
                ),
                kind="stat",
                description="1: no member leads and fewer voters answer with their data than "
                "a quorum; the cluster cannot recover by itself (docs/recovery.md: spec.recovery).",
            ),
            Panel(
                "Recovery in progress",
                (
                    Target(
                        "max by (namespace, cluster) "
                        f"(raftkv_operator_recovery_in_progress{{{NODE}}})",
                        "{{namespace}}/{{cluster}}",
                    ),
                ),
                kind="stat",
                description="1 while a quorum-loss recovery (spec.recovery) is in flight: "
                "status.recovery and status.operation say which step.",
            ),
            Panel(
                "Restore in progress",
                (
                    Target(
                        "max by (namespace, cluster) "
                        f"(raftkv_operator_restore_in_progress{{{NODE}}})",
                        "{{namespace}}/{{cluster}}",
                    ),
                ),
                kind="stat",
                description="1 while an in-place restore (spec.restoreInPlace) is in flight: "
                "the members are stopped, writes fail; status.restore says which step.",
            ),
            Panel(
                "Checkpoint archives in the last hour",
                (
                    Target(
                        "sum by (result) (increase("
                        f"raftkv_operator_checkpoint_archives_total{{{NODE}}}[1h]))",
                        "{{result}}",
                    ),
                ),
                description="Archive copies of checkpoints by result; failures fire "
                "RaftkvCheckpointArchiveFailing.",
            ),
        ),
    ),
)


def panels() -> list[Panel]:
    """Every panel, in order."""
    return [panel for _, row in ROWS for panel in row]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "expr": target.expr,
            "legendFormat": target.legend,
            "refId": chr(ord("A") + index),
        }
        for index, target in enumerate(panel.targets)
    ]
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
    }
    if panel.description:
        body["description"] = panel.description
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, **panel.options}
    else:
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
    return body


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-query"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    out: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for row_title, row in ROWS:
        out.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row:
            if x + panel.width > 24:
                x, y = 0, y + line_height
                line_height = 0
            out.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": UID,
        "title": TITLE,
        "description": "A raftkv RaftCluster: leadership, replication, proposals, storage, "
        "checkpoints, HTTP and the operator.",
        "tags": ["raftkv"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                _variable("namespace", "Namespace", "label_values(raftkv_info, namespace)"),
                _variable(
                    "cluster",
                    "RaftCluster",
                    'label_values(raftkv_info{namespace=~"$namespace"}, cluster)',
                ),
            ]
        },
        "panels": out,
    }


def render() -> str:
    """The file's exact text (stable key order, trailing newline)."""
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

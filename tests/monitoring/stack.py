"""A real monitoring stack on loopback: a local raftkv cluster (`raftkv local up`), a client
load, and Debian's Prometheus scraping the nodes every second with the chart's rules loaded.

Used by tests/monitoring/test_live_queries.py and tests/monitoring/render_dashboard.py.
Every wait is a condition polled against a deadline; every process started here is stopped
here (the cluster through `raftkv local down`, Prometheus by its pid).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raftkv.tools.ports import free_port

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "raftkv-operator" / "files" / "prometheus-rules.yaml"
NAMESPACE = "local"
CLUSTER = "demo"
SCRAPE_SECONDS = 1
SNAPSHOT_ENTRIES = 200


class QueryError(Exception):
    """Prometheus rejected a query (bad PromQL): never retried."""


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as error:
            last_error = error
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} ({last_error})")
        time.sleep(interval)


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# ---- raftkv ---------------------------------------------------------------------------------


@dataclass
class LocalCluster:
    directory: Path
    urls: list[str]

    @classmethod
    def up(cls, directory: Path, nodes: int) -> LocalCluster:
        done = subprocess.run(
            # Small snapshot interval: the load makes the nodes compact, so snapshot
            # metrics show real work.
            [sys.executable, "-m", "raftkv.cli", "local", "up", "--nodes", str(nodes),
             "--dir", str(directory), "--snapshot-entries", str(SNAPSHOT_ENTRIES),
             # Explicitly plain: this stack tests dashboards and alerts, and its
             # Prometheus scrapes plain HTTP.
             "--insecure"],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"raftkv local up failed: {done.stderr.strip()}")
        urls = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if len(urls) != nodes:
            raise RuntimeError(f"raftkv local up printed {urls!r}, expected {nodes} URLs")
        return cls(directory, urls)

    def down(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "raftkv.cli", "local", "down", "--dir", str(self.directory)],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip

    def nodes(self) -> list[dict[str, Any]]:
        state: dict[str, Any] = json.loads((self.directory / "cluster.json").read_text())
        nodes: list[dict[str, Any]] = state["nodes"]
        return nodes

    def status(self, url: str) -> dict[str, Any]:
        code, body = http("GET", f"{url}/v1/status")
        if code != 200:
            raise ValueError(f"{url}/v1/status answered {code}")
        status: dict[str, Any] = json.loads(body)
        return status

    def leader_url(self) -> str:
        for url in self.urls:
            with contextlib.suppress(OSError, ValueError):
                leader = self.status(url).get("leader")
                if leader:
                    return str(leader["client_url"])
        raise ValueError("no node knows a leader")

    def kill(self, name: str) -> None:
        """SIGKILL one node this cluster started (its pid is in the cluster's state file)."""
        node = next(n for n in self.nodes() if n["name"] == name)
        with contextlib.suppress(ProcessLookupError):
            import os

            os.kill(int(node["pid"]), signal.SIGKILL)


@dataclass
class Load:
    """Client traffic in a thread: writes, reads, misses (404) and deletes over all members."""

    urls: list[str]
    stop_event: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def start(self, max_seconds: float) -> None:
        self.thread = threading.Thread(target=self._run, args=(max_seconds,), daemon=True)
        self.thread.start()

    def _run(self, max_seconds: float) -> None:
        deadline = time.monotonic() + max_seconds
        i = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            url = self.urls[i % len(self.urls)]
            key = f"load-{i % 50}"
            for method, path, body in (
                ("PUT", f"/v1/kv/{key}", f"value-{i}".encode()),
                ("GET", f"/v1/kv/{key}", None),
                ("GET", f"/v1/kv/missing-{i}", None),
                ("DELETE", f"/v1/kv/{key}", None) if i % 7 == 0 else ("GET", "/v1/status", None),
            ):
                try:
                    code, _ = http(method, url + path, body, timeout=3)
                    outcome = str(code)
                except OSError:
                    outcome = "error"
                self.counts[outcome] = self.counts.get(outcome, 0) + 1
            i += 1
            self.stop_event.wait(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


# ---- Prometheus -----------------------------------------------------------------------------


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(
        cls,
        binary: str,
        directory: Path,
        node_targets: list[str],
        operator_targets: list[str] | None = None,
    ) -> Prometheus:
        directory.mkdir(parents=True, exist_ok=True)
        scrape_configs: list[dict[str, Any]] = [
            {
                "job_name": "raftkv",
                "static_configs": [
                    {
                        "targets": node_targets,
                        "labels": {"namespace": NAMESPACE, "cluster": CLUSTER},
                    }
                ],
            }
        ]
        if operator_targets:
            # The operator's series carry the RaftCluster's namespace and cluster themselves.
            scrape_configs.append(
                {
                    "job_name": "raftkv-operator",
                    "honor_labels": True,
                    "static_configs": [{"targets": operator_targets}],
                }
            )
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "rule_files": [str(RULES)],
            "scrape_configs": scrape_configs,
        }
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        log = directory / "prometheus.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        prometheus = cls(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_for("Prometheus to be ready", prometheus._ready, timeout=60)
        except BaseException:
            prometheus.stop()
            raise
        return prometheus

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        code, _ = http("GET", f"{self.url}/-/ready", timeout=2)
        return code == 200

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def api(self, path: str, params: dict[str, str] | list[tuple[str, str]]) -> dict[str, Any]:
        """GET an HTTP API path; the `data` of a success, or raise with Prometheus' error."""
        query = urllib.parse.urlencode(params)
        code, body = http("GET", f"{self.url}/api/v1/{path}?{query}", timeout=30)
        answer: dict[str, Any] = json.loads(body)
        if code != 200 or answer.get("status") != "success":
            raise QueryError(f"{answer.get('errorType')}: {answer.get('error')}")
        data: dict[str, Any] = answer["data"]
        return data

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query: {"resultType", "result"}."""
        return self.api("query", {"query": expr})

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        return self.api(
            "query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"},
        )

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self.api(f"label/{label}/values", [("match[]", match)])  # type: ignore[assignment]
        return values


def has_data(result: dict[str, Any]) -> bool:
    """A non-empty vector/matrix, or a scalar/string answer."""
    if result["resultType"] in ("scalar", "string"):
        return True
    return bool(result["result"])


@dataclass
class Stack:
    cluster: LocalCluster
    prometheus: Prometheus
    load: Load
    operator: Any | None  # an OperatorMetrics when the operator's metrics could be served


@contextlib.contextmanager
def running_stack(
    prometheus_binary: str, directory: Path, *, nodes: int = 3, load_seconds: float = 300
) -> Iterator[Stack]:
    """Cluster + load + Prometheus (+ the operator's metrics when available), torn down after."""
    from tests.monitoring.operator_metrics import OperatorMetrics

    cluster = LocalCluster.up(directory / "cluster", nodes)
    load = Load(cluster.urls)
    prometheus: Prometheus | None = None
    operator: OperatorMetrics | None = None
    try:
        operator = OperatorMetrics.start(namespace=NAMESPACE, cluster=CLUSTER)
        # A checkpoint, so that checkpoint metrics have something to show.
        code, body = http("POST", f"{cluster.leader_url()}/v1/checkpoints", b"{}", timeout=30)
        if code != 200:
            raise RuntimeError(f"checkpoint failed: {code} {body[:300]!r}")
        load.start(load_seconds)
        targets = [urllib.parse.urlsplit(u).netloc for u in cluster.urls]
        prometheus = Prometheus.start(
            prometheus_binary,
            directory / "prometheus",
            targets,
            [operator.target] if operator else None,
        )
        expected_up = len(targets) + (1 if operator else 0)
        scraper = prometheus
        wait_for(
            "every target to be scraped",
            lambda: _scalar(scraper, "count(up == 1)") == expected_up,
            timeout=60,
        )
        wait_for(
            "rates over the load",
            lambda: has_data(scraper.query("sum(rate(raftkv_proposals_committed_total[10s])) > 0")),
            timeout=60,
        )
        yield Stack(cluster, prometheus, load, operator)
    finally:
        load.stop()
        if prometheus is not None:
            prometheus.stop()
        if operator is not None:
            operator.stop()
        cluster.down()


def _scalar(prometheus: Prometheus, expr: str) -> float | None:
    result = prometheus.query(expr)["result"]
    if not result:
        return None
    return float(result[0]["value"][1])

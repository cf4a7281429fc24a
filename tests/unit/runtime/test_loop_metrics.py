"""The lock-free request metrics (runtime/metrics.py LoopCounter, LoopHistogram) expose
exactly what prometheus_client's own Counter and Histogram would for the same updates:
same names, labels, bucket bounds and values (differential, over random values that
include every bucket's bound and the values just beside it)."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from raftkv.runtime.metrics import _FAST, LoopCounter, LoopHistogram, NodeMetrics


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition without the `_created` series (only the stock types have them)."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_loop_histogram_and_counter_expose_what_the_stock_ones_do() -> None:
    rng = random.Random(7)
    values = [b + d for b in _FAST for d in (-1e-9, 0.0, 1e-9)]
    values += [rng.uniform(0, 6) for _ in range(500)] + [0.0, 100.0]
    rng.shuffle(values)
    stock, loop = CollectorRegistry(), CollectorRegistry()
    stock_h = Histogram("h_seconds", "doc", ["route"], buckets=_FAST, registry=stock)
    stock_c = Counter("c_total", "doc", ["route", "code"], registry=stock)
    loop_h = LoopHistogram("h_seconds", "doc", ("route",), loop, _FAST)
    loop_c = LoopCounter("c", "doc", ("route", "code"), loop)
    for i, value in enumerate(values):
        route = ("a", "b")[i % 2]
        stock_h.labels(route).observe(value)
        loop_h.labels(route).observe(value)
        code = str(200 + i % 3)
        stock_c.labels(route, code).inc()
        loop_c.labels(route, code).inc()
    assert _samples(loop) == _samples(stock)


def test_a_wrong_bucket_would_be_seen() -> None:
    """The comparison above catches an off-by-one at a bound (`le` means <=)."""
    stock, loop = CollectorRegistry(), CollectorRegistry()
    Histogram("h", "doc", buckets=(1.0,), registry=stock).observe(1.0)
    wrong = LoopHistogram("h", "doc", (), loop, (1.0,))
    wrong.labels().counts[1] += 1  # 1.0 put above the bound: what bisect_right would do
    wrong.labels().sum += 1.0
    assert _samples(loop) != _samples(stock)


def test_the_node_exposes_its_request_metrics_from_the_start() -> None:
    text = NodeMetrics("n").exposition().decode()
    assert "raftkv_proposal_duration_seconds_count 0.0" in text
    assert "# TYPE raftkv_http_requests_total counter" in text
    assert "# TYPE raftkv_http_request_duration_seconds histogram" in text

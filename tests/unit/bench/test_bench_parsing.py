"""bench/run.py's pure parts: wrk's output and py-spy's collapsed stacks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "run.py"

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:48707
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.45ms    2.21ms  13.37ms   85.19%
    Req/Sec     0.97k   261.52     1.28k    40.00%
  Latency Distribution
     50%  812.00us
     75%    3.59ms
     90%    5.56ms
     99%    1.01s
  970 requests in 1.00s, 206.50KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:    966.16
Transfer/sec:    205.69KB
"""


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_wrk_output_is_parsed_with_units_and_errors(bench: ModuleType) -> None:
    assert bench.parse_wrk(WRK_OUTPUT) == {
        "ops_per_sec": 966.16,
        "p50_ms": 0.812,
        "p99_ms": 1010.0,
        "requests": 970,
        "errors": 10,
    }


def test_unexpected_wrk_output_is_an_error(bench: ModuleType) -> None:
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        bench.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_profile_summary_ranks_own_and_inclusive_time(bench: ModuleType, tmp_path: Path) -> None:
    raw = tmp_path / "p.collapsed"
    raw.write_text(
        "main (a/cli.py:1);handle (x/site-packages/aiohttp/web.py:10);write (x/y.py:3) 6\n"
        "main (a/cli.py:1);handle (x/site-packages/aiohttp/web.py:11) 2\n"
        "worker (t.py:1);fsync (node/raftkv/storage/wal.py:568) 2\n"
    )
    text = bench.summarize_profile(raw)
    own = text.split("inclusive")[0]
    assert "10 samples" in text
    assert own.index("60.0%  write (x/y.py)") < own.index("20.0%  handle (aiohttp/web.py)")
    assert "80.0%  main (a/cli.py)" in text.split("inclusive")[1]
    assert "fsync (raftkv/storage/wal.py)" in own


def test_table_compares_raftkv_with_both_etcd_clients(bench: ModuleType) -> None:
    runs = [
        bench.Run("raftkv", "put", 16, 4000.0, 3.0, 12.0, 40000, 0),
        bench.Run("etcd", "put", 16, 2000.0, 6.0, 24.0, 20000, 0),
        bench.Run("etcd-grpc", "put", 16, 3200.0, 4.0, 16.0, 32000, 0),
        bench.Run("raftkv", "get", 16, 5000.0, 2.0, 8.0, 50000, 0),
        bench.Run("etcd", "get", 16, 2500.0, 4.0, 10.0, 25000, 0),
    ]
    lines = bench.table(runs, [16]).splitlines()
    put = next(line for line in lines if line.startswith("put"))
    get = next(line for line in lines if line.startswith("get"))
    # ops/json, ops/grpc, p99/json, p99/grpc
    assert put.split()[-4:] == ["2.00", "1.25", "0.50", "0.75"]
    assert get.split()[-4:] == ["2.00", "-", "0.80", "-"]


def test_engines_table_puts_raft_multipaxos_and_etcd_side_by_side(bench: ModuleType) -> None:
    runs = [
        bench.Run("raftkv", "put", 16, 4000.0, 3.0, 12.0, 40000, 0),
        bench.Run("multipaxos", "put", 16, 3000.0, 4.5, 15.5, 30000, 0),
        bench.Run("etcd", "put", 16, 2000.0, 6.0, 24.0, 20000, 0),
        bench.Run("etcd-grpc", "put", 16, 3200.0, 4.0, 16.0, 32000, 0),
        bench.Run("raftkv", "get", 16, 5000.0, 2.0, 8.0, 50000, 0),
        bench.Run("etcd", "get", 16, 2500.0, 4.0, 10.0, 25000, 0),
    ]
    lines = bench.engines_table(runs, [16]).splitlines()
    put = next(line for line in lines if line.startswith("put")).replace("|", " ").split()
    get = next(line for line in lines if line.startswith("get")).replace("|", " ").split()
    # op conns | raft ops p50 p99 | multipaxos ops p50 p99 | etcd ops p50 p99 via
    assert put[2:] == [
        "4000",
        "3.00",
        "12.00",
        "3000",
        "4.50",
        "15.50",
        "3200",
        "4.00",
        "16.00",
    ] + ["grpc"]
    assert get[2:] == ["5000", "2.00", "8.00", "-", "-", "-", "2500", "4.00", "10.00", "json"]

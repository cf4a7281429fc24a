"""The `raftkv` client subcommands against a real 3-node cluster: round trips,
`-o json`, txn, locks with fencing tokens, leases, watch, checkpoints, and the
documented exit codes."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from raftkv.client.commands import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE
from tests.integration.clitools import raftkv
from tests.integration.harness import Cluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path_factory.mktemp("cli")) as c:
        yield c


@pytest.fixture
def eps(cluster: Cluster) -> list[str]:
    return ["--endpoints", ",".join(n.url for n in cluster.nodes.values())]


async def test_put_get_del_round_trip_in_both_formats(eps: list[str]) -> None:
    r = await raftkv("put", "cli/a", "hello world", *eps)
    assert r.code == 0 and r.out.startswith("OK revision "), r.err
    r = await raftkv("get", "cli/a", *eps)
    assert (r.code, r.out) == (0, "hello world\n")
    r = await raftkv("get", "cli/a", "-o", "json", "--serializable", "--strategy", "random", *eps)
    kv = json.loads(r.out)
    assert kv["key"] == "cli/a" and kv["value"] == "hello world" and kv["version"] == 1
    r = await raftkv("put", "cli/b", "-", *eps, stdin=b"\xff\x00binary")
    assert r.code == 0, r.err
    r = await raftkv("get", "cli/b", "--raw", *eps)
    assert r.code == 0
    r = await raftkv("get", "cli/", "--prefix", "-o", "json", *eps)
    body = json.loads(r.out)
    assert body["count"] == 2 and body["kvs"][1]["key"] == "cli/b"
    assert "value_b64" in body["kvs"][1]
    r = await raftkv("del", "cli/a", "-o", "json", *eps)
    assert r.code == 0 and json.loads(r.out)["deleted"] == 1
    r = await raftkv("get", "cli/a", *eps)
    assert r.code == EXIT_FAILED and r.out == "" and "key_not_found" in r.err
    assert len(r.err.strip().splitlines()) == 1


async def test_conditions_and_txn_exit_1_when_they_fail(eps: list[str]) -> None:
    r = await raftkv("put", "tx/a", "1", "--if-version", "0", *eps)
    assert r.code == 0, r.err
    r = await raftkv("put", "tx/a", "2", "--if-version", "0", *eps)
    assert r.code == EXIT_FAILED and "compare_failed" in r.err
    r = await raftkv(
        "txn",
        "--if",
        "value(tx/a) == 1",
        "--then",
        "put tx/a 2",
        "--then",
        "put tx/b x",
        "--else",
        "get tx/a",
        *eps,
    )
    assert r.code == 0 and r.out.splitlines()[0] == "SUCCESS", r.err
    r = await raftkv(
        "txn",
        "--if",
        "value(tx/a) == 1",
        "--then",
        "put tx/a 3",
        "--else",
        "get tx/a",
        "-o",
        "json",
        *eps,
    )
    body = json.loads(r.out)
    assert r.code == EXIT_FAILED and body["succeeded"] is False
    assert body["responses"][0]["kvs"][0]["value"] == "2"


async def test_usage_and_invalid_requests_are_exit_2(eps: list[str]) -> None:
    r = await raftkv("put", "k", *eps, "--lease", "x")
    assert r.code == EXIT_USAGE
    r = await raftkv("put", "k" * 5000, "v", *eps)  # over --max-key-bytes
    assert r.code == EXIT_USAGE and "key_too_large" in r.err and "Traceback" not in r.err


async def test_unreachable_endpoints_are_exit_3() -> None:
    r = await raftkv("get", "k", "--endpoints", "http://127.0.0.1:9", "--timeout", "1")
    assert r.code == EXIT_UNAVAILABLE and "cannot connect" in r.err
    assert "Traceback" not in r.err


async def test_lock_runs_a_command_with_increasing_fencing_tokens(eps: list[str]) -> None:
    script = 'echo "token=$RAFTKV_LOCK_TOKEN"; exit 7'
    first = await raftkv("lock", "acquire", "cli-lock", *eps, "--", "sh", "-c", script)
    second = await raftkv("lock", "acquire", "cli-lock", *eps, "--", "sh", "-c", script)
    assert first.code == second.code == 7, (first.err, second.err)  # the command's code
    tokens = [int(r.out.split("token=")[1].split()[0]) for r in (first, second)]
    assert tokens[1] > tokens[0]
    r = await raftkv("lock", "show", "cli-lock", *eps)  # released after the command
    assert r.code == EXIT_FAILED and "free" in r.err


async def test_lock_held_by_another_lease_is_exit_1(eps: list[str]) -> None:
    lease = json.loads((await raftkv("lease", "grant", "30", "-o", "json", *eps)).out)["id"]
    r = await raftkv("lock", "acquire", "busy", "--lease", str(lease), "-o", "json", *eps)
    assert r.code == 0 and json.loads(r.out)["token"] > 0
    r = await raftkv("lock", "acquire", "busy", "--no-wait", *eps)
    assert r.code == EXIT_FAILED and "lock_held" in r.err
    r = await raftkv("lock", "show", "busy", "-o", "json", *eps)
    assert json.loads(r.out)["holder"] == lease
    r = await raftkv("lease", "revoke", str(lease), *eps)
    assert r.code == 0 and "busy" in r.out


async def test_watch_prints_the_changes(eps: list[str]) -> None:
    watcher = asyncio.ensure_future(
        raftkv("watch", "w/", "--prefix", "--count", "2", "-o", "json", *eps)
    )
    done = False
    for i in range(100):  # write until the watcher has seen two events (it starts async)
        await raftkv("put", f"w/{i}", "x", *eps)
        await asyncio.wait([watcher], timeout=0.2)
        if watcher.done():
            done = True
            break
    assert done, "the watcher never saw two events"
    r = watcher.result()
    events = [json.loads(line) for line in r.out.splitlines()]
    assert r.code == 0 and len(events) == 2 and all(e["type"] == "put" for e in events)
    assert events[0]["mod_revision"] < events[1]["mod_revision"]


async def test_checkpoint_create_list_download(eps: list[str], tmp_path: Path) -> None:
    await raftkv("put", "ck/a", "1", *eps)
    r = await raftkv("checkpoint", "create", "--id", "cli-ck", "-o", "json", *eps)
    assert r.code == 0, r.err
    manifest = json.loads(r.out)
    r = await raftkv("checkpoint", "list", *eps)
    assert "cli-ck" in r.out
    out = tmp_path / "archive" / "cli-ck"
    r = await raftkv(
        "checkpoint", "download", "cli-ck", "--endpoint", eps[1].split(",")[1], "--out", str(out)
    )
    assert r.code == 0, r.err
    data = (out / "data").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    r = await raftkv(
        "checkpoint", "download", "no-such", "--endpoint", eps[1], "--out", str(tmp_path / "x")
    )
    assert r.code == EXIT_FAILED and "checkpoint_not_found" in r.err


async def test_status_and_members(eps: list[str], cluster: Cluster) -> None:
    r = await raftkv("status", "-o", "json", *eps)
    body = json.loads(r.out)
    assert r.code == 0 and body["healthy"]
    assert sorted(e["role"] for e in body["endpoints"]) == ["follower", "follower", "leader"]
    r = await raftkv("members", "list", *eps)
    assert r.code == 0 and all(n.name in r.out for n in cluster.nodes.values())

"""Limits with real processes: the quota alarm trips and clears on every member (the
state size is the same everywhere), and a disk that fills up under the WAL never loses
an acknowledged write (the node answers what it had pending 503 and exits 70)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import Cluster, Node, until

pytestmark = pytest.mark.slow


async def _metric(cluster: Cluster, node: Node, name: str) -> float:
    async with cluster.session.get(node.url + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} on {node.name}")


async def test_the_quota_alarm_trips_and_clears_on_every_member(cluster: Cluster) -> None:
    quota = 60_000
    cluster.create(3, ["--quota-backend-bytes", str(quota)])
    cluster.start_all()
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    written = 0
    while True:  # through a follower: the leader decides, the follower relays
        status, body = await cluster.put(follower, f"fill/{written}", b"x" * 8000)
        if status != 200:
            break
        written += 1
        assert written < 30, "the quota never refused a write"
    assert status == 507 and body["error"] == "quota_exceeded", body
    for node in cluster.nodes.values():
        await cluster.wait_caught_up(node, leader)

    async def alarm_everywhere(value: float) -> bool:
        alarms = [await _metric(cluster, n, "raftkv_quota_alarm") for n in cluster.nodes.values()]
        sizes = {await _metric(cluster, n, "raftkv_state_bytes") for n in cluster.nodes.values()}
        return alarms == [value] * 3 and len(sizes) == 1

    await until(lambda: alarm_everywhere(1), 20, "the alarm on every member")
    status, body = await cluster.request("POST", leader, "/v1/leases", {"ttl": 10})
    assert status == 507, body
    assert (await cluster.get(follower, "fill/0"))[0] == 200  # reads go on
    status, body = await cluster.request("DELETE", follower, "/v1/kv/fill/", prefix="1")
    assert status == 200 and body["deleted"] == written, body
    await until(lambda: alarm_everywhere(0), 20, "the alarm to clear on every member")
    assert (await cluster.put(follower, "after", b"v"))[0] == 200


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_never_loses_an_acknowledged_write(
    cluster: Cluster, tmp_path: Path
) -> None:
    with _small_disk(tmp_path / "small", "3m") as disk:
        node = cluster.create(1, ["--quota-backend-bytes", "0"])[0]
        node.data_dir = disk / "data"
        cluster.start(node)
        await cluster.wait_leader()
        acknowledged: list[str] = []
        answers: dict[int, int] = {}
        codes: set[str] = set()
        value = b"v" * 32_000
        for i in range(400):  # 12 MB into a 3 MB disk
            try:
                async with cluster.session.put(
                    f"{node.url}/v1/kv/k{i}", data=value, timeout=aiohttp.ClientTimeout(total=15)
                ) as r:
                    answers[r.status] = answers.get(r.status, 0) + 1
                    if r.status == 200:
                        acknowledged.append(f"k{i}")
                    else:
                        body = await r.json()
                        assert r.status == 503, body
                        assert body["error"] in ("node_failed", "shutting_down"), body
                        codes.add(body["error"])
            except aiohttp.ClientError:
                answers[0] = answers.get(0, 0) + 1  # the process is gone
                break
        assert node.proc is not None
        rc = await asyncio.to_thread(node.proc.wait, 20)
        node.proc = None
        assert rc == 70, cluster.log_tail(node)
        assert "No space left on device" in cluster.log_tail(node, 200)
        assert acknowledged and len(acknowledged) < 400, answers
        assert "node_failed" in codes, codes  # the write the disk refused: never a 200
        # Every acknowledged write is on the full disk: start from a copy with room.
        node.data_dir = tmp_path / "copy"
        shutil.copytree(disk / "data", node.data_dir)
    cluster.start(node)
    await cluster.wait_leader()
    for key in acknowledged:
        status, got = await cluster.get(node, key, consistency="serializable")
        assert (status, got) == (200, value), key

"""A node that exits on its own fails the chaos run, whatever the nemesis did to it
afterwards (issue 15 item 6): a leader that crashed while followers were being
killed used to be restarted (or "killed") by the nemesis and pass unnoticed."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tests.chaos.cluster import Cluster, NodeProc
from tests.chaos.net import Endpoint

CRASHER = "import sys, time; time.sleep(0.1); sys.exit(3)"  # a node that dies by itself
SLEEPER = "import time; time.sleep(60)"  # a healthy node (until the nemesis kills it)


class _Net:
    names = ["n1", "n2"]

    def endpoint(self, name: str) -> Endpoint:
        url = f"http://127.0.0.1:{1000 + int(name[1:])}"
        return Endpoint("127.0.0.1", 1, 2, url, "127.0.0.1:2", url)


class _Cluster(Cluster):
    def command(self, node: NodeProc) -> list[str]:
        return [sys.executable, "-c", CRASHER if node.name == "n1" else SLEEPER]


def _cluster(tmp: Path) -> _Cluster:
    return _Cluster(_Net(), tmp, ["n1", "n2"], peer_tls=False)  # type: ignore[arg-type]


def _wait_dead(cluster: Cluster, name: str) -> None:
    proc = cluster.nodes[name].proc
    assert proc is not None
    proc.wait(timeout=10)


def test_a_crash_later_hidden_by_a_kill_or_restart_is_reported(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    try:
        cluster.start("n1")
        cluster.start("n2")
        _wait_dead(cluster, "n1")  # n1 crashes on its own...
        cluster.kill("n1")  # ...then the nemesis "kills" it (kill -9 of a follower)
        cluster.start("n1")  # ...and restarts it: the crash used to leave no trace
        cluster.kill("n2")  # killed by the nemesis: not a self-exit
        _wait_dead(cluster, "n1")
        cluster.pause("n1")  # a pause of a node that crashed again
        assert cluster.check_exits() == ["n1 exited with 3", "n1 exited with 3"]
    finally:
        cluster.close()


async def test_the_watcher_notices_a_crash_nobody_touches(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    stop = asyncio.Event()
    try:
        cluster.start("n1")
        cluster.start("n2")
        watcher = asyncio.create_task(cluster.watch_exits(stop, every=0.05))
        deadline = time.monotonic() + 10
        while not cluster.exits and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert cluster.exits == ["n1 exited with 3"]
        assert cluster.nodes["n1"].proc is None and cluster.nodes["n2"].running()
        stop.set()
        await watcher
    finally:
        cluster.close()

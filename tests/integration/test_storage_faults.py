"""What a node does with damaged files: a CRC mismatch in the middle of the WAL
refuses to start (non-zero exit, file and offset on stderr); a torn tail (a
crash mid-write) is truncated and the node starts and catches up."""

from __future__ import annotations

import struct
import subprocess
import zlib

import pytest

from tests.integration.harness import Cluster, Node

pytestmark = pytest.mark.slow


def _torn_record() -> bytes:
    """The first part of a WAL record whose write a crash interrupted: a valid
    header (see raftkv.storage.wal) announcing 1000 payload bytes, then only 100.
    Only an unacknowledged batch can be torn: an acknowledged one was fsynced."""
    payload = bytes(1000)
    head = struct.pack("<IBI", len(payload), 2, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload[:100]


def _segment(node: Node) -> str:
    segments = sorted((node.data_dir / "wal").glob("*.wal"))
    assert segments, f"no WAL segment under {node.data_dir}"
    return str(segments[-1])


async def _write(cluster: Cluster, leader: Node, count: int, prefix: str) -> None:
    for i in range(count):
        status, body = await cluster.put(leader, f"{prefix}{i}", b"v" * 100)
        assert status == 200, body


async def test_crc_mismatch_mid_wal_refuses_to_start(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    await _write(cluster, leader, 60, "c")
    victim = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(victim, leader)
    assert cluster.terminate(victim) == 0
    path = _segment(victim)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        middle = len(data) // 2
        data[middle] ^= 0xFF
        f.seek(0)
        f.write(data)
    proc = subprocess.run(cluster.command(victim), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert path in proc.stderr, proc.stderr
    assert "offset" in proc.stderr, proc.stderr
    # The rest of the cluster is unaffected.
    assert (await cluster.put(leader, "still", b"fine"))[0] == 200


async def test_torn_tail_is_truncated_and_the_node_catches_up(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    await _write(cluster, leader, 40, "t")
    victim = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(victim, leader)
    cluster.kill(victim)
    path = _segment(victim)
    with open(path, "ab") as f:
        f.write(_torn_record())
    await _write(cluster, leader, 20, "u")
    cluster.start(victim)
    await cluster.wait_caught_up(victim, leader)
    assert victim.running(), cluster.log_tail(victim)
    for key in ("t0", "t39", "u19"):
        assert await cluster.get(victim, key, consistency="serializable") == (200, b"v" * 100)
    assert "truncat" in cluster.log_tail(victim, 200).lower()

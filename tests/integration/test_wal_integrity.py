"""A member whose WAL lost a segment refuses to start (exit code 2, the files
named on stderr) instead of coming back at term 0 without its vote; a healthy
restart keeps its term and vote. Real `raftkv serve` processes, real files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from raftkv.raft.types import HardState
from raftkv.storage.wal import RECORD_HEADER_SIZE, RecordType, WriteAheadLog, list_segments
from tests.integration.harness import Cluster, Node, until

pytestmark = pytest.mark.slow

EXIT_STORAGE = 2


def snapshot_files(node: Node) -> list[Path]:
    return sorted((node.data_dir / "snapshots").glob("snap-*.data"))


def durable_hard_state(node: Node) -> HardState:
    """What the stopped node's WAL holds (read with the storage library)."""
    with WriteAheadLog(node.data_dir / "wal") as wal:
        return wal.load().hard_state


async def write(cluster: Cluster, leader: Node, count: int, prefix: str) -> None:
    for i in range(count):
        status, body = await cluster.put(leader, f"{prefix}{i}", b"v" * 50)
        assert status == 200, body


def refused(cluster: Cluster, node: Node) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cluster.command(node), capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_STORAGE, (proc.returncode, proc.stderr[-2000:])
    assert f"cannot start {node.name}" in proc.stderr
    return proc


@pytest.fixture
async def snapshotting(cluster: Cluster) -> Cluster:
    cluster.create(3, ["--snapshot-entries", "20"])
    cluster.start_all()
    await cluster.wait_leader()
    return cluster


def first_batch_end(path: Path) -> int:
    """End of a segment's header batch (records framed as in raftkv.storage.wal)."""
    content = path.read_bytes()
    off = 0
    while True:
        length, rtype = int.from_bytes(content[off : off + 4], "little"), content[off + 4]
        off += RECORD_HEADER_SIZE + length
        if rtype == RecordType.COMMIT:
            return off


@pytest.mark.parametrize("damage", ["deleted", "cut"])
async def test_lost_wal_segment_beside_a_snapshot_refuses_to_start(
    snapshotting: Cluster, damage: str
) -> None:
    cluster = snapshotting
    leader = await cluster.wait_leader()
    await write(cluster, leader, 80, "k")
    victim = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(victim, leader)

    async def has_snapshot() -> bool:
        return bool(snapshot_files(victim))

    await until(has_snapshot, 30, f"a snapshot on {victim.name}")
    assert cluster.terminate(victim) == 0
    assert durable_hard_state(victim).term > 0
    segments = [Path(path) for _, path in list_segments(victim.data_dir / "wal")]
    assert segments
    if damage == "deleted":
        for path in segments:
            path.unlink()
    else:  # cut at a batch boundary: only the first segment's header batch is left
        for path in segments[1:]:
            path.unlink()
        with segments[0].open("r+b") as f:
            f.truncate(first_batch_end(segments[0]))
    left = {p: p.read_bytes() for p in segments if p.exists()}

    proc = refused(cluster, victim)
    assert str(victim.data_dir / "wal") in proc.stderr, proc.stderr
    assert any(str(p) in proc.stderr for p in snapshot_files(victim)), proc.stderr
    assert "vote" in proc.stderr
    # Refused for good: the failed start changed nothing (no fresh log to start from).
    assert {p: p.read_bytes() for p in segments if p.exists()} == left
    refused(cluster, victim)
    # The rest of the cluster carries on.
    assert (await cluster.put(leader, "after", b"fine"))[0] == 200


async def test_removed_wal_directory_beside_identity_refuses_to_start(
    three_nodes: Cluster,
) -> None:
    # No snapshot yet (default --snapshot-entries): identity.json alone proves
    # the member ran before.
    cluster = three_nodes
    leader = await cluster.wait_leader()
    await write(cluster, leader, 5, "i")
    victim = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(victim, leader)
    assert cluster.terminate(victim) == 0
    assert not snapshot_files(victim)
    shutil.rmtree(victim.data_dir / "wal")
    proc = refused(cluster, victim)
    assert str(victim.data_dir / "identity.json") in proc.stderr, proc.stderr
    assert str(victim.data_dir / "wal") in proc.stderr, proc.stderr


async def test_a_restarted_member_keeps_its_term_and_vote(snapshotting: Cluster) -> None:
    cluster = snapshotting
    leader = await cluster.wait_leader()
    await write(cluster, leader, 60, "v")
    victim = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(victim, leader)
    assert cluster.terminate(victim) == 0
    before = durable_hard_state(victim)
    assert before.term > 0 and snapshot_files(victim)

    # Meanwhile, a new term: the leader is stopped too, the survivors elect.
    assert cluster.terminate(leader) == 0
    cluster.start(victim)

    async def victim_serves() -> bool:
        status = await cluster.status(victim)
        return bool(status and status["term"] >= before.term)

    await until(victim_serves, 30, f"{victim.name} back, at term >= {before.term}")
    cluster.start(leader)
    await cluster.wait_leader()
    await write(cluster, await cluster.wait_leader(), 5, "w")
    assert cluster.terminate(victim) == 0
    after = durable_hard_state(victim)
    # Terms only go forward, and within the term it had voted in, the vote stands.
    assert after.term >= before.term
    if after.term == before.term:
        assert after.vote == before.vote


async def test_an_installed_snapshot_is_recorded_in_the_wal(snapshotting: Cluster) -> None:
    # A member far behind gets the leader's snapshot; its WAL records it (etcd's
    # snapshot records) before the snapshot file is written.
    cluster = snapshotting
    leader = await cluster.wait_leader()
    await write(cluster, leader, 10, "a")
    victim = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(victim, leader)
    assert cluster.terminate(victim) == 0
    with WriteAheadLog(victim.data_dir / "wal") as wal:
        assert wal.load().snapshot_record is None
    await write(cluster, leader, 150, "b")  # the leader compacts past the victim's log
    cluster.start(victim)
    await cluster.wait_caught_up(victim, leader)
    assert cluster.terminate(victim) == 0
    with WriteAheadLog(victim.data_dir / "wal") as wal:
        state = wal.load()
    assert state.snapshot_record is not None, "no snapshot was installed"
    index, term = state.snapshot_record
    assert (
        victim.data_dir / "snapshots" / f"snap-{index:020d}-{term:020d}.meta.json"
    ).exists() or index <= (state.snapshot.index if state.snapshot else 0)
    cluster.start(victim)  # and it starts from there
    await cluster.wait_caught_up(victim, leader)
    assert await cluster.get(victim, "b149", consistency="serializable") == (200, b"v" * 50)

"""Snapshots and checkpoints are frozen on the node loop (`StateMachine.snapshot_view`)
and encoded in the background: the bytes must be exactly those of `snapshot_bytes()` at
that index (every member writes the same checkpoint), whatever is applied meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from raftkv.fsm import Delete, LeaseGrant, LockAcquire, Put, StateMachine, encode
from raftkv.fsm.snapshot import SnapshotView
from tests.unit.runtime.solo import solo_node


def _machine(keys: int) -> StateMachine:
    m = StateMachine()
    index = 0
    for data in [encode(LeaseGrant(60, 7)), encode(LockAcquire("job", 7))]:
        index += 1
        m.apply(index, 1, data)
    for i in range(keys):
        index += 1
        m.apply(index, 1, encode(Put(b"k%06d" % ((i * 7919) % 1_000_003), b"v%d" % i)))
    return m


@pytest.mark.parametrize(
    "keys",
    [
        0,
        1,
        15,
        16,
        SnapshotView.CHUNK - 1,
        SnapshotView.CHUNK,
        SnapshotView.CHUNK + 1,
        3 * SnapshotView.CHUNK + 17,
        70_000,
    ],
)
def test_view_packs_to_the_same_bytes(keys: int) -> None:
    m = _machine(keys)
    assert m.snapshot_view().pack(lambda: None) == m.snapshot_bytes()


def test_view_is_frozen_at_its_index() -> None:
    m = _machine(2 * SnapshotView.CHUNK)
    expected = m.snapshot_bytes()
    view = m.snapshot_view()
    index = m.applied_index
    # Applied after the view was taken: changed, new and deleted keys.
    m.apply(index + 1, 1, encode(Put(b"k000000", b"changed")))
    m.apply(index + 2, 1, encode(Put(b"a-new-key", b"x")))
    m.apply(index + 3, 1, encode(Delete(b"k000007")))
    assert view.pack() == expected
    assert m.snapshot_bytes() != expected


async def test_node_snapshots_restore_to_their_index(tmp_path: Path) -> None:
    async with solo_node(tmp_path, snapshot_entries=40) as server, aiohttp.ClientSession() as http:
        url = server.cfg.advertise_client_url
        for i in range(120):
            async with http.put(f"{url}/v1/kv/key{i % 50}", data=b"%d" % i) as r:
                assert r.status == 200
        deadline = time.monotonic() + 10
        while server.node.snapshot_store.latest() is None:
            assert time.monotonic() < deadline, "no snapshot was saved"
            await asyncio.sleep(0.01)
        latest = server.node.snapshot_store.latest()
        assert latest is not None
        meta, data = latest
        restored = StateMachine()
        restored.restore(data)
        assert restored.applied_index == meta.index >= 40
        assert restored.snapshot_bytes() == data  # canonical: re-encodes to itself
        pauses = [
            s.value
            for family in server.metrics.snapshot_pause.collect()
            for s in family.samples
            if s.name.endswith("_count")
        ]
        assert pauses and pauses[0] >= 1

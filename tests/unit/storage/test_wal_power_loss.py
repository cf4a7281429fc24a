"""The crash-test ledger and `simulate_power_loss`: a power cut keeps exactly
what an fsync covered. With fsync on, every completed save survives; with the
unsafe fsync=False mode, acknowledged saves are lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft.types import HardState
from raftkv.storage import wal as wal_module
from raftkv.storage.errors import StorageError
from raftkv.storage.wal import simulate_power_loss

from .helpers import SMALL_SEGMENT, entries, open_wal, summary


class Killed(BaseException):
    """The process dies: raised from inside the WAL, caught by nobody in it."""


def test_completed_saves_survive_a_power_loss(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT, crash_test_ledger=True)
    for first in range(1, 101, 10):
        wal.save(HardState(1, 1, first), entries(first, first + 9, size=100))
    wal.compact(30)
    wal.close()
    assert simulate_power_loss(tmp_path) == {}
    wal, state = open_wal(tmp_path)
    assert summary(state) == (HardState(1, 1, 91), (30, 1), [(i, 1) for i in range(31, 101)])
    wal.close()


def test_bytes_of_a_killed_process_are_made_durable_by_the_next_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = open_wal(tmp_path, crash_test_ledger=True)
    wal.save(HardState(1, 1, 0), entries(1, 5))

    def killed_before_sync(fd: int) -> None:
        raise Killed

    monkeypatch.setattr(wal_module, "_datasync", killed_before_sync)
    with pytest.raises(Killed):
        wal.save(HardState(2, 2, 5), entries(6, 9, term=2))
    monkeypatch.undo()
    wal.close()  # the process is gone; its written bytes stay in the page cache

    wal, state = open_wal(tmp_path, crash_test_ledger=True)
    assert summary(state)[2][-1] == (9, 2)
    wal.close()
    # The restarted node now counts entries 6..9 as its log, so load synced them.
    assert simulate_power_loss(tmp_path) == {}
    wal, state = open_wal(tmp_path)
    assert summary(state)[2][-1] == (9, 2)
    wal.close()


def test_unsynced_bytes_are_dropped_by_a_power_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = open_wal(tmp_path, crash_test_ledger=True)
    wal.save(HardState(1, 1, 0), entries(1, 5))

    def killed_before_sync(fd: int) -> None:
        raise Killed

    monkeypatch.setattr(wal_module, "_datasync", killed_before_sync)
    with pytest.raises(Killed):
        wal.save(HardState(2, 2, 5), entries(6, 9, term=2))
    monkeypatch.undo()
    wal.close()
    dropped = simulate_power_loss(tmp_path)
    assert sum(dropped.values()) > 0
    wal, state = open_wal(tmp_path)
    assert summary(state) == (HardState(1, 1, 0), None, [(i, 1) for i in range(1, 6)])
    wal.close()


def test_unsafe_no_fsync_loses_acknowledged_saves(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, fsync=False, crash_test_ledger=True)
    wal.save(HardState(4, 2, 0), entries(1, 20))
    wal.close()
    simulate_power_loss(tmp_path)
    wal, state = open_wal(tmp_path)
    assert summary(state) == (HardState(), None, [])  # the vote is gone too: unsafe
    wal.close()


def test_power_loss_needs_the_ledger(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.save(None, entries(1, 1))
    wal.close()
    with pytest.raises(StorageError, match="crash_test_ledger"):
        simulate_power_loss(tmp_path)

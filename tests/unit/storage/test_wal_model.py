"""Random sequences of save / compact / reset / reopen / power loss on the WAL,
checked against MemoryRaftStore as the model (hypothesis stateful testing)."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftkv.raft.types import Entry, EntryType, HardState, SnapshotMeta
from raftkv.storage.memory import MemoryRaftStore
from raftkv.storage.wal import WriteAheadLog, simulate_power_loss

from .helpers import SMALL_SEGMENT, summary


class WALMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="wal-model-")
        self.model = MemoryRaftStore()
        self.wal = self._open()
        self.serial = 0

    def _open(self) -> WriteAheadLog:
        wal = WriteAheadLog(self.directory, segment_bytes=SMALL_SEGMENT, crash_test_ledger=True)
        state, expected = wal.load(), self.model.load()
        assert summary(state) == summary(expected)
        assert state.entries == expected.entries  # data and types too
        assert state.snapshot_record == expected.snapshot_record
        assert state.new_log == expected.new_log
        return wal

    def _last_term(self) -> int:
        durable = self.model.durable
        return durable.entries[-1].term if durable.entries else durable.base_term

    @rule(
        data=st.data(),
        count=st.integers(1, 12),
        size=st.integers(0, 400),
        with_hard_state=st.booleans(),
    )
    def append(self, data: st.DataObject, count: int, size: int, with_hard_state: bool) -> None:
        durable = self.model.durable
        first = data.draw(
            st.integers(durable.base_index + 1, durable.last_index + 1), label="first"
        )
        term_before = durable.term_at(first - 1)
        term = term_before + data.draw(st.integers(0, 2), label="term step")
        batch = []
        for index in range(first, first + count):
            self.serial += 1
            kind = EntryType.CONF_CHANGE if self.serial % 7 == 0 else EntryType.NORMAL
            payload = self.serial.to_bytes(4, "big") * (size // 4 + 1)
            batch.append(Entry(term, index, kind, payload[:size]))
        hard_state = HardState(term, self.serial % 3, first - 1) if with_hard_state else None
        self.model.save(hard_state, batch)
        self.wal.save(hard_state, batch)

    @rule(term=st.integers(0, 50), vote=st.integers(0, 5), commit=st.integers(0, 100))
    def save_hard_state(self, term: int, vote: int, commit: int) -> None:
        self.model.save(HardState(term, vote, commit), [])
        self.wal.save(HardState(term, vote, commit), [])

    @precondition(lambda self: self.model.durable.last_index > self.model.durable.base_index)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        durable = self.model.durable
        index = data.draw(st.integers(durable.base_index + 1, durable.last_index))
        self.model.compact(index)
        self.wal.compact(index)

    @rule(ahead=st.integers(0, 30), term_step=st.integers(0, 3))
    def reset_to_snapshot(self, ahead: int, term_step: int) -> None:
        durable = self.model.durable
        meta = SnapshotMeta(durable.last_index + ahead, self._last_term() + term_step)
        hard_state = HardState(meta.term, 0, meta.index)
        self.model.reset_to_snapshot(meta, hard_state)
        self.wal.reset_to_snapshot(meta, hard_state)

    @rule(ahead=st.integers(1, 30), term_step=st.integers(0, 3), with_hard_state=st.booleans())
    def record_snapshot(self, ahead: int, term_step: int, with_hard_state: bool) -> None:
        durable = self.model.durable
        meta = SnapshotMeta(durable.last_index + ahead, self._last_term() + term_step)
        hard_state = HardState(meta.term, 1, durable.hard_state.commit) if with_hard_state else None
        self.model.record_snapshot(meta, hard_state)
        self.wal.record_snapshot(meta, hard_state)

    @rule()
    def reopen(self) -> None:
        self.wal.close()
        self.wal = self._open()

    @rule()
    def power_loss(self) -> None:
        self.wal.close()
        assert simulate_power_loss(self.directory) == {}, "every completed save was synced"
        self.wal = self._open()

    @invariant()
    def positions_agree(self) -> None:
        assert self.wal.last_index == self.model.durable.last_index
        assert self.wal.base_index == self.model.durable.base_index

    def teardown(self) -> None:
        self.wal.close()
        shutil.rmtree(self.directory, ignore_errors=True)


WALMatchesModel.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWALMatchesModel = WALMatchesModel.TestCase

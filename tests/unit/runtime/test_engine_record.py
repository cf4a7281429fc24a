"""The consensus engine is recorded in the data directory at first start, and a start
with the other engine is refused before anything is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.runtime.identity import (
    CONSENSUS_FILE,
    EngineMismatchError,
    IdentityError,
    load_engine,
    resolve_engine,
)


@pytest.mark.parametrize("engine", ["raft", "multipaxos"])
def test_the_first_start_records_the_engine_and_later_starts_keep_it(
    tmp_path: Path, engine: str
) -> None:
    assert load_engine(tmp_path) is None
    assert resolve_engine(tmp_path, engine) == engine
    assert load_engine(tmp_path) == engine
    assert resolve_engine(tmp_path, engine) == engine  # again: accepted, unchanged


def test_the_other_engine_is_refused_with_both_names(tmp_path: Path) -> None:
    resolve_engine(tmp_path, "multipaxos")
    with pytest.raises(EngineMismatchError, match="multipaxos node.*--consensus raft"):
        resolve_engine(tmp_path, "raft")
    assert load_engine(tmp_path) == "multipaxos"  # the refusal changed nothing


def test_a_directory_from_before_the_choice_is_raft(tmp_path: Path) -> None:
    (tmp_path / "wal").mkdir()
    (tmp_path / "wal" / "0000000000000001.wal").write_bytes(b"x")
    with pytest.raises(EngineMismatchError, match="raft node"):
        resolve_engine(tmp_path, "multipaxos")
    assert not (tmp_path / CONSENSUS_FILE).exists()
    assert resolve_engine(tmp_path, "raft") == "raft"
    assert load_engine(tmp_path) == "raft"


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"engine": 3}', b'{"engine": ""}'])
def test_a_damaged_record_is_refused(tmp_path: Path, raw: bytes) -> None:
    (tmp_path / CONSENSUS_FILE).write_bytes(raw)
    with pytest.raises(IdentityError, match=CONSENSUS_FILE):
        resolve_engine(tmp_path, "raft")

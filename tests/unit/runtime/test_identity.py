"""Node identity: founders use member_id(name), joiners draw a fresh incarnation id once
and persist it; the persisted identity wins on every later start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftkv.runtime.config import InitialMember, NodeConfig
from raftkv.runtime.identity import (
    IDENTITY_FILE,
    MAX_ID,
    IdentityError,
    fresh_member_id,
    load_identity,
    member_id,
    resolve_identity,
    save_identity,
)


def test_a_founder_on_an_empty_dir_uses_the_name_id_and_persists_it(tmp_path: Path) -> None:
    identity = resolve_identity(tmp_path / "d", "n1", founder=True)
    assert (identity.id, identity.source) == (member_id("n1"), "founder")
    assert load_identity(tmp_path / "d") == ("n1", member_id("n1"))


def test_a_joiner_draws_a_fresh_id_once_and_keeps_it(tmp_path: Path) -> None:
    first = resolve_identity(tmp_path, "n4", founder=False)
    assert first.source == "fresh"
    assert first.id != member_id("n4") and 0 < first.id < MAX_ID
    # Every later start reads it back, founder flag or not.
    for founder in (False, True):
        again = resolve_identity(tmp_path, "n4", founder=founder)
        assert (again.id, again.source) == (first.id, "persisted")


def test_two_wipes_give_two_different_ids(tmp_path: Path) -> None:
    ids = {resolve_identity(tmp_path / str(i), "n4", founder=False).id for i in range(5)}
    assert len(ids) == 5
    assert len({fresh_member_id("n4") for _ in range(20)}) == 20


def test_a_data_dir_of_the_older_layout_keeps_the_name_id(tmp_path: Path) -> None:
    (tmp_path / "wal").mkdir()
    (tmp_path / "wal" / "00000001.wal").write_bytes(b"x")
    identity = resolve_identity(tmp_path, "n2", founder=False)
    assert (identity.id, identity.source) == (member_id("n2"), "legacy")
    assert load_identity(tmp_path) == ("n2", member_id("n2"))


def test_empty_state_directories_do_not_count_as_state(tmp_path: Path) -> None:
    for sub in ("wal", "snapshots", "checkpoints"):
        (tmp_path / sub).mkdir()
    assert resolve_identity(tmp_path, "n2", founder=False).source == "fresh"


def test_another_nodes_identity_file_is_refused(tmp_path: Path) -> None:
    save_identity(tmp_path, "n1", 42)
    with pytest.raises(IdentityError, match="belongs to node 'n1'"):
        resolve_identity(tmp_path, "n2", founder=True)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"name": "n1"}',
        '{"name": "n1", "id": 0}',
        '{"name": "n1", "id": 9007199254740992}',
        '{"name": "", "id": 5}',
        '{"name": "n1", "id": true}',
    ],
)
def test_a_damaged_identity_file_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / IDENTITY_FILE).write_text(text)
    with pytest.raises(IdentityError):
        resolve_identity(tmp_path, "n1", founder=True)


def test_save_leaves_no_temp_file_and_writes_plain_json(tmp_path: Path) -> None:
    save_identity(tmp_path, "n1", 77)
    assert sorted(p.name for p in tmp_path.iterdir()) == [IDENTITY_FILE]
    assert json.loads((tmp_path / IDENTITY_FILE).read_text()) == {"id": 77, "name": "n1"}


def test_config_id_is_the_resolved_id_and_founders_are_known(tmp_path: Path) -> None:
    initial = [InitialMember("n1", "h:1"), InitialMember("n2", "h:2")]
    founder = NodeConfig("n1", tmp_path, initial_cluster=initial)
    joiner = NodeConfig("n3", tmp_path, initial_cluster=initial)
    late = NodeConfig("n1", tmp_path, initial_cluster=initial, initial_cluster_state="existing")
    assert founder.is_founder and not joiner.is_founder and not late.is_founder
    assert founder.id == member_id("n1")
    joiner.node_id = 1234
    assert joiner.id == 1234

"""`raftkv recover` on data directories written with the real storage (no processes):
the plan, the rewrite, the refusals (docs/recovery.md, docs/contracts.md "Recover")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftkv.cli import main
from raftkv.fsm.machine import StateMachine
from raftkv.raft.core import Config, Raft
from raftkv.raft.types import ConfChange, ConfChangeType, Entry, EntryType, HardState
from raftkv.runtime.identity import (
    CONSENSUS_FILE,
    load_cluster_id,
    member_id,
    resolve_engine,
    save_cluster_id,
    save_identity,
)
from raftkv.runtime.recover import (
    BACKUP_PREFIX,
    ProbeResult,
    RecoverRefused,
    classify_status,
    probe,
    quorum_verdict,
    recover_data_dir,
)
from raftkv.storage.recovery import recover
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import WriteAheadLog

NAMES = ("n1", "n2", "n3")
OLD_CLUSTER = "ab" * 16


def _context(name: str, client_url: str = "") -> bytes:
    return json.dumps({"name": name, "peer_url": f"{name}:7380", "client_url": client_url}).encode()


def make_member_dir(
    tmp: Path,
    *,
    commit: int,
    normal: int = 5,
    learner: str | None = None,
    client_urls: dict[str, str] | None = None,
) -> Path:
    """n1's data directory of a 3-voter cluster (or n1 a learner): the bootstrap conf
    changes, then `normal` no-op entries at term 2, commit index `commit`."""
    urls = client_urls or {}
    data = tmp / "n1"
    save_identity(data, "n1", member_id("n1"), fsync=False)
    save_cluster_id(data, OLD_CLUSTER, fsync=False)
    entries = []
    for name in NAMES:
        kind = ConfChangeType.ADD_LEARNER if name == learner else ConfChangeType.ADD_VOTER
        cc = ConfChange(kind, member_id(name), _context(name, urls.get(name, "")))
        entries.append(Entry(1, len(entries) + 1, EntryType.CONF_CHANGE, cc.encode()))
    entries += [Entry(2, len(entries) + 1 + i, EntryType.NORMAL, b"") for i in range(normal)]
    with WriteAheadLog(data / "wal", fsync=False) as wal:
        wal.load()
        wal.save(HardState(term=2, vote=member_id("n2"), commit=commit), entries)
    return data


def reopen(data: Path) -> tuple[Raft, StateMachine, int]:
    """Start the core as `raftkv serve` would; return it, the replayed FSM, last index."""
    with WriteAheadLog(data / "wal", fsync=False) as wal:
        state = recover(wal, FileSnapshotStore(data / "snapshots", fsync=False)).state
    core = Raft(
        Config(id=member_id("n1")),
        hard_state=state.hard_state,
        snapshot=state.snapshot,
        entries=state.entries,
    )
    fsm = StateMachine()
    for e in state.entries:
        if e.type == EntryType.CONF_CHANGE:
            fsm.apply_conf_change(e.index, ConfChange.decode(e.data))
        else:
            fsm.apply(e.index, e.term, e.data)
    return core, fsm, state.entries[-1].index


def no_one_answers(url: str) -> ProbeResult:
    return ProbeResult(url, "unreachable", "connection refused")


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    data = make_member_dir(tmp_path, commit=5)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    outcome = recover_data_dir(data, prober=no_one_answers)
    assert outcome.new_cluster_id is None and outcome.backup is None
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert [m.name for m in outcome.plan.others] == sorted(["n2", "n3"], key=lambda n: member_id(n))
    summary = outcome.plan.summary()
    assert "log up to index 8 (term 2), commit index 5" in summary
    assert "entries 6..8 are beyond the commit index" in summary


def test_recover_makes_the_member_the_only_voter_and_keeps_every_entry(tmp_path: Path) -> None:
    data = make_member_dir(tmp_path, commit=5)
    old_wal = {p.name: p.read_bytes() for p in (data / "wal").glob("*.wal")}
    outcome = recover_data_dir(data, yes=True, prober=no_one_answers)

    new_id = load_cluster_id(data)
    assert new_id == outcome.new_cluster_id and new_id != OLD_CLUSTER
    core, fsm, last = reopen(data)
    me = member_id("n1")
    assert core.conf.voters == {me} and not core.conf.learners
    # The old entries 1..8 are kept (three beyond the old commit index), then the two
    # REMOVEs; all committed, in a new term, with this node's vote.
    assert last == 10 and core.commit == 10
    assert (core.term, core.vote) == (3, me)
    assert set(fsm.members) == {me}
    assert set(fsm.removed_members) == {member_id("n2"), member_id("n3")}
    # The backup holds the directory as it was, byte for byte.
    backup = outcome.backup
    assert backup is not None and backup.name.startswith(BACKUP_PREFIX)
    assert load_cluster_id(backup) == OLD_CLUSTER
    assert {p.name: p.read_bytes() for p in (backup / "wal").glob("*.wal")} == old_wal


def test_a_learner_is_promoted(tmp_path: Path) -> None:
    data = make_member_dir(tmp_path, commit=8, learner="n1")
    recover_data_dir(data, yes=True, prober=no_one_answers)
    core, fsm, _ = reopen(data)
    assert core.conf.voters == {member_id("n1")} and not core.conf.learners
    assert fsm.members[member_id("n1")]["role"] == "voter"
    assert fsm.members[member_id("n1")]["name"] == "n1"


def test_refuses_while_the_old_cluster_has_a_leader(tmp_path: Path) -> None:
    data = make_member_dir(
        tmp_path, commit=8, client_urls={"n2": "http://n2:7379", "n3": "http://n3:7379"}
    )
    asked: list[str] = []

    def n2_leads(url: str) -> ProbeResult:
        asked.append(url)
        if url == "http://n2:7379":
            return classify_status(
                url,
                200,
                json.dumps(
                    {
                        "name": "n2",
                        "cluster_id": OLD_CLUSTER,
                        "role": "leader",
                        "leader": {"id": member_id("n2"), "name": "n2"},
                    }
                ).encode(),
            )
        return no_one_answers(url)

    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    with pytest.raises(RecoverRefused, match="still has a leader"):
        recover_data_dir(data, yes=True, prober=n2_leads)
    assert sorted(asked) == ["http://n2:7379", "http://n3:7379"]
    # Refused: nothing changed, no backup left behind.
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    # --force (only together with --yes) overrides.
    with pytest.raises(RecoverRefused):
        recover_data_dir(data, force=True, prober=n2_leads)
    outcome = recover_data_dir(data, yes=True, force=True, prober=n2_leads)
    assert outcome.new_cluster_id is not None and any("--force" in n for n in outcome.notes)


def test_quorum_verdict() -> None:
    assert quorum_verdict([no_one_answers("a"), no_one_answers("b")]) is None
    no_leader = classify_status(
        "a", 200, json.dumps({"name": "n2", "leader": None, "role": "pre_candidate"}).encode()
    )
    assert no_leader.outcome == "no_leader" and quorum_verdict([no_leader]) is None
    for unreadable in (
        classify_status("a", 401, b""),
        classify_status("a", 200, b"<html>"),
        classify_status("a", 200, b"[]"),
    ):
        assert unreadable.outcome == "unknown"
        assert "could not be read" in (quorum_verdict([unreadable]) or "")


def test_only_http_urls_are_probed() -> None:
    for url in ("file:///etc/passwd", "ftp://n2/", "n2:7379"):
        assert probe(url, 1.0, None).outcome == "unknown", url


def test_refuses_a_running_member(tmp_path: Path) -> None:
    data = make_member_dir(tmp_path, commit=8)
    with (
        WriteAheadLog(data / "wal", fsync=False),
        pytest.raises(RecoverRefused, match="is running"),
    ):
        recover_data_dir(data, yes=True, prober=no_one_answers)


def test_refuses_without_a_log_or_with_another_name(tmp_path: Path) -> None:
    with pytest.raises(RecoverRefused, match="no WAL segment"):
        recover_data_dir(tmp_path, prober=no_one_answers)
    data = make_member_dir(tmp_path, commit=8)
    with pytest.raises(RecoverRefused, match="belongs to 'n1'"):
        recover_data_dir(data, name="n2", prober=no_one_answers)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_member_dir(tmp_path, commit=8)
    assert main(["recover", "--data-dir", str(data)]) == 2  # the plan only
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("kept: n1")
    assert "add --yes" in err
    assert main(["recover", "--data-dir", str(data), "--force"]) == 2
    assert "only takes effect with --yes" in capsys.readouterr().err
    assert main(["recover", "--data-dir", str(data), "--yes"]) == 0
    out, _ = capsys.readouterr()
    assert "recovered: n1 is the only voter of cluster" in out
    assert main(["recover", "--data-dir", str(tmp_path / "missing")]) == 2


def test_a_damaged_wal_is_refused_and_leaves_no_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_member_dir(tmp_path, commit=8)
    segment = next((data / "wal").glob("*.wal"))
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # inside a complete batch, not a torn tail
    segment.write_bytes(bytes(raw))
    assert main(["recover", "--data-dir", str(data), "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raftkv recover: cannot read") and segment.name in err, err
    assert load_cluster_id(data) == OLD_CLUSTER
    assert not list(data.glob("*recover-backup-*"))


def test_a_raft_log_recorded_as_multipaxos_is_refused_unchanged(tmp_path: Path) -> None:
    # What the directory says it is decides how its log is read: a Raft log read as a
    # ballot log fails its checks, and nothing is changed (no backup left either).
    data = make_member_dir(tmp_path, commit=5)
    resolve_engine(data, "raft")
    (data / CONSENSUS_FILE).write_text('{"engine": "multipaxos"}')
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="not a Multi-Paxos slot record"):
        recover_data_dir(data, yes=True, prober=no_one_answers)
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


def test_an_interrupted_recover_is_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between `cluster.json` and the WAL batch leaves a new cluster id and the
    old log (no peer admits it); recover run again finishes it, the first backup kept."""
    data = make_member_dir(tmp_path, commit=5)
    wal_before = {p.name: p.read_bytes() for p in (data / "wal").glob("*.wal")}

    def crash(self: WriteAheadLog, *args: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(WriteAheadLog, "save", crash)
    with pytest.raises(OSError, match="power lost"):
        recover_data_dir(data, yes=True, prober=no_one_answers, now=1_000_000)
    monkeypatch.undo()
    first_id = load_cluster_id(data)
    assert first_id != OLD_CLUSTER
    assert {p.name: p.read_bytes() for p in (data / "wal").glob("*.wal")} == wal_before
    (first_backup,) = data.glob("recover-backup-*")
    assert load_cluster_id(first_backup) == OLD_CLUSTER

    outcome = recover_data_dir(data, yes=True, prober=no_one_answers, now=1_000_060)
    assert load_cluster_id(data) == outcome.new_cluster_id not in (OLD_CLUSTER, first_id)
    core, _, last = reopen(data)
    assert core.conf.voters == {member_id("n1")} and core.commit == last == 10
    assert len(list(data.glob("recover-backup-*"))) == 2

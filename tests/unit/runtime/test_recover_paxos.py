"""`raftkv recover` on a Multi-Paxos data directory written with the real storage (no
processes): the rewrite of the ballot log, read back as `raftkv serve --consensus
multipaxos` starts (docs/recovery.md, docs/consensus.md "Recover")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftkv.cli import main
from raftkv.consensus import PaxosEngine, ballot, ballot_round
from raftkv.fsm.machine import StateMachine
from raftkv.paxos import Config
from raftkv.raft.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    StateRole,
)
from raftkv.runtime.identity import (
    load_cluster_id,
    member_id,
    resolve_engine,
    save_cluster_id,
    save_identity,
)
from raftkv.runtime.recover import RecoverRefused, recover_data_dir
from raftkv.storage.ballots import BallotLog
from raftkv.storage.recovery import recover
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import WriteAheadLog
from tests.unit.runtime.test_recover import NAMES, OLD_CLUSTER, _context, no_one_answers

ME = member_id("n1")
PROMISED = ballot(7, member_id("n3"))  # the promise: a round above every accepted ballot
ACCEPTED = ballot(5, member_id("n2"))  # the ballot the open slots were accepted at


def value(i: int) -> bytes:
    return f"value {i}".encode()  # never decoded as a command: applied as invalid, kept


def make_paxos_dir(tmp: Path, *, learner: str | None = None, hole: bool = True) -> Path:
    """n1's Multi-Paxos data directory: the three members' conf changes (ballot 0),
    values at slots 4..8 accepted at ACCEPTED, chosen prefix 5, the promise PROMISED,
    and (with `hole`) slot 7 a hole: the ballot-0 no-op the engine writes for one."""
    data = tmp / "n1"
    data.mkdir()
    resolve_engine(data, "multipaxos", fsync=False)  # as the first start records it
    save_identity(data, "n1", ME, fsync=False)
    save_cluster_id(data, OLD_CLUSTER, fsync=False)
    entries = []
    for name in NAMES:
        kind = ConfChangeType.ADD_LEARNER if name == learner else ConfChangeType.ADD_VOTER
        cc = ConfChange(kind, member_id(name), _context(name))
        entries.append(Entry(0, len(entries) + 1, EntryType.CONF_CHANGE, cc.encode()))
    for s in range(4, 9):
        if hole and s == 7:
            entries.append(Entry(0, s, EntryType.NORMAL, b""))
        else:
            entries.append(Entry(ACCEPTED, s, EntryType.NORMAL, value(s)))
    with WriteAheadLog(data / "wal", fsync=False) as wal:
        wal.load()
        BallotLog(wal).save(HardState(term=PROMISED, vote=0, commit=5), entries)
    return data


def reopen(data: Path) -> tuple[PaxosEngine, StateMachine, list[Entry]]:
    """Start the engine as `raftkv serve --consensus multipaxos` would."""
    with WriteAheadLog(data / "wal", fsync=False) as wal:
        state = recover(BallotLog(wal), FileSnapshotStore(data / "snapshots", fsync=False)).state
    core = PaxosEngine(
        Config(id=ME), hard_state=state.hard_state, snapshot=state.snapshot, entries=state.entries
    )
    fsm = StateMachine()
    for e in state.entries:
        if e.index > core.commit:
            break
        if e.type == EntryType.CONF_CHANGE:
            fsm.apply_conf_change(e.index, ConfChange.decode(e.data))
        else:
            fsm.apply(e.index, e.term, e.data)
    return core, fsm, state.entries


def test_dry_run_names_the_open_slots_and_changes_nothing(tmp_path: Path) -> None:
    data = make_paxos_dir(tmp_path)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    outcome = recover_data_dir(data, prober=no_one_answers)
    assert outcome.new_cluster_id is None
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    summary = outcome.plan.summary()
    # The position in /v1/status's terms: the last slot's ballot round.
    assert "log up to index 8 (term 5), commit index 5" in summary, summary
    assert "slots 6..8 are beyond the chosen prefix" in summary, summary


def test_recover_makes_the_acceptor_the_only_voter_with_every_accepted_value(
    tmp_path: Path,
) -> None:
    data = make_paxos_dir(tmp_path)
    outcome = recover_data_dir(data, yes=True, prober=no_one_answers)
    assert load_cluster_id(data) == outcome.new_cluster_id != OLD_CLUSTER
    core, fsm, entries = reopen(data)
    assert core.conf.voters == {ME} and not core.conf.learners
    # Slots 1..8 as they were (values and ballots), the two REMOVEs after them, all chosen.
    by_slot = {e.index: e for e in entries}
    assert sorted(by_slot) == list(range(1, 11)) and core.commit == 10
    for s in (4, 5, 6, 8):
        assert (by_slot[s].term, by_slot[s].data) == (ACCEPTED, value(s)), s
    # The hole is a chosen no-op now (what phase 1 would have filled it with), no value.
    assert (by_slot[7].term, by_slot[7].type, by_slot[7].data) == (0, EntryType.NORMAL, b"")
    # The promise went up, to a ballot of this node's own, one round above the old one;
    # the REMOVEs carry it.
    assert core.promised == ballot(8, ME) > PROMISED
    assert {by_slot[s].term for s in (9, 10)} == {ballot(8, ME)}
    assert set(fsm.members) == {ME}
    assert set(fsm.removed_members) == {member_id("n2"), member_id("n3")}
    assert fsm.applied_index == 10


def test_the_recovered_acceptor_leads_alone_and_chooses_new_values(tmp_path: Path) -> None:
    data = make_paxos_dir(tmp_path)
    recover_data_dir(data, yes=True, prober=no_one_answers)
    core, _, _ = reopen(data)
    for _ in range(20 * core.cfg.election_tick):  # bounded: a few election timeouts
        if core.role == StateRole.LEADER:
            break
        core.tick()
        core.advance(core.ready())
    assert core.role == StateRole.LEADER and ballot_round(core.promised) > 8
    slot = core.last_index() + 1
    core.propose(b"after recovery")
    core.advance(core.ready())
    assert core.commit == slot and core.log[slot].data == b"after recovery"


def test_the_promise_never_goes_backwards(tmp_path: Path) -> None:
    # A directory whose slots carry a ballot above the recorded promise (a hand-made
    # disk; the engine never writes one): the new ballot is above both.
    data = make_paxos_dir(tmp_path, hole=False)
    with WriteAheadLog(data / "wal", fsync=False) as wal:
        wal.load()
        BallotLog(wal).save(
            HardState(term=ballot(3, ME), vote=0, commit=5),
            [Entry(ballot(9, member_id("n2")), 9, EntryType.NORMAL, value(9))],
        )
    recover_data_dir(data, yes=True, prober=no_one_answers)
    core, _, _ = reopen(data)
    assert core.promised == ballot(10, ME)


def test_a_learner_is_promoted(tmp_path: Path) -> None:
    data = make_paxos_dir(tmp_path, learner="n1")
    recover_data_dir(data, yes=True, prober=no_one_answers)
    core, fsm, _ = reopen(data)
    assert core.conf.voters == {ME} and not core.conf.learners
    assert fsm.members[ME]["role"] == "voter"


def test_an_interrupted_recover_is_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between `cluster.json` and the WAL batch: a new cluster id and the old
    log; recover run again finishes it (the first backup stays, byte for byte)."""
    data = make_paxos_dir(tmp_path)
    wal_before = {p.name: p.read_bytes() for p in (data / "wal").glob("*.wal")}

    def crash(self: BallotLog, *args: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(BallotLog, "save", crash)
    with pytest.raises(OSError, match="power lost"):
        recover_data_dir(data, yes=True, prober=no_one_answers, now=1_000_000)
    monkeypatch.undo()
    first_id = load_cluster_id(data)
    assert first_id != OLD_CLUSTER
    assert {p.name: p.read_bytes() for p in (data / "wal").glob("*.wal")} == wal_before
    (first_backup,) = data.glob("recover-backup-*")
    assert load_cluster_id(first_backup) == OLD_CLUSTER
    # The member as left is no voter of anything new yet: the old three voters.
    core, _, _ = reopen(data)
    assert len(core.conf.voters) == 3

    outcome = recover_data_dir(data, yes=True, prober=no_one_answers, now=1_000_060)
    assert load_cluster_id(data) == outcome.new_cluster_id not in (OLD_CLUSTER, first_id)
    core, _, _ = reopen(data)
    assert core.conf.voters == {ME} and core.commit == 10
    assert len(list(data.glob("recover-backup-*"))) == 2


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_paxos_dir(tmp_path)
    assert main(["recover", "--data-dir", str(data)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("kept: n1") and "add --yes" in err
    assert main(["recover", "--data-dir", str(data), "--yes"]) == 0
    assert "recovered: n1 is the only voter of cluster" in capsys.readouterr().out


def test_refuses_an_unknown_engine(tmp_path: Path) -> None:
    data = make_paxos_dir(tmp_path)
    (data / "consensus.json").write_text(json.dumps({"engine": "epaxos"}))
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    with pytest.raises(RecoverRefused, match="holds a epaxos node"):
        recover_data_dir(data, yes=True, prober=no_one_answers)
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before

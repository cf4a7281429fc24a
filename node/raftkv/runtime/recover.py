"""`raftkv recover`: make a stopped member the only voter of a new cluster (issue 13).

The way out of a lost majority, like etcd's `--force-new-cluster`. It works on the data
directory of a STOPPED member and:

1. refuses when the member is running: the WAL's `LOCK` is flock'ed by a live node
   (`WriteAheadLog` raises `DirectoryLockedError`);
2. reads the member's state as a start would (`storage.recovery.recover`: the newest
   snapshot and the log, every refusal of a damaged WAL included) and replays it into a
   state machine to learn the membership directory (names, client URLs);
3. asks every other member it knows a client URL of for `/v1/status` (plus `--endpoints`)
   and refuses when any answers with a leader, or answers something it cannot read:
   a leader only stays leader while a quorum hears it (check-quorum), so the old cluster
   is alive and a second one would split the data (override: `--force`);
4. with `--yes` (without it, it only prints the plan): copies `wal/`, `snapshots/`,
   `cluster.json` and `identity.json` to `<data-dir>/recover-backup-<UTC time>/` (before
   anything is read, so byte for byte what was there), writes a NEW cluster id
   (`cluster.json`), then appends ONE WAL batch (one write, one fdatasync: all or
   nothing): a REMOVE conf change for every other member (an ADD_VOTER for this one if
   it was a learner) in term T+1, with the hard state (term T+1, vote = this node,
   commit = the new last index).

Why an appended batch and not a new snapshot: the log is kept as it is (every entry,
committed or not), the write is the WAL's own atomic append, and the node starts through
its ordinary restart path: the core applies the committed conf changes at start
(`raft.core.Raft.__init__`), so it comes up as the only voter and elects itself.

Entries beyond the member's commit index are kept and the new cluster commits them
(`commit` = the new last index; a single voter could not do otherwise: a leader never
drops its own entries). They may or may not have been committed by the old cluster, and
the commit index on disk lags what the node knew (a commit-only change is written with the
next batch), so dropping them could lose acknowledged writes. etcd's
`--force-new-cluster` drops entries beyond its on-disk commit index instead; we keep
them (docs/recovery.md): a write whose client got no answer (or an error) may then
appear, which is allowed for an operation of unknown outcome. What is lost: whatever
the old cluster committed beyond this member's last index (only the lost members had it).

On a Multi-Paxos data directory (`consensus.json` says `multipaxos`) the same steps,
on the same WAL read through `storage.ballots` (the ballot log, checked as a start
checks it, then decoded): the REMOVEs go to the slots after the last one, at a ballot of
this node's own one round above every ballot it promised or accepted; the promise is
raised to that ballot (it never goes backwards) and the chosen prefix covers every slot.
Slots beyond the old chosen prefix (accepted, not known chosen) keep their values and
ballots and become chosen: exactly what this node's phase 1 as the only acceptor would
adopt (its own accepted values; a hole, a ballot-0 no-op on disk, becomes a chosen
no-op, as phase 1 fills it). Dropping them could lose acknowledged writes, as on Raft
(docs/recovery.md, docs/consensus.md). No slot's value is invented or changed.

The removed members become tombstones in the replicated directory, and the cluster id
is new: a member of the old cluster that comes back is refused twice over (`wrong_cluster`
in the handshake, and its id is removed). Old members come back with EMPTY data
directories, as learners (`raftkv members add`), then are promoted.

An interrupted recover (crash between `cluster.json` and the WAL batch) leaves a node
with a new cluster id and the old membership: no peer admits it, so it cannot do harm;
run recover again. The backup is never deleted by raftkv: remove it once the recovered
cluster has its members back (docs/recovery.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.consensus import (
    NONE,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    ballot,
    ballot_round,
)
from raftkv.fsm.machine import StateMachine
from raftkv.fsm.members import LEARNER
from raftkv.runtime.identity import (
    CLUSTER_FILE,
    IDENTITY_FILE,
    IdentityError,
    load_cluster_id,
    load_engine,
    load_identity,
    member_id,
    new_cluster_id,
    save_cluster_id,
)
from raftkv.storage.ballots import BallotLog
from raftkv.storage.errors import DirectoryLockedError, StorageError
from raftkv.storage.fsutil import fsync_directory
from raftkv.storage.recovery import recover
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import LOCK_NAME, WriteAheadLog, list_segments

RAFT = "raft"
MULTIPAXOS = "multipaxos"
ENGINES = (RAFT, MULTIPAXOS)
EXIT_OK = 0
EXIT_REFUSED = 2
BACKUP_PREFIX = "recover-backup-"
DEFAULT_PROBE_TIMEOUT = 3.0

EXAMPLES = """examples:
  raftkv recover --data-dir /var/lib/raftkv/data             # show the plan, change nothing
  raftkv recover --data-dir /var/lib/raftkv/data --name demo-0 --yes
  raftkv recover --data-dir ./n1 --yes --endpoints http://10.0.0.2:7379,http://10.0.0.3:7379"""


class RecoverRefused(Exception):
    """recover will not (or cannot) proceed; the message says why and what to do."""


# --- the plan (pure) ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str
    role: str
    client_url: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What recover keeps and what it writes, from the member's state on disk.
    `term`, `last_term`: as `/v1/status` shows them (on Multi-Paxos a ballot's round);
    `entries`, `hard_state`: in the core's values (storage encodes them)."""

    name: str
    id: int
    cluster_id: str | None
    term: int
    commit: int
    last_index: int
    last_term: int
    others: tuple[Member, ...]
    self_role: str
    entries: tuple[Entry, ...] = field(default=())
    hard_state: HardState = field(default_factory=HardState)
    engine: str = RAFT

    def summary(self) -> str:
        """The one line: what is kept, what may be lost."""
        if self.last_index <= self.commit:
            uncommitted = ""
        elif self.engine == MULTIPAXOS:
            uncommitted = (
                f"; slots {self.commit + 1}..{self.last_index} are beyond the chosen "
                "prefix (accepted, not known chosen): kept, and the new cluster chooses "
                "them (a hole as a no-op)"
            )
        else:
            uncommitted = (
                f"; entries {self.commit + 1}..{self.last_index} are beyond the commit "
                "index: kept, and the new cluster commits them"
            )
        return (
            f"kept: {self.name} (id {self.id}) log up to index {self.last_index} "
            f"(term {self.last_term}), commit index {self.commit}{uncommitted}; "
            f"may be lost: anything the old cluster committed after index "
            f"{self.last_index} (only the lost members had it)"
        )


def plan_recovery(
    *,
    name: str,
    mid: int,
    cluster_id: str | None,
    hard_state: HardState,
    last_index: int,
    last_term: int,
    members: dict[int, dict[str, str]],
    engine: str = RAFT,
    highest_ballot: int = 0,
) -> Plan:
    """The WAL batch that makes `mid` the only voter: REMOVE every other member, ADD_VOTER
    itself if it was a learner, in term T+1 with vote = itself and everything committed.
    `members`: the replicated directory ({id: {"name", "client_url", "role", ...}}).

    Multi-Paxos (`hard_state`, `last_term` in the core's values: the promised ballot,
    the last slot's ballot; `highest_ballot`: the highest any slot carries): the same
    changes at a ballot of `mid`'s own in the round above every ballot it promised or
    accepted (the promise only rises), the promise raised to it, and every slot chosen.
    The slots beyond the chosen prefix keep their values and ballots: what this
    acceptor's phase 1 as the only acceptor would adopt (its own accepted values; a
    hole, a ballot-0 no-op on disk, becomes a chosen no-op, as phase 1 fills it)."""
    me = members.get(mid)
    if me is None:
        raise RecoverRefused(
            f"{name} (id {mid}) is not a member in its own membership directory (it was "
            "removed, or never added): it cannot be recovered as the only voter"
        )
    others = tuple(
        Member(m, info.get("name", ""), info.get("role", ""), info.get("client_url", ""))
        for m, info in members.items()
        if m != mid
    )
    if engine == MULTIPAXOS:
        top = max(hard_state.term, last_term, highest_ballot)
        term = ballot(ballot_round(top) + 1, mid)
        vote = NONE  # unused by Paxos: the promise is the whole ballot
        shown_term, shown_last_term = ballot_round(hard_state.term), ballot_round(last_term)
    else:
        term = max(hard_state.term, last_term) + 1
        vote = mid
        shown_term, shown_last_term = hard_state.term, last_term
    changes = [
        ConfChange(ConfChangeType.REMOVE, m.id, json.dumps({"name": m.name}).encode())
        for m in others
    ]
    if me.get("role") == LEARNER:
        context = {k: me.get(k, "") for k in ("name", "peer_url", "client_url")}
        changes.append(
            ConfChange(ConfChangeType.ADD_VOTER, mid, json.dumps(context, sort_keys=True).encode())
        )
    entries = tuple(
        Entry(term, last_index + i, EntryType.CONF_CHANGE, cc.encode())
        for i, cc in enumerate(changes, start=1)
    )
    new_last = last_index + len(entries)
    return Plan(
        name=name,
        id=mid,
        cluster_id=cluster_id,
        term=shown_term,
        commit=hard_state.commit,
        last_index=last_index,
        last_term=shown_last_term,
        others=others,
        self_role=me.get("role", ""),
        entries=entries,
        hard_state=HardState(term=term, vote=vote, commit=new_last),
        engine=engine,
    )


# --- probing the old cluster ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str
    outcome: str  # "leader" | "no_leader" | "unreachable" | "unknown"
    detail: str


def classify_status(url: str, status: int, body: bytes) -> ProbeResult:
    """What one `/v1/status` answer says about the old cluster."""
    if status != 200:
        return ProbeResult(url, "unknown", f"HTTP {status}")
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ProbeResult(url, "unknown", "not JSON")
    if not isinstance(parsed, dict):
        return ProbeResult(url, "unknown", "not a status object")
    leader = parsed.get("leader")
    name = parsed.get("name")
    cluster = parsed.get("cluster_id")
    who = f"{name} (cluster {cluster})"
    if isinstance(leader, dict) and leader.get("id"):
        return ProbeResult(url, "leader", f"{who} follows leader {leader.get('name')!r}")
    return ProbeResult(url, "no_leader", f"{who} has no leader (role {parsed.get('role')})")


def probe(
    url: str, timeout: float, context: ssl.SSLContext | None, headers: dict[str, str] | None = None
) -> ProbeResult:
    """GET `url`/v1/status once. `headers`: e.g. the bearer token of a secure cluster
    (its status needs the `read` role; without it the answer is 401: "unknown")."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        # The directory's URLs came from whoever added members: never file:// or others.
        return ProbeResult(url, "unknown", "not an http(s) URL")
    request = urllib.request.Request(url.rstrip("/") + "/v1/status", headers=headers or {})
    try:
        with urllib.request.urlopen(
            request,
            timeout=timeout,  # noqa: S310 - http(s) only
            context=context,
        ) as resp:
            return classify_status(url, resp.status, resp.read(1 << 20))
    except urllib.error.HTTPError as exc:
        return classify_status(url, exc.code, b"")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLError):
            # Something speaks TLS there: alive, but we cannot read its answer.
            return ProbeResult(url, "unknown", f"TLS error: {reason}")
        return ProbeResult(url, "unreachable", str(reason))
    except (TimeoutError, ConnectionError, OSError) as exc:
        return ProbeResult(url, "unreachable", str(exc) or type(exc).__name__)


def quorum_verdict(results: Sequence[ProbeResult]) -> str | None:
    """Why recover must refuse, or None. Any leader means a live quorum (check-quorum:
    a leader steps down without one); an answer we cannot read might be one."""
    leaders = [r for r in results if r.outcome == "leader"]
    unknown = [r for r in results if r.outcome == "unknown"]
    if leaders:
        return "the old cluster still has a leader, so a quorum is alive: " + "; ".join(
            f"{r.url}: {r.detail}" for r in leaders
        )
    if unknown:
        return (
            "members answered but their status could not be read (a live cluster "
            "cannot be ruled out): " + "; ".join(f"{r.url}: {r.detail}" for r in unknown)
        )
    return None


# --- the data directory (I/O) ---------------------------------------------------------
def _resolve_name(data_dir: Path, name: str | None) -> tuple[str, int]:
    persisted = load_identity(data_dir)
    if persisted is not None:
        saved, mid = persisted
        if name is not None and name != saved:
            raise RecoverRefused(f"{data_dir / IDENTITY_FILE} belongs to {saved!r}, not {name!r}")
        return saved, mid
    if name is None:
        raise RecoverRefused(
            f"{data_dir} has no {IDENTITY_FILE}: pass --name (the member's "
            "name, as given to `raftkv serve --name`)"
        )
    return name, member_id(name)


def _copy_tree_synced(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(LOCK_NAME))
    for root, _, files in os.walk(dst):
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(root)


def make_backup(data_dir: Path, now: float | None = None) -> Path:
    """Copy what recover changes to `<data-dir>/recover-backup-<UTC time>/` (fsynced)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    final = data_dir / f"{BACKUP_PREFIX}{stamp}"
    if final.exists():
        raise RecoverRefused(f"{final} exists already: wait a second and run again")
    partial = data_dir / f".{BACKUP_PREFIX}{stamp}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for sub in ("wal", "snapshots"):
        if (data_dir / sub).is_dir():
            _copy_tree_synced(data_dir / sub, partial / sub)
    for name in (CLUSTER_FILE, IDENTITY_FILE):
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, partial / name)
            fd = os.open(partial / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_directory(partial)
    os.replace(partial, final)
    fsync_directory(data_dir)
    return final


@dataclass(slots=True)
class Outcome:
    plan: Plan
    probes: list[ProbeResult]
    backup: Path | None = None
    new_cluster_id: str | None = None
    notes: list[str] = field(default_factory=list)


def recover_data_dir(
    data_dir: Path,
    *,
    name: str | None = None,
    yes: bool = False,
    force: bool = False,
    endpoints: Sequence[str] = (),
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
    probe_headers: dict[str, str] | None = None,
    prober: Callable[[str], ProbeResult] | None = None,
    now: float | None = None,
) -> Outcome:
    """Plan and (with `yes`) perform a recovery; raises RecoverRefused with the reason.
    `now`: the backup's time stamp (default: the clock)."""
    wal_dir = data_dir / "wal"
    if not data_dir.is_dir():
        raise RecoverRefused(f"{data_dir} is not a directory")
    if not wal_dir.is_dir() or not list_segments(wal_dir):
        raise RecoverRefused(
            f"{wal_dir} holds no WAL segment: there is nothing to recover "
            "from (a member without a log cannot become the cluster)"
        )
    engine = load_engine(data_dir) or RAFT
    if engine not in ENGINES:
        raise RecoverRefused(
            f"{data_dir} holds a {engine} node: `raftkv recover` knows the engines "
            f"{', '.join(ENGINES)} only"
        )
    node_name, mid = _resolve_name(data_dir, name)
    try:
        wal = WriteAheadLog(wal_dir)
    except DirectoryLockedError:
        raise RecoverRefused(
            f"{node_name} is running ({wal_dir / LOCK_NAME} is locked by a "
            "live process): stop it first"
        ) from None
    try:
        backup = make_backup(data_dir, now) if yes else None
        try:
            check = prober or (lambda url: probe(url, probe_timeout, ssl_context, probe_headers))
            outcome = _plan_and_apply(
                data_dir,
                wal,
                node_name,
                mid,
                engine=engine,
                yes=yes,
                force=force,
                endpoints=endpoints,
                prober=check,
                backup=backup,
            )
        except BaseException:
            if backup is not None and load_cluster_id(data_dir) == _backup_cluster_id(backup):
                # Nothing was changed (the WAL is written last): drop the useless backup.
                shutil.rmtree(backup, ignore_errors=True)
            raise
        return outcome
    finally:
        wal.close()


def _backup_cluster_id(backup: Path) -> str | None:
    try:
        return load_cluster_id(backup)
    except IdentityError:
        return None


def _plan_and_apply(
    data_dir: Path,
    wal: WriteAheadLog,
    name: str,
    mid: int,
    *,
    engine: str,
    yes: bool,
    force: bool,
    endpoints: Sequence[str],
    prober: Callable[[str], ProbeResult],
    backup: Path | None,
) -> Outcome:
    cluster_id = load_cluster_id(data_dir)
    prior = [str(data_dir / IDENTITY_FILE)] if (data_dir / IDENTITY_FILE).exists() else []
    # Multi-Paxos: the same WAL in its disk shape (storage.ballots); recovery checks it as
    # a start does, then decodes ballots and the promise into the core's values.
    store: WriteAheadLog | BallotLog = BallotLog(wal) if engine == MULTIPAXOS else wal
    recovered = recover(store, FileSnapshotStore(data_dir / "snapshots"), prior_state=prior)
    state = recovered.state
    fsm = StateMachine()
    if state.snapshot is not None and recovered.snapshot_data is not None:
        fsm.restore(recovered.snapshot_data)
    for e in state.entries:  # every entry, committed or not: who the members are
        if e.index <= fsm.applied_index:
            continue
        if e.type == EntryType.CONF_CHANGE:
            fsm.apply_conf_change(e.index, ConfChange.decode(e.data))
        else:
            fsm.apply(e.index, e.term, e.data)
    last = state.entries[-1] if state.entries else None
    snap = state.snapshot
    last_index = last.index if last else (snap.index if snap else 0)
    last_term = last.term if last else (snap.term if snap else 0)
    plan = plan_recovery(
        name=name,
        mid=mid,
        cluster_id=cluster_id,
        hard_state=state.hard_state,
        last_index=last_index,
        last_term=last_term,
        members=fsm.members,
        engine=engine,
        highest_ballot=max((e.term for e in state.entries), default=0),
    )

    urls = list(
        dict.fromkeys(
            [m.client_url for m in plan.others if m.client_url] + [u for u in endpoints if u]
        )
    )
    notes = [
        f"{m.name} (id {m.id}): no client URL in the membership, not asked "
        "(pass it with --endpoints)"
        for m in plan.others
        if not m.client_url
    ]
    with ThreadPoolExecutor(max(1, min(8, len(urls)))) as pool:
        probes = list(pool.map(prober, urls))
    outcome = Outcome(plan, probes, notes=notes)
    verdict = quorum_verdict(probes)
    if verdict is not None and not (force and yes):
        raise RecoverRefused(
            f"refusing to recover {name}: {verdict}. Recovering now would make a second "
            "cluster that accepts writes next to the old one (split brain). If those "
            "members are really gone for good, or you accept that, pass --force --yes"
        )
    if verdict is not None:
        outcome.notes.append(f"--force: {verdict}")
    if not yes:
        return outcome
    assert backup is not None
    outcome.backup = backup
    outcome.new_cluster_id = new_cluster_id()
    # The cluster id first: a crash before the WAL batch leaves a member no peer admits.
    save_cluster_id(data_dir, outcome.new_cluster_id)
    store.save(plan.hard_state, list(plan.entries))
    return outcome


# --- the command ----------------------------------------------------------------------
def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "recover",
        help="make a stopped member the only voter of a new cluster (quorum lost)",
        description=textwrap.fill(
            "Recover from the loss of a majority: rewrite a STOPPED member's data directory "
            "so that it is the only voter of a new cluster (new cluster id), keeping its "
            "data and its whole log. Without --yes it only prints the plan. Refuses when "
            "the member is running, or when the old cluster still answers with a leader. "
            "Runbook: docs/recovery.md.",
            88,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, help="the stopped member's data directory")
    parser.add_argument(
        "--name",
        default=None,
        help="the member's name (checked against identity.json; needed only "
        "for a data directory without one)",
    )
    parser.add_argument(
        "--yes", action="store_true", help="do it (back up, new cluster id, rewrite membership)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="recover even though the old cluster answers with a leader "
        "(split brain: two clusters accept writes); only with --yes",
    )
    parser.add_argument(
        "--endpoints",
        default="",
        help="more client URLs of old members to ask for /v1/status, "
        "comma-separated (members without a client URL in the "
        "membership cannot be asked otherwise)",
    )
    parser.add_argument(
        "--probe-timeout",
        type=float,
        default=DEFAULT_PROBE_TIMEOUT,
        help="seconds to wait for each member's /v1/status (default 3)",
    )
    # The client's credential flags and env (docs/client.md), for a secure cluster's
    # /v1/status (role `read`): without them its members answer 401, which refuses.
    env = os.environ
    parser.add_argument(
        "--cacert",
        metavar="FILE",
        default=env.get("RAFTKV_CACERT"),
        help="CA bundle of the members' client certificates, for https "
        "client URLs (env RAFTKV_CACERT; default: the system's)",
    )
    parser.add_argument(
        "--cert",
        metavar="FILE",
        default=env.get("RAFTKV_CERT"),
        help="client certificate (env RAFTKV_CERT)",
    )
    parser.add_argument(
        "--key",
        dest="cert_key",
        metavar="FILE",
        default=env.get("RAFTKV_KEY"),
        help="its key (env RAFTKV_KEY)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        default=env.get("RAFTKV_TOKEN_FILE"),
        help="file holding a bearer token with role read (env "
        "RAFTKV_TOKEN_FILE; or env RAFTKV_TOKEN)",
    )
    parser.set_defaults(func=cmd_recover)


def _probe_credentials(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, dict[str, str]]:
    ctx = None
    if args.cacert or args.cert:
        ctx = ssl.create_default_context(cafile=args.cacert)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if args.cert:
            ctx.load_cert_chain(args.cert, args.cert_key)
    token = os.environ.get("RAFTKV_TOKEN") or None
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
        if not token:
            raise ValueError(f"{args.token_file}: the token file is empty")
    return ctx, ({"Authorization": f"Bearer {token}"} if token else {})


def cmd_recover(args: argparse.Namespace) -> int:
    try:
        ctx, headers = _probe_credentials(args)
    except (OSError, ssl.SSLError, ValueError) as exc:
        print(f"raftkv recover: credentials: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.force and not args.yes:
        print("raftkv recover: --force only takes effect with --yes", file=sys.stderr)
        return EXIT_REFUSED
    if not args.probe_timeout > 0:
        print("raftkv recover: --probe-timeout must be > 0", file=sys.stderr)
        return EXIT_REFUSED
    endpoints = [u.strip() for u in args.endpoints.split(",") if u.strip()]
    try:
        outcome = recover_data_dir(
            Path(args.data_dir),
            name=args.name,
            yes=args.yes,
            force=args.force,
            endpoints=endpoints,
            probe_timeout=args.probe_timeout,
            ssl_context=ctx,
            probe_headers=headers,
        )
    except RecoverRefused as exc:
        print(f"raftkv recover: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (StorageError, IdentityError, ValueError) as exc:
        print(f"raftkv recover: cannot read {args.data_dir}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        # E.g. no space for the backup. The WAL batch is written last and atomically: the
        # directory is as it was, or (cluster.json written) recover must be run again.
        print(
            f"raftkv recover: failed on {args.data_dir}: {exc}; run it again once fixed",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    plan = outcome.plan
    for r in outcome.probes:
        print(f"asked {r.url}: {r.outcome} ({r.detail})", file=sys.stderr)
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    removed = ", ".join(f"{m.name} (id {m.id})" for m in plan.others) or "none"
    print(plan.summary())
    if outcome.new_cluster_id is None:
        print(f"would remove: {removed}; nothing changed: add --yes to recover", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"recovered: {plan.name} is the only voter of cluster {outcome.new_cluster_id} "
        f"(was {plan.cluster_id}); removed: {removed}; backup: {outcome.backup}. Start it "
        "with its usual `raftkv serve` command, then add members back with empty data "
        "directories (docs/recovery.md)"
    )
    return EXIT_OK

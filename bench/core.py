"""Micro-benchmark of the consensus cores (Raft, and Multi-Paxos beside it):
proposals per second through a 3-node cluster of cores in one process, with no IO
(messages are handed over directly, "persisting" is a list append). Not a test: it
prints figures.

    python bench/core.py [--seconds 2] [--engine raft|multipaxos|both]

Three workloads:
  single      one propose() at a time, the cluster driven until it is applied
              everywhere before the next (one client, synchronous);
  pipelined   64 propose() calls, then the cluster is driven (many clients,
              one Ready cycle for all of them);
  batch64     propose_batch() of 64 entries, then the cluster is driven.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from raftkv import paxos
from raftkv.raft import Config, Entry, Raft, StateRole
from raftkv.raft.core import bootstrap_entries

PAYLOAD = b"x" * 64


def _raft_nodes(n: int) -> dict[int, Any]:
    entries, hs = bootstrap_entries(list(range(1, n + 1)))
    return {
        i: Raft(Config(id=i), hard_state=hs.copy(), entries=list(entries)) for i in range(1, n + 1)
    }


def _paxos_nodes(n: int) -> dict[int, Any]:
    entries, hs = paxos.bootstrap_entries(list(range(1, n + 1)))
    return {
        i: paxos.Paxos(paxos.Config(id=i), hard_state=hs.copy(), entries=list(entries))
        for i in range(1, n + 1)
    }


ENGINES: dict[str, Callable[[int], dict[int, Any]]] = {
    "raft": _raft_nodes,
    "multipaxos": _paxos_nodes,
}


class BenchCluster:
    def __init__(self, n: int = 3, engine: str = "raft") -> None:
        # Both cores have the same Ready/advance contract; only their messages differ.
        self.nodes = ENGINES[engine](n)
        self.disk: dict[int, list[Entry]] = {i: [] for i in self.nodes}
        self.applied: dict[int, int] = dict.fromkeys(self.nodes, 0)
        self.inbox: list[Any] = []
        self.nodes[1].campaign()
        self.drive()
        assert self.nodes[1].role == StateRole.LEADER, "node 1 did not win the election"
        self.leader = self.nodes[1]

    def drive(self) -> None:
        """Run Ready cycles and deliver messages until nothing is left to do."""
        nodes = self.nodes
        while True:
            busy = False
            for i, core in nodes.items():
                if core.has_ready():
                    busy = True
                    rd = core.ready()
                    if rd.entries:
                        self.disk[i].extend(rd.entries)
                    self.inbox.extend(rd.messages)
                    if rd.committed_entries:
                        self.applied[i] = rd.committed_entries[-1].index
                    core.advance(rd)
            if self.inbox:
                busy = True
                msgs, self.inbox = self.inbox, []
                for m in msgs:
                    nodes[m.to].step(m)
            if not busy:
                return

    def compact(self) -> None:
        """Keep memory flat across a long run, as a real node's snapshots would."""
        for i, core in self.nodes.items():
            meta = core.snapshot_meta()
            if meta.index > 1000:
                core.compact(meta, 0)
            self.disk[i].clear()


def _measure(
    seconds: float, step: Callable[[BenchCluster], int], engine: str = "raft"
) -> tuple[float, int]:
    c = BenchCluster(engine=engine)
    done = 0
    t0 = time.perf_counter()
    rounds = 0
    while True:
        done += step(c)
        rounds += 1
        if rounds % 64 == 0:
            c.compact()
            if time.perf_counter() - t0 >= seconds:
                break
    elapsed = time.perf_counter() - t0
    last = c.leader.last_index()
    if any(a != last for a in c.applied.values()):
        raise SystemExit(f"benchmark cluster did not apply everything: {c.applied} vs {last}")
    return done / elapsed, done


def _single(c: BenchCluster) -> int:
    c.leader.propose(PAYLOAD)
    c.drive()
    return 1


def _pipelined(c: BenchCluster) -> int:
    for _ in range(64):
        c.leader.propose(PAYLOAD)
    c.drive()
    return 64


_BATCH = [PAYLOAD] * 64


def _batch64(c: BenchCluster) -> int:
    c.leader.propose_batch(_BATCH)
    c.drive()
    return 64


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python bench/core.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seconds", type=float, default=2.0, help="time per workload")
    ap.add_argument("--engine", choices=["raft", "multipaxos", "both"], default="raft")
    args = ap.parse_args(argv)
    engines = ["raft", "multipaxos"] if args.engine == "both" else [args.engine]
    for engine in engines:
        print(f"{engine} core, 3 nodes in one process, no IO, {len(PAYLOAD)}-byte payloads")
        for name, fn in (("single", _single), ("pipelined", _pipelined), ("batch64", _batch64)):
            rate, n = _measure(args.seconds, fn, engine)
            print(
                f"  {name:10s} {rate:12,.0f} proposals/s   ({n:,} applied on all 3 nodes)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

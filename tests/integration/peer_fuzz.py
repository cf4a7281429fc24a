"""A peer-protocol fuzzer (issue 10): hypothesis-made payloads and mutations of real
frames, sent to a live node as fast as its connections allow.

The fuzzer is admitted as a member (an insecure cluster, the identity of a
follower `claim`): what it sends reaches the frame parser, the schema and the
sender checks, and stale-term messages reach the core. Real frames are recorded
from real Raft cores (`record_frames`), then

- sent as they are but for another sender or receiver (dropped: wrong_sender),
- sent as the claimed member with a stale term (stepped, ignored by the core),
- mutated in their structure (a field replaced by a value of another type or
  range, items dropped or repeated, another frame kind), or in their bytes.

A Raft member's *valid* messages are trusted by Raft (members are not Byzantine;
peer TLS keeps outsiders out), so a mutant that would be a valid, current-term
message of the claimed member is made stale (or skipped), never sent as is.

The same runs against a Multi-Paxos node (its frames recorded from real Paxos cores,
its own frame kind and schema, `runtime.paxoscodec`). There a valid message of the
claimed member is always skipped: several Paxos messages carry no ballot to make
stale (a chosen value in CATCHUP_RESP, a NACK), so none of the member's valid words
is sent, nor a valid snapshot offer of its (Multi-Paxos takes a snapshot from any
member); everything else is (other senders and receivers, and every mutant).

For every frame the fuzzer predicts with `raftkv.runtime.codec` whether the node
keeps the connection; it pipelines frames while they should keep it, and checks
that the node closes it exactly after the first frame that should not. A
mismatch either way is a finding. Run longer with `make fuzz-peer`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv import paxos
from raftkv.fsm import Put, encode
from raftkv.raft.core import Config, Raft, bootstrap_entries
from raftkv.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)
from raftkv.runtime import codec
from raftkv.runtime.paxoscodec import PaxosWire

STALE_TERM = 1  # the cluster under test is past term 1 (the bootstrap term)


def wire_of(engine: str) -> codec.Wire:
    return PaxosWire() if engine == "multipaxos" else codec.RaftWire()


def record_frames(engine: str = "raft") -> list[list[Any]]:
    """Encoded message batches of a real 3-core cluster of `engine`: an election,
    writes, a read (ReadIndex / read barrier), a learner added, a leadership transfer,
    heartbeats."""
    ids = [11, 22, 33]
    cores: dict[int, Any]
    if engine == "multipaxos":
        p_entries, p_hs = paxos.bootstrap_entries(ids)
        cores = {
            i: paxos.Paxos(paxos.Config(id=i), hard_state=p_hs.copy(), entries=list(p_entries))
            for i in ids
        }
    else:
        entries, hs = bootstrap_entries(ids)
        cores = {
            i: Raft(
                Config(id=i, election_tick=10, heartbeat_tick=1),
                hard_state=hs.copy(),
                entries=list(entries),
            )
            for i in ids
        }
    wire = wire_of(engine)
    batches: list[list[Any]] = []

    def pump() -> None:
        for _ in range(200):
            moved = False
            for core in cores.values():
                if not core.has_ready():
                    continue
                rd = core.ready()
                core.advance(rd)
                if rd.messages:
                    batches.append([wire.encode_message(m) for m in rd.messages])
                    moved = True
                for m in rd.messages:
                    if m.to in cores and m.snapshot is None:
                        cores[m.to].step(m)
            if not moved:
                return

    cores[11].campaign()
    pump()
    for i in range(30):
        cores[11].propose_batch(
            [encode(Put(f"k{i}-{j}".encode(), b"v" * (i * 7))) for j in range(1 + i % 4)]
        )
        pump()
    cores[11].read_index(b"read-1")
    pump()
    for _ in range(3):
        cores[11].tick()
        pump()
    cores[11].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 44, b'{"name":"x"}'))
    pump()
    cores[11].transfer_leadership(22)
    pump()
    for core in cores.values():
        core.tick()
    pump()
    return batches


@dataclass
class Stats:
    frames: int = 0
    connections: int = 0
    closed_as_predicted: int = 0
    skipped: int = 0
    mismatches: list[str] = field(default_factory=list)


class Generator:
    """Frames for a connection admitted as member `claim` to member `target`."""

    def __init__(
        self,
        corpus: list[list[Any]],
        claim: int,
        target: int,
        seed: int,
        extra_payloads: list[Any] | None = None,
        engine: str = "raft",
    ) -> None:
        self.corpus = corpus
        self.claim = claim
        self.target = target
        self.rng = random.Random(seed)
        self.extra = extra_payloads or []
        self.wire = wire_of(engine)
        # Raft: the claimed member's messages are sent with a stale term; Paxos: never.
        self.own_share = 0.1 if engine == "raft" else 0.0
        meta = SnapshotMeta(5, STALE_TERM, ConfState(frozenset({claim, target})))
        snap: Any
        if engine == "multipaxos":
            snap = paxos.Message(paxos.MsgType.SNAP, target, claim, snapshot=Snapshot(meta))
        else:
            snap = Message(MsgType.SNAP, target, claim, STALE_TERM, snapshot=Snapshot(meta))
        self.snapshot_frames = [
            [codec.SNAP_BEGIN, self.wire.encode_message(snap), 10],
            [codec.SNAP_CHUNK, b"0123456789"],
            [codec.SNAP_END, "0" * 64],
        ]

    # --- valid frames ---------------------------------------------------------------
    def valid(self) -> list[Any]:
        rng = self.rng
        batch = copy.deepcopy(rng.choice(self.corpus))
        for raw in batch:
            # Mostly messages the transport drops (another sender or receiver); some
            # stale ones of ours, which reach the core (each costs the node a turn).
            if rng.random() < self.own_share:
                raw[1], raw[2] = self.target, self.claim  # ours: made stale below
            elif rng.random() < 0.5:
                raw[1] = self.target  # from a real member we are not: dropped
        return [self.wire.MSGS, rng.randrange(0, 1000), self._stale(batch)]

    def _stale(self, batch: list[Any]) -> list[Any]:
        """Our own Raft messages carry the bootstrap term: the core ignores them. (Paxos:
        nothing to do, `classify` skips the claimed member's valid messages.)"""
        if not self.own_share:
            return batch
        for raw in batch:
            if type(raw) is list and len(raw) == 12 and raw[2] == self.claim:
                raw[3] = STALE_TERM
                raw[4] = min(raw[4], STALE_TERM) if type(raw[4]) is int else raw[4]
                flat = raw[10]
                if type(flat) is list:
                    for i in range(0, len(flat) - 3, 4):
                        if type(flat[i]) is int:
                            flat[i] = STALE_TERM
                    raw[4] = STALE_TERM if flat else raw[4]
        return batch

    # --- mutants --------------------------------------------------------------------
    def _value(self) -> Any:
        rng = self.rng
        return rng.choice(
            [
                0,
                1,
                -1,
                2**63 - 1,
                2**63,
                2**64 - 1,
                -(2**63),
                2**31,
                True,
                False,
                None,
                1.5,
                float("nan"),
                "",
                "x" * rng.randrange(1, 400),
                b"",
                b"\x00" * rng.randrange(1, 100),
                [],
                [1, 2, 3],
                {"a": 1},
                [[[]]],
                rng.randrange(-10, 30),
                rng.randrange(0, 2**62),
            ]
        )

    def _mutate(self, node: Any, depth: int = 0) -> Any:
        rng = self.rng
        if type(node) is list and node and depth < 6 and rng.random() < 0.8:
            i = rng.randrange(len(node))
            op = rng.random()
            if op < 0.6:
                node[i] = self._mutate(node[i], depth + 1)
            elif op < 0.7:
                del node[i]
            elif op < 0.8:
                node.insert(i, copy.deepcopy(node[i]))
            elif op < 0.9:
                node.append(self._value())
            else:
                node[i] = self._value()
            return node
        return self._value()

    def mutant(self) -> list[Any] | bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.1 and self.extra:
            return copy.deepcopy(rng.choice(self.extra))
        if r < 0.2:
            payload: Any = copy.deepcopy(rng.choice(self.snapshot_frames))
        else:
            payload = self.valid()
        for _ in range(rng.randrange(1, 4)):
            payload = self._mutate(payload)
        if r > 0.9:  # byte level
            body = bytearray(msgpack.packb(payload, use_bin_type=True))
            for _ in range(rng.randrange(1, 4)):
                if not body:
                    break
                j = rng.randrange(len(body))
                choice = rng.random()
                if choice < 0.5:
                    body[j] = rng.randrange(256)
                elif choice < 0.75:
                    del body[j]
                else:
                    body.insert(j, rng.randrange(256))
            return bytes(body)
        if (
            type(payload) is list
            and payload
            and payload[0] == self.wire.MSGS
            and len(payload) == 3
            and type(payload[2]) is list
        ):
            payload[2] = self._stale(payload[2])
        return payload

    # --- prediction -----------------------------------------------------------------
    def classify(self, body: bytes) -> str:
        """ "keep" (the node must keep the connection), "close" (must close it), or
        "skip" (a valid current message of the claimed member: not sent)."""
        try:
            payload = codec.unpack_payload(body)
            if payload[0] == codec.SNAP_BEGIN and not self.own_share:
                # Multi-Paxos takes a snapshot (chosen values only) from any member: a
                # valid offer of the claimed member's is its word, not sent.
                snap, _ = self.wire.decode_snap_begin(payload)
                return "skip" if (snap.frm, snap.to) == (self.claim, self.target) else "close"
            if payload[0] != self.wire.MSGS:
                return "close"
            _, msgs = self.wire.decode_msgs(payload)
        except codec.FrameError:
            return "close"
        for m in msgs:
            ours = m.frm == self.claim and m.to == self.target
            if ours and (not self.own_share or m.term != STALE_TERM):
                return "skip"
        return "keep"

    def next_frame(self, mutate_share: float) -> tuple[bytes, str]:
        payload = self.mutant() if self.rng.random() < mutate_share else self.valid()
        if isinstance(payload, bytes):
            body = payload
        else:
            try:
                body = msgpack.packb(payload, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                return b"", "skip"
        if len(body) > codec.MAX_FRAME_BYTES:
            return b"", "skip"
        return codec.HEADER.pack(len(body)) + body, self.classify(body)


async def _read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, OSError):
        pass
    return True


async def fuzz(
    host: str,
    port: int,
    *,
    cluster_id: str,
    engine: str,
    claim: int,
    claim_name: str,
    target: int,
    frames: int,
    seed: int = 0,
    mutate_share: float = 0.25,
    corpus: list[list[Any]] | None = None,
    extra_payloads: list[Any] | None = None,
    check: Any = None,
    check_every: float = 2.0,
    workers: int = 8,
) -> Stats:
    """Send `frames` frames to the node at host:port over `workers` concurrent
    connections; `check()` (async) is awaited every `check_every` seconds meanwhile
    (the node must keep serving)."""
    corpus = corpus or record_frames(engine)
    hello = codec.pack_hello(cluster_id, claim, target, claim_name, engine)
    stats = Stats()
    done = asyncio.Event()

    async def checker() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), check_every)
            if check is not None:
                await check()

    budgets = [frames // workers + (1 if i < frames % workers else 0) for i in range(workers)]
    tasks = [
        asyncio.create_task(
            _worker(
                host,
                port,
                hello,
                Generator(corpus, claim, target, seed * 1000 + i, extra_payloads, engine),
                budget,
                mutate_share,
                stats,
            )
        )
        for i, budget in enumerate(budgets)
    ]
    watch = asyncio.create_task(checker())
    try:
        await asyncio.gather(*tasks)
    finally:
        done.set()
        for t in tasks:
            t.cancel()
        await watch
    return stats


async def _worker(
    host: str,
    port: int,
    hello: bytes,
    gen: Generator,
    budget: int,
    mutate_share: float,
    stats: Stats,
) -> None:
    sent = 0
    while sent < budget and len(stats.mismatches) <= 20:
        reader, writer = await asyncio.open_connection(host, port)
        stats.connections += 1
        try:
            writer.write(hello)  # the first frames follow at once, without waiting
            closing = False
            last_bad = b""
            first = True
            while sent < budget and not closing:
                chunk = []
                for _ in range(256):
                    frame, verdict = gen.next_frame(mutate_share)
                    if verdict == "skip":
                        stats.skipped += 1
                        continue
                    chunk.append(frame)
                    sent += 1
                    stats.frames += 1
                    if verdict == "close":
                        closing = True
                        last_bad = frame
                        break
                    if sent >= budget:
                        break
                try:
                    writer.write(b"".join(chunk))
                    await writer.drain()
                except (ConnectionError, OSError) as exc:
                    if not closing:
                        stats.mismatches.append(f"closed on frames it must accept: {exc!r}")
                    break
                if first:
                    first = False
                    header = await asyncio.wait_for(reader.readexactly(4), 10)
                    (length,) = codec.HEADER.unpack(header)
                    answer = codec.unpack_payload(await reader.readexactly(length))
                    if answer[0] != codec.WELCOME:
                        raise AssertionError(f"the fuzzer's HELLO was refused: {answer!r}")
                if not closing and (reader.at_eof() or writer.transport.is_closing()):
                    stats.mismatches.append("closed a connection on valid frames")
                    break
            if closing:
                if await _read_until_closed(reader, 10):
                    stats.closed_as_predicted += 1
                else:
                    stats.mismatches.append(
                        f"kept a connection open after a bad frame: {last_bad[:300]!r}"
                    )
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            stats.mismatches.append(f"connection failed during the handshake: {exc!r}")
        finally:
            writer.close()


def hypothesis_payloads(count: int) -> list[Any]:
    """Arbitrary msgpack-able frames from hypothesis (kinds, shapes, extreme values)."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=True)
        | st.binary(max_size=32)
        | st.text(max_size=16)
    )
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=13), max_leaves=60)
    frames = st.tuples(st.integers(-2, 9), st.lists(values, max_size=6)).map(
        lambda t: [t[0], *t[1]]
    )
    out: list[Any] = []

    @settings(
        max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(frames)
    def collect(frame: list[Any]) -> None:
        out.append(frame)

    collect()
    return out


def main(argv: list[str] | None = None) -> int:
    """`make fuzz-peer`: a 3-node --peer-insecure cluster (--engine), fuzzing its leader."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--mutate-share", type=float, default=0.3)
    parser.add_argument("--engine", choices=["raft", "multipaxos"], default="raft")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import aiohttp

    from tests.integration.harness import Cluster
    from tests.integration.test_peer_fuzz import run_against_cluster

    with tempfile.TemporaryDirectory(prefix="raftkv-fuzz-peer-") as tmp:
        async with aiohttp.ClientSession() as session:
            cluster = Cluster(Path(tmp), session)
            try:
                stats = await run_against_cluster(
                    cluster, args.frames, args.seed, args.mutate_share, args.engine
                )
            except AssertionError as exc:
                print(f"fuzz-peer: FAILED (seed {args.seed}): {exc}", file=sys.stderr)
                return 1
            finally:
                cluster.close()
    print(
        f"fuzz-peer: {stats.frames} frames on {stats.connections} connections, "
        f"{stats.closed_as_predicted} closed as predicted, seed {args.seed}, "
        f"{args.engine}: ok"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

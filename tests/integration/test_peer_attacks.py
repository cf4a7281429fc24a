"""Every peer-port attack of issue 10, replayed by an outsider against real clusters.

Before the fix, anyone who could open a TCP connection to a peer port owned the
cluster: a forged append diverged a follower for good, a forged snapshot replaced
the keyspace, a string or 2**64-1 term killed or bricked every node, a HELLO
rewrote a member's URLs, 200 HELLOs started 200 dial loops, term-0
TRANSFER_LEADER and forged TIMEOUT_NOW moved leadership.

After each barrage: every node alive, one leader, every acknowledged write on every
member, membership unchanged, nothing of the attacker's in the keyspace, and a
checkpoint with the same sha256 on every member."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raftkv.runtime import codec
from tests.integration.harness import Cluster, Node, running_cluster, until
from tests.integration.peer_attacker import (
    ATTACKS,
    Claim,
    Target,
    client_context,
    hello,
    send_and_watch,
    url_override_hello,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def tls_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, peer_tls=True) as c:
        yield c


class Writes:
    """Writes through the leader in the background; remembers what was acknowledged."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.acked: dict[str, bytes] = {}
        self.stop = asyncio.Event()
        self.tasks = [asyncio.create_task(self._run(w)) for w in range(4)]

    async def _run(self, worker: int) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            key, value = f"w/{worker}-{n}", f"v{n}".encode()
            try:
                leader = await self.cluster.wait_leader(timeout=10)
                status, _ = await self.cluster.put(leader, key, value)
            except (TimeoutError, aiohttp.ClientError, AssertionError):
                continue
            if status == 200:
                self.acked[key] = value
            await asyncio.sleep(0.01)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


async def _claim(cluster: Cluster, as_node: Node) -> Claim:
    status = await cluster.status(as_node)
    assert status is not None
    return Claim(
        as_node.id,
        as_node.name,
        status["cluster_id"],
        status["term"],
        status["last_index"],
        status["term"],
        status["consensus"],
    )


def _target(node: Node) -> Target:
    return Target(node.host, node.peer_port, node.id, node.name)


async def _metric(cluster: Cluster, node: Node, name: str) -> dict[str, float]:
    async with cluster.session.get(node.url + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for labels, value in re.findall(rf"^{name}\{{(.*?)\}} (\S+)$", text, re.MULTILINE):
        out[labels] = float(value)
    return out


async def _check_cluster_intact(
    cluster: Cluster, members_before: list[int], leader_before: Node, writes: Writes
) -> None:
    nodes = list(cluster.nodes.values())
    for node in nodes:
        assert node.running(), f"{node.name} died:\n{cluster.log_tail(node)}"
    leader = await cluster.wait_leader()
    statuses = [await cluster.status(n) for n in nodes]
    assert all(statuses)
    for s in statuses:
        assert s is not None
        assert sorted(m["id"] for m in s["members"]) == members_before
        assert s["term"] < 2**32, "a forged term was adopted"
    assert len({s["cluster_id"] for s in statuses if s}) == 1
    for node in nodes:
        await cluster.wait_caught_up(node, leader)
        code, body = await cluster.request(
            "GET", node, "/v1/kv/", prefix="1", consistency="serializable"
        )
        assert code == 200, body
        stored = {kv["key"]: kv["value"].encode() for kv in body["kvs"]}
        assert not [k for k in stored if k.startswith("attack/")], f"{node.name}: {stored}"
        lost = [k for k, v in writes.acked.items() if stored.get(k) != v]
        assert not lost, f"{node.name} lost {len(lost)} acknowledged writes"
    code, manifest = await cluster.request("POST", leader, "/v1/checkpoints", {})
    assert code == 200, manifest

    async def same_everywhere() -> bool:
        shas = set()
        for node in nodes:
            c, m = await cluster.request("GET", node, f"/v1/checkpoints/{manifest['id']}")
            if c != 200:
                return False
            shas.add(m["sha256"])
        return shas == {manifest["sha256"]}

    await until(same_everywhere, 20, "the checkpoint with one sha256 on every member")
    assert leader_before.running()


async def test_outsiders_cannot_touch_a_tls_cluster(tls_cluster: Cluster) -> None:
    cluster = tls_cluster
    leader = await cluster.wait_leader()
    nodes = list(cluster.nodes.values())
    followers = [n for n in nodes if n is not leader]
    status = await cluster.status(leader)
    assert status is not None and len(status["cluster_id"]) == 32
    members_before = sorted(m["id"] for m in status["members"])
    writes = Writes(cluster)
    await until(lambda: _at_least(writes.acked, 50), 20, "writes before the attacks")
    pki = cluster.base_dir / "pki"
    outcomes: dict[str, set[str]] = {c: set() for c in ("plain", "no_cert", "other_ca", "stolen")}
    for credentials in outcomes:
        for name, attack in ATTACKS.items():
            for target in followers:
                # Claim to be the leader; with a stolen certificate, it is the other
                # follower's (a real member's, of this cluster's CA).
                thief = next(n for n in followers if n is not target)
                claim = await _claim(cluster, leader)
                ctx = client_context(credentials, pki, cluster.ca, thief.name)
                frames = [hello(claim, _target(target)), *attack(claim, _target(target))]
                outcome = await send_and_watch(_target(target), ctx, frames)
                outcomes[credentials].add(outcome)
                if name == "forged_append" and credentials == "stolen":
                    # The thief's own identity with its real certificate, but the
                    # messages say they come from the leader: dropped, not applied.
                    own = Claim(
                        thief.id,
                        thief.name,
                        claim.cluster_id,
                        claim.term,
                        claim.last_index,
                        claim.last_term,
                        claim.engine,
                    )
                    forged = attack(claim, _target(target))
                    await _send_open(target, ctx, [hello(own, _target(target)), *forged])
    # Without the cluster's CA the TLS layer ends it; with a member's certificate
    # claiming someone else, the handshake is refused by the gate.
    for credentials in ("plain", "no_cert", "other_ca"):
        assert outcomes[credentials] <= {"tls", "closed"}, outcomes
    assert outcomes["stolen"] == {"refused"}, outcomes

    # The old URL-override HELLO, and a flood of HELLOs with made-up ids.
    thief = followers[1]
    ctx = client_context("stolen", pki, cluster.ca, thief.name)
    claim = await _claim(cluster, thief)
    evil = "127.0.0.1:1"
    assert (
        await send_and_watch(
            _target(followers[0]), ctx, [url_override_hello(claim, _target(followers[0]), evil)]
        )
        == "refused"
    )
    rng = random.Random(10)
    for _ in range(200):
        fake = Claim(rng.randrange(1, 2**48), thief.name, claim.cluster_id, 1, 0, 0, claim.engine)
        assert (
            await send_and_watch(_target(leader), ctx, [hello(fake, _target(leader))]) == "refused"
        )

    floor = len(writes.acked) + 50
    await until(lambda: _at_least(writes.acked, floor), 20, "writes after the attacks")
    await writes.finish()
    await _check_cluster_intact(cluster, members_before, leader, writes)
    # No dial loop (and no metric series) for a made-up id; refusals were counted.
    for node in nodes:
        peers = await _metric(cluster, node, "raftkv_peer_up")
        assert {int(re.search(r'peer="(\d+)"', k).group(1)) for k in peers} <= set(  # type: ignore[union-attr]
            members_before
        )
        st = await cluster.status(node)
        assert st is not None
        assert all(m["peer_url"] != evil and m["client_url"] != evil for m in st["members"])
    rejected = await _metric(cluster, leader, "raftkv_peer_frames_rejected_total")
    assert rejected['reason="not_member"'] >= 200
    for follower in followers:
        rejected = await _metric(cluster, follower, "raftkv_peer_frames_rejected_total")
        assert rejected['reason="certificate"'] >= 1
        assert rejected['reason="wrong_sender"'] >= 1


async def _send_open(target: Node, ctx: Any, frames: list[bytes]) -> None:
    """Send on an admitted connection, give the node a moment to process, close."""
    reader, writer = await asyncio.open_connection(
        target.host, target.peer_port, ssl=ctx, server_hostname=target.host
    )
    try:
        for f in frames:
            writer.write(f)
        await writer.drain()
        welcome = await asyncio.wait_for(reader.read(4096), 5)
        assert welcome, "the thief's own HELLO should be admitted"
    finally:
        writer.close()


async def test_insecure_mode_still_checks_cluster_membership_and_frames(
    three_nodes: Cluster,
) -> None:
    """--peer-insecure authenticates nobody (docs/security.md), but a non-member, a
    member of another cluster, and any frame outside the schema are still refused."""
    cluster = three_nodes
    leader = await cluster.wait_leader()
    followers = [n for n in cluster.nodes.values() if n is not leader]
    status = await cluster.status(leader)
    assert status is not None
    members_before = sorted(m["id"] for m in status["members"])
    writes = Writes(cluster)
    await until(lambda: _at_least(writes.acked, 30), 20, "writes before the attacks")
    target = followers[0]
    real = await _claim(cluster, followers[1])
    stranger = Claim(12345, "mallory", real.cluster_id, real.term, 0, 0, real.engine)
    other_cluster = Claim(real.id, real.name, "f" * 32, real.term, 0, 0, real.engine)
    other_engine = {"raft": "multipaxos", "multipaxos": "raft"}[real.engine]
    other_engine_member = Claim(real.id, real.name, real.cluster_id, real.term, 0, 0, other_engine)
    for claim in (stranger, other_cluster, other_engine_member):
        for attack in ATTACKS.values():
            frames = [hello(claim, _target(target)), *attack(claim, _target(target))]
            assert await send_and_watch(_target(target), None, frames) == "refused"
    # A real member's identity (unauthenticated here), with frames the schema refuses.
    for name in ("string_term", "huge_term", "term0_transfer"):
        frames = [hello(real, _target(target)), *ATTACKS[name](real, _target(target))]
        assert await send_and_watch(_target(target), None, frames) == "closed"
    # A forged TIMEOUT_NOW from a member that is not the leader: no election.
    term_before = real.term
    await _send_plain_open(
        target,
        [hello(real, _target(target)), *ATTACKS["forged_timeout_now"](real, _target(target))],
    )
    floor = len(writes.acked) + 30
    await until(lambda: _at_least(writes.acked, floor), 20, "writes after the attacks")
    st = await cluster.status(target)
    assert st is not None and st["term"] == term_before
    await writes.finish()
    await _check_cluster_intact(cluster, members_before, leader, writes)
    rejected = await _metric(cluster, target, "raftkv_peer_frames_rejected_total")
    for reason in ("not_member", "wrong_cluster", "wrong_consensus", "malformed", "out_of_range"):
        assert rejected[f'reason="{reason}"'] >= 1, rejected


async def _send_plain_open(target: Node, frames: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.peer_port)
    try:
        for f in frames:
            writer.write(f)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


async def _at_least(acked: dict[str, bytes], n: int) -> bool:
    return len(acked) >= n


async def _hello_answer(target: Target, ctx: Any, frame: bytes) -> str:
    """Send one HELLO and read the answer: "welcome", "refused", or "closed" (the
    connection ended first); then hang up."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(target.host, target.port, ssl=ctx, server_hostname=target.host),
        8,
    )
    try:
        writer.write(frame)
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(4), 8)
        (length,) = codec.HEADER.unpack(header)
        answer = codec.unpack_payload(await asyncio.wait_for(reader.readexactly(length), 8))
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return "closed"
    finally:
        writer.close()
    return {codec.WELCOME: "welcome", codec.REFUSED: "refused"}.get(answer[0], repr(answer[0]))


async def test_a_leaderless_member_flooded_with_made_up_ids_keeps_no_trace(
    tls_cluster: Cluster,
) -> None:
    """A member without a leader admits an id its log does not name yet (a joiner's first
    HELLO may reach it before the entry that adds it): 200 such HELLOs, with a stolen
    member certificate, must leave no dial loop, no metric series, no member and no
    crash, and the cluster must come back whole."""
    cluster = tls_cluster
    leader = await cluster.wait_leader()
    nodes = list(cluster.nodes.values())
    status = await cluster.status(leader)
    assert status is not None
    members_before = sorted(m["id"] for m in status["members"])
    assert (await cluster.put(leader, "before", b"1"))[0] == 200
    survivor = next(n for n in nodes if n is not leader)
    thief = next(n for n in nodes if n is not leader and n is not survivor)
    gone = [n for n in nodes if n is not survivor]
    for node in gone:
        cluster.kill(node)

    async def leaderless() -> bool:
        st = await cluster.status(survivor)
        return bool(st) and st["leader"] is None  # type: ignore[index]

    await until(leaderless, 20, f"{survivor.name} to lose its leader")
    claim = await _claim(cluster, survivor)
    ctx = client_context("stolen", cluster.base_dir / "pki", cluster.ca, thief.name)
    rng = random.Random(11)
    answers: dict[str, int] = {}
    for _ in range(200):
        fake = Claim(rng.randrange(1, 2**48), thief.name, claim.cluster_id, 1, 0, 0, claim.engine)
        answer = await _hello_answer(_target(survivor), ctx, hello(fake, _target(survivor)))
        answers[answer] = answers.get(answer, 0) + 1
    print(f"answers of a leaderless member to 200 made-up ids: {answers}")
    assert survivor.running(), cluster.log_tail(survivor)
    peers = await _metric(cluster, survivor, "raftkv_peer_up")
    ids = {int(m.group(1)) for k in peers if (m := re.search(r'peer="(\d+)"', k))}
    assert ids <= set(members_before), ids - set(members_before)
    st = await cluster.status(survivor)
    assert st is not None and sorted(m["id"] for m in st["members"]) == members_before

    for node in gone:
        cluster.start(node, state="existing")
    leader = await cluster.wait_leader()
    assert (await cluster.put(leader, "after", b"2"))[0] == 200
    for node in nodes:
        await cluster.wait_caught_up(node, leader)
        assert await cluster.get(node, "before", consistency="serializable") == (200, b"1")
        st = await cluster.status(node)
        assert st is not None and sorted(m["id"] for m in st["members"]) == members_before

"""AsyncClient against the fake server: leader discovery, redirects, retries with
sessions, typed errors, watch resume and checkpoint downloads."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest

from raftkv.client import (
    AsyncClient,
    CheckpointNotFoundError,
    CheckpointVerifyError,
    Client,
    CompactedError,
    ConnectError,
    KeyNotFoundError,
    OutcomeUnknownError,
    RetryPolicy,
    ServerError,
    Status,
    UnavailableError,
)
from tests.unit.client.conftest import FAST_RETRY
from tests.unit.client.fakeserver import FakeCluster, Fault


def _is_put(request: object) -> bool:
    return getattr(request, "method", "") == "PUT"


async def test_writes_find_the_leader_and_go_straight_to_it(
    fake: FakeCluster, client: AsyncClient
) -> None:
    follower, leader = fake.nodes
    for i in range(3):
        await client.put(f"k{i}", "v")
    assert len(leader.writes()) == 3 and not follower.writes()
    assert client.selector.leader_url == leader.url


async def test_a_stale_leader_redirects_and_the_client_follows(
    fake: FakeCluster, client: AsyncClient
) -> None:
    old, new = fake.nodes
    client.selector.set_leader(old.id, old.url)  # believes the follower leads
    result = await client.put("a", "1")
    assert result.revision == fake.state.revision
    assert [s.query.get("redirect") for s in old.writes()] == ["1"]
    assert len(new.writes()) == 1 and client.selector.leader_url == new.url


async def test_retried_write_resends_the_same_session_and_applies_once(
    fake: FakeCluster, client: AsyncClient
) -> None:
    leader = fake.nodes[1]
    leader.faults.append(Fault(_is_put, "drop_after_apply"))  # applied, answer lost
    result = await client.put("once", "v")
    sent = leader.writes()
    assert len(sent) == 2
    ids = {(s.headers["X-Raftkv-Client-Id"], s.headers["X-Raftkv-Seq"]) for s in sent}
    assert len(ids) == 1, ids
    assert fake.state.applied == 1 and fake.state.kv[b"once"]["version"] == 1
    assert result.revision == fake.state.revision


async def test_each_write_uses_a_new_seq_and_concurrent_writes_distinct_ids(
    fake: FakeCluster, client: AsyncClient
) -> None:
    await client.put("a", "1")
    await client.put("a", "2")
    await asyncio.gather(*(client.put(f"c{i}", "x") for i in range(8)))
    sent = fake.nodes[1].writes()
    pairs = [(s.headers["X-Raftkv-Client-Id"], int(s.headers["X-Raftkv-Seq"])) for s in sent]
    assert len(set(pairs)) == len(pairs) == 10
    assert pairs[1][1] == pairs[0][1] + 1 and pairs[1][0] == pairs[0][0]
    assert fake.state.applied == 10


async def test_503_is_retried_and_retry_after_is_honored(
    fake: FakeCluster, client: AsyncClient
) -> None:
    leader = fake.nodes[1]
    await client.put("warm", "up")
    leader.faults.append(Fault(_is_put, "503", code="timeout", retry_after="0.3"))
    started = time.monotonic()
    await client.put("k", "v")
    assert time.monotonic() - started >= 0.3
    assert fake.state.kv[b"k"]["value"] == b"v"


async def test_no_leader_is_retried_until_one_is_elected(fake: FakeCluster) -> None:
    leader = fake.nodes[1]
    fake.leader = None
    async with AsyncClient(fake.urls, retry=FAST_RETRY) as c:
        task = asyncio.ensure_future(c.put("k", "v"))
        await asyncio.sleep(0.2)
        assert not task.done()
        fake.leader = leader
        assert (await asyncio.wait_for(task, 5)).revision == fake.state.revision


async def test_giving_up_on_a_write_says_its_outcome_is_unknown(fake: FakeCluster) -> None:
    leader = fake.nodes[1]
    leader.faults.append(Fault(_is_put, "503", code="timeout", retry_after="0", times=1000))
    policy = RetryPolicy(deadline=0.5, base_delay=0.01, max_delay=0.05)
    async with AsyncClient([leader.url], retry=policy) as c:
        with pytest.raises(UnavailableError) as info:
            await c.put("k", "v")
    assert info.value.outcome_unknown and info.value.code == "timeout"


@pytest.mark.parametrize(
    ("code", "unknown"),
    [
        ("outcome_unknown", True),
        ("node_failed", True),
        ("proposal_lost", False),
        ("proposal_dropped", False),
        ("not_ready", False),
    ],
)
async def test_a_write_error_says_truly_whether_it_applied(
    fake: FakeCluster, code: str, unknown: bool
) -> None:
    """Issue 15: `proposal_lost` means "not applied" (the server says so only when
    another leader's entry replaced it); `outcome_unknown` may have applied."""
    leader = fake.nodes[1]
    leader.faults.append(Fault(_is_put, "503", code=code, retry_after="0", times=1000))
    policy = RetryPolicy(deadline=0.3, base_delay=0.01, max_delay=0.05)
    async with AsyncClient([leader.url], retry=policy) as c:
        with pytest.raises(UnavailableError) as info:
            await c.put("k", "v")
    assert info.value.code == code and info.value.outcome_unknown is unknown
    assert isinstance(info.value, OutcomeUnknownError) is (
        code in ("outcome_unknown", "node_failed")
    )


async def test_unreachable_endpoints_raise_connect_error(fake: FakeCluster) -> None:
    await fake.stop()
    policy = RetryPolicy(deadline=0.3, base_delay=0.01, max_delay=0.05)
    async with AsyncClient(fake.urls, retry=policy) as c:
        with pytest.raises(ConnectError) as info:
            await c.get("k")
    assert not info.value.outcome_unknown and "cannot connect" in str(info.value)


async def test_reads_and_typed_not_found(fake: FakeCluster, client: AsyncClient) -> None:
    await client.put(b"bin\xff/..", b"\x00\x01")
    kv = await client.get(b"bin\xff/..")
    assert kv is not None and kv.value == b"\x00\x01" and kv.version == 1
    assert await client.get("missing") is None
    assert (await client.delete("missing")).deleted == 0
    rng = await client.get_prefix(b"bin")
    assert [x.key for x in rng.kvs] == [b"bin\xff/.."]
    with pytest.raises(KeyNotFoundError):
        await client.request("GET", "/v1/kv/missing")


async def test_round_robin_spreads_reads_over_members(fake: FakeCluster) -> None:
    async with AsyncClient(fake.urls, strategy="round-robin", retry=FAST_RETRY) as c:
        await c.put("k", "v")
        for _ in range(4):
            await c.get("k", serializable=True)
    for node in fake.nodes:
        reads = [s for s in node.writes("GET")]
        assert len(reads) == 2
        assert all(s.query.get("consistency") == "serializable" for s in reads)


def _event(kind: str, key: str, rev: int) -> dict[str, object]:
    return {
        "type": kind,
        "key": key,
        "value": "v",
        "create_revision": rev,
        "mod_revision": rev,
        "version": 1,
        "lease": 0,
    }


async def test_watch_resumes_where_it_stopped_without_losing_or_repeating(
    fake: FakeCluster,
) -> None:
    node = fake.nodes[0]
    node.watch_revision = 4
    # A txn wrote a and b at revision 5; the first stream drops after a.
    node.watch_streams = [
        [_event("put", "a", 5), "DROP"],
        [_event("put", "a", 5), _event("put", "b", 5), {"type": "progress", "revision": 8}],
        [_event("put", "c", 9)],
    ]
    got = []
    async with AsyncClient([node.url], strategy="round-robin", retry=FAST_RETRY) as c:
        async for ev in c.watch("", prefix=True, progress=True):
            got.append((ev.type, ev.kv.key if ev.kv else None, ev.revision))
            if len(got) == 4:
                break
    assert got == [("put", b"a", 5), ("put", b"b", 5), ("progress", None, 8), ("put", b"c", 9)]
    starts = [s.query.get("start_revision") for s in node.seen if s.path == "/v1/watch"]
    assert starts == [None, "5", "9"]


async def test_watch_compacted_is_an_error_not_a_silent_gap(fake: FakeCluster) -> None:
    node = fake.nodes[0]
    node.watch_streams = [[{"type": "error", "error": "compacted", "message": "gone"}]]
    async with AsyncClient([node.url], strategy="round-robin", retry=FAST_RETRY) as c:
        with pytest.raises(CompactedError):
            async for _ in c.watch("k", start_revision=2):
                pass


async def test_checkpoint_download_writes_verified_files(
    fake: FakeCluster, client: AsyncClient, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 1000
    fake.add_checkpoint("c1", data)
    progress: list[tuple[int, int]] = []
    manifest = await client.download_checkpoint(
        "c1", tmp_path / "out", progress=lambda d, t: progress.append((d, t))
    )
    assert (tmp_path / "out" / "data").read_bytes() == data
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["sha256"] == hashlib.sha256(data).hexdigest() == manifest.sha256
    assert progress[-1] == (len(data), len(data))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data", "manifest.json"]


@pytest.mark.parametrize("corruption", ["sha256", "size"])
async def test_checkpoint_download_refuses_a_mismatch_and_leaves_no_data(
    fake: FakeCluster, client: AsyncClient, tmp_path: Path, corruption: str
) -> None:
    if corruption == "sha256":
        fake.add_checkpoint("bad", b"payload", sha256="0" * 64)
    else:
        fake.add_checkpoint("bad", b"payload", size=3)
    with pytest.raises(CheckpointVerifyError, match=corruption):
        await client.download_checkpoint("bad", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(CheckpointNotFoundError):
        await client.download_checkpoint("nope", tmp_path / "out2")


async def test_the_blocking_client_works_from_plain_code(fake: FakeCluster) -> None:
    def blocking_user() -> None:
        with Client(fake.urls, retry=FAST_RETRY) as c:
            c.put("s", "1")
            kv = c.get("s")
            assert kv is not None and kv.value == b"1"
            assert c.status().leader is not None
            manifest = c.create_checkpoint("x1")
            assert c.checkpoint("x1") == manifest
        with pytest.raises(RuntimeError, match="closed"):
            c.get("s")

    # The fake serves on this test's loop; the blocking client runs in a thread.
    await asyncio.to_thread(blocking_user)


async def test_an_endpoint_answering_a_malformed_status_is_reported_not_raised(
    fake: FakeCluster, client: AsyncClient
) -> None:
    bad = fake.nodes[0]
    bad.faults.append(
        Fault(lambda r: r.path == "/v1/status", "answer", body={"name": "n1", "id": "one"})
    )
    first, second = await client.statuses()
    assert isinstance(first, ServerError) and first.code == "malformed_answer"
    assert first.endpoint == bad.url and "id" in str(first)
    assert isinstance(second, Status) and second.name == "n2"

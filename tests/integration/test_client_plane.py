"""The client plane between real `raftkv serve` processes: TLS and tokens, a write
through a follower (forwarded with the caller's token over TLS), a failover, and
the CLI with the credentials `raftkv local env` would give."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from raftkv.runtime.credentials import new_token, token_entry, write_auth_file
from tests.integration.harness import Cluster, running_cluster

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def secure(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, secure=True) as cluster:
        yield cluster


async def test_writes_through_followers_keep_the_callers_identity(secure: Cluster) -> None:
    assert secure.credentials is not None
    reader_token = new_token()
    auth_file = secure.credentials.auth_file
    admin = secure.admin_token
    write_auth_file(
        auth_file,
        [token_entry("admin", "admin", admin), token_entry("reader", "read", reader_token)],
    )
    leader = await secure.wait_leader()
    follower = next(n for n in secure.initial if n is not leader)
    status, body = await secure.put(follower, "fwd", b"1")
    assert status == 200, body  # the admin's token, forwarded over TLS
    context = secure.ssl_context()
    # The reader's token reaches every node's reloaded auth file within a second or so.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context or True),
        headers={"Authorization": f"Bearer {reader_token}"},
    ) as reader:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            async with reader.get(f"{follower.url}/v1/kv/fwd") as r:
                if r.status == 200:
                    assert await r.read() == b"1"
                    break
                assert r.status == 401 and loop.time() < deadline
            await asyncio.sleep(0.1)
        async with reader.put(f"{follower.url}/v1/kv/fwd", data=b"2") as r:
            assert r.status == 403  # refused by the follower, never forwarded
    # Failover: the new leader accepts the same token, through a follower too.
    secure.kill(leader)
    survivors = [n for n in secure.initial if n is not leader]
    new_leader = await secure.wait_leader(survivors)
    other = next(n for n in survivors if n is not new_leader)
    status, body = await secure.put(other, "fwd", b"3")
    assert status == 200, body
    assert (await secure.get(new_leader, "fwd")) == (200, b"3")


async def test_the_cli_with_the_clusters_credentials(secure: Cluster) -> None:
    assert secure.credentials is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    env.update(
        RAFTKV_ENDPOINTS=",".join(n.url for n in secure.initial),
        RAFTKV_CACERT=str(secure.credentials.ca_file),
        RAFTKV_TOKEN=secure.admin_token,
    )

    async def cli(*args: str, **extra: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "raftkv.cli",
            *args,
            env={**env, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    code, _, err = await cli("put", "cli", "v")
    assert code == 0, err
    assert (await cli("get", "cli"))[:2] == (0, "v\n")
    code, out, err = await cli("checkpoint", "create", "-o", "json")
    assert code == 0, err  # an admin's
    code, _, err = await cli("get", "cli", RAFTKV_TOKEN="")
    assert code == 5 and "unauthenticated" in err

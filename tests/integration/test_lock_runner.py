"""`raftkv lock acquire NAME -- COMMAND`: the command runs while the CLI holds the lock,
sees its fencing token in $RAFTKV_LOCK_TOKEN, and the lock is released however the
command (or the CLI) ends. Two concurrent callers run one after the other, with
increasing fencing tokens."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integration.clitools import raftkv
from tests.integration.harness import Cluster, running_cluster, until

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ACQUIRED = re.compile(r"^acquired lock (\S+): lease (\d+), fencing token (\d+)$", re.MULTILINE)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path_factory.mktemp("locks")) as c:
        yield c


@pytest.fixture
def env(cluster: Cluster) -> dict[str, str]:
    """The commands under the lock call `raftkv` and `python` themselves."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        "RAFTKV_ENDPOINTS": ",".join(n.url for n in cluster.nodes.values()),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\nset -eu\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def lock_is_free(name: str, env: dict[str, str]) -> bool:
    shown = await raftkv("lock", "show", name, env=env)
    assert shown.code in (0, 1), shown.err
    return shown.code == 1


async def test_the_command_sees_the_token_and_the_lock_is_released(
    tmp_path: Path, env: dict[str, str]
) -> None:
    seen = tmp_path / "seen"
    job = script(
        tmp_path / "job.sh",
        f'echo "$RAFTKV_LOCK_NAME $RAFTKV_LOCK_LEASE $RAFTKV_LOCK_TOKEN" > {seen}\n'
        # The lock is held while the command runs: `lock show` names our lease.
        f'raftkv lock show "$RAFTKV_LOCK_NAME" -o json >> {seen}\n'
        "exit 7\n",
    )
    r = await raftkv("lock", "acquire", "runner/a", "--ttl", "5", "--", job, env=env)
    assert r.code == 7, r.err  # the command's exit code
    match = ACQUIRED.search(r.out)
    assert match is not None, r.out
    name, lease, token = match.groups()
    first, shown = seen.read_text().splitlines()
    assert first.split() == [name, lease, token]
    assert json.loads(shown)["holder"] == int(lease)
    assert json.loads(shown)["token"] == int(token)
    assert await lock_is_free("runner/a", env)
    lease_gone = await raftkv("lease", "show", lease, env=env)
    assert lease_gone.code == 1, lease_gone.out  # revoked, not left to expire


async def test_the_command_keeps_its_own_arguments_and_dashes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    r = await raftkv(
        "lock",
        "acquire",
        "runner/args",
        "--",
        sys.executable,
        "-c",
        "import sys; print(sys.argv[1:])",
        "--",
        "-x",
        "--ttl",
        env=env,
    )
    assert r.code == 0, r.err
    assert r.out.splitlines()[-1] == "['--', '-x', '--ttl']"


async def test_a_command_killed_by_a_signal_releases_the_lock(
    tmp_path: Path, env: dict[str, str]
) -> None:
    job = script(tmp_path / "die.sh", "kill -9 $$\n")
    r = await raftkv("lock", "acquire", "runner/killed", "--", job, env=env)
    assert r.code == 128 + signal.SIGKILL, (r.code, r.err)
    assert await lock_is_free("runner/killed", env)


async def test_sigterm_to_the_cli_stops_the_command_then_releases(
    tmp_path: Path, env: dict[str, str]
) -> None:
    pid_file = tmp_path / "child.pid"
    job = script(
        tmp_path / "wait.sh",
        f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}\n"
        "trap 'echo stopped-by-term; exit 42' TERM\n"
        "while :; do sleep 0.1; done\n",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftkv.cli",
        "lock",
        "acquire",
        "runner/term",
        "--",
        job,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, **env),
    )
    try:

        async def started() -> bool:
            return pid_file.exists()

        await until(started, timeout=30, what="the command to start")
        child = int(pid_file.read_text())
        assert not await lock_is_free("runner/term", env)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"stopped-by-term" in out, err
    assert proc.returncode == 42, err  # the command's own answer to SIGTERM
    assert not Path(f"/proc/{child}").exists()
    assert await lock_is_free("runner/term", env)


async def test_usage_errors(env: dict[str, str]) -> None:
    r = await raftkv("lock", "acquire", "runner/x", "./job.sh", env=env)
    assert r.code == 2 and "put the command after '--'" in r.err
    r = await raftkv("lock", "acquire", "runner/x", "--", env=env)
    assert r.code == 2 and "no command after '--'" in r.err
    r = await raftkv("lock", "acquire", "runner/x", "--", "/nonexistent/job", env=env)
    assert r.code == 2 and "cannot run" in r.err
    assert await lock_is_free("runner/x", env)


async def test_two_callers_take_turns_with_increasing_tokens(
    tmp_path: Path, env: dict[str, str]
) -> None:
    journal = tmp_path / "journal"
    journal.touch()
    # The first holder stays until the other caller is queued behind it, so the two
    # really contend; each records when it starts and ends, with its token.
    job = script(
        tmp_path / "turn.sh",
        f"""
echo "start $RAFTKV_LOCK_TOKEN $1" >> {journal}
if ! grep -q '^end' {journal}; then
  tries=0
  until raftkv lock show jobs -o json | python -c \\
      'import json, sys; sys.exit(0 if json.load(sys.stdin)["waiters"] else 1)'; do
    tries=$((tries + 1)); [ "$tries" -lt 300 ] || exit 9
    sleep 0.05
  done
fi
echo "end $RAFTKV_LOCK_TOKEN $1" >> {journal}
""",
    )
    a, b = await asyncio.gather(
        raftkv("lock", "acquire", "jobs", "--", job, "A", env=env),
        raftkv("lock", "acquire", "jobs", "--", job, "B", env=env),
    )
    assert (a.code, b.code) == (0, 0), (a.err, b.err)
    events = [line.split() for line in journal.read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "end", "start", "end"]  # never overlapping
    first, second = events[0], events[2]
    assert events[1] == ["end", *first[1:]] and events[3] == ["end", *second[1:]]
    assert {first[2], second[2]} == {"A", "B"}
    assert int(second[1]) > int(first[1])  # fencing tokens increase
    for result, who in ((a, "A"), (b, "B")):
        match = ACQUIRED.search(result.out)
        assert match is not None
        token = first[1] if first[2] == who else second[1]
        assert match.group(3) == token
    assert await lock_is_free("jobs", env)


async def test_a_command_whose_lease_is_lost_is_stopped(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # The lease goes away under the command (revoked here; expired after a partition in
    # real life): the command no longer holds the lock, so it must not run on.
    stopped = tmp_path / "stopped"
    job = script(
        tmp_path / "lose.sh",
        f"trap 'echo term > {stopped}; exit 0' TERM\n"
        'raftkv lease revoke "$RAFTKV_LOCK_LEASE" > /dev/null\n'
        "tries=0\n"
        "while [ $tries -lt 600 ]; do tries=$((tries + 1)); sleep 0.05; done\n"
        "exit 9\n",
    )
    r = await raftkv("lock", "acquire", "runner/lost", "--ttl", "3", "--", job, env=env)
    assert r.code == 3, (r.code, r.err)
    assert "lost lock runner/lost" in r.err
    assert stopped.read_text() == "term\n"
    assert await lock_is_free("runner/lost", env)

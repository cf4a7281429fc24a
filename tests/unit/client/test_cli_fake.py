"""The client subcommands of `raftkv` against the fake server: output formats,
one-line errors and exit codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from raftkv.cli import main
from raftkv.client.commands import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    EXIT_VERIFY,
)
from tests.unit.client.fakeserver import FakeCluster, Fault


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `raftkv ARGV` in a thread (the fake serves on this loop)."""

    def call() -> int:
        try:
            return main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            return int(exc.code or 0)

    code = await asyncio.to_thread(call)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_put_get_round_trip_human_and_json(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    eps = ",".join(fake.urls)
    code, out, err = await run(capsys, "put", "greeting", "hello", "--endpoints", eps)
    assert (code, err) == (0, "") and out.startswith("OK revision ")
    code, out, _ = await run(capsys, "get", "greeting", "--endpoints", eps)
    assert (code, out) == (0, "hello\n")
    code, out, _ = await run(capsys, "get", "greeting", "-o", "json", "--endpoint", eps)
    assert code == 0 and json.loads(out)["value"] == "hello"
    code, out, _ = await run(capsys, "get", "gr", "--prefix", "-o", "json", "--endpoints", eps)
    assert [kv["key"] for kv in json.loads(out)["kvs"]] == ["greeting"]


async def test_endpoints_come_from_the_environment(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAFTKV_ENDPOINTS", ",".join(fake.urls))
    code, _, _ = await run(capsys, "put", "e", "1")
    assert code == 0 and fake.state.kv[b"e"]["value"] == b"1"


async def test_not_found_is_exit_1_with_one_line_on_stderr(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(capsys, "get", "nope", "--endpoints", fake.urls[0])
    assert code == EXIT_FAILED and out == ""
    assert err.count("\n") == 1 and "key_not_found" in err and "Traceback" not in err
    code, _, err = await run(capsys, "del", "nope", "--endpoints", fake.urls[0])
    assert code == EXIT_FAILED and "not found" in err


async def test_usage_errors_are_exit_2(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run(capsys, "get")
    assert code == EXIT_USAGE and "required" in err
    code, _, err = await run(capsys, "get", "k", "--endpoints", "ftp://x:1")
    assert code == EXIT_USAGE and "bad endpoint" in err
    code, _, err = await run(capsys, "txn", "--if", "version(a) = 0", "--endpoints", fake.urls[0])
    assert code == EXIT_USAGE and "bad compare" in err


async def test_unreachable_cluster_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await run(
        capsys, "put", "k", "v", "--endpoints", "http://127.0.0.1:1", "--timeout", "0.3"
    )
    assert code == EXIT_UNAVAILABLE and out == ""
    assert err.startswith("raftkv put: ") and "Traceback" not in err
    code, _, _ = await run(
        capsys, "status", "--endpoints", "http://127.0.0.1:1", "--timeout", "0.3"
    )
    assert code == EXIT_UNAVAILABLE


async def test_status_table_and_json(fake: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run(capsys, "status", "--endpoints", ",".join(fake.urls))
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ENDPOINT", "NAME", "ROLE"]
    assert len(out.splitlines()) == 3
    code, out, _ = await run(capsys, "status", "-o", "json", "--endpoints", ",".join(fake.urls))
    body = json.loads(out)
    assert body["healthy"] and {e["role"] for e in body["endpoints"]} == {"leader", "follower"}


async def test_checkpoint_download_exit_codes(
    fake: FakeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_checkpoint("good", b"x" * 5000)
    fake.add_checkpoint("bad", b"x" * 5000, sha256="f" * 64)
    url = fake.urls[0]
    code, out, err = await run(
        capsys, "checkpoint", "download", "good", "--endpoint", url, "--out", str(tmp_path / "good")
    )
    assert code == 0, err
    assert (tmp_path / "good" / "data").read_bytes() == b"x" * 5000
    assert json.loads((tmp_path / "good" / "manifest.json").read_text())["id"] == "good"
    code, _, err = await run(
        capsys, "checkpoint", "download", "bad", "--endpoint", url, "--out", str(tmp_path / "bad")
    )
    assert code == EXIT_VERIFY and "does not match" in err
    assert not (tmp_path / "bad" / "data").exists()
    code, _, err = await run(
        capsys, "checkpoint", "download", "nope", "--endpoint", url, "--out", str(tmp_path / "nope")
    )
    assert code == EXIT_FAILED and "checkpoint_not_found" in err


async def test_watch_gives_up_after_the_timeout_when_nothing_serves_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = await run(
        capsys, "watch", "k", "--endpoints", "http://127.0.0.1:1", "--timeout", "0.5"
    )
    assert code == EXIT_UNAVAILABLE and "cannot connect" in err


async def test_a_write_of_unknown_outcome_is_exit_6_and_says_so(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 means "not done"; a write that may have applied must not look like it."""
    leader = fake.nodes[1]
    leader.faults.append(
        Fault(
            lambda r: r.method == "PUT", "503", code="outcome_unknown", retry_after="0", times=1000
        )
    )
    code, _, err = await run(capsys, "put", "k", "v", "--endpoints", leader.url, "--timeout", "0.3")
    assert code == EXIT_UNKNOWN and "may or may not have been applied" in err
    leader.faults[:] = [
        Fault(lambda r: r.method == "PUT", "503", code="proposal_lost", retry_after="0", times=1000)
    ]
    code, _, err = await run(capsys, "put", "k", "v", "--endpoints", leader.url, "--timeout", "0.3")
    assert code == EXIT_UNAVAILABLE and "may or may not" not in err

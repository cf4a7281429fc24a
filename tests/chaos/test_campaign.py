"""The campaign summary (docs/chaos.md's record) on hand-made run folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.chaos.campaign import main, render, summarise


def _run(
    base: Path,
    name: str,
    verdict: dict[str, object] | None,
    timeline: list[dict[str, object]],
    seconds: float,
) -> Path:
    run = base / name
    run.mkdir()
    (run / "command.txt").write_text("python -m tests.chaos.run ...\n")
    (run / "nemesis.jsonl").write_text("".join(json.dumps(e) + "\n" for e in timeline))
    if verdict is not None:
        (run / "verdict.json").write_text(json.dumps(verdict))
        start = (run / "command.txt").stat().st_mtime
        os.utime(run / "verdict.json", (start + seconds, start + seconds))
    return run


def test_it_adds_up_runs_and_names_every_run_that_was_not_ok(tmp_path: Path) -> None:
    ok = {
        "verdict": "ok",
        "operations": {"read:ok": 10, "write:info": 2},
        "nemesis_counts": {"kill": 2, "member": 1},
        "linearizability": {"parts": [{"operations": 7}, {"operations": 5}]},
        "set": {"acknowledged": 4, "lost": []},
        "lock": {"acquisitions": 3, "problems": []},
        "node_exits": [],
        "http_500": [],
        "checker_seconds": 0.5,
    }
    unhealthy = {
        **ok,
        "verdict": "unhealthy",
        "operations": {"read:ok": 1, "read:fail": 3},
        "summary": "verdict: unhealthy (seed 8)",
        "set": {"acknowledged": 1, "lost": ["set/9"]},
        "node_exits": ["n2 exited with 70"],
    }
    runs = [
        _run(
            tmp_path,
            "a-7",
            ok,
            [{"fault": "member", "event": "add", "code": 200}, {"fault": "kill", "event": "start"}],
            100,
        ),
        _run(tmp_path, "b-8", unhealthy, [{"fault": "transfer", "event": "skipped"}], 140),
        _run(tmp_path, "c-9", None, [], 0),  # cut short: no verdict
    ]
    c = summarise(runs)
    assert c.verdicts == {"ok": 1, "unhealthy": 1, "error": 1}
    assert [line.split(":")[0] for line in c.not_ok] == ["b-8", "c-9"]
    assert c.operations == {"read:ok": 11, "read:fail": 3, "write:info": 2}
    assert c.faults == {"kill": 4, "member": 2}
    assert c.side_outcomes == {"member: add 200": 1, "transfer: skipped": 1}
    assert c.checked["set adds lost"] == 1 and c.checked["node exits on their own"] == 1
    assert c.checked["register/cas operations checked for linearizability"] == 24
    assert [round(s) for s in c.seconds] == [100, 140]
    text = render(c)
    assert "| read | 11 | 3 | 0 |" in text and "| write | 0 | 0 | 2 |" in text
    assert "  - not ok: b-8: verdict: unhealthy (seed 8)" in text
    assert "median 120 s" in text


def test_a_path_that_is_not_a_run_folder_is_an_error(tmp_path: Path) -> None:
    assert main([str(tmp_path / "nope")]) == 2

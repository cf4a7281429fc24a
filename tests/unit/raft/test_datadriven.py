"""The transcript file format: parsing, comparison, and rewriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.raft.datadriven import DataDrivenError, Directive, parse, run_file

SAMPLE = """\
# a comment
echo a b=1 c=(2,3)
----
a b=1 c=(2,3)

# blank-line output needs the fence
echo-blank x
----
----
x

x
----
----

empty
----
"""


def echo(d: Directive) -> str:
    from tests.unit.raft.datadriven import format_args

    if d.cmd == "echo":
        return format_args(d.args) + "\n"
    if d.cmd == "echo-blank":
        return "x\n\nx\n"
    return ""


def test_parse_commands_arguments_and_fenced_output() -> None:
    ds = parse(SAMPLE, "sample")
    assert [d.cmd for d in ds] == ["echo", "echo-blank", "empty"]
    a = ds[0].args
    assert [(x.key, x.values) for x in a] == [("a", []), ("b", ["1"]), ("c", ["2", "3"])]
    assert ds[0].line == 2
    assert ds[1].expected == "x\n\nx\n"
    assert ds[2].expected == ""


def test_matching_file_passes_and_a_changed_output_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text(SAMPLE)
    assert run_file(f, echo) == []
    f.write_text(SAMPLE.replace("a b=1 c=(2,3)\n\n", "a b=9\n\n"))
    [mismatch] = run_file(f, echo)
    assert mismatch.directive.line == 2
    assert "-a b=9" in mismatch.describe() and "+a b=1 c=(2,3)" in mismatch.describe()


def test_rewrite_writes_actual_outputs_and_keeps_everything_else(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    stale = SAMPLE.replace("a b=1 c=(2,3)\n\n", "stale\n\n").replace(
        "----\n----\nx\n\nx\n----\n----\n", "----\nold\n"
    )
    f.write_text(stale)
    assert len(run_file(f, echo, rewrite=True)) == 2
    assert f.read_text() == SAMPLE
    assert run_file(f, echo) == []


@pytest.mark.parametrize("text", ["cmd\n", "cmd\nsome input\n", "cmd\n----\n----\nno end\n"])
def test_malformed_files_are_errors_not_passes(text: str) -> None:
    with pytest.raises(DataDrivenError):
        parse(text, "bad")

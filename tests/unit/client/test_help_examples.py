"""`raftkv --help` and every subcommand's help show examples (like etcdctl and kubectl),
and every example is a command line the parser accepts."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from collections.abc import Iterator

import pytest

from raftkv.cli import build_parser
from raftkv.client.cli import split_exec_command


def all_parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command path, parser) of `raftkv` and of every subcommand, at every depth."""
    top, _ = build_parser()
    pending: list[tuple[str, argparse.ArgumentParser]] = [("", top)]
    while pending:
        path, parser = pending.pop()
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    pending.append(((path + " " + name).strip(), child))


PARSERS = dict(all_parsers())


def example_lines(help_text: str) -> list[str]:
    """The `examples:` block's lines, backslash continuations joined."""
    _, found, rest = help_text.partition("\nexamples:\n")
    assert found, "no examples: section"
    lines: list[str] = []
    for raw in rest.split("\n\n")[0].splitlines():
        line = raw.strip()
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + line
        else:
            lines.append(line)
    return lines


def argv_of(line: str) -> list[str] | None:
    """The `raftkv` arguments of an example line (None: not a plain raftkv command, e.g.
    `export X=$(raftkv ...)`); stops at a comment, a redirection or a pipe."""
    words = shlex.split(line, comments=True)
    if words[:1] != ["raftkv"]:
        return None
    for stop in ("<", ">", "|"):
        if stop in words:
            words = words[: words.index(stop)]
    return words[1:]


def test_every_command_is_covered() -> None:
    assert {"", "serve", "local up", "put", "lock acquire", "checkpoint download"} <= set(PARSERS)
    assert len(PARSERS) >= 35  # every group and action, nested ones included


@pytest.mark.parametrize("path", sorted(PARSERS), ids=lambda p: p or "raftkv")
def test_help_has_examples_that_parse(path: str) -> None:
    parser = PARSERS[path]
    lines = example_lines(parser.format_help())
    commands = [argv for argv in map(argv_of, lines) if argv is not None]
    assert commands, f"`raftkv {path} --help` has no example of a raftkv command"
    top = PARSERS[""]
    for argv in commands:
        assert " ".join(argv).startswith(path), (path, argv)  # an example of this command
        args_list, exec_command = split_exec_command(argv)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                args = top.parse_args(args_list)
        except SystemExit:
            pytest.fail(f"example `raftkv {' '.join(argv)}` does not parse: {stderr.getvalue()}")
        assert callable(args.func)
        if exec_command is not None:
            assert exec_command, argv
        assert not getattr(args, "stray", None), f"`{' '.join(argv)}`: command without --"

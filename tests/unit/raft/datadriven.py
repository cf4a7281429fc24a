"""A small reader/rewriter for cockroachdb/datadriven-style test files.

A file is a sequence of directives::

    # comments and blank lines between directives are kept verbatim
    command arg key=value key=(a,b)
    optional input lines
    ----
    expected output, up to the next blank line

Output that itself contains blank lines is fenced by a doubled separator::

    command
    ----
    ----
    output with

    a blank line
    ----
    ----

`run_file` runs every directive through a handler and returns the mismatches;
with `rewrite=True` it writes the actual outputs back into the file instead.
(The `datadriven` package on PyPI is an unrelated parametrization helper, so
this ~150-line port lives here.)
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = "----"


class DataDrivenError(ValueError):
    """The test file itself is malformed (not a failed expectation)."""


@dataclass
class Arg:
    key: str
    values: list[str] = field(default_factory=list)  # empty for a bare word


@dataclass
class Directive:
    path: str
    line: int  # 1-based line of the command
    cmd: str
    args: list[Arg]
    input: str
    expected: str
    # Lines [out_start, out_end) of the file hold the separator(s) and expected output.
    out_start: int
    out_end: int

    def pos(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Mismatch:
    directive: Directive
    actual: str

    def describe(self) -> str:
        d = self.directive
        diff = "".join(
            difflib.unified_diff(
                d.expected.splitlines(keepends=True),
                self.actual.splitlines(keepends=True),
                fromfile="expected",
                tofile="actual",
            )
        )
        return f"{d.pos()}: {d.cmd} {format_args(d.args)}\n{diff}"


def parse_args(words: list[str]) -> list[Arg]:
    args = []
    for w in words:
        key, eq, val = w.partition("=")
        if not eq:
            args.append(Arg(w))
        elif val.startswith("(") and val.endswith(")"):
            inner = val[1:-1].strip()
            args.append(Arg(key, [v.strip() for v in inner.split(",")] if inner else []))
        else:
            args.append(Arg(key, [val]))
    return args


def format_args(args: list[Arg]) -> str:
    out = []
    for a in args:
        if not a.values:
            out.append(a.key)
        elif len(a.values) == 1:
            out.append(f"{a.key}={a.values[0]}")
        else:
            out.append(f"{a.key}=({','.join(a.values)})")
    return " ".join(out)


def parse(text: str, path: str = "<string>") -> list[Directive]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[Directive] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        cmd_line_no = i + 1
        try:
            words = shlex.split(line, comments=False)
        except ValueError as e:
            raise DataDrivenError(f"{path}:{cmd_line_no}: {e}") from e
        i += 1
        inputs = []
        while i < len(lines) and lines[i] != SEPARATOR:
            if not lines[i].strip():
                raise DataDrivenError(f"{path}:{cmd_line_no}: directive has no '{SEPARATOR}'")
            inputs.append(lines[i])
            i += 1
        if i >= len(lines):
            raise DataDrivenError(f"{path}:{cmd_line_no}: directive has no '{SEPARATOR}'")
        out_start = i
        i += 1
        expected: list[str] = []
        if i < len(lines) and lines[i] == SEPARATOR:
            # Fenced output: runs until a doubled separator.
            i += 1
            while i + 1 < len(lines) and not (lines[i] == SEPARATOR and lines[i + 1] == SEPARATOR):
                expected.append(lines[i])
                i += 1
            if i + 1 >= len(lines):
                raise DataDrivenError(f"{path}:{cmd_line_no}: unterminated '{SEPARATOR}' fence")
            i += 2
        else:
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
        out.append(
            Directive(
                path=path,
                line=cmd_line_no,
                cmd=words[0],
                args=parse_args(words[1:]),
                input="\n".join(inputs),
                expected="".join(x + "\n" for x in expected),
                out_start=out_start,
                out_end=i,
            )
        )
    return out


def render_output(actual: str) -> list[str]:
    """The separator(s) and output lines for `actual`, as they go into the file."""
    body = actual.rstrip("\n").split("\n") if actual.strip() else []
    if any(not b.strip() for b in body):
        return [SEPARATOR, SEPARATOR, *body, SEPARATOR, SEPARATOR]
    return [SEPARATOR, *body]


def normalize(output: str) -> str:
    """Trailing spaces and a trailing newline are not significant."""
    lines = [ln.rstrip() for ln in output.rstrip("\n").split("\n")] if output.strip() else []
    return "".join(x + "\n" for x in lines)


Handler = Callable[[Directive], str]


def run_file(path: Path, handler: Handler, rewrite: bool = False) -> list[Mismatch]:
    text = path.read_text()
    directives = parse(text, str(path))
    mismatches: list[Mismatch] = []
    actuals: list[str] = []
    for d in directives:
        actual = normalize(handler(d))
        actuals.append(actual)
        if actual != normalize(d.expected):
            mismatches.append(Mismatch(d, actual))
    if rewrite:
        path.write_text(rewritten(text, directives, actuals))
    return mismatches


def rewritten(text: str, directives: list[Directive], actuals: list[str]) -> str:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[str] = []
    pos = 0
    for d, actual in zip(directives, actuals, strict=True):
        out.extend(lines[pos : d.out_start])
        out.extend(render_output(actual))
        pos = d.out_end
    out.extend(lines[pos:])
    return "\n".join(out) + "\n"

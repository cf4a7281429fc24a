"""Find the shell examples of the documentation and their doctest markers (pure: no I/O
beyond reading the files). The marker syntax is documented in tests/docs/README.md.

Markdown: a fenced block with info string `sh`, `bash`, `shell` or `python` is an
example; the line right before its opening fence may be a marker:

    <!-- doctest: skip reason="needs a Docker engine" -->

YAML (examples/*.yaml): consecutive comment lines holding a command (`#   kubectl ...`)
are an example; a `# doctest: ...` comment line right before them is its marker.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[2]

SHELL_LANGS = frozenset({"sh", "bash", "shell"})
EXAMPLE_LANGS = SHELL_LANGS | {"python"}
# A fence without an info string that starts with one of these is a command the reader
# may copy: it must say what it is (`sh` to run it, `text` for a synopsis).
COMMAND_WORDS = (
    "raftkv",
    "make",
    "kubectl",
    "helm",
    "curl",
    "python",
    ".venv/",
    "docker",
    "git",
    "pip",
)
# k8s: runs in the Kubernetes session (tests/docs/test_doc_k8s_examples.py): the emulated
# cluster with the operator, the real kubectl.
KINDS = ("run", "skip", "setup", "teardown", "k8s")
KIND_WORDS = ("skip", "setup", "teardown", "k8s")
KEYS = {*KIND_WORDS, "reason", "exit", "expect", "cwd", "timeout"}

MD_MARKER = re.compile(r"^<!--\s*doctest:(?P<body>.*?)-->$", re.DOTALL)
YAML_MARKER = re.compile(r"^#\s*doctest:(?P<body>.*)$")
YAML_COMMAND = re.compile(r"^#\s{2,}(?P<cmd>(?:kubectl|helm|raftkv|make)\b.*)$")


class MarkerError(ValueError):
    """A marker that cannot be understood, or an example that must have one."""


@dataclass(frozen=True)
class Example:
    path: Path  # relative to the repository
    line: int  # 1-based line of the opening fence (or first command line)
    code: str
    lang: str = "sh"  # sh (bash) or python
    kind: str = "run"  # run, skip, setup, teardown, k8s
    reason: str = ""  # why it does not run here (skip)
    exit: int = 0  # the expected exit status of the whole block
    expect: tuple[str, ...] = field(default_factory=tuple)  # regexes stdout must match
    cwd: str = "session"  # session (a scratch directory) or repo
    timeout: float = 60.0

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def parse_marker(body: str, where: str) -> dict[str, object]:
    """`skip reason="..."` -> {"kind": "skip", "reason": "..."}; errors name `where`."""
    try:
        words = shlex.split(body)
    except ValueError as exc:
        raise MarkerError(f"{where}: bad doctest marker {body.strip()!r}: {exc}") from None
    fields: dict[str, object] = {}
    expects: list[str] = []
    for word in words:
        key, sep, value = word.partition("=")
        if key not in KEYS:
            raise MarkerError(
                f"{where}: unknown doctest directive {key!r} (known: {', '.join(sorted(KEYS))})"
            )
        if key in KIND_WORDS:
            if sep:
                raise MarkerError(f"{where}: `{key}` takes no value")
            if "kind" in fields:
                raise MarkerError(f"{where}: give one of {', '.join(KIND_WORDS)}")
            fields["kind"] = key
            continue
        if not sep or (not value and key != "expect"):
            raise MarkerError(f"{where}: `{key}` needs a value ({key}=...)")
        if key == "expect":
            try:
                re.compile(value)
            except re.error as exc:
                raise MarkerError(f"{where}: expect={value!r} is not a regex: {exc}") from None
            expects.append(value)
        elif key == "exit":
            if not value.isdigit():
                raise MarkerError(f"{where}: exit must be a number, not {value!r}")
            fields["exit"] = int(value)
        elif key == "timeout":
            try:
                fields["timeout"] = float(value)
            except ValueError:
                raise MarkerError(f"{where}: timeout must be seconds, not {value!r}") from None
        elif key == "cwd":
            if value not in ("session", "repo"):
                raise MarkerError(f"{where}: cwd is session or repo, not {value!r}")
            fields["cwd"] = value
        else:
            fields[key] = value
    if expects:
        fields["expect"] = tuple(expects)
    if fields.get("kind") == "skip" and not str(fields.get("reason", "")).strip():
        raise MarkerError(f'{where}: a skipped example must say why (reason="...")')
    if "reason" in fields and fields.get("kind") != "skip":
        raise MarkerError(f"{where}: reason= belongs to skip")
    return fields


def markdown_examples(text: str, path: Path) -> list[Example]:
    """The examples of a Markdown document (CommonMark, parsed by markdown-it-py), with
    their markers."""
    tokens = MarkdownIt("commonmark").parse(text)
    markers: dict[int, tuple[str, int]] = {}  # line after the marker -> (body, its line)
    for token in tokens:
        if token.type == "html_block" and token.map is not None:
            found = MD_MARKER.match(token.content.strip())
            if found:
                markers[token.map[1]] = (found.group("body"), token.map[0] + 1)
    examples: list[Example] = []
    for token in tokens:
        if token.type != "fence" or token.map is None:
            continue
        start = token.map[0]
        lang = token.info.split()[0] if token.info.strip() else ""
        where = f"{path}:{start + 1}"
        marker = markers.pop(start, None)
        if lang not in EXAMPLE_LANGS:
            if marker:
                raise MarkerError(
                    f"{where}: a doctest marker on a `{lang or 'plain'}` block "
                    "(only sh/bash/shell/python blocks are examples)"
                )
            first = next((b.strip() for b in token.content.splitlines() if b.strip()), "")
            if not lang and first.startswith(COMMAND_WORDS):
                raise MarkerError(
                    f"{where}: this block shows a command but has no info "
                    "string: `sh` to run it as an example, `text` for a synopsis"
                )
            continue
        fields = parse_marker(marker[0], where) if marker else {}
        if lang == "python" and fields.get("kind") in ("setup", "teardown", "k8s"):
            raise MarkerError(f"{where}: setup, teardown and k8s examples are shell blocks")
        examples.append(
            Example(
                path, start + 1, token.content, "python" if lang == "python" else "sh", **fields
            )
        )  # type: ignore[arg-type]
    for _, line in markers.values():
        raise MarkerError(
            f"{path}:{line}: a doctest marker must be the line right before a code fence"
        )
    return examples


def yaml_examples(text: str, path: Path) -> list[Example]:
    """Commands in the comments of a YAML manifest (`#   kubectl apply -f ...`)."""
    lines = text.splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        if not YAML_COMMAND.match(lines[i]):
            i += 1
            continue
        start = i
        commands = []
        while i < len(lines) and (m := YAML_COMMAND.match(lines[i])):
            commands.append(m.group("cmd"))
            i += 1
        marker = YAML_MARKER.match(lines[start - 1]) if start else None
        fields = parse_marker(marker.group("body"), f"{path}:{start + 1}") if marker else {}
        examples.append(Example(path, start + 1, "\n".join(commands) + "\n", **fields))  # type: ignore[arg-type]
    return examples


def documents(repo: Path = REPO) -> list[Path]:
    """The documents whose examples must run: README.md, docs/*.md, the chart's README and
    the manifests in examples/."""
    return [
        repo / "README.md",
        *sorted((repo / "docs").glob("*.md")),
        repo / "charts" / "raftkv-operator" / "README.md",
        *sorted((repo / "examples").glob("*.yaml")),
    ]


def all_examples(repo: Path = REPO) -> list[Example]:
    found: list[Example] = []
    for doc in documents(repo):
        relative = doc.relative_to(repo)
        text = doc.read_text()
        if doc.suffix == ".md":
            found += markdown_examples(text, relative)
        else:
            found += yaml_examples(text, relative)
    return found

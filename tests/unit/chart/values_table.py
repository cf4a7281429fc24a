"""The chart's values table, from values.yaml's `# --` comments (helm-docs style).

`python -m tests.unit.chart.values_table` prints the Markdown table that
charts/raftkv-operator/README.md carries; a test fails when the README's copy is stale.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

VALUES = Path(__file__).resolve().parents[3] / "charts" / "raftkv-operator" / "values.yaml"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):")
_DOC = re.compile(r"^ *# -- ?(?P<text>.*)$")
_MORE = re.compile(r"^ *# ?(?P<text>.*)$")


def documented_keys(path: Path = VALUES) -> list[tuple[str, str, Any]]:
    """(dotted key, description, default) of every `# --`-documented key, in file order."""
    values = yaml.safe_load(path.read_text())
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    found: list[tuple[str, str, Any]] = []
    for line in path.read_text().splitlines():
        if doc := _DOC.match(line):
            pending = [doc["text"]]
            continue
        if pending is not None and (more := _MORE.match(line)) and not _KEY.match(line):
            pending.append(more["text"])
            continue
        key = _KEY.match(line)
        if key is None:
            if not line.strip():
                pending = None
            continue
        indent = len(key["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key["key"]))
        dotted = ".".join(k for _, k in stack)
        if pending is not None:
            default: Any = values
            for part in dotted.split("."):
                default = default[part]
            found.append((dotted, " ".join(pending).strip(), default))
        pending = None
    return found


def _cell(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": "))
    return f"`{text}`".replace("|", "\\|")


def table(path: Path = VALUES) -> str:
    """The Markdown table: key, default, description."""
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for key, description, default in documented_keys(path):
        escaped = description.replace("|", "\\|")
        rows.append(f"| `{key}` | {_cell(default)} | {escaped} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())

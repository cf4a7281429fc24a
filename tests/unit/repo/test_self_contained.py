"""The repository stands on its own: nothing in it points outside it, and every
relative link in its Markdown resolves to a file that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[3]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", *patterns], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def test_nothing_refers_to_files_outside_the_repository() -> None:
    offenders = []
    for path in _tracked():
        if path.suffix in (".png", ".gz", ".tgz") or path == Path(__file__):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if "../shared" in line or "DESIGN.md" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_relative_markdown_links_resolve() -> None:
    broken = []
    for doc in _tracked("*.md"):
        for target in _LINK.findall(doc.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # absolute URLs and in-page anchors
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
            elif ROOT.resolve() not in path.parents and path != ROOT.resolve():
                broken.append(f"{doc.relative_to(ROOT)} -> {target} (outside the repository)")
    assert broken == []

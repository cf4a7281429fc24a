"""Pinned dependencies of the container images, generated from the project's venv.

    python images/constraints.py            # rewrite images/constraints-{node,operator}.txt
    python images/constraints.py --check    # exit 1 if they are stale against the venv

Each file pins exactly the runtime dependency closure of one image, as installed here:
the node image needs `raftkv`'s own requirements, the operator image adds the `operator`
extra. The Dockerfile installs with `pip install -c <file>`, so an image build resolves
to these versions and nothing else.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
PROJECT = "raftkv"
IMAGES = {"node": ("archive",), "operator": ("operator",)}


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The project's own requirements (pyproject.toml, the source of truth) for `extras`."""
    project = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines.extend(project["optional-dependencies"][extra])
    return [Requirement(line) for line in lines]


def closure(extras: tuple[str, ...]) -> dict[str, str]:
    """Canonical name -> installed version of every distribution the image needs."""
    found: dict[str, str] = {}
    pending: list[tuple[Requirement, tuple[str, ...]]] = [
        (r, ("",)) for r in project_requirements(extras)
    ]
    environment: dict[str, Any] = dict(default_environment())
    while pending:
        requirement, active = pending.pop()
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({**environment, "extra": extra}) for extra in active
        ):
            continue
        key = canonicalize_name(requirement.name)
        if key == canonicalize_name(PROJECT):  # raftkv[operator] inside an extra
            pending.extend((r, ("",)) for r in project_requirements(tuple(requirement.extras)))
            continue
        if key in found:
            continue
        dist = metadata.distribution(requirement.name)
        found[key] = dist.version
        wanted = ("", *requirement.extras)
        pending.extend((Requirement(line), wanted) for line in dist.requires or [])
    return found


def render(image: str) -> str:
    pins = closure(IMAGES[image])
    header = (
        f"# Pinned runtime dependencies of the {image} image (Dockerfile: pip install -c).\n"
        "# Generated from the venv by `python images/constraints.py`; do not edit.\n"
    )
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def path(image: str) -> Path:
    return HERE / f"constraints-{image}.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = [
        image
        for image in IMAGES
        if not path(image).exists() or path(image).read_text() != render(image)
    ]
    if args.check:
        for image in stale:
            print(f"{path(image)} is stale: run python images/constraints.py", file=sys.stderr)
        return 1 if stale else 0
    for image in IMAGES:
        path(image).write_text(render(image))
        print(f"wrote {path(image)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Dockerfile and the images' pinned dependencies (docker cannot build here: no engine)."""

from __future__ import annotations

import importlib.util
import re
import sys
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.chart.rendering import REPO

DOCKERFILE = REPO / "Dockerfile"


def _stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            name = line.split()[-1] if " AS " in line.upper() else f"stage{len(stages)}"
            current = stages.setdefault(name, [])
        if current is not None:
            current.append(line)
    return stages


def _constraints_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "raftkv_image_constraints", REPO / "images" / "constraints.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_final_images_are_slim_non_root_labelled_and_without_healthcheck() -> None:
    stages = _stages()
    assert {"build", "runtime", "node", "operator"} <= set(stages)
    text = DOCKERFILE.read_text()
    assert "HEALTHCHECK" not in re.sub(r"#.*", "", text)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim", text, re.M)
    runtime = " ".join(stages["runtime"])
    for label in ("source", "licenses", "version", "revision", "created"):
        assert f"org.opencontainers.image.{label}=" in runtime
    for target, entrypoint in (("node", "raftkv"), ("operator", "raftkv-operator")):
        lines = stages[target]
        assert lines[0].split()[1] == "runtime", f"{target} must build on the slim runtime stage"
        users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
        assert users and users[-1].split(":")[0] == "10001", f"{target} runs as uid 10001"
        assert f'ENTRYPOINT ["{entrypoint}"]' in lines
        assert any("org.opencontainers.image.title=" in line for line in lines)
        # Only the virtualenv comes from the build stage: no compilers, sources or caches.
        copies = [line for line in lines if line.upper().startswith("COPY ")]
        assert copies == [f"COPY --from=build /opt/{target} /opt/{target}"]
        assert not any(re.search(r"apt-get|pip install|gcc", line) for line in lines)


def test_the_uid_matches_what_the_operator_and_the_chart_run_as() -> None:
    import yaml

    from raftkv_operator import desired

    assert desired.RUN_AS_USER == 10001
    values = yaml.safe_load((REPO / "charts" / "raftkv-operator" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001


def test_installs_are_pinned_by_the_constraint_files() -> None:
    build = " ".join(_stages()["build"])
    assert "-c images/constraints-node.txt '.[archive]'" in build
    assert "-c images/constraints-operator.txt '.[operator]'" in build


def _pins(image: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "images" / f"constraints-{image}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_the_whole_dependency_closure_within_the_declared_ranges() -> None:
    import tomllib

    module = _constraints_module()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {
        "node": project["dependencies"] + project["optional-dependencies"]["archive"],
        "operator": project["dependencies"] + project["optional-dependencies"]["operator"],
    }
    for image, extras in module.IMAGES.items():
        pins = _pins(image)
        closure = module.closure(extras)
        missing = sorted(set(closure) - set(pins))
        assert not missing, (
            f"images/constraints-{image}.txt lacks {missing}: run make image-constraints"
        )
        for line in declared[image]:
            requirement = Requirement(line)
            pinned = pins[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(pinned, prereleases=True), (
                f"{image}: {requirement.name}=={pinned} is outside {requirement.specifier}"
            )


def test_docker_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, ".dockerignore excludes everything but what it lists"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for line in _stages()["build"]:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"

"""monitoring/build_dashboard.py (a script, not a package), loaded as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BUILDER = Path(__file__).resolve().parents[2] / "monitoring" / "build_dashboard.py"


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("raftkv_build_dashboard", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module

"""Modules the commands use, imported on first use: `phase1 validate` must not pay for numpy, polars or argon2."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A module imported at the first attribute access (then an ordinary module attribute lookup)."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


auth = LazyModule("phase1lib.auth")
ops = LazyModule("phase1lib.ops")
runner = LazyModule("phase1lib.engine.runner")
runs = LazyModule("phase1lib.runs")
service = LazyModule("phase1lib.service")

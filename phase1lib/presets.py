"""Presets: named range requests with a one-line description, stored as data (data/presets.json)."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import FieldError, InputError
from .project import Project
from .ranges import parse_ranges
from .ruleset import load_ruleset

PRESETS_FILE = Path(__file__).parent / "data" / "presets.json"


@lru_cache(maxsize=1)
def _load() -> dict[str, dict[str, Any]]:
    return json.loads(PRESETS_FILE.read_text(encoding="utf-8"))


def preset_names() -> list[str]:
    return list(_load())


def preset_ranges(name: str) -> dict[str, Any]:
    """The range request of a preset (a copy), or NotFoundError listing the presets."""
    presets = _load()
    if name not in presets:
        raise InputError([FieldError("preset", f"unknown preset {name!r}; known presets: {', '.join(presets)}")],
                         "preset")
    return copy.deepcopy(presets[name]["ranges"])


def preset_ruleset(name: str | None) -> str | None:
    """The ruleset a preset is written for ("v2" for market-coupon presets), or None (any ruleset)."""
    if name is None:
        return None
    preset_ranges(name)  # InputError for an unknown name
    return _load()[name].get("ruleset")


def list_presets(project: Project | None = None) -> list[dict[str, Any]]:
    """Every preset with its description, ranges, the ruleset it is written for and its cardinality."""
    return [
        {"name": name, "description": spec["description"], "ranges": copy.deepcopy(spec["ranges"]),
         "ruleset": spec.get("ruleset"),
         "cardinality": parse_ranges(spec["ranges"], project,
                                     load_ruleset(spec["ruleset"]) if spec.get("ruleset") else None).cardinality}
        for name, spec in _load().items()
    ]

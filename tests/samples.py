"""Sample projects for tests (the files of examples/)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from phase1lib.project import Project, load_project

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@cache
def sample(name: str = "london_dc_alpha") -> Project:
    return load_project(EXAMPLES / f"{name}.json")

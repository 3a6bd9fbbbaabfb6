"""The sample projects and structures shipped inside the package (``phase1lib/data/samples``; the checkout's
``examples/`` is a link to it), so an installed wheel has them too: the demo, the server's default project, the
dashboards' one-click samples and the notebooks all find them here."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FieldError, InputError

SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "samples"
#: The project a run uses when its request and the session have none (the operations guide's flow): its economics
#: give viable structures on the guide's own ranges under v1 and v2 (examples/README.md).
DEFAULT_PROJECT = "slough_dc_delta"


def sample_path(name: str) -> Path:
    """The file of a sample (``london_dc_alpha``, ``structure_rank1``...); InputError listing them if unknown."""
    path = SAMPLES_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SAMPLES_DIR.glob("*.json")))
        raise InputError([FieldError("sample", f"unknown sample {name!r}; shipped: {known}")], "sample")
    return path


def project_samples() -> dict[str, Path]:
    """Sample project files by title (the samples that are projects, not structures)."""
    out: dict[str, Path] = {}
    for path in sorted(SAMPLES_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "title" in data and "country" in data:
            out[str(data["title"])] = path
    return out

"""Persisted runs under PHASE1_HOME/runs/<run_id>/: permutations.parquet, meta.json, top.json.

A run is written into a temporary folder next to its final place, every file fsync'd, then the folder
is renamed into place in one step: a crash mid-write leaves no half run (a stale ``.tmp-*`` folder at
worst, swept on the next save). The run_id is a hash of the run's inputs, so a rerun finds it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from .config import phase1_home
from .engine.runner import RunResult
from .errors import NotFoundError
from .fsutil import fsync_dir
from .ranges import Grid, permutation_ids

FILES = ("meta.json", "top.json", "permutations.parquet")
STALE_TMP_S = 3600


def runs_dir(home: Path | None = None) -> Path:
    return (home or phase1_home()) / "runs"


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _sweep(folder: Path) -> None:
    """Remove temporary folders of writes that died more than an hour ago."""
    now = time.time()
    for tmp in folder.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except FileNotFoundError:
            pass


def save_run(result: RunResult, home: Path | None = None) -> Path:
    """Write a run atomically; if the same run_id is already stored, keep the stored one."""
    folder = runs_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    _sweep(folder)
    final = folder / result.run_id
    if final.is_dir():
        return final
    tmp = folder / f".tmp-{result.run_id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        result.frame.write_parquet(tmp / "permutations.parquet", compression="zstd", compression_level=1,
                                   statistics=False)  # level 1: as small as the default level 3 here, ~40 % faster
        with open(tmp / "permutations.parquet", "rb") as fh:
            os.fsync(fh.fileno())
        _write(tmp / "top.json", json.dumps(result.top, allow_nan=False).encode())
        _write(tmp / "meta.json", json.dumps(result.meta, indent=2, allow_nan=False).encode())
        fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another writer stored the same run first
        fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def has_run(run_id: str, home: Path | None = None) -> bool:
    return _valid_id(run_id) and all((runs_dir(home) / run_id / f).is_file() for f in FILES)


def _valid_id(run_id: str) -> bool:
    return isinstance(run_id, str) and len(run_id) == 16 and all(c in "0123456789abcdef" for c in run_id)


def load_meta(run_id: str, home: Path | None = None) -> dict[str, Any]:
    if not has_run(run_id, home):
        raise NotFoundError(f"unknown run {run_id!r}; `phase1 runs` lists the stored runs")
    return json.loads((runs_dir(home) / run_id / "meta.json").read_text())


def load_run(run_id: str, home: Path | None = None, frame: bool = True) -> RunResult:
    """A stored run (its frame read from Parquet unless ``frame`` is False)."""
    meta = load_meta(run_id, home)
    folder = runs_dir(home) / run_id
    top = json.loads((folder / "top.json").read_text())
    data = pl.read_parquet(folder / "permutations.parquet") if frame else pl.DataFrame()
    return RunResult(run_id=run_id, meta=meta, frame=data, top=top)


def frame_ids(result: RunResult) -> list[str]:
    """permutation_id of every row of a run's frame: the stored column (v1), or derived from the recorded grid
    and each row's permutation_index (v2 runs store no id column: METHODOLOGY section 3's ids, exactly)."""
    if "permutation_id" in result.frame.columns:
        return result.frame["permutation_id"].to_list()
    grid = Grid(values={k: tuple(v) for k, v in result.meta["grid"].items()})
    index = result.frame["permutation_index"].to_numpy()
    return permutation_ids(grid, grid.decode(index))


def list_runs(home: Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored runs, newest first: run_id, created_at, title, cardinality, evaluated, counts, seed, elapsed."""
    folder = runs_dir(home)
    out = []
    for path in folder.glob("*/meta.json") if folder.is_dir() else []:
        if path.parent.name.startswith("."):
            continue
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out.append({"run_id": meta["run_id"], "created_at": meta["created_at"], "title": meta["project"]["title"],
                    "cardinality": meta["cardinality"], "evaluated": meta["evaluated"], "counts": meta["counts"],
                    "seed": meta["seed"], "ruleset": meta["ruleset"]["version"],
                    "elapsed_s": meta["timings"]["engine_s"]})
    out.sort(key=lambda m: (m["created_at"], m["run_id"]), reverse=True)
    return out[:limit] if limit else out

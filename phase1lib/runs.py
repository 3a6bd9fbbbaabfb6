"""Persisted runs under PHASE1_HOME/runs/<run_id>/: permutations.parquet, meta.json, top.json.

A run is written into a temporary folder next to its final place, every file fsync'd, then the folder
is renamed into place in one step: a crash mid-write leaves no half run (a stale ``.tmp-*`` folder at
worst, swept on the next save). The run_id is a hash of the run's inputs, so a rerun finds it. Deleting is
the same in reverse: the folder is renamed out of the way in one step, then removed.

Runs are private to the owner: folders 700, files 600 (they hold the deal's economics).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from . import settings
from .engine.runner import RunResult
from .errors import FieldError, InputError, NotFoundError
from .fsutil import PRIVATE_FILE_MODE, fsync_dir, private_dir, write_private
from .ranges import Grid, permutation_ids
from .text import bad_character, safe_display

FILES = ("meta.json", "top.json", "permutations.parquet")
STALE_TMP_S = 3600


def runs_dir(home: Path | None = None) -> Path:
    return (home or settings.get().home) / "runs"


def _write(path: Path, data: bytes) -> None:
    write_private(path, data)  # owner-only (600), fsync'd


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
    folder = private_dir(runs_dir(home))
    _sweep(folder)
    final = folder / result.run_id
    if final.is_dir():
        return final
    tmp = folder / f".tmp-{result.run_id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(mode=0o700)
    os.chmod(tmp, 0o700)
    try:
        result.frame.write_parquet(tmp / "permutations.parquet", compression="zstd", compression_level=1,
                                   statistics=False)  # level 1: as small as the default level 3 here, ~40 % faster
        os.chmod(tmp / "permutations.parquet", PRIVATE_FILE_MODE)  # inside a 700 folder until then
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
    """permutation_id of every row of a run's frame, derived from the recorded grid and each row's
    permutation_index (METHODOLOGY section 3's ids, exactly); runs stored before ids were derived on read keep
    theirs in a column, which is read as it is."""
    if "permutation_id" in result.frame.columns:
        return result.frame["permutation_id"].to_list()
    grid = Grid(values={k: tuple(v) for k, v in result.meta["grid"].items()})
    index = result.frame["permutation_index"].to_numpy()
    return permutation_ids(grid, grid.decode(index))


def list_runs(home: Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored runs, newest first: run_id, created_at, title, cardinality, evaluated, counts, seed, elapsed.

    Only the runs that can be shown; :func:`scan_runs` also names the bad ones.
    """
    return scan_runs(home, limit)[0]


def scan_runs(home: Path | None = None, limit: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(the stored runs as :func:`list_runs` gives them, the bad ones as {"run_id", "problem"}).

    A bad run (an unreadable or incomplete meta.json, a title that breaks the text rule, e.g. an old run
    with a lone surrogate) never hides the others: it is named, with what is wrong, so that it can be
    removed (``phase1 runs delete RUN_ID``).
    """
    folder = runs_dir(home)
    good, bad = [], []
    for run_folder in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not _valid_id(run_folder.name) or not run_folder.is_dir():
            continue  # temporary folders of writes and deletes, anything else that is not a run
        record, problem = _read_record(run_folder)
        if problem is None and record is not None:
            problem = run_problem(record)
        if problem is not None or record is None:
            bad.append({"run_id": run_folder.name, "problem": problem or "unreadable"})
        else:
            good.append(record)
    good.sort(key=lambda m: (m["created_at"], m["run_id"]), reverse=True)
    return (good[:limit] if limit else good), bad


def _read_record(run_folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The listing record of one run folder, or why it cannot be read."""
    missing = [f for f in FILES if not (run_folder / f).is_file()]
    if missing:
        return None, f"incomplete run: missing {', '.join(missing)}"
    try:
        meta = json.loads((run_folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return None, f"meta.json is unreadable ({type(error).__name__})"
    try:
        record = record_of(meta)
    except (KeyError, TypeError) as error:
        return None, f"meta.json lacks {safe_display(error)}"
    if record["run_id"] != run_folder.name:
        return None, f"meta.json names another run ({safe_display(record['run_id'])})"
    return record, None


def record_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A run's catalogue record (the listing row and the store's index entry) from its meta."""
    return {"run_id": meta["run_id"], "created_at": meta["created_at"], "title": meta["project"]["title"],
            "cardinality": meta["cardinality"], "evaluated": meta["evaluated"], "counts": meta["counts"],
            "seed": meta["seed"], "ruleset": meta["ruleset"]["version"],
            "ruleset_sha256": meta["ruleset"]["sha256"], "elapsed_s": meta["timings"]["engine_s"]}


def run_problem(record: Any) -> str | None:
    """Why a stored run record (a listing row, the store's index entry) cannot be shown, or None.

    Every text in it must follow the text rule (phase1lib.text): an old run stored before the rule could
    hold a lone surrogate, which no widget, workbook or UTF-8 page can carry.
    """
    if not isinstance(record, dict):
        return "not a run record"
    if not _valid_id(record.get("run_id")):
        return "its run_id is not 16 hex digits"
    if not isinstance(record.get("title"), str):
        return "it has no title"
    for path, text in _texts(record, ""):
        bad = bad_character(text)
        if bad is not None:
            return f"{path or 'a key'} holds {bad[1]} at position {bad[0] + 1}"
    return None


def _texts(value: Any, path: str, depth: int = 0) -> Any:
    """Every string of a JSON value (keys too) with the path of the field holding it."""
    if depth > 20:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key) if bad_character(str(key)) is None else "?"
            yield path, str(key)
            yield from _texts(item, f"{path}.{name}" if path else name, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, path, depth + 1)


def delete_run_files(run_id: str, home: Path | None = None) -> bool:
    """Remove a stored run's folder atomically; False when there is none.

    The folder is first renamed to a ``.tmp-delete-*`` name (one step: a reader sees the whole run or no
    run), then removed; a crash in between leaves a temporary folder that the next save sweeps away.
    """
    if not _valid_id(run_id):
        raise InputError([FieldError("run_id", f"must be 16 hex digits (got {safe_display(run_id)!r})")], "run id")
    folder = runs_dir(home)
    final = folder / run_id
    if not final.is_dir():
        return False
    tmp = folder / f".tmp-delete-{run_id}-{uuid.uuid4().hex[:8]}"
    os.rename(final, tmp)
    fsync_dir(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    return True

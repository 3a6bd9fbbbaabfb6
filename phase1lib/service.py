"""Business actions with their operational rules: flags, canary rulesets, persistence, metrics.

The CLI, the REST API and the dashboards all act through these functions, so a flag or a canary
share means the same thing wherever an analyst works. Each action takes the store explicitly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ops
from .engine import evaluate_structure
from .engine.runner import DEFAULT_TOPN, RunResult, make_run_id, request_cohort_key, run, run_key
from .errors import ConflictError, DisabledError, FieldError, InputError, NotFoundError, Phase1Error
from .presets import list_presets, preset_ruleset
from .project import Project, derive, parse_project
from .ranges import Grid, cardinality_summary, check_guardrail, parse_ranges, precheck_guardrail
from .ruleset import Ruleset
from .runs import (
    delete_run_files,
    has_run,
    load_run,
    record_of,
    run_problem,
    runs_dir,
    save_run,
    scan_runs,
)
from .store import Store
from .text import text_problem

Progress = Callable[[int, int], None]
#: What runs the engine and saves the run (:func:`compute_run`'s signature), here or in an engine process.
Compute = Callable[..., RunResult]
#: Index entries read to reconcile the catalogue (far more than a workbench keeps).
INDEX_SCAN = 100_000


def ruleset_named(store: Store, version: str | None) -> Ruleset:
    """The ruleset a caller names: a shipped version or a registered candidate; the stable v1 for None."""
    if version is None:
        return ops.load_ruleset_version(store, ops.STABLE_VERSION)
    if not isinstance(version, str):
        raise InputError([FieldError("ruleset", f"must be a ruleset version such as v1 or v2 (got {version!r})")],
                         "request")
    try:
        return ops.load_ruleset_version(store, version)
    except NotFoundError as error:
        raise InputError([FieldError("ruleset", f"{error}; or a candidate registered with phase1 ops ruleset "
                                                "register")], "request") from None


def validate_project(store: Store, data: Any, ruleset: str | None = None) -> tuple[Project, dict[str, Any]]:
    """Validated project and its derived fields under ``ruleset`` (v2 adds the lending value; InputError
    listing every problem)."""
    ops.require_flag(store, "phase1_core")
    rs = ruleset_named(store, ruleset)
    project = parse_project(data)
    return project, derive(project, rs).to_dict()


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before a run: the validated grid, seed, gates, the ruleset and why, the run_id."""

    grid: Grid
    seed: int
    gates: bool
    ruleset: Ruleset
    ruleset_source: str  # "request" (the caller named it), "preset" (the preset is written for it) or "canary"
    run_id: str
    chunked: bool
    cohort_key: str
    count: int


def plan_run(store: Store, project: Project, ranges: Mapping[str, Any], seed: int | None = None,
             topn: int = DEFAULT_TOPN, sample: int | None = None, ruleset: str | None = None,
             preset: str | None = None) -> RunPlan:
    """Plan a run. A named ``ruleset`` is used as asked, then the ruleset a ``preset`` is written for (D45);
    otherwise the canary decides from the request's cohort (the operations guide's rollout: the candidate for its
    share of cohorts, else the stable v1)."""
    ops.require_flag(store, "phase1_core")
    precheck_guardrail(ranges, sample)  # counted arithmetically: refused before any value is built
    seed_ = ops.resolve_seed(store, seed)
    gates = ops.flag(store, "gates_ab")
    cohort = request_cohort_key(project, ranges, seed_, topn, sample, gates)
    written_for = preset_ruleset(preset) if preset else None
    if ruleset is not None:
        rs, source = ruleset_named(store, ruleset), "request"
    elif written_for is not None:
        rs, source = ruleset_named(store, written_for), "preset"
    else:
        rs, source = ops.load_ruleset_version(store, ops.ruleset_for_run(store, cohort)), "canary"
    grid = parse_ranges(ranges, project, rs)
    check_guardrail(grid.cardinality, sample)
    key = run_key(project, grid, seed_, topn, sample, gates)
    return RunPlan(grid=grid, seed=seed_, gates=gates, ruleset=rs, ruleset_source=source,
                   run_id=make_run_id(key, rs), chunked=ops.flag(store, "perm_chunking"), cohort_key=cohort,
                   count=sample or grid.cardinality)


def _audit_ruleset(store: Store, plan: RunPlan, actor: str | None, request_id: str | None) -> None:
    """A run whose ruleset was named (by the request or its preset) bypasses the canary: audited, with who asked.
    A canary-decided run is not an action of anyone's: its ruleset is in its record (status/full recent runs)."""
    if plan.ruleset_source == "canary":
        return
    store.add_audit("run.ruleset", actor or "system", request_id, target=plan.run_id,
                    new=plan.ruleset.version, sha256=plan.ruleset.sha256, source=plan.ruleset_source)


def execute_run(store: Store, project: Project, ranges: Mapping[str, Any], *, seed: int | None = None,
                topn: int = DEFAULT_TOPN, sample: int | None = None, workers: int = 1,
                progress: Progress | None = None, cancel: threading.Event | None = None,
                home: Path | None = None, ruleset: str | None = None, actor: str | None = None,
                request_id: str | None = None, preset: str | None = None, plan: RunPlan | None = None,
                compute: Compute | None = None) -> RunResult:
    """Run (or find the stored run of) a range request; persist, index and measure it. ``plan``: one the caller
    made already with :func:`plan_run` (the same inputs), so a run is planned once. ``compute``: where the
    engine runs and the run is saved (default :func:`compute_run` in this process; the server passes its
    engine processes')."""
    compute = compute or compute_run
    started = time.perf_counter()
    count = None
    try:
        plan = plan or plan_run(store, project, ranges, seed, topn, sample, ruleset, preset)
        count = plan.count
        _audit_ruleset(store, plan, actor, request_id)
        if has_run(plan.run_id, home):
            result = load_run(plan.run_id, home)
            if progress:
                progress(count, count)
        else:
            result = compute(project, ranges, seed=plan.seed, topn=topn, sample=sample, workers=workers,
                             ruleset=plan.ruleset, gates=plan.gates, chunked=plan.chunked, progress=progress,
                             cancel=cancel, home=home)
            store.index_run(run_record(result))
    except Phase1Error as error:
        if not is_refusal(error):  # a refused input, a switched-off flag or a cancel is no failed run
            ops.record_metric(store, "run", time.perf_counter() - started, False, count)
        raise
    except Exception:
        ops.record_metric(store, "run", time.perf_counter() - started, False, count)
        raise
    ops.record_metric(store, "run", time.perf_counter() - started, True, count)
    return result


def compute_run(project: Project, ranges: Mapping[str, Any], *, seed: int, topn: int, sample: int | None,
                workers: int, ruleset: Ruleset, gates: bool, chunked: bool, progress: Progress | None,
                cancel: threading.Event | None, home: Path | None) -> RunResult:
    """Run the engine on a planned request and save the run atomically under ``home``: the part of a run
    that may happen in another process (it touches no store)."""
    result = run(project, ranges, seed=seed, topn=topn, sample=sample, workers=workers, ruleset=ruleset,
                 gates=gates, chunked=chunked, progress=progress, cancel=cancel)
    persist_started = time.perf_counter()
    save_run(result, home)
    result.meta["timings"]["persist_s"] = round(time.perf_counter() - persist_started, 6)
    return result


def is_refusal(error: Phase1Error) -> bool:
    """An expected "no" (bad input, guardrail, not found, conflict, cancelled, a flag switched off), not a
    server fault: what the ops metrics never count as a failure."""
    return error.status < 500 or isinstance(error, DisabledError)


def run_record(result: RunResult) -> dict[str, Any]:
    """The store's index entry of a run (runs.record_of its meta)."""
    return record_of(result.meta)


# ---- reading runs: one catalogue --------------------------------------------------------------------------


def run_catalogue(store: Store, home: Path | None = None, limit: int | None = None
                  ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(the runs to show, newest first; the bad ones as {"run_id", "problem"}): the one catalogue of runs.

    The store's index (shared by every process, e.g. on Redis) and the run folders of PHASE1_HOME are
    reconciled here, once, for every reader (CLI, API, dashboards): a stored run the index lacks is indexed; an
    indexed run whose files are not in this PHASE1_HOME, a bad record (unreadable, or text that breaks the text
    rule) is named with what is wrong, so that it can be removed.
    """
    ops.require_flag(store, "phase1_core")
    stored, bad = scan_runs(home)
    indexed = {r["run_id"]: r for r in store.list_runs(INDEX_SCAN)}
    on_disk = {r["run_id"] for r in stored} | {b["run_id"] for b in bad}
    for record in stored:
        if record["run_id"] not in indexed:
            store.index_run(record)
    for run_id, record in indexed.items():
        if run_id not in on_disk:
            bad.append({"run_id": run_id, "problem": "indexed, but its files are not in this PHASE1_HOME "
                                                     f"({runs_dir(home)}): stored by a process with another home?"})
        elif (problem := run_problem(record)) is not None and run_id not in {b["run_id"] for b in bad}:
            bad.append({"run_id": run_id, "problem": problem})
    bad.sort(key=lambda b: b["run_id"])
    return (stored[:limit] if limit else stored), bad


def open_run(store: Store, run_id: str, home: Path | None = None, frame: bool = True) -> RunResult:
    """A stored run, for any reader: the phase1_core flag applies, NotFoundError for an unknown run."""
    ops.require_flag(store, "phase1_core")
    return load_run(run_id, home, frame=frame)


def run_top(store: Store, run_id: str, n: int | None = None, home: Path | None = None) -> dict[str, Any]:
    """A stored run's Top-N (its first ``n``): the CLI's `phase1 top` and the API's top20."""
    result = open_run(store, run_id, home, frame=False)
    m = result.meta
    return {"run_id": result.run_id, "title": m["project"]["title"], "seed": m["seed"],
            "cardinality": m["cardinality"], "evaluated": m["evaluated"], "counts": m["counts"],
            "ruleset": m["ruleset"]["version"], "created_at": m["created_at"],
            "top": result.top[:n] if n else result.top}


def run_ruleset(store: Store, meta: Mapping[str, Any]) -> Ruleset:
    """The ruleset a stored run applied: by its version (shipped, or a registered candidate), checked against
    the sha256 the run recorded (ConflictError when the tables are not the ones it used)."""
    want = meta["ruleset"]
    ruleset = ops.load_ruleset_version(store, want["version"])
    if ruleset.sha256 != want.get("sha256"):
        raise ConflictError(f"run {meta.get('run_id')} used ruleset {want['version']} with sha256 "
                            f"{str(want.get('sha256'))[:12]}..., not the tables available here "
                            f"({ruleset.sha256[:12]}...)", ruleset=want["version"])
    return ruleset


def evaluate(store: Store, project: Project, structure: Any, seed: int | None = None,
             ruleset: str | None = None) -> dict[str, Any]:
    """One structure with KPIs and schedule (the reverse DSCR calculator) under ``ruleset``; without one the
    canary decides, as for a run (the cohort of this project, structure and seed)."""
    ops.require_flag(store, "phase1_core")
    ops.require_flag(store, "reverse_dscr_engine")
    seed_ = ops.resolve_seed(store, seed)
    if ruleset is None:
        cohort = request_cohort_key(project, structure if isinstance(structure, Mapping) else {}, seed_, 1, None,
                                    True)
        rs = ops.load_ruleset_version(store, ops.ruleset_for_run(store, cohort))
    else:
        rs = ruleset_named(store, ruleset)
    out = evaluate_structure(project, structure, ruleset=rs, seed=seed_)
    return {**out, "ruleset": {"version": rs.version, "sha256": rs.sha256}}


XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def cardinality(store: Store, ranges: Mapping[str, Any], project: Project | None = None,
                ruleset: str | None = None) -> dict[str, Any]:
    """Cardinality, per-key values and guardrail verdict of a range request (no evaluation); under v2
    "market" coupons are allowed and senior_coupon defaults to them."""
    ops.require_flag(store, "phase1_core")
    return cardinality_summary(parse_ranges(ranges, project, ruleset_named(store, ruleset)))


def presets(store: Store, project: Project | None = None) -> list[dict[str, Any]]:
    ops.require_flag(store, "phase1_core")
    return list_presets(project)


def export_term_sheet(store: Store, run_id: str, rank: int, fmt: str = "xlsx",
                      home: Path | None = None) -> tuple[bytes, str, str]:
    """(content, file name, media type) of the term sheet of a ranked structure: xlsx, or json."""
    import json

    from .termsheet import term_sheet_json, to_xlsx_bytes

    ops.require_flag(store, "phase1_core")
    ops.require_flag(store, "docs_exports")
    if fmt not in ("xlsx", "json"):
        raise InputError([FieldError("format", f"must be xlsx or json (got {fmt!r})")], "export")
    result = load_run(run_id, home)
    refuse_bad_run(result.run_id, result.meta)
    result.top_row(rank)  # NotFoundError for a rank outside the Top-N
    ruleset = run_ruleset(store, result.meta)  # shipped or a registered candidate, its sha256 checked
    name = f"phase1-{run_id}-rank{rank}"
    if fmt == "json":
        return (json.dumps(term_sheet_json(result, rank, ruleset), indent=2).encode(), f"{name}.json",
                "application/json")
    return to_xlsx_bytes(result, rank, ruleset), f"{name}.xlsx", XLSX_MIME


def refuse_bad_run(run_id: str, meta: Mapping[str, Any]) -> None:
    """ConflictError (409) naming a stored run whose project no longer validates (e.g. a title with a lone
    surrogate, stored before the text rule): it cannot become a term sheet; it can be deleted."""
    try:
        parse_project(meta.get("project"))
    except InputError as error:
        raise ConflictError(f"run {run_id} is a bad record: its stored project is {error}; remove it with "
                            f"`phase1 runs delete {run_id}` or POST /api/phase1/runs/delete") from None


def delete_run(store: Store, run_id: Any, actor: str, request_id: str | None = None, reason: Any = None,
               home: Path | None = None) -> dict[str, Any]:
    """Remove a stored run: its folder (atomically) and its index entry; audited as ``run.delete``.

    For bad records too (an unreadable meta.json, a title that breaks the text rule): nothing of the run is
    read. NotFoundError when neither the folder nor the index entry exists.
    """
    errors = []
    if not isinstance(run_id, str) or not run_id:
        errors.append(FieldError("run_id", "required: the 16 hex digits of a stored run"))
    if reason is not None and (problem := text_problem(reason, max_len=500)) is not None:
        errors.append(FieldError("reason", problem))
    if errors:
        raise InputError(errors, "run delete")
    files = delete_run_files(run_id, home)
    entry = store.unindex_run(run_id)
    if not files and not entry:
        raise NotFoundError(f"unknown run {run_id!r}; `phase1 runs` lists the stored runs")
    store.add_audit("run.delete", actor, request_id, target=run_id, files=files, index_entry=entry,
                    reason=reason)
    return {"run_id": run_id, "deleted": True, "files": files, "index_entry": entry}

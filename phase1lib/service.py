"""Business actions with their operational rules: flags, canary rulesets, persistence, metrics.

The CLI, the REST API and the dashboards all act through these functions, so a flag or a canary
share means the same thing wherever an analyst works. Each action takes the store explicitly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ops
from .engine import evaluate_structure
from .engine.runner import DEFAULT_TOPN, GridJob, RunResult, plan_grid, request_cohort_key, run_job
from .errors import (
    ConflictError,
    DisabledError,
    FieldError,
    GuardrailError,
    InputError,
    NotFoundError,
    Phase1Error,
    ValueLimitError,
)
from .presets import list_presets, preset_ruleset
from .project import Project, derive, parse_project
from .ranges import Grid, cardinality_summary, max_permutations, parse_ranges, precheck_guardrail
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

if TYPE_CHECKING:  # the portfolio package is imported when a portfolio runs
    from .portfolio import Portfolio, PortfolioResult

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
    #: The engine's stage-1 job (runner.plan_grid): what the local threads or the Dask tasks evaluate.
    job: GridJob


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
    job = plan_grid(project, ranges, seed=seed_, topn=topn, sample=sample, ruleset=rs, gates=gates)
    return RunPlan(grid=job.grid, seed=seed_, gates=gates, ruleset=rs, ruleset_source=source, run_id=job.run_id,
                   chunked=ops.flag(store, "perm_chunking"), cohort_key=cohort, count=job.count, job=job)


def _audit_ruleset(store: Store, plan: RunPlan, actor: str | None, request_id: str | None) -> None:
    """A run whose ruleset was named (by the request or its preset) bypasses the canary: audited, with who asked.
    A canary-decided run is not an action of anyone's: its ruleset is in its record (status/full recent runs)."""
    if plan.ruleset_source == "canary":
        return
    store.add_audit("run.ruleset", actor or "system", request_id, target=plan.run_id,
                    new=plan.ruleset.version, sha256=plan.ruleset.sha256, source=plan.ruleset_source)


class _Measure:
    """The permutations a measured run counts (known once it is planned)."""

    count: int | None = None


def record_run_outcome(store: Store, started: float, count: int | None, error: BaseException | None = None) -> None:
    """The "run" ops metric of one run: its duration and outcome. A refused input, a switched-off flag or a
    cancel is no failed run (:func:`is_refusal`): nothing is recorded for it."""
    if isinstance(error, Phase1Error) and is_refusal(error):
        return
    ops.record_metric(store, "run", time.perf_counter() - started, error is None, count)


@contextmanager
def measured_run(store: Store) -> Iterator[_Measure]:
    """Record one "run" ops metric around a run (:func:`record_run_outcome`)."""
    started = time.perf_counter()
    measure = _Measure()
    try:
        yield measure
    except Exception as error:
        record_run_outcome(store, started, measure.count, error)
        raise
    record_run_outcome(store, started, measure.count)


def begin_run(store: Store, plan: RunPlan, actor: str | None, request_id: str | None, home: Path | None,
              progress: Progress | None = None) -> RunResult | None:
    """A planned run's first steps: audit its ruleset; the stored run when it exists (its run_id is a hash of
    its inputs: the same request finds it), else None (the caller evaluates it, then :func:`store_run`)."""
    _audit_ruleset(store, plan, actor, request_id)
    if not has_run(plan.run_id, home):
        return None
    if progress:
        progress(plan.count, plan.count)
    return load_run(plan.run_id, home)


def persist_run(result: RunResult, home: Path | None) -> None:
    """Save a fresh run (atomic folder) and time it (meta timings persist_s)."""
    persist_started = time.perf_counter()
    save_run(result, home)
    result.meta["timings"]["persist_s"] = round(time.perf_counter() - persist_started, 6)


def store_run(store: Store, result: RunResult, home: Path | None) -> None:
    """Persist a fresh run and index it in the store."""
    persist_run(result, home)
    store.index_run(run_record(result))


def execute_run(store: Store, project: Project, ranges: Mapping[str, Any], *, seed: int | None = None,
                topn: int = DEFAULT_TOPN, sample: int | None = None, workers: int = 1,
                progress: Progress | None = None, cancel: threading.Event | None = None,
                home: Path | None = None, ruleset: str | None = None, actor: str | None = None,
                request_id: str | None = None, preset: str | None = None, plan: RunPlan | None = None,
                compute: Compute | None = None) -> RunResult:
    """Run (or find the stored run of) a range request; persist, index and measure it. ``plan``: one the caller
    made already with :func:`plan_run` (the same inputs), so a run is planned once. ``compute``: where the
    engine runs and the run is saved (default :func:`compute_run`, here; the server passes its engine
    processes', server/engine_pool.py)."""
    with measured_run(store) as measure:
        plan = plan or plan_run(store, project, ranges, seed, topn, sample, ruleset, preset)
        measure.count = plan.count
        result = begin_run(store, plan, actor, request_id, home, progress)
        if result is None:
            result = (compute or compute_run)(plan.job, workers=workers, chunked=plan.chunked, progress=progress,
                                              cancel=cancel, home=home)
            store.index_run(run_record(result))
    return result


def compute_run(job: GridJob, *, workers: int, chunked: bool, progress: Progress | None,
                cancel: threading.Event | None, home: Path | None) -> RunResult:
    """Evaluate a planned run and save it atomically under ``home``: the part of a run that touches no store,
    so it may happen in another process."""
    result = run_job(job, workers=workers, chunked=chunked, progress=progress, cancel=cancel)
    persist_run(result, home)
    return result


def plan_portfolio(store: Store, portfolio: Portfolio) -> list[RunPlan]:
    """Plan every project of a portfolio as :func:`plan_run` plans a run (ruleset choice, seed, grid, run_id).

    Nothing runs until all are valid: one InputError names every problem of every project
    (``projects[2].ranges.senior_tenor``); then one PortfolioGuardrailError names the projects over their own
    guardrail, or the total over PHASE1_MAX_PORTFOLIO_PERMUTATIONS with both numbers.
    """
    from .portfolio.spec import PortfolioGuardrailError, field_of, max_portfolio_permutations, total_guardrail_error

    ops.require_flag(store, "phase1_core")
    limit, total_limit = max_permutations(), max_portfolio_permutations()  # a bad setting is named as it is
    plans: list[RunPlan] = []
    errors: list[FieldError] = list(portfolio.errors)  # found while reading (parse_portfolio(strict=False))
    over: list[FieldError] = []
    for entry in portfolio.projects:
        i = entry.index
        try:
            plans.append(plan_run(store, entry.project, entry.ranges, entry.seed, entry.topn, entry.sample,
                                  entry.ruleset, entry.preset))
        except ValueLimitError as error:
            over.extend(FieldError(field_of(i, e.field), e.message) for e in error.errors)
        except GuardrailError as error:
            over.append(FieldError(f"projects[{i}]", f"{entry.title}: {error.cardinality:,} permutations exceed the "
                                                     f"guardrail of {error.limit:,} (PHASE1_MAX_PERMUTATIONS); "
                                                     "narrow its ranges or ask for a sample"))
        except InputError as error:
            errors.extend(FieldError(field_of(i, e.field), e.message) for e in error.errors)
    if errors:
        raise InputError(sorted(errors, key=_position), "portfolio")
    if over:
        raise PortfolioGuardrailError(over, None, limit)
    total = sum(plan.count for plan in plans)
    if total > total_limit:
        raise total_guardrail_error(total, total_limit)
    return plans


def _position(error: FieldError) -> tuple[int, int]:
    """Sort key of a portfolio problem: top-level fields first, then by project position (stable within)."""
    if error.field.startswith("projects[") and "]" in error.field:
        return 1, int(error.field[len("projects["):error.field.index("]")])
    return 0, 0


def execute_portfolio(store: Store, portfolio: Portfolio, *, scheduler: str | None = None, workers: int = 1,
                      progress: Progress | None = None, cancel: threading.Event | None = None,
                      home: Path | None = None, actor: str | None = None, request_id: str | None = None,
                      client: Any = None) -> PortfolioResult:
    """Run every project of a portfolio as :func:`execute_run` would (the same planning, audit, reuse of a stored
    run, persistence, index and metrics), the chunks on local threads or, with ``scheduler`` (or
    PHASE1_DASK_SCHEDULER), as tasks on that Dask cluster; then the summary, stored as
    PHASE1_HOME/portfolios/<portfolio_id>.json. ``progress`` counts permutations across all projects.
    """
    from .portfolio.cluster import connect, scheduler_address

    address = client.scheduler.address if client is not None else scheduler_address(scheduler)
    plans = plan_portfolio(store, portfolio)
    if address is None or client is not None:
        return _execute_portfolio(store, portfolio, plans, address, client, workers, progress, cancel, home, actor,
                                  request_id)
    own = connect(address)  # an unreachable scheduler is refused here, before anything is audited or run
    try:
        return _execute_portfolio(store, portfolio, plans, address, own, workers, progress, cancel, home, actor,
                                  request_id)
    finally:
        own.close()


def _execute_portfolio(store: Store, portfolio: Portfolio, plans: list[RunPlan], address: str | None, client: Any,
                       workers: int, progress: Progress | None, cancel: threading.Event | None, home: Path | None,
                       actor: str | None, request_id: str | None) -> PortfolioResult:
    """:func:`execute_portfolio` once planned (and connected)."""
    from .portfolio.cluster import Work, evaluate_dask, evaluate_local
    from .portfolio.summary import make_result, save_portfolio

    started = time.perf_counter()
    total = sum(plan.count for plan in plans)
    results: list[RunResult | None] = [None] * len(plans)
    work: list[Work] = []
    for i, plan in enumerate(plans):
        results[i] = begin_run(store, plan, actor, request_id, home)
        if results[i] is None:
            work.append(Work(i, plan.job, plan.chunked))
        else:
            record_run_outcome(store, started, plan.count)
    reused = sum(plans[i].count for i, r in enumerate(results) if r is not None)

    def report(done: int, _total: int) -> None:
        if progress:
            progress(reused + done, total)

    if progress:
        progress(reused, total)
    if address is not None:
        evaluations = evaluate_dask(work, address, progress=report, cancel=cancel, client=client)
    else:
        evaluations = evaluate_local(work, workers=workers, progress=report, cancel=cancel)
    try:
        for i, result in evaluations:
            store_run(store, result, home)
            results[i] = result
            record_run_outcome(store, started, plans[i].count)
    except Exception as error:
        for w in work:
            if results[w.index] is None:
                record_run_outcome(store, started, plans[w.index].count, error)
        raise
    done = [r for r in results if r is not None]
    assert len(done) == len(plans)
    evaluated = {w.index for w in work}
    outcome = make_result(portfolio, done, [i not in evaluated for i in range(len(plans))], address)
    save_portfolio(outcome, home)
    store.add_audit("portfolio.run", actor or "system", request_id, target=outcome.portfolio_id,
                    runs=[r.run_id for r in done], scheduler=address)
    return outcome


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

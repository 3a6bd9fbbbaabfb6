"""A run: grid -> chunked evaluation -> ranking -> Top-N with Monte Carlo -> RunResult (METHODOLOGY section 9).

Memory is bounded by the chunk (a few (rows x periods) matrices), not by the grid: only per-permutation
scalars are kept. Chunks may run on several threads (numpy releases the GIL); results are identical
whatever the chunk size or worker count because every row is computed from its own inputs only.

A run is three stages, shared by the local path (threads, :func:`run`) and the distributed one (Dask tasks,
``phase1lib.portfolio``), so there is one code path for the numbers:

1. :func:`plan_grid` -> :class:`GridJob`: the validated grid, ruleset, seed and options (small, picklable);
2. :func:`evaluate_chunk` (or :func:`evaluate_job_chunk`, with a per-process cached context): rows [a, b);
3. :func:`assemble` (concatenate in bound order, hint ladder searches) and :func:`finish` (rank, Monte
   Carlo, breakevens, frame, run_id, metadata).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from .. import ENGINE_VERSION
from ..defaults import DEFAULT_SEED, DEFAULT_TOPN
from ..errors import Phase1Error
from ..jsonsafe import finite_or_none
from ..pricing import MARKET
from ..project import Project, default_closing_date
from ..ranges import (
    KEYS,
    MEZZ_KEYS,
    Grid,
    check_guardrail,
    parse_ranges,
    permutation_id,
    sample_indices,
)
from ..ruleset import RATINGS, Ruleset, load_ruleset
from . import kernels
from .breakevens import breakeven_kpis
from .cashflows import STRESS_NAMES
from .evaluate import ENUMS, LIMITS, Context, context_for_grid, evaluate, search_hints, table_from_codes
from .gates import TIERS
from .montecarlo import monte_carlo
from .render import render_row, structure_of

CHUNK_ELEMENTS = 3_200_000  # rows x periods per chunk: about 26 MB per float matrix; larger chunks share more
# senior classes and spend less time in Python per row (benchmarks/engine.py: 250k rows, 2 workers, ~780 MB peak)
Progress = Callable[[int, int], None]


class RunCancelled(Phase1Error):
    """The run was cancelled by its caller."""

    status = 499
    kind = "cancelled"


@dataclass
class RunResult:
    """A finished run: metadata, every evaluated permutation (polars) and the rendered Top-N."""

    run_id: str
    meta: dict[str, Any]
    frame: pl.DataFrame
    top: list[dict[str, Any]]
    grid: Grid | None = field(default=None, repr=False)

    @property
    def counts(self) -> dict[str, int]:
        return self.meta["counts"]

    def summary(self) -> dict[str, Any]:
        """The CLI / API answer of ``phase1 run``."""
        m = self.meta
        return {"run_id": self.run_id, "seed": m["seed"], "cardinality": m["cardinality"],
                "evaluated": m["evaluated"], "counts": m["counts"], "top": self.top,
                "elapsed_s": m["timings"]["engine_s"], "ruleset": m["ruleset"]["version"],
                "created_at": m["created_at"], "closing_date": m["closing_date"]}

    def top_row(self, rank: int) -> dict[str, Any]:
        """The Top-N entry of ``rank`` (1-based)."""
        from ..errors import NotFoundError

        if not 1 <= rank <= len(self.top):
            raise NotFoundError(f"rank {rank} is outside the Top-{len(self.top)} of run {self.run_id}"
                                if self.top else f"run {self.run_id} has no viable structure to rank")
        return self.top[rank - 1]


def canonical_project(project: Project) -> dict[str, Any]:
    """The project as hashed into the run_id: every field, without a defaulted closing date."""
    data = project.to_dict()
    if data.get("closing_date") is None:
        data.pop("closing_date", None)
    return data


def run_key(project: Project, grid: Grid, seed: int, topn: int, sample: int | None, gates: bool) -> dict[str, Any]:
    """Everything a run's results depend on, except the ruleset and the engine version."""
    return {"project": canonical_project(project), "ranges": grid.to_dict(), "seed": seed, "topn": topn,
            "sample": sample, "gates": gates}


def make_run_id(key: Mapping[str, Any], ruleset: Ruleset) -> str:
    """run_id: sha256 of the canonical (project, ranges, seed, options, ruleset, engine version), 16 hex."""
    payload = dict(key, ruleset={"version": ruleset.version, "sha256": ruleset.sha256}, engine=ENGINE_VERSION)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def request_cohort_key(project: Project, ranges: Mapping[str, Any], seed: int, topn: int, sample: int | None,
                       gates: bool) -> str:
    """Stable key that decides a run's canary cohort: a hash of the request as given (project, ranges, seed,
    options), known before the ruleset is chosen (the ruleset decides how the ranges parse: v2 fills in
    "market" coupons)."""
    key = {"project": canonical_project(project), "ranges": ranges, "seed": seed, "topn": topn, "sample": sample,
           "gates": gates}
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def default_workers(requested: int | None = None) -> int:
    """Worker threads for a run: as asked, else the machine's cores (at most 4)."""
    if requested is not None:
        return max(1, requested)
    return max(1, min(4, os.cpu_count() or 1))


def chunk_rows(n_periods: int, chunk_size: int | None) -> int:
    return max(1, chunk_size or max(1024, CHUNK_ELEMENTS // max(n_periods, 1)))


Bound = tuple[int, int]
#: One evaluated chunk: (structure columns, KPI columns).
Chunk = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def chunk_bounds(count: int, size: int) -> list[Bound]:
    """Rows [a, b) of each chunk of ``size`` rows (one empty chunk for an empty grid)."""
    return [(a, min(a + size, count)) for a in range(0, count, size)] or [(0, 0)]


@dataclass(frozen=True)
class GridJob:
    """Stage 1 of a run, everything its numbers depend on, validated: the project, the ruleset, the grid, the
    seed, the Top-N size, the sample size and the gates switch. Small and picklable (no per-case arrays, no
    sampled indices): this is what a Dask task ships; a worker rebuilds the context from it (:func:`job_context`).
    """

    project: Project
    ranges: dict[str, Any]
    ruleset: Ruleset
    grid: Grid
    seed: int
    topn: int
    sample: int | None
    gates: bool

    @property
    def cardinality(self) -> int:
        return self.grid.cardinality

    @property
    def count(self) -> int:
        """Rows evaluated: the sample size, else the whole grid."""
        return self.sample or self.cardinality

    @property
    def run_id(self) -> str:
        return make_run_id(run_key(self.project, self.grid, self.seed, self.topn, self.sample, self.gates),
                           self.ruleset)

    def indices(self) -> np.ndarray | None:
        """The sampled grid indices (METHODOLOGY section 3), or None for the whole grid."""
        return sample_indices(self.cardinality, self.sample, self.seed) if self.sample else None

    def bounds(self, chunk_size: int | None = None) -> list[Bound]:
        """The chunks of this job: ``chunk_size`` rows, default :data:`CHUNK_ELEMENTS` / periods."""
        return chunk_bounds(self.count, chunk_rows(self.project.n_periods, chunk_size))


def plan_grid(project: Project, ranges: Mapping[str, Any], *, seed: int = DEFAULT_SEED, topn: int = DEFAULT_TOPN,
              sample: int | None = None, ruleset: Ruleset | None = None, gates: bool = True) -> GridJob:
    """Stage 1: validate the Top-N size, parse the ranges under the ruleset, check the guardrail."""
    rs = ruleset or load_ruleset()
    if isinstance(topn, bool) or not isinstance(topn, int) or not 1 <= topn <= 1000:
        from ..errors import FieldError, InputError

        raise InputError([FieldError("topn", f"must be an integer 1..1000 (got {topn!r})")], "request")
    grid = parse_ranges(ranges, project, rs)
    check_guardrail(grid.cardinality, sample)
    return GridJob(project=project, ranges=dict(ranges), ruleset=rs, grid=grid, seed=seed, topn=topn,
                   sample=sample, gates=gates)


def build_context(job: GridJob) -> Context:
    """The per-run constants of a job (flows of every case), with the compiled kernels where this process has
    them: results are bit-identical either way (engine.kernels), so workers with and without agree."""
    ctx = context_for_grid(job.project, job.ruleset, job.grid)
    ctx.kernels = kernels.use_for(job.count)
    return ctx


def evaluate_chunk(ctx: Context, grid: Grid, indices: np.ndarray | None, bound: Bound) -> Chunk:
    """Stage 2: rows [a, b) of the grid (or of its sampled ``indices``), a pure function of (project, ruleset,
    grid, indices, bounds): structure columns and KPI columns (internals dropped but the hint-search flag)."""
    a, b = bound
    idx = indices[a:b] if indices is not None else np.arange(a, b, dtype=np.int64)
    codes = grid.decode(idx)
    table = table_from_codes(grid, codes)
    out = evaluate(ctx, table)
    structure = {"permutation_index": idx, **table, **{f"_code_{k}": codes[k] for k in KEYS}}
    return structure, {k: v for k, v in out.items() if not k.startswith("_") or k == "_hint_search"}


_CONTEXTS: OrderedDict[str, tuple[Context, np.ndarray | None]] = OrderedDict()
_CONTEXTS_LOCK = threading.Lock()
#: Contexts a process keeps (a Dask worker serving the chunks of several projects of a portfolio).
CONTEXT_CACHE_SIZE = 8


def job_context(job: GridJob) -> tuple[Context, np.ndarray | None]:
    """(context, sampled indices) of a job, built once per process and kept for its next chunks (an LRU of
    :data:`CONTEXT_CACHE_SIZE` jobs keyed by run_id): a Dask task ships the small job, never the arrays."""
    key = job.run_id
    with _CONTEXTS_LOCK:
        if key in _CONTEXTS:
            _CONTEXTS.move_to_end(key)
            return _CONTEXTS[key]
    built = (build_context(job), job.indices())
    with _CONTEXTS_LOCK:
        _CONTEXTS[key] = built
        while len(_CONTEXTS) > CONTEXT_CACHE_SIZE:
            _CONTEXTS.popitem(last=False)
    return built


def evaluate_job_chunk(job: GridJob, bound: Bound) -> Chunk:
    """Stage 2 as a task (Dask): rows [a, b) of a job, with this process's cached context."""
    ctx, indices = job_context(job)
    return evaluate_chunk(ctx, job.grid, indices, bound)


def assemble(ctx: Context, chunks: Sequence[Chunk]) -> Chunk:
    """Stage 3a: the chunks (in bound order) concatenated, and the hint values that need a ladder search."""
    structure = {k: np.concatenate([r[0][k] for r in chunks]) for k in chunks[0][0]}
    kpis = {k: np.concatenate([r[1][k] for r in chunks]) for k in chunks[0][1]}
    search_hints(ctx, {k: structure[k] for k in KEYS}, kpis)
    kpis.pop("_hint_search")
    return structure, kpis


def evaluate_grid(ctx: Context, grid: Grid, indices: np.ndarray | None, count: int, *, chunk_size: int | None,
                  workers: int = 1, progress: Progress | None = None, cancel: threading.Event | None = None
                  ) -> Chunk:
    """Evaluate ``count`` grid points (``indices`` or 0..count-1) chunk by chunk on local threads: (structure,
    kpi) columns."""
    bounds = chunk_bounds(count, chunk_rows(ctx.n_periods, chunk_size))

    def work(bound: Bound) -> Chunk:
        if cancel is not None and cancel.is_set():
            raise RunCancelled("run cancelled")
        return evaluate_chunk(ctx, grid, indices, bound)

    results: list[Any] = [None] * len(bounds)
    done = 0
    if workers <= 1 or len(bounds) == 1:
        for i, bound in enumerate(bounds):
            results[i] = work(bound)
            done += bound[1] - bound[0]
            if progress:
                progress(done, count)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phase1-chunk") as pool:
            futures = [pool.submit(work, bound) for bound in bounds]
            for i, (future, bound) in enumerate(zip(futures, bounds, strict=True)):
                results[i] = future.result()
                done += bound[1] - bound[0]
                if progress:
                    progress(done, count)
    return assemble(ctx, results)


def rank_rows(kpis: Mapping[str, np.ndarray], index: np.ndarray, topn: int, gates: bool = True) -> np.ndarray:
    """Row positions of the Top-N: viable rows (every row with senior debt when gates are off) by
    day_one_value (0.01) desc, wacd (1e-10) asc, min_dscr (1e-9) desc, permutation_index asc."""
    eligible = kpis["viable"] if gates else kpis["senior_amount"] > 0
    rows = np.flatnonzero(eligible)
    dov = np.round(kpis["day_one_value"][rows], 2)
    wacd = np.nan_to_num(np.round(kpis["wacd"][rows], 10), nan=np.inf)
    dscr = np.nan_to_num(np.round(kpis["min_dscr"][rows], 9), nan=-np.inf)
    order = np.lexsort((index[rows], -dscr, wacd, -dov))
    return rows[order[:topn]]


def enum_kpis(limits: tuple[str, ...] = LIMITS) -> dict[str, tuple[tuple[str, ...], str]]:
    """KPI columns stored as enums: their labels (codes index them) and the column's name in the frame.
    The binding constraint's labels are the ruleset's sizing limits (v2 adds ltv)."""
    return {"senior_rating": (tuple(RATINGS), "senior_rating"), "binding_constraint": (limits, "binding_constraint"),
            "tier": (tuple(TIERS), "tier"), "wrap_underlying_notch": (tuple(RATINGS), "wrap_underlying")}


def _enum_codes(values: np.ndarray) -> np.ndarray:
    """Integer codes of an enum KPI column; -1 (null) where the float column is NaN."""
    return np.where(np.isfinite(values), values, -1).astype(np.int64) if values.dtype.kind == "f" \
        else values.astype(np.int64)


def _enum_series(codes: np.ndarray, cats: tuple[str, ...], name: str) -> pl.Series:
    """An Enum column from codes; a code outside the labels (-1) is null."""
    table = pl.Series(name, [*cats, None], dtype=pl.Enum(list(cats)))
    return table.gather(np.where((codes < 0) | (codes >= len(cats)), len(cats), codes))


def coupon_texts(coupons: np.ndarray) -> list[str]:
    """A v2 frame's senior_coupon column: "market" (NaN in the structure table) or the number as JSON text."""
    return [MARKET if c != c else json.dumps(c) for c in coupons.tolist()]


def make_frame(structure: Mapping[str, np.ndarray], kpis: Mapping[str, np.ndarray],
               limits: tuple[str, ...] = LIMITS, priced: bool = False) -> pl.DataFrame:
    """Evaluated structures as a polars frame: readable structure and KPI columns, nulls for NaN.

    No permutation_id column: ids are derived on read from the recorded grid (:func:`phase1lib.runs.frame_ids`),
    exactly, so 250,000 sha256 hashes are not paid by every run. Under a priced ruleset senior_coupon is text,
    "market" or the number (section 11.1).
    """
    cols: dict[str, pl.Series] = {"permutation_index": pl.Series(structure["permutation_index"], dtype=pl.Int64)}
    mezz_on = pl.Series(structure["mezz_on"])
    enums = enum_kpis(limits)
    for key in KEYS:
        values = structure[key]
        if key == "senior_coupon" and priced:
            series = pl.Series(key, _unique_texts(values), dtype=pl.String)
        else:
            series = _enum_series(values, ENUMS[key], key) if key in ENUMS else pl.Series(key, values)
        if key in MEZZ_KEYS:  # exist only inside mezz_on = true: null when mezz is off
            series = pl.select(pl.when(mezz_on).then(series).otherwise(None)).to_series()
        cols[key] = series.alias(key)
    for name, values in kpis.items():
        if name.startswith("_"):
            continue
        if name in enums:
            cats, label = enums[name]
            cols[label] = _enum_series(_enum_codes(values), cats, label)
        elif values.dtype.kind == "f":
            cols[name] = pl.Series(name, values).fill_nan(None)
        else:
            cols[name] = pl.Series(name, values)
    return pl.DataFrame(cols)


def _unique_texts(coupons: np.ndarray) -> pl.Series:
    """coupon_texts of a whole column, formatted once per distinct value."""
    distinct, inverse = np.unique(coupons, return_inverse=True)  # NaN ("market") sorts last, once
    texts = coupon_texts(distinct)
    return pl.Series(texts, dtype=pl.String).gather(inverse.ravel())


def frame_rows(structure: Mapping[str, np.ndarray], kpis: Mapping[str, np.ndarray],
               limits: tuple[str, ...] = LIMITS, priced: bool = False) -> list[dict[str, Any]]:
    """The rows :func:`make_frame` would hold (as ``iter_rows(named=True)`` gives them), built in plain Python.

    For the Top-N only: a few rows do not repay polars' per-column overhead. permutation_id is computed from
    each row's point, as METHODOLOGY section 3 defines it.
    """
    n = len(structure["permutation_index"])
    columns: dict[str, list[Any]] = {"permutation_index": structure["permutation_index"].tolist()}
    mezz_on = structure["mezz_on"].tolist()
    enums = enum_kpis(limits)
    for key in KEYS:
        values = [ENUMS[key][c] for c in structure[key].tolist()] if key in ENUMS else structure[key].tolist()
        if key == "senior_coupon" and priced:
            values = coupon_texts(structure[key])
        if key in MEZZ_KEYS:  # exist only inside mezz_on = true: null when mezz is off
            values = [v if on else None for v, on in zip(values, mezz_on, strict=True)]
        columns[key] = values
    for name, values in kpis.items():
        if name.startswith("_"):
            continue
        if name in enums:
            cats, label = enums[name]
            columns[label] = [cats[c] if 0 <= c < len(cats) else None for c in _enum_codes(values).tolist()]
        elif values.dtype.kind == "f":
            columns[name] = [None if v != v else v for v in values.tolist()]
        else:
            columns[name] = values.tolist()
    rows = []
    for i in range(n):
        row = {name: col[i] for name, col in columns.items()}
        rows.append({"permutation_index": row.pop("permutation_index"),
                     "permutation_id": permutation_id(structure_of(row)), **row})
    return rows


def run(project: Project, ranges: Mapping[str, Any], *, seed: int = DEFAULT_SEED, topn: int = DEFAULT_TOPN,
        sample: int | None = None, workers: int = 1, chunk_size: int | None = None, ruleset: Ruleset | None = None,
        gates: bool = True, chunked: bool = True, progress: Progress | None = None,
        cancel: threading.Event | None = None, today: dt.date | None = None) -> RunResult:
    """Run the engine over a range request and rank the Top-N (see module docstring): the three stages on
    local threads (:func:`plan_grid`, :func:`evaluate_grid`, :func:`finish`)."""
    started = time.perf_counter()
    job = plan_grid(project, ranges, seed=seed, topn=topn, sample=sample, ruleset=ruleset, gates=gates)
    return run_job(job, workers=workers, chunk_size=chunk_size, chunked=chunked, progress=progress, cancel=cancel,
                   today=today, started=started)


def run_job(job: GridJob, *, workers: int = 1, chunk_size: int | None = None, chunked: bool = True,
            progress: Progress | None = None, cancel: threading.Event | None = None, today: dt.date | None = None,
            started: float | None = None) -> RunResult:
    """Stages 2 and 3 of a planned job on local threads."""
    started = time.perf_counter() if started is None else started
    ctx = build_context(job)  # compiled mezzanine and IRR rows (C) where built: identical results, faster
    size = chunk_size if chunked else max(job.count, 1)
    structure, kpis = evaluate_grid(ctx, job.grid, job.indices(), job.count, chunk_size=size, workers=workers,
                                    progress=progress, cancel=cancel)
    return finish(job, ctx, structure, kpis, started=started, today=today)


def finish(job: GridJob, ctx: Context, structure: Mapping[str, np.ndarray], kpis: Mapping[str, np.ndarray], *,
           started: float | None = None, today: dt.date | None = None) -> RunResult:
    """Stage 3b: rank the Top-N, its Monte Carlo and breakevens, the frame, the run_id and the metadata.

    ``started`` (perf_counter) times the engine.
    """
    started = time.perf_counter() if started is None else started
    project, rs, grid, seed, topn = job.project, job.ruleset, job.grid, job.seed, job.topn
    index = structure["permutation_index"]
    top_rows = rank_rows(kpis, index, topn, job.gates)
    top_table = {k: v[top_rows] for k, v in structure.items() if not k.startswith("_")}
    mc = monte_carlo(ctx, top_table, seed)
    extra = breakeven_kpis(ctx, top_table) if ctx.priced else [{} for _ in top_rows]
    rows = frame_rows({k: v[top_rows] for k, v in structure.items()}, {k: v[top_rows] for k, v in kpis.items()},
                      ctx.limits, ctx.priced)
    top = [_top_entry(render_row(ctx, row), i + 1, mc[0][i], mc[1][i], extra[i]) for i, row in enumerate(rows)]
    engine_s = time.perf_counter() - started

    frame = make_frame(structure, kpis, ctx.limits, ctx.priced)
    today = today or dt.date.today()
    counts = {tier: int(n) for tier, n in zip(TIERS, np.bincount(kpis["tier"], minlength=len(TIERS)), strict=True)}
    meta = {
        "run_id": job.run_id, "seed": seed, "topn": topn, "sample": job.sample, "gates": job.gates,
        "project": project.to_dict(), "ranges": dict(job.ranges), "grid": grid.to_dict(),
        "ruleset": {"version": rs.version, "sha256": rs.sha256}, "engine_version": ENGINE_VERSION,
        "cardinality": job.cardinality, "evaluated": job.count, "counts": counts,
        "created_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "closing_date": project.closing_date or default_closing_date(today).isoformat(),
        "timings": {"engine_s": round(engine_s, 6), "total_s": round(time.perf_counter() - started, 6)},
        "stress_names": list(STRESS_NAMES),
        "cohort_key": request_cohort_key(project, job.ranges, seed, topn, job.sample, job.gates),
    }
    return RunResult(run_id=job.run_id, meta=meta, frame=frame, top=top, grid=grid)


def _top_entry(rendered: Mapping[str, Any], rank: int, breach: float, p5: float,
               extra: Mapping[str, Any]) -> dict[str, Any]:
    kpis = dict(rendered["kpis"], mc_breach_probability=finite_or_none(breach), mc_p5_min_dscr=finite_or_none(p5),
                **extra)
    return {"rank": rank, "permutation_index": rendered["permutation_index"],
            "permutation_id": rendered["permutation_id"], "structure": rendered["structure"], "kpis": kpis}

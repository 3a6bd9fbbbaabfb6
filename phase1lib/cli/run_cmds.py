"""Engine commands: ``run``, ``evaluate``, ``top``, ``runs``, ``demo`` (and ``export`` of term sheets)."""

from __future__ import annotations

import argparse
import sys
import time

from ..defaults import DEFAULT_TOPN
from ..presets import preset_ranges
from ..project import load_project, read_json_file
from ..store import open_store
from . import cli_actor, emit, say
from .lazy import runner, service
from .project_cmds import add_ruleset_arg, load_ranges_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="size, score and rank every permutation of a range request or preset")
    p.add_argument("--project", required=True, help="project JSON file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ranges", help="range request JSON file")
    src.add_argument("--preset", help="preset name (see `phase1 presets`)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 424242)")
    p.add_argument("--top", type=int, default=DEFAULT_TOPN, help="Top-N size (default 20)")
    p.add_argument("--sample", type=int, default=None, help="evaluate S grid points drawn with the seed")
    p.add_argument("--workers", type=int, default=None,
                   help="threads evaluating chunks in parallel (default: the machine's cores, at most 4); "
                        "results are identical whatever the number")
    add_ruleset_arg(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("evaluate", help="one structure with its KPIs and per-period schedule")
    p.add_argument("--project", required=True, help="project JSON file")
    p.add_argument("--structure", required=True, help="structure JSON file: one value per range key")
    p.add_argument("--seed", type=int, default=None, help="Monte Carlo seed (default 424242)")
    add_ruleset_arg(p)
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("top", help="the Top-N of a stored run")
    p.add_argument("run_id")
    p.add_argument("--n", type=int, default=None, help="show only the first N")
    p.set_defaults(handler=cmd_top)

    p = sub.add_parser("runs", help="list stored runs, newest first (and the bad records); `runs delete RUN_ID`")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(handler=cmd_runs)
    register_runs_delete(p)

    p = sub.add_parser("demo", help="run the London sample with the current_1920 preset and show the Top-5")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("warmup", help="build the engine's compiled kernels (done at set-up, so no run pays it)")
    p.set_defaults(handler=cmd_warmup)


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} ({rate:,.0f}/s)")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_run(args: argparse.Namespace) -> int:
    project = load_project(args.project)
    ranges = load_ranges_arg(args)
    store = open_store()
    try:
        started = time.perf_counter()
        result = service.execute_run(store, project, ranges, seed=args.seed, topn=args.top, sample=args.sample,
                                     workers=runner.default_workers(args.workers), progress=ProgressBar(),
                                     ruleset=args.ruleset, preset=args.preset, actor=cli_actor())
    finally:
        store.close()
    summary = result.summary()
    emit(summary)
    counts = ", ".join(f"{k} {v:,}" for k, v in summary["counts"].items())
    say(f"run {result.run_id}: {summary['evaluated']:,} of {summary['cardinality']:,} permutations "
        f"({counts}) in {time.perf_counter() - started:.2f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    project = load_project(args.project)
    structure = read_json_file(args.structure, "structure")
    store = open_store()
    try:
        emit(service.evaluate(store, project, structure, args.seed, args.ruleset))
    finally:
        store.close()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    store = open_store()
    try:
        emit(service.run_top(store, args.run_id, args.n))
    finally:
        store.close()
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store()
    try:
        good, bad = service.run_catalogue(store, limit=args.limit)
    finally:
        store.close()
    emit({"runs": good, "bad_runs": bad})
    for record in bad:
        say(f"bad run {record['run_id']}: {record['problem']} (remove it with `phase1 runs delete {record['run_id']}`)")
    return 0


def register_runs_delete(runs_parser: argparse.ArgumentParser) -> None:
    """``phase1 runs delete RUN_ID``: remove a stored run (also a bad record) and its index entry."""
    sub = runs_parser.add_subparsers(dest="runs_command", parser_class=type(runs_parser))
    p = sub.add_parser("delete", help="remove a stored run (folder and index entry, atomically); audited")
    p.add_argument("run_id")
    p.add_argument("--reason", default=None, help="why (goes to the audit log)")
    p.set_defaults(handler=cmd_runs_delete)


def cmd_runs_delete(args: argparse.Namespace) -> int:
    store = open_store()
    try:
        emit(service.delete_run(store, args.run_id, cli_actor(), reason=args.reason))
    finally:
        store.close()
    say(f"run {args.run_id} deleted")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from ..engine import kernels

    started = time.perf_counter()
    try:
        library = kernels.warmup()
    except RuntimeError as error:  # no compiler: the engine keeps its numpy path (same results, slower)
        emit({"kernels": "unavailable", "reason": str(error)})
        say(f"phase1 warmup: {error}; runs use the numpy path")
        return 0
    emit({"kernels": "ready", "library": str(library), "seconds": round(time.perf_counter() - started, 3)})
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default job: a demo run of the London sample."""

    from ..samples import sample_path

    example = sample_path("london_dc_alpha")
    project = load_project(example)
    store = open_store()
    try:
        result = service.execute_run(store, project, preset_ranges("current_1920"), progress=ProgressBar())
    finally:
        store.close()
    say(f"London DC Alpha, preset current_1920: run {result.run_id}, counts {result.meta['counts']}")
    for row in result.top[:5]:
        s, k = row["structure"], row["kpis"]
        say(f"  #{row['rank']}: {s['senior_tenor']}y {s['senior_amort']} {s['senior_coupon']:.2%} "
            f"DSCR {s['senior_dscr']:.2f}x {s['indexation_mode']} ZCIS {s['zcis_tenor_years']}y -> "
            f"day-one value {k['day_one_value']:,.0f} ({k['tier']})")
    emit(result.summary())
    return 0

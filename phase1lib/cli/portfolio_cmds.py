"""``phase1 portfolio``: every project of a pipeline in one request, locally or on a Dask cluster (``--scheduler``).

JSON on stdout ``{"portfolio_id", "runs": [{"title", "run_id", "counts", "top"}, ...], "summary"}``; a progress
bar across all projects on stderr when it is a terminal. Exit codes as for every command (2 invalid input, 3
guardrail, ...) and 6 when the Dask cluster cannot do the work (:data:`EXIT_CLUSTER`).
"""

from __future__ import annotations

import argparse
import sys

from ..defaults import DEFAULT_TOPN
from ..errors import FieldError, InputError
from ..project import read_json_file
from ..store import open_store
from . import cli_actor, emit, say
from .lazy import runner, service
from .run_cmds import ProgressBar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("portfolio", help="run a pipeline of projects (one ordinary run each) and summarise it; "
                                         "--scheduler runs the chunks on a Dask cluster")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--projects", nargs="+", metavar="PROJECT.json", help="project JSON files sharing the options")
    src.add_argument("--file", metavar="PORTFOLIO.json", help="portfolio file: per-project grids and options "
                                                              "(docs/portfolio.md)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--ranges", help="range request JSON file (with --projects)")
    grid.add_argument("--preset", help="preset name (with --projects; see `phase1 presets`)")
    p.add_argument("--ruleset", default=None, metavar="VERSION", help="v1, v2 or a registered candidate; default: "
                                                                      "the preset's, else the canary decides")
    p.add_argument("--seed", type=int, default=None, help="random seed of every run (default 424242)")
    p.add_argument("--top", type=int, default=None, help=f"Top-N size of every run (default {DEFAULT_TOPN})")
    p.add_argument("--sample", type=int, default=None, help="evaluate S grid points of each project")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="Dask scheduler to run the chunks on (default PHASE1_DASK_SCHEDULER; unset: this machine)")
    p.add_argument("--workers", type=int, default=None, help="local threads when no scheduler is used")
    p.set_defaults(handler=cmd_portfolio)


def portfolio_of(args: argparse.Namespace):
    """The validated portfolio of ``--file`` or of ``--projects`` with the shared options."""
    from ..portfolio import load_portfolio, parse_portfolio, portfolio_request

    shared = {"--ranges": args.ranges, "--preset": args.preset, "--ruleset": args.ruleset, "--seed": args.seed,
              "--top": args.top, "--sample": args.sample}
    if args.file:
        given = [name for name, value in shared.items() if value is not None]
        if given:
            raise InputError([FieldError(name, "set it in the portfolio file (its \"defaults\" or a project), "
                                               "not beside --file") for name in given], "command line")
        return load_portfolio(args.file, strict=False)  # the service names every problem
    if args.ranges is None and args.preset is None:
        raise InputError([FieldError("--ranges", "with --projects give --ranges FILE or --preset NAME")],
                         "command line")
    ranges = read_json_file(args.ranges, "ranges") if args.ranges else None
    request = portfolio_request(args.projects, ranges=ranges, preset=args.preset, ruleset=args.ruleset,
                                seed=args.seed, topn=args.top, sample=args.sample)
    from pathlib import Path

    return parse_portfolio(request, base=Path.cwd(), source="command line", strict=False)


def cmd_portfolio(args: argparse.Namespace) -> int:
    portfolio = portfolio_of(args)
    store = open_store()
    try:
        result = service.execute_portfolio(store, portfolio, scheduler=args.scheduler,
                                           workers=runner.default_workers(args.workers), progress=ProgressBar(),
                                           actor=cli_actor())
    finally:
        store.close()
    answer = result.answer()
    emit(answer)
    totals = answer["summary"]["totals"]
    where = f"on {result.scheduler}" if result.scheduler else "on this machine"
    say(f"portfolio {result.portfolio_id}: {totals['projects']} projects, {totals['financeable']} financeable, "
        f"{totals['evaluated']:,} permutations {where} ({sum(result.reused)} stored runs reused)")
    sys.stderr.flush()
    return 0

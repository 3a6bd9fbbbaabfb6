"""Portfolio runs: a fund's pipeline of projects in one request, on this machine or on a Dask cluster.

A :class:`Portfolio` is a list of projects, each with its ranges or preset, ruleset, seed and Top-N (per project
or as shared defaults; the JSON format is in :mod:`.spec` and docs/portfolio.md). Its result is one ordinary
run per project, stored exactly as ``phase1 run`` stores it (same run_id, Parquet and Top-N), and a summary
across them (:mod:`.summary`). ``service.execute_portfolio`` plans, audits, runs and stores it; the chunks run
on local threads or, with a scheduler address, as Dask tasks (:mod:`.cluster`).
"""

from .cluster import ClusterError, Work, evaluate_dask, evaluate_local, scheduler_address
from .spec import (
    DEFAULT_MAX_PORTFOLIO_PERMUTATIONS,
    Portfolio,
    PortfolioGuardrailError,
    PortfolioProject,
    load_portfolio,
    max_portfolio_permutations,
    parse_portfolio,
    portfolio_request,
)
from .summary import PortfolioResult, load_portfolio_answer, portfolio_id, save_portfolio

__all__ = ["DEFAULT_MAX_PORTFOLIO_PERMUTATIONS", "ClusterError", "Portfolio", "PortfolioGuardrailError",
           "PortfolioProject", "PortfolioResult", "Work", "evaluate_dask", "evaluate_local", "load_portfolio",
           "load_portfolio_answer", "max_portfolio_permutations", "parse_portfolio", "portfolio_id",
           "portfolio_request", "save_portfolio", "scheduler_address"]

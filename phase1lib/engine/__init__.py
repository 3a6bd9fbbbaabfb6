"""The structuring engine: cash flows, reverse-DSCR sizing, KPIs, gates, tiers, ranking (sections 4-9).

Public entry points: :func:`run` (a grid to a ranked :class:`RunResult`), :func:`evaluate_structure`
and :func:`evaluate_points` (single structures, with the schedule), :func:`parse_structure`.
"""

from .runner import DEFAULT_SEED, DEFAULT_TOPN, RunCancelled, RunResult, run
from .structure import evaluate_points, evaluate_structure, parse_structure, schedule

__all__ = ["DEFAULT_SEED", "DEFAULT_TOPN", "RunCancelled", "RunResult", "evaluate_points", "evaluate_structure",
           "parse_structure", "run", "schedule"]

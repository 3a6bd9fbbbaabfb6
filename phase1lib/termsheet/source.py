"""The data of one term sheet: the run's Top-N entry, the project, the ruleset the run applied, and what the
engine computed for the structure (its schedule and :func:`~phase1lib.engine.structure.structure_detail`:
period counts, the underlying rating, the sidecar, every sizing limit). Nothing here re-derives an engine rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..engine import schedule
from ..engine.runner import RunResult
from ..engine.structure import structure_detail
from ..errors import ConflictError
from ..pricing import MARKET
from ..project import Derived, Project, derive, parse_project
from ..ruleset import Ruleset, available_versions, load_ruleset


@dataclass
class Source:
    """Everything one term sheet shows: the run's entry for ``rank``, the project, the schedule, the tables."""

    run: RunResult
    rank: int
    entry: dict[str, Any]
    project: Project
    derived: Derived
    ruleset: Ruleset
    schedule: list[dict[str, Any]]
    detail: dict[str, Any]
    closing: dt.date

    @property
    def point(self) -> dict[str, Any]:
        return self.entry["structure"]

    @property
    def kpis(self) -> dict[str, Any]:
        return self.entry["kpis"]

    @property
    def ppy(self) -> int:
        return self.project.periods_per_year

    @property
    def n_periods(self) -> int:
        return self.project.n_periods

    @property
    def bullet(self) -> bool:
        return self.point["senior_amort"] == "bullet"

    @property
    def n(self) -> int:
        """Periods of the senior note (engine: note_periods)."""
        return int(self.detail["note_periods"])

    @property
    def test_periods(self) -> int:
        """Last senior test period T; the DSRA is released there (engine: test_periods)."""
        return int(self.detail["test_periods"])

    @property
    def has_mezz(self) -> bool:
        return bool(self.point.get("mezz_on"))

    @property
    def n_mezz(self) -> int:
        return int(self.detail["mezz_periods"])

    @property
    def has_sidecar(self) -> bool:
        return bool(self.detail["has_sidecar"])

    @property
    def dsra_window(self) -> int:
        return int(self.detail["dsra_window"])

    @property
    def underlying_rating(self) -> str:
        return str(self.detail["underlying_rating"])

    @property
    def priced(self) -> bool:
        """Ruleset v2 (METHODOLOGY section 11): market coupons, lending value and the ltv limit, breakevens."""
        return self.ruleset.priced

    @property
    def market(self) -> bool:
        """The structure asks for the market coupon (its senior_coupon is the text "market", v2)."""
        return self.point["senior_coupon"] == MARKET

    @property
    def residual(self) -> float:
        return self.project.residual_value_pct * self.derived.market_value

    def date_of(self, period: int) -> dt.date:
        return self.closing if period == 0 else dt.date.fromisoformat(self.schedule[period - 1]["date"])

    def footer(self) -> str:
        return (f"{self.project.title} · run {self.run.run_id} · rank {self.rank} · "
                f"indicative terms, Phase-1 engine {self.run.meta['engine_version']}")

    def created(self) -> dt.datetime:
        """The run's created_at as a naive UTC datetime (document properties, zip entry times)."""
        return dt.datetime.fromisoformat(self.run.meta["created_at"].replace("Z", "+00:00")).replace(tzinfo=None)


def resolve_ruleset(run: RunResult, ruleset: Ruleset | None = None) -> Ruleset:
    """The ruleset the run applied: the one given (the service passes the run's, candidates included:
    service.run_ruleset), else a shipped one with the same hash."""
    want = run.meta["ruleset"]
    if ruleset is not None:
        if ruleset.sha256 != want["sha256"]:
            raise ConflictError(f"ruleset {ruleset.version} ({ruleset.sha256[:12]}) is not the one run "
                                f"{run.run_id} applied ({want['version']}, {want['sha256'][:12]})")
        return ruleset
    if want["version"] in available_versions():
        shipped = load_ruleset(want["version"])
        if shipped.sha256 == want["sha256"]:
            return shipped
    raise ConflictError(f"run {run.run_id} applied ruleset {want['version']} ({want['sha256'][:12]}), which is "
                        "not a shipped one: pass it (service.export_term_sheet finds registered candidates)")


def load_source(run: RunResult, rank: int, ruleset: Ruleset | None = None) -> Source:
    """Collect the term sheet's data (NotFoundError for a rank outside the Top-N)."""
    entry = run.top_row(rank)
    project = parse_project(run.meta["project"])
    rs = resolve_ruleset(run, ruleset)
    closing = dt.date.fromisoformat(run.meta["closing_date"])
    point = entry["structure"]
    return Source(run=run, rank=rank, entry=entry, project=project, derived=derive(project, rs), ruleset=rs,
                  schedule=schedule(project, point, rs, closing_date=closing),
                  detail=structure_detail(project, point, rs), closing=closing)

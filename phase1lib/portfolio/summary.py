"""A portfolio's result: its id, one ordinary run per project and the summary across them; stored beside the runs.

portfolio_id = the first 16 hex digits of sha256 of the canonical JSON ``{"runs": [run_id, ...]}`` (the
projects' run_ids in portfolio order, sorted keys, no spaces). Each run_id already hashes everything its
numbers depend on (project, grid, seed, Top-N, sample, gates, ruleset version and hash, engine version), so the
same portfolio gives the same id and a changed project, grid, seed or ruleset a new one; the title does not count.

"Financeable": a project with at least one viable structure (tiers Diamond, Gold or Silver, METHODOLOGY
section 8). The totals add the best structure of each financeable project (its day-one value and the equity it
leaves to raise) per currency, never across currencies (methodology note D46).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from ..engine.gates import TIERS
from ..engine.runner import RunResult
from ..errors import FieldError, InputError, NotFoundError
from ..fsutil import atomic_write_bytes, private_dir
from .spec import Portfolio

VIABLE_TIERS = TIERS[:3]


def portfolio_id(run_ids: Sequence[str]) -> str:
    """sha256 of the canonical ``{"runs": [run_id, ...]}``, 16 hex digits (see the module docstring)."""
    text = json.dumps({"runs": list(run_ids)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def best_structure(result: RunResult) -> dict[str, Any] | None:
    """The best viable structure of a run (its first viable Top-N row), or None."""
    for row in result.top:
        if row["kpis"].get("viable"):
            return row
    return None


def project_summary(result: RunResult) -> dict[str, Any]:
    """One project's line of the summary: title, currency, counts by tier, financeable, the best structure."""
    m = result.meta
    counts = {t: int(m["counts"].get(t, 0)) for t in TIERS}
    best = best_structure(result)
    line: dict[str, Any] = {
        "title": m["project"]["title"], "run_id": result.run_id, "currency": m["project"]["currency"],
        "ruleset": m["ruleset"]["version"], "seed": m["seed"], "evaluated": m["evaluated"], "counts": counts,
        "viable": sum(counts[t] for t in VIABLE_TIERS), "financeable": best is not None, "best": None,
    }
    if best is not None:
        k = best["kpis"]
        line["best"] = {"rank": best["rank"], "permutation_id": best["permutation_id"], "tier": k["tier"],
                        "structure": best["structure"], "day_one_value": k["day_one_value"],
                        "equity_required": k["equity_required"], "senior_amount": k["senior_amount"],
                        "min_dscr": k["min_dscr"]}
    return line


def summarise(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """{"projects": one line per project, "totals": counts by tier over every project, and per currency the
    financeable projects' count, best day-one value and equity required}."""
    counts = {t: sum(line["counts"][t] for line in lines) for t in TIERS}
    by_currency: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line["financeable"]:
            continue
        cur = by_currency.setdefault(line["currency"], {"projects": 0, "day_one_value": 0.0,
                                                        "equity_required": 0.0})
        cur["projects"] += 1
        cur["day_one_value"] += line["best"]["day_one_value"]
        cur["equity_required"] += line["best"]["equity_required"]
    totals = {"projects": len(lines), "financeable": sum(1 for line in lines if line["financeable"]),
              "not_financeable": [line["title"] for line in lines if not line["financeable"]],
              "evaluated": sum(line["evaluated"] for line in lines), "counts": counts,
              "financeable_by_currency": dict(sorted(by_currency.items()))}
    return {"projects": list(lines), "totals": totals}


@dataclass
class PortfolioResult:
    """A finished portfolio: its id, the runs (in portfolio order) and the summary."""

    portfolio_id: str
    title: str | None
    runs: list[RunResult]
    summary: dict[str, Any]
    scheduler: str | None = None
    #: Per project: its stored run was found and reused (same run_id), nothing evaluated. Not in the answer,
    #: which depends on the inputs only.
    reused: list[bool] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """One flat row per project (title, currency, tiers, financeable, best day-one value and equity, run_id):
        ``pandas.DataFrame(result.table())`` in a notebook."""
        return [{"title": line["title"], "currency": line["currency"], **line["counts"],
                 "financeable": line["financeable"],
                 "best_day_one_value": (line["best"] or {}).get("day_one_value"),
                 "equity_required": (line["best"] or {}).get("equity_required"), "run_id": line["run_id"]}
                for line in self.summary["projects"]]

    def answer(self) -> dict[str, Any]:
        """The CLI / API answer: {"portfolio_id", "title", "runs": [{"title", "run_id", "counts", "top"}],
        "summary"}."""
        return {"portfolio_id": self.portfolio_id, "title": self.title,
                "runs": [{"title": r.meta["project"]["title"], "run_id": r.run_id, "counts": r.meta["counts"],
                          "ruleset": r.meta["ruleset"]["version"], "seed": r.meta["seed"],
                          "evaluated": r.meta["evaluated"], "cardinality": r.meta["cardinality"], "top": r.top}
                         for r in self.runs],
                "summary": self.summary}


def make_result(portfolio: Portfolio, runs: Sequence[RunResult], stored: Sequence[bool],
                scheduler: str | None = None) -> PortfolioResult:
    return PortfolioResult(portfolio_id=portfolio_id([r.run_id for r in runs]), title=portfolio.title,
                           runs=list(runs), summary=summarise([project_summary(r) for r in runs]),
                           scheduler=scheduler, reused=list(stored))


def portfolios_dir(home: Path | None = None) -> Path:
    return (home or settings.get().home) / "portfolios"


def save_portfolio(result: PortfolioResult, home: Path | None = None) -> Path:
    """The answer as PHASE1_HOME/portfolios/<portfolio_id>.json (atomic, owner-only); the runs are stored as runs."""
    path = private_dir(portfolios_dir(home)) / f"{result.portfolio_id}.json"
    atomic_write_bytes(path, json.dumps(result.answer(), allow_nan=False).encode())
    return path


def load_portfolio_answer(pid: str, home: Path | None = None) -> dict[str, Any]:
    """A stored portfolio answer, or NotFoundError."""
    if not isinstance(pid, str) or len(pid) != 16 or any(c not in "0123456789abcdef" for c in pid):
        raise InputError([FieldError("portfolio_id", "must be 16 hex digits")], "portfolio id")
    path = portfolios_dir(home) / f"{pid}.json"
    if not path.is_file():
        raise NotFoundError(f"unknown portfolio {pid!r}")
    return json.loads(path.read_text(encoding="utf-8"))

"""One structure at a time: validation, KPIs and the full per-period schedule.

The same vectorised ``evaluate`` as the grid runs on a one-row table, so a structure's numbers here are
exactly those of the run that ranked it. The term sheet, the dashboards and ``phase1 evaluate`` use it.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from ..errors import FieldError, InputError
from ..jsonsafe import finite_or_none
from ..project import Project, default_closing_date
from ..ranges import KEYS, parse_ranges, permutation_id
from ..ruleset import Ruleset, load_ruleset
from .breakevens import breakeven_kpis
from .evaluate import evaluate, evaluate_detail, make_context, search_hints, table_from_points
from .montecarlo import monte_carlo
from .render import render_row
from .runner import DEFAULT_SEED, make_frame


def parse_structure(request: Any, project: Project, ruleset: Ruleset | None = None) -> dict[str, Any]:
    """A full structure from one value per range key (defaults of section 3 filled in; under v2 the
    senior_coupon defaults to "market", section 11.1)."""
    grid = parse_ranges(request, project, ruleset)
    many = [k for k in KEYS if len(grid.values[k]) > 1]
    if many:
        raise InputError([FieldError(k, "a structure takes one value per key (got a list of "
                                        f"{len(grid.values[k])})") for k in many], "structure")
    return grid.point(0)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus whole months; a month-end date stays a month end."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    last = calendar.monthrange(year, month + 1)[1]
    is_month_end = day.day == calendar.monthrange(day.year, day.month)[1]
    return dt.date(year, month + 1, last if is_month_end else min(day.day, last))


def period_dates(closing: dt.date, n_periods: int, ppy: int) -> list[dt.date]:
    """End date of each period p = 1..N: closing date + p x 12 / ppy months."""
    return [add_months(closing, p * 12 // ppy) for p in range(1, n_periods + 1)]


def _context(project: Project, points: Sequence[Mapping[str, Any]], ruleset: Ruleset | None):
    rs = ruleset or load_ruleset()
    return make_context(project, rs, {pt["indexation_mode"] for pt in points},
                        {int(pt["zcis_tenor_years"]) for pt in points})


def evaluate_points(project: Project, points: Sequence[Mapping[str, Any]], ruleset: Ruleset | None = None,
                    seed: int | None = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Rendered {"permutation_id", "structure", "kpis"} of full structures (Monte Carlo when seeded)."""
    if not points:
        return []
    ctx = _context(project, points, ruleset)
    table = table_from_points(points)
    out = evaluate(ctx, table)
    search_hints(ctx, table, out)
    frame = make_frame({"permutation_index": np.arange(len(points)), **table}, out, ctx.limits, ctx.priced)
    frame.insert_column(1, pl.Series("permutation_id", [permutation_id(pt) for pt in points], dtype=pl.String))
    rendered = [render_row(ctx, row) for row in frame.iter_rows(named=True)]
    if seed is not None:
        breach, p5 = monte_carlo(ctx, table, seed)
        for r, b, q in zip(rendered, breach, p5, strict=True):
            r["kpis"]["mc_breach_probability"] = float(b) if np.isfinite(b) else None
            r["kpis"]["mc_p5_min_dscr"] = float(q) if np.isfinite(q) else None
    if ctx.priced:
        for r, extra in zip(rendered, breakeven_kpis(ctx, table), strict=True):
            r["kpis"].update(extra)
    for r in rendered:
        r.pop("permutation_index", None)
    return rendered


def schedule(project: Project, point: Mapping[str, Any], ruleset: Ruleset | None = None,
             closing_date: dt.date | None = None) -> list[dict[str, Any]]:
    """Per-period schedule of one structure: dates, indices, revenue, costs, CFADS, both tranches, equity."""
    ctx = _context(project, [point], ruleset)
    out, det = evaluate_detail(ctx, table_from_points([point]))
    flows = ctx.flows[int(det.case[0])]
    d, ppy, n_periods = ctx.derived, ctx.ppy, ctx.n_periods
    cls = int(det.cls[0])
    sen = det.senior
    s_amount = float(out["senior_amount"][0])
    test = int(sen.test_periods[cls])
    n = min(int(point["senior_tenor"]), project.lease_years) * ppy
    service = s_amount * sen.u[cls]
    note = np.where(np.arange(1, n_periods + 1) <= n, service, 0.0)
    refinancing = service - note
    opening, interest = s_amount * sen.opening[cls], s_amount * sen.interest[cls]
    principal = s_amount * sen.principal[cls]
    zeros = np.zeros(n_periods)
    if det.mezz is not None and len(det.mezz_rows):
        mz = det.mezz
        m_open, m_int, m_prin, m_serv = mz.opening[0], mz.interest[0], mz.principal[0], mz.service[0]  # type: ignore[index]
    else:
        m_open = m_int = m_prin = m_serv = zeros
    closing = closing_date or (dt.date.fromisoformat(project.closing_date) if project.closing_date
                               else default_closing_date(dt.date.today()))
    dates = period_dates(closing, n_periods, ppy)
    equity = det.equity_flows[:, 0]
    rows = []
    for i in range(n_periods):
        p = i + 1
        served = p <= test and service[i] > 0
        rows.append({
            "period": p, "date": dates[i].isoformat(), "lease_year": (p + ppy - 1) // ppy, "t_years": p / ppy,
            "lender_rent_index": float(flows.lender_rent_index[i]), "base_rent_index": float(flows.base_rent_index[i]),
            "cost_index": float(flows.cost_index[i]),
            "revenue_lender": d.gross_income_annual / ppy * float(flows.lender_rent_index[i]),
            "revenue_base": d.gross_income_annual / ppy * float(flows.base_rent_index[i]),
            "opex": d.opex_annual / ppy * float(flows.cost_index[i]), "admin": d.admin_annual / ppy,
            "lender_cfads": float(flows.lender[i]), "base_cfads": float(flows.base[i]),
            "sidecar": float(flows.sidecar[i]),
            "senior_opening": float(opening[i]), "senior_interest": float(interest[i]),
            "senior_principal": float(principal[i]), "senior_closing": float(opening[i] - principal[i]),
            "senior_note_service": float(interest[i] + principal[i]), "refinancing_service": float(refinancing[i]),
            "senior_service": float(service[i]),
            "dscr": finite_or_none(flows.lender[i] / service[i]) if served else None,
            "mezz_opening": float(m_open[i]), "mezz_interest": float(m_int[i]), "mezz_principal": float(m_prin[i]),
            "mezz_service": float(m_serv[i]), "equity_flow": float(equity[i]),
        })
    return rows


def evaluate_structure(project: Project, request: Any, ruleset: Ruleset | None = None, seed: int = DEFAULT_SEED,
                       closing_date: dt.date | None = None) -> dict[str, Any]:
    """``phase1 evaluate``: {"structure", "kpis", "schedule"} of one structure request."""
    point = parse_structure(request, project, ruleset or load_ruleset())
    rendered = evaluate_points(project, [point], ruleset, seed)[0]
    return {"structure": point, "permutation_id": rendered["permutation_id"], "kpis": rendered["kpis"],
            "schedule": schedule(project, point, ruleset, closing_date)}


def structure_detail(project: Project, point: Mapping[str, Any], ruleset: Ruleset | None = None) -> dict[str, Any]:
    """What a term sheet shows beside the KPIs and the schedule, as the engine applied it to one structure:
    the period counts (note n, IO, senior test periods T, mezz periods, the DSRA window w), the all-in rate,
    the underlying rating (the wrap's and v2's pricing notch), whether a sidecar is sold (D10), and the value
    of every senior sizing limit in the order that names ties (None where a limit does not apply, D11)."""
    from ..ruleset import RATINGS, notch
    from .evaluate import ladder_notch

    rs = ruleset or load_ruleset()
    ctx = _context(project, [point], rs)
    out, det = evaluate_detail(ctx, table_from_points([point]))
    d, ppy, cls = ctx.derived, ctx.ppy, int(det.cls[0])
    sen = det.senior
    k = float(point["senior_dscr"])
    values = [sen.dk[cls] / k, sen.iok[cls] / k, sen.tailk[cls] / k, d.af_max * d.funding_need]
    if ctx.priced:
        values.append(d.ltv_limit)
    values.append(d.funding_need)
    limits = {name: float(v) if np.isfinite(v) else None for name, v in zip(ctx.limits, values, strict=True)}
    ladder = ladder_notch(rs, project.country, np.array([k]))[0]
    underlying = RATINGS[int(max(ladder, notch(d.rating_cap)))]
    mode, hedge = ctx.case_keys[int(det.case[0])]
    mezz_on = bool(point.get("mezz_on"))
    return {
        "note_periods": min(int(point["senior_tenor"]), project.lease_years) * ppy,
        "io_periods": int(point["io_months"]) * ppy // 12,
        "test_periods": int(sen.test_periods[cls]),
        "mezz_periods": min(int(point["mezz_tenor"]), project.lease_years) * ppy if mezz_on else 0,
        "dsra_window": int(np.ceil(d.dsra_months * ppy / 12)),
        "all_in_rate": float(out["senior_rate"][0]),
        "underlying_rating": underlying,
        "has_sidecar": mode == "flat" and hedge > 0 and project.indexation_basis == "CPI_capped",
        "limits": limits,
    }

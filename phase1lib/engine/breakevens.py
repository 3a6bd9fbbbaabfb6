"""Breakevens (METHODOLOGY section 11.3): the rent cut, opex rise and CPI level at which a structure's min
senior DSCR falls to 1.00x, for the ranked structures of a run and for single evaluations (ruleset v2).

Computed on the base case with cash available = scenario CFADS_p - sidecar_p (the sidecar is not cut with
the rent) and the structure's senior service S_p, over the senior test periods with S_p > 0. The rent cut
and the opex rise are closed forms (the DSCR is linear in the multiplier); the CPI level is searched on
the grid x_j = round(base_cpi + j / 10^4, 10) up to 0.20, every grid point's "CPI x" case (section 4: rent
and costs at every anniversary) evaluated at once per case. Rows are processed in batches, like the Monte
Carlo; each row's result depends on that row only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ruleset import TOL
from .cashflows import cfads, index_from_growth, rent_growth
from .evaluate import Context, evaluate_detail

NAMES = ("breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi", "breakeven_cpi_capped")
BATCH_ELEMENTS = 4_000_000  # rows x CPI grid points x periods per batch


def cpi_grid(ctx: Context) -> np.ndarray:
    """x_j = round(base_cpi + j x step, 10) for j = 0, 1, ... while x_j <= cpi_max (section 11.3)."""
    rules = ctx.ruleset.breakevens
    step_bps, top = float(rules["cpi_step_bps"]), float(rules["cpi_max"])
    base = ctx.project.base_cpi
    xs = []
    j = 0
    while (x := round(base + j * step_bps / 1e4, 10)) <= top:
        xs.append(x)
        j += 1
    return np.array(xs)


def cpi_cash(ctx: Context, case: int, xs: np.ndarray) -> np.ndarray:
    """Cash available (CFADS - sidecar) of case "CPI x" for every x of ``xs``: (len(xs) x N)."""
    p, d = ctx.project, ctx.derived
    hedge = ctx.case_keys[case][1]
    cpi = np.broadcast_to(xs[:, None], (len(xs), p.lease_years - 1))
    rent_index = index_from_growth(rent_growth(p, cpi, hedge, d.locked_rate))
    return cfads(p, d, rent_index, index_from_growth(cpi)) - ctx.flows[case].sidecar


def breakevens(ctx: Context, table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The four breakeven columns of the rows of ``table`` (NaN = null; capped as 1.0 / 0.0 / NaN)."""
    out, det = evaluate_detail(ctx, table)
    d, ppy, n_periods = ctx.derived, ctx.ppy, ctx.n_periods
    rows = len(out["senior_amount"])
    service = out["senior_amount"][:, None] * det.senior.u[det.cls]
    served = (np.arange(1, n_periods + 1) <= det.senior.test_periods[det.cls][:, None]) & (service > 0)
    has = served.any(axis=1)
    level = float(ctx.ruleset.breakevens["dscr"])

    revenue = (d.gross_income_annual / ppy * np.stack([f.base_rent_index for f in ctx.flows]))[det.case]
    opex = (d.opex_annual / ppy * np.stack([f.cost_index for f in ctx.flows]))[det.case]
    sidecar = ctx.cases.sidecar[det.case]
    admin = d.admin_annual / ppy
    with np.errstate(divide="ignore", invalid="ignore"):
        rent_need = np.where(served, (service + opex + admin + sidecar) / revenue, -np.inf).max(axis=1, initial=-np.inf)
        opex_room = np.where(served, (revenue - admin - sidecar - service) / opex, np.inf).min(axis=1, initial=np.inf)
    result = {
        "breakeven_rent_cut": np.where(has, 1.0 - rent_need, np.nan),
        "breakeven_opex_rise": np.where(has & (d.opex_annual != 0), opex_room - 1.0, np.nan),
        "breakeven_cpi": np.full(rows, np.nan),
        "breakeven_cpi_capped": np.full(rows, np.nan),
    }
    xs = cpi_grid(ctx)
    if len(xs) == 0:  # base CPI above the grid's end (a candidate ruleset's cpi_max): no CPI breakeven
        return result
    inv = np.divide(1.0, service, out=np.full(service.shape, np.nan), where=served)
    for case in np.unique(det.case):
        cash = cpi_cash(ctx, int(case), xs)
        members = np.flatnonzero((det.case == case) & has)
        batch = max(1, BATCH_ELEMENTS // max(cash.size, 1))
        for a in range(0, len(members), batch):
            sel = members[a:a + batch]
            minima = np.fmin.reduce(cash[None, :, :] * inv[sel, None, :], axis=2)  # rows x grid points
            fails = ~(minima >= level - TOL)
            first = np.argmax(fails, axis=1)
            any_fail = fails.any(axis=1)
            last_ok = np.where(any_fail, first - 1, len(xs) - 1)
            result["breakeven_cpi"][sel] = np.where(last_ok >= 0, xs[np.maximum(last_ok, 0)], np.nan)
            result["breakeven_cpi_capped"][sel] = np.where(last_ok >= 0, (~any_fail).astype(float), np.nan)
    return result


def breakeven_kpis(ctx: Context, table: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per row, the breakevens as the JSON of a Top-N entry or an evaluation shows them (null for NaN)."""
    cols = breakevens(ctx, table)
    out = []
    for i in range(len(cols["breakeven_cpi"])):
        row: dict[str, Any] = {}
        for name in NAMES[:3]:
            x = float(cols[name][i])
            row[name] = x if np.isfinite(x) else None
        capped = cols["breakeven_cpi_capped"][i]
        row["breakeven_cpi_capped"] = None if np.isnan(capped) else bool(capped)
        out.append(row)
    return out

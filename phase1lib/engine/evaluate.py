"""Evaluate a table of structures: sizing, mezzanine, KPIs, stresses, gates, tiers, repo (sections 5-8).

A *structure table* holds one numpy column per range key (enums as integer codes). ``evaluate``
works on any table — a chunk of the grid, a single structure, the hint search's variants — with no
Python loop over structures: the senior side is sized once per profile class (see ``senior.py``);
mezzanine and the equity IRR work on (rows x periods) matrices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..pricing import MARKET, benchmark_rate, market_coupon
from ..project import MEZZ_AMORTS, Derived, Project, derive
from ..ranges import INDEXATION_MODES, KEYS, SENIOR_AMORTS, Grid
from ..ruleset import TOL, Ruleset, notch
from . import kernels
from .arrays import safe_div, seqsum
from .cashflows import STRESS_NAMES, CaseFlows, case_flows
from .gates import CHECKS, REPO_RULES, check_table, near_miss, repo_failures, tiers
from .hints import closed_form, ladder_search
from .irr import annualised_irr, irr_factor_periods, irr_factor_yearly
from .mezz import LEVEL as MEZZ_LEVEL
from .mezz import MezzResult, size_mezz
from .senior import BULLET, CaseTable, SeniorClasses, size_classes

#: Senior sizing limits in the order that names ties (section 5); v2 adds ltv before funding_need (11.2).
LIMITS = ("dscr", "io_cover", "refinancing_tail", "advance_factor", "funding_need")
LIMITS_V2 = ("dscr", "io_cover", "refinancing_tail", "advance_factor", "ltv", "funding_need")
ENUMS: dict[str, tuple[str, ...]] = {"senior_amort": SENIOR_AMORTS, "indexation_mode": INDEXATION_MODES,
                                     "mezz_amort": MEZZ_AMORTS}
StructureTable = dict[str, np.ndarray]


@dataclass
class Context:
    """Per-run constants: the project, its derived fields, the ruleset and the flows of each case."""

    project: Project
    derived: Derived
    ruleset: Ruleset
    case_keys: list[tuple[str, int]]
    flows: list[CaseFlows]
    cases: CaseTable
    case_lookup: np.ndarray = field(repr=False)
    #: Use the compiled kernels (engine.kernels) for mezzanine and IRR rows: same results, fewer passes.
    kernels: bool = False

    @property
    def ppy(self) -> int:
        return self.project.periods_per_year

    @property
    def n_periods(self) -> int:
        return self.project.n_periods

    @property
    def priced(self) -> bool:
        """Ruleset v2 (section 11): market coupons, the ltv limit against lending value, breakevens."""
        return self.ruleset.priced

    @property
    def limits(self) -> tuple[str, ...]:
        """Names of the sizing limits, indexed by the binding_constraint code."""
        return LIMITS_V2 if self.priced else LIMITS

    def case_index(self, mode: np.ndarray, hedge: np.ndarray) -> np.ndarray:
        idx = self.case_lookup[mode, hedge]
        if np.any(idx < 0):
            raise KeyError("structure uses a (indexation_mode, zcis_tenor_years) case the context lacks")
        return idx

    def gate_constants(self) -> dict[str, Any]:
        g = self.ruleset.gates
        d = self.derived
        return {
            "tenor_cap": d.tenor_cap, "af_min": d.af_min, "dscr_floor": d.dscr_floor,
            "wrap_dscr_relief": self.project.wrap_dscr_relief, "ppy": self.ppy,
            "lease_years": self.project.lease_years, "wal_share": g["wal_share_of_tenor_cap"],
            "min_equity": g["min_equity_share"], "stress_min": g["stress_min_dscr"],
            "wrap_min_notch": notch(g["wrap_min_underlying"]), "funding_need": d.funding_need,
            "senior_cap": min(d.af_max * d.funding_need, d.funding_need,
                              d.ltv_limit if d.ltv_limit is not None else np.inf),
        }


def make_context(project: Project, ruleset: Ruleset, modes: Iterable[str] = INDEXATION_MODES,
                 hedges: Iterable[int] | None = None) -> Context:
    """Context with the flows of every (mode, H) case given (default: every mode and every H)."""
    derived = derive(project, ruleset)
    hedge_list = sorted(set(range(project.lease_years) if hedges is None else hedges))
    keys = [(m, h) for m in INDEXATION_MODES if m in set(modes) for h in hedge_list]
    flows = [case_flows(project, derived, ruleset, m, h) for m, h in keys]
    lookup = np.full((len(INDEXATION_MODES), project.lease_years), -1, dtype=np.int64)
    for i, (m, h) in enumerate(keys):
        lookup[INDEXATION_MODES.index(m), h] = i
    lender = np.vstack([f.lender for f in flows])
    cases = CaseTable(lender=lender, lender_pos=np.maximum(lender, 0.0),
                      stress_cash=np.stack([f.stress_cash for f in flows]),
                      equity_base=np.vstack([f.equity_base for f in flows]),
                      sidecar=np.vstack([f.sidecar for f in flows]))
    return Context(project, derived, ruleset, keys, flows, cases, lookup)


def context_for_grid(project: Project, ruleset: Ruleset, grid: Grid) -> Context:
    return make_context(project, ruleset, grid.values["indexation_mode"], grid.values["zcis_tenor_years"])


# --- structure tables -----------------------------------------------------------------------------

def _encode(key: str, value: Any) -> Any:
    """Column value of one structure key: enum code, bool, int or float; None is the 'absent' sentinel.
    A "market" senior_coupon (section 11.1) is NaN: the engine prices it."""
    if value == MARKET:
        return np.nan
    if key in ENUMS:
        return -1 if value is None else ENUMS[key].index(value)
    if key in ("wrap", "mezz_on"):
        return bool(value)
    if key in ("senior_tenor", "zcis_tenor_years", "io_months", "mezz_tenor"):
        return 0 if value is None else int(value)
    return np.nan if value is None else float(value)


def _dtype(key: str) -> type:
    if key in ENUMS or key in ("senior_tenor", "zcis_tenor_years", "io_months", "mezz_tenor"):
        return np.int64
    return bool if key in ("wrap", "mezz_on") else float


def _column(key: str, values: Sequence[Any]) -> np.ndarray:
    """Encoded values of a key plus the absent sentinel at index -1 (for mezz keys when mezz is off)."""
    return np.array([_encode(key, v) for v in values] + [_encode(key, None)], dtype=_dtype(key))


def table_from_codes(grid: Grid, codes: Mapping[str, np.ndarray]) -> StructureTable:
    """Structure table of decoded grid points (mezz_* codes -1 where mezz is off)."""
    table = {key: _column(key, grid.values[key])[codes[key]] for key in KEYS}
    if None in grid.values["mezz_tenor"]:
        is_default = np.array([v is None for v in grid.values["mezz_tenor"]] + [False])[codes["mezz_tenor"]]
        table["mezz_tenor"] = np.where(is_default, table["senior_tenor"], table["mezz_tenor"])
    return table


def table_from_points(points: Sequence[Mapping[str, Any]]) -> StructureTable:
    """Structure table of full structure dicts (as ``Grid.point`` returns them)."""
    return {key: np.array([_encode(key, pt.get(key)) for pt in points], dtype=_dtype(key)) for key in KEYS}


def take_rows(table: Mapping[str, np.ndarray], rows: np.ndarray) -> StructureTable:
    return {k: v[rows] for k, v in table.items()}


def ladder_notch(ruleset: Ruleset, country: str, dscr: np.ndarray) -> np.ndarray:
    """Rating notch (0 = AAA .. 5 = B) of DSCRs on the country's ladder; NaN stays NaN."""
    thresholds = np.array(ruleset.ladder_thresholds(country))
    with np.errstate(invalid="ignore"):
        below = dscr[:, None] < thresholds[None, :] - TOL
    return np.where(np.isfinite(dscr), below.sum(axis=1).astype(float), np.nan)


def _group(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct combinations of columns: (first row of each, each row's group index)."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for col in columns:
        if col.dtype.kind in "iub" and len(col) and col.min() >= 0:  # small non-negative codes: use as they are
            code = col.astype(np.int64)
        else:
            _, code = np.unique(col, return_inverse=True)
        key = key * (int(code.max(initial=0)) + 1) + code.ravel()
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def all_in_rate(ctx: Context, coupon: np.ndarray, wrap: np.ndarray, underlying: np.ndarray) -> np.ndarray:
    """R: the coupon, or for a wrap round(coupon - (spread(u) - spread(AAA)) / 1e4 + premium / 1e4, 10).

    Python's correctly rounded ``round`` is applied once per distinct (coupon, underlying) pair.
    """
    spreads = ctx.ruleset.spreads()
    premium = ctx.project.wrap_premium_bps / 1e4
    rate = coupon.astype(float).copy()
    if np.any(wrap):
        c, u = coupon[wrap], underlying[wrap]
        first, inverse = _group(c, u)
        wrapped = np.array([round(float(c[i]) - (spreads[int(u[i])] - spreads[0]) / 1e4 + premium, 10)
                            for i in first])
        rate[wrap] = wrapped[inverse]
    return rate


def market_coupons(ctx: Context, tenor: np.ndarray, underlying: np.ndarray) -> np.ndarray:
    """market_coupon of section 11.1 per row: benchmark(T) + (spread(underlying) + term premium) / 10^4,
    rounded to 10 decimals; Python's ``round`` once per distinct (tenor, underlying) pair."""
    spreads = ctx.ruleset.spreads()
    bps_per_year, above = ctx.ruleset.term_premium
    curve = ctx.derived.benchmark_curve
    assert curve is not None
    first, inverse = _group(tenor, underlying.astype(np.int64))
    priced = np.array([market_coupon(benchmark_rate(curve, float(tenor[i])), spreads[int(underlying[i])],
                                     float(tenor[i]), bps_per_year, above) for i in first])
    return priced[inverse] if len(first) else np.zeros(0)


def sidecar_value(ctx: Context, case: np.ndarray, coupon: np.ndarray) -> np.ndarray:
    """sum_p sidecar_p (1 + coupon / ppy)^-p, once per distinct (case, coupon)."""
    first, inverse = _group(case, coupon)
    v = 1.0 / (1.0 + coupon[first] / ctx.ppy)
    disc = np.cumprod(np.broadcast_to(v[:, None], (len(v), ctx.n_periods)), axis=1)
    return seqsum(ctx.cases.sidecar[case[first]] * disc)[inverse]


# --- evaluation -----------------------------------------------------------------------------------

@dataclass
class Detail:
    """Per-period arrays of the rows of :func:`evaluate_detail` (rows x N)."""

    senior: SeniorClasses
    cls: np.ndarray
    senior_amount: np.ndarray
    mezz: MezzResult | None
    mezz_rows: np.ndarray
    equity_flows: np.ndarray
    case: np.ndarray


Columns = dict[str, np.ndarray]


def evaluate(ctx: Context, table: Mapping[str, np.ndarray], hints: bool = True) -> Columns:
    """Every KPI of every structure in ``table`` as columns (NaN = null), plus gate, tier and hint codes.

    Columns starting with "_" are internals (capacities, the failed check's value) kept for hints.
    """
    return _evaluate(ctx, table, False, hints)[0]


def evaluate_detail(ctx: Context, table: Mapping[str, np.ndarray], hints: bool = False) -> tuple[Columns, Detail]:
    """:func:`evaluate` plus the per-period arrays of every row (:class:`Detail`): for single structures,
    the schedule, the Monte Carlo and the breakevens, never for a whole grid."""
    out, det = _evaluate(ctx, table, True, hints)
    assert det is not None
    return out, det


def _evaluate(ctx: Context, table: Mapping[str, np.ndarray], detail: bool, hints: bool
              ) -> tuple[Columns, Detail | None]:
    p_, d, rs = ctx.project, ctx.derived, ctx.ruleset
    ppy, n_periods = ctx.ppy, ctx.n_periods
    rows = len(table["senior_tenor"])
    tenor = table["senior_tenor"]
    coupon = table["senior_coupon"].astype(float)
    k = table["senior_dscr"].astype(float)
    amort = table["senior_amort"]
    wrap = table["wrap"]
    mezz_on = table["mezz_on"]
    n = np.minimum(tenor, p_.lease_years) * ppy
    io = table["io_months"] * ppy // 12
    case = ctx.case_index(table["indexation_mode"], table["zcis_tenor_years"])

    cap_notch = notch(d.rating_cap)
    underlying = np.maximum(ladder_notch(rs, p_.country, k), cap_notch)
    if ctx.priced:  # section 11.1: "market" (NaN) points take the market coupon everywhere a coupon is used
        market = market_coupons(ctx, tenor, underlying)
        used = np.where(np.isnan(coupon), market, coupon)
    else:
        market, used = None, coupon
    rate = all_in_rate(ctx, used, wrap, underlying)

    first, cls = _group(case, amort, rate, io, n)
    g = rs.gates
    sen = size_classes(ctx.cases, case[first], amort[first], rate[first], io[first], n[first], ppy,
                       dsra_window=int(np.ceil(d.dsra_months * ppy / 12)), refi_spread=g["refinancing_spread"],
                       refi_buffer=int(g["refinancing_buffer_years"]))

    fn = d.funding_need
    columns = [sen.dk[cls] / k, sen.iok[cls] / k, sen.tailk[cls] / k, np.full(rows, d.af_max * fn)]
    if ctx.priced:  # section 11.2: ltv = max_ltv(tenant) x lending_value, between advance_factor and funding_need
        columns.append(np.full(rows, d.ltv_limit))
    limits = np.stack([*columns, np.full(rows, fn)], axis=1)
    smallest = limits.min(axis=1)
    binding = np.argmax(limits == smallest[:, None], axis=1)
    senior = np.maximum(smallest, 0.0)
    has_debt = senior > 0
    inv_s = safe_div(np.ones(rows), senior)

    sidecar_gross = sidecar_value(ctx, case, used)
    sidecar_net = sidecar_gross * (1.0 - table["sidecar_haircut_pct"])
    dsra = senior * sen.dsra[cls]
    with np.errstate(invalid="ignore"):
        min_dscr = np.where(has_debt, sen.q_min[cls] * inv_s, np.nan)
        avg_dscr = np.where(has_debt, safe_div(sen.q_sum[cls], sen.q_count[cls].astype(float)) * inv_s, np.nan)
        stress = {s: np.where(has_debt, sen.q_stress[cls, i] * inv_s, np.nan) for i, s in enumerate(STRESS_NAMES)}
    llcr = np.where(has_debt, sen.llcr_num[cls] * inv_s, np.nan)
    wal = np.where(has_debt, sen.wal[cls], np.nan)
    total_interest = senior * sen.interest_total[cls]
    min_principal_ratio = np.where(has_debt, sen.min_principal[cls], 0.0)

    # mezzanine rows
    mezz_amount = np.zeros(rows)
    stress_total = {s: np.full(rows, np.nan) for s in STRESS_NAMES}
    mezz_rows = np.flatnonzero(mezz_on)
    mezz: MezzResult | None = None
    mezz_service: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, service rows x width) per span group
    if len(mezz_rows):
        n_m = np.minimum(table["mezz_tenor"][mezz_rows], p_.lease_years) * ppy
        span = np.maximum(sen.test_periods[cls[mezz_rows]], n_m)
        spans = [n_periods] if detail else np.unique(span)
        for width in spans:  # rows sharing a span share a matrix width: no work past the last service
            group = mezz_rows if detail else mezz_rows[span == width]
            compiled = ctx.kernels and not detail
            result, totals = (_mezz_group_compiled if compiled else _mezz_group)(ctx, table, group, senior, sen, cls,
                                                                                 case, int(width), detail)
            mezz_amount[group] = result.amount
            for s_name in STRESS_NAMES:
                stress_total[s_name][group] = totals[s_name]
            min_principal_ratio[group] = np.where(result.amount > 0,
                                                  np.minimum(min_principal_ratio[group], result.min_principal_ratio),
                                                  min_principal_ratio[group])
            mezz_service.append((group, result.service))
            mezz = result

    day_one = senior + mezz_amount + sidecar_net - dsra
    equity = fn - day_one
    mezz_coupon = np.where(mezz_on, table["mezz_coupon"].astype(float), np.nan)
    wacd = safe_div(senior * rate + mezz_amount * np.where(mezz_on, mezz_coupon, 0.0), senior + mezz_amount)
    min_notch = ladder_notch(rs, p_.country, min_dscr)
    senior_rating = np.where(has_debt, np.where(wrap, 0.0, np.maximum(min_notch, cap_notch)), np.nan)

    # equity IRR: flows equal within each lease year take the yearly path; the DSRA release and the
    # residual value are point terms at year ends
    last_test = sen.test_periods[cls]
    residual = p_.residual_value_pct * d.market_value
    yearly_ok = sen.year_constant[cls] & (ppy > 1)
    if len(mezz_rows):
        yearly_ok[mezz_rows] &= table["mezz_amort"][mezz_rows] != MEZZ_LEVEL
    x = np.full(rows, np.nan)
    fast, slow = np.flatnonzero(yearly_ok), np.flatnonzero(~yearly_ok)
    if len(fast):
        yearly = ctx.cases.equity_base[:, ::ppy].T[:, case[fast]]
        yearly -= sen.u[:, ::ppy].T[:, cls[fast]] * senior[fast]
        _subtract_mezz(yearly, fast, rows, mezz_service, ppy)
        solve_yearly = kernels.irr_yearly if ctx.kernels else irr_factor_yearly
        x[fast] = solve_yearly(yearly, dsra[fast], last_test[fast] // ppy, residual, equity[fast], ppy)
    if len(slow) or detail:
        slow = np.arange(rows) if detail else slow
        flows = _period_flows(ctx, case[slow], cls[slow], sen, senior[slow], dsra[slow], last_test[slow], residual)
        _subtract_mezz(flows, slow, rows, mezz_service, 1)
        x_slow = (kernels.irr_periods if ctx.kernels and not detail else irr_factor_periods)(flows, equity[slow])
        if not detail:
            x[slow] = x_slow
    equity_irr = annualised_irr(x, ppy)

    out: dict[str, np.ndarray] = {
        "senior_amount": senior, "senior_rate": rate, "senior_rating": senior_rating,
        "binding_constraint": binding.astype(np.int8), "mezz_amount": mezz_amount, "mezz_rate": mezz_coupon,
        "sidecar_gross": sidecar_gross, "sidecar_net": sidecar_net, "dsra_amount": dsra, "day_one_value": day_one,
        "equity_required": equity, "min_dscr": min_dscr, "avg_dscr": avg_dscr, "llcr": llcr, "wal_years": wal,
        "ltv": senior / (d.lending_value if ctx.priced else d.market_value), "advance_factor": senior / fn,
        "wacd": wacd,
        "total_interest": total_interest, "equity_irr": equity_irr,
        **{f"stress_{s}": stress[s] for s in STRESS_NAMES},
        **{f"stress_total_{s}": stress_total[s] for s in STRESS_NAMES},
        "min_principal_ratio": min_principal_ratio,
        "wrap_underlying_notch": np.where(wrap, underlying, np.nan),
        "_capacity_k": np.minimum(np.minimum(sen.dk, sen.iok), sen.tailk)[cls],
        "_dsra_unit": sen.dsra[cls],
    }
    if market is not None:  # v2 KPIs: the coupon used and the market coupon (kpis senior_coupon, market_coupon)
        out["senior_coupon_used"] = used
        out["market_coupon"] = market
    checks = check_table({**out, "senior_tenor": tenor, "io_months": table["io_months"], "wrap": wrap,
                          "offered_coupon": coupon}, ctx.gate_constants())
    viable = ~checks.failed.any(axis=1)
    is_near, which = near_miss(checks, g["near_miss_band"])
    repo = repo_failures(rs, p_.country, d.dsra_months, senior_rating, min_dscr, out["ltv"], tenor, amort == BULLET)
    repo_ok = ~repo.any(axis=1)
    weights = np.left_shift(np.int64(1), np.arange(len(REPO_RULES), dtype=np.int64))
    col = np.maximum(which, 0)
    out.update(
        fail_mask=checks.mask, viable=viable, tier=tiers(viable, senior_rating, repo_ok, is_near).astype(np.int8),
        near_miss=is_near, near_miss_check=np.where(is_near, which, -1).astype(np.int8), repo_eligible=repo_ok,
        repo_mask=(repo.astype(np.int64) * weights).sum(axis=1),
        _failed_value=checks.value[np.arange(rows), col], _failed_threshold=checks.threshold[np.arange(rows), col],
    )
    out["hint_lever"], out["hint_value"], out["_hint_search"] = _hints(ctx, table, out, underlying) if hints else (
        np.zeros(rows, dtype=np.int8), np.full(rows, np.nan), np.zeros(rows, dtype=bool))
    if not detail:
        return out, None
    return out, Detail(senior=sen, cls=cls, senior_amount=senior, mezz=mezz, mezz_rows=mezz_rows,
                       equity_flows=flows, case=case)


def _period_flows(ctx: Context, case: np.ndarray, cls: np.ndarray, sen: SeniorClasses, senior: np.ndarray,
                  dsra: np.ndarray, last_test: np.ndarray, residual: float) -> np.ndarray:
    """Equity flows per period (N x rows) before mezzanine: base CFADS - sidecar - senior service + points."""
    flows = ctx.cases.equity_base.T[:, case]
    flows -= sen.u.T[:, cls] * senior
    flows[last_test - 1, np.arange(len(case))] += dsra
    flows[-1] += residual
    return flows


def _subtract_mezz(flows: np.ndarray, rows: np.ndarray, n_rows: int, mezz_service: list[tuple[np.ndarray, np.ndarray]],
                   step: int) -> None:
    """Subtract mezz service from the columns of ``flows`` that hold ``rows`` (every ``step``-th period)."""
    if not mezz_service:
        return
    position = np.full(n_rows, -1)
    position[rows] = np.arange(len(rows))
    for group, service in mezz_service:
        here = position[group] >= 0
        if here.any():
            part = service[here, ::step]
            flows[: part.shape[1], position[group][here]] -= part.T


def _mezz_group(ctx: Context, table: Mapping[str, np.ndarray], rows: np.ndarray, senior: np.ndarray,
                sen: SeniorClasses, cls: np.ndarray, case: np.ndarray, width: int, full: bool
                ) -> tuple[MezzResult, dict[str, np.ndarray]]:
    """Mezzanine and combined stresses of mezz rows whose service ends by period ``width``."""
    d, ppy = ctx.derived, ctx.ppy
    mcls, mcase = cls[rows], case[rows]
    n_m = np.minimum(table["mezz_tenor"][rows], ctx.project.lease_years) * ppy
    span = np.maximum(sen.test_periods[mcls], n_m)
    senior_service = senior[rows, None] * sen.u[mcls, :width]
    headroom = (d.af_max + ctx.ruleset.gates["mezz_af_headroom"]) * d.funding_need - senior[rows]
    mezz = size_mezz(ctx.cases.lender_pos[mcase, :width], senior_service, table["mezz_coupon"][rows].astype(float),
                     table["mezz_dscr"][rows].astype(float), n_m, table["mezz_amort"][rows], headroom, ppy, full=full)
    combined = senior_service + mezz.service
    served = combined > 0
    if np.any(span < width):  # a group shares one span except in detail mode
        served &= np.arange(1, width + 1) <= span[:, None]
    inv = np.divide(1.0, combined, out=np.full(combined.shape, np.nan), where=served)  # NaN: not served
    has_mezz = mezz.amount > 0
    totals = {}
    for i, s in enumerate(STRESS_NAMES):
        lowest = np.fmin.reduce(ctx.cases.stress_cash[mcase, i, :width] * inv, axis=1)  # fmin skips NaN
        totals[s] = np.where(has_mezz, lowest, np.nan)
    return mezz, totals


def _mezz_group_compiled(ctx: Context, table: Mapping[str, np.ndarray], rows: np.ndarray, senior: np.ndarray,
                         sen: SeniorClasses, cls: np.ndarray, case: np.ndarray, width: int, full: bool
                         ) -> tuple[MezzResult, dict[str, np.ndarray]]:
    """:func:`_mezz_group` by the compiled kernel (grid mode: no schedule matrices)."""
    d, ppy = ctx.derived, ctx.ppy
    mcls = cls[rows]
    n_m = np.minimum(table["mezz_tenor"][rows], ctx.project.lease_years) * ppy
    span = np.maximum(sen.test_periods[mcls], n_m)
    headroom = (d.af_max + ctx.ruleset.gates["mezz_af_headroom"]) * d.funding_need - senior[rows]
    amount, service, min_ratio, totals = kernels.mezz_group(
        ctx.cases.lender_pos, sen.u, ctx.cases.stress_cash, mcls, case[rows], senior[rows],
        table["mezz_coupon"][rows].astype(float), table["mezz_dscr"][rows].astype(float), n_m,
        table["mezz_amort"][rows], headroom, ppy, width, span)
    return MezzResult(amount, service, min_ratio), {s: totals[:, i] for i, s in enumerate(STRESS_NAMES)}


def _hints(ctx: Context, table: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], underlying: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hint lever and value of every near-miss row in closed form, and which rows need a ladder search."""
    rows = len(out["senior_amount"])
    lever = np.zeros(rows, dtype=np.int8)
    value = np.full(rows, np.nan)
    search = np.zeros(rows, dtype=bool)
    near = np.flatnonzero(out["near_miss"])
    if len(near) == 0:
        return lever, value, search
    sub_out = {name: col[near] for name, col in out.items()}
    sub_table = take_rows(table, near)
    cap = notch(ctx.derived.rating_cap)

    def rate_stable(rows_: np.ndarray, new_k: np.ndarray) -> np.ndarray:
        """The all-in rate stays put at senior_dscr new_k: no wrap and no market coupon to re-price, or the
        underlying notch does not move (a "market" point is re-priced at the hinted value, section 11.1)."""
        repriced = sub_table["wrap"][rows_]
        if ctx.priced:  # a market point re-prices; an offered coupon may newly fall below market (D39)
            repriced = np.ones_like(repriced)
        new_notch = np.maximum(ladder_notch(ctx.ruleset, ctx.project.country, new_k), cap)
        return ~repriced | (new_notch == underlying[near][rows_])

    lever[near], value[near], search[near] = closed_form(sub_out, sub_table, hint_constants(ctx), rate_stable)
    return lever, value, search


def hint_constants(ctx: Context) -> dict[str, Any]:
    return {**ctx.gate_constants(), "funding_need": ctx.derived.funding_need}


def search_hints(ctx: Context, table: Mapping[str, np.ndarray], out: dict[str, np.ndarray]) -> None:
    """Fill the hint values that need a ladder search (rows flagged ``_hint_search``), in place.

    Done once per run for all rows rather than per chunk: each row's search is independent.
    """
    todo = np.flatnonzero(out["_hint_search"])
    if len(todo):
        also = np.zeros(len(todo), dtype=np.int64)
        if ctx.priced:  # a hinted senior_dscr must not make an offered coupon fall below the market (D39)
            offered = ~np.isnan(table["senior_coupon"][todo].astype(float))
            also[offered] = np.int64(1) << np.int64(CHECKS.index("pricing"))
        out["hint_value"][todo] = ladder_search(
            lambda t: evaluate(ctx, t, hints=False), take_rows(table, todo), out["hint_lever"][todo],
            out["near_miss_check"][todo], hint_constants(ctx), also)
        out["_hint_search"][todo] = False



"""Scalar reference implementation of the Phase-1 methodology: a TEST ORACLE, not production code.

This module re-implements ``/work/shared/METHODOLOGY.md`` (sections 4-9) together with the readings of
``docs/methodology-notes.md`` (D7..D31) in plain Python: lists, loops and the ``math`` module, one
permutation at a time, written to be read next to the text rather than to be fast. The vectorised
engine in ``phase1lib/engine`` is checked against it (to 1e-9 relative); the two are deliberately
independent, so nothing here imports or mirrors the engine. numpy is used only where the methodology
prescribes it: the Monte Carlo generator (``numpy.random.Generator(numpy.random.PCG64(seed))``) and
``numpy.percentile``.

Conventions: periods p = 1..N are stored at list index p - 1; lease year y = ceil(p / ppy); a
lease-year index list ``I`` holds I_y at index y - 1; growth lists hold g_y for anniversaries
y = 1 .. lease_years - 1 at index y - 1. A limit that does not apply is ``math.inf`` internally (D11)
and never appears in the output, which uses ``None`` for null.

Public API:

- primitives on a raw capacity vector C (C[0] is period 1): :func:`size_sculpted`,
  :func:`size_annuity`, :func:`size_level`, :func:`io_cover_limit`, :func:`build_schedule`,
  :func:`pmt`;
- :func:`evaluate` (KPIs and per-period schedule of one structure), :func:`monte_carlo`,
  :func:`equity_irr`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from phase1lib.project import Derived, Project, derive
from phase1lib.ruleset import Ruleset, load_ruleset

TOL = 1e-9  # section 8 comparisons and section 5 ladder grades
RATINGS = ("AAA", "AA", "A", "BBB", "BB", "B")  # best first
SENIOR_PROFILES = ("sculpted", "annuity", "level", "bullet")


# ================================================================================================
# Small helpers
# ================================================================================================

def clamp(x: float, lo: float, hi: float) -> float:
    """min(max(x, lo), hi): the CPI collar of section 4."""
    return min(max(x, lo), hi)


def lease_year(p: int, ppy: int) -> int:
    """y(p) = ceil(p / ppy) for a 1-based period p (integer arithmetic, no float ceil)."""
    return (p + ppy - 1) // ppy


def rating_notch(rating: str) -> int:
    """0 = AAA .. 5 = B; larger is worse."""
    return RATINGS.index(rating)


def worse_rating(a: str, b: str) -> str:
    return a if rating_notch(a) >= rating_notch(b) else b


def rating_from_dscr(rs: Ruleset, country: str, dscr: float) -> str:
    """Best grade on the country's ladder whose minimum DSCR is reached (value >= threshold - 1e-9)."""
    ladder = rs.data["rating_ladder"][country]
    for grade in RATINGS[:-1]:
        if dscr >= float(ladder[grade]) - TOL:
            return grade
    return "B"


def passes_min(value: float, threshold: float) -> bool:
    return value >= threshold - TOL


def passes_max(value: float, threshold: float) -> bool:
    return value <= threshold + TOL


# ================================================================================================
# Primitives (section 5 and the worked checks of section 10)
# ================================================================================================

def pmt(principal: float, rate: float, n: int) -> float:
    """Level (annuity) payment that repays ``principal`` over ``n`` periods at periodic ``rate``."""
    if rate == 0:
        return principal / n
    growth = (1 + rate) ** n
    return principal * rate * growth / (growth - 1)


def size_sculpted(C: list[float], r: float, io: int = 0) -> float:
    """Sculpted post-IO capacity D_post = sum_{j=1..m} C_(io+j) v^j, v = 1 / (1 + r), m = len(C) - io.

    The IO periods' own limit (interest cover) is :func:`io_cover_limit`, not included here.
    """
    m = len(C) - io
    if m <= 0:
        return 0.0
    total = 0.0
    for j in range(1, m + 1):
        total += C[io + j - 1] * (1 + r) ** (-j)
    return total


def size_annuity(C: list[float], r: float, io: int = 0) -> float:
    """Annuity post-IO capacity: A = min of C over the post-IO periods, D_post = A (1 - v^m) / r
    (A m when r = 0)."""
    m = len(C) - io
    if m <= 0:
        return 0.0
    a = min(C[io:])
    if r == 0:
        return a * m
    return a * (1 - (1 + r) ** (-m)) / r


def size_level(C: list[float], r: float, io: int = 0) -> float:
    """Level (straight-line principal) post-IO capacity: min_j C_(io+j) / (1/m + r (m - j + 1) / m).

    A term whose denominator is <= 0 (only possible for r < 0) is skipped (note D15).
    """
    m = len(C) - io
    if m <= 0:
        return 0.0
    best = math.inf
    for j in range(1, m + 1):
        denominator = 1 / m + r * (m - j + 1) / m
        if denominator <= 0:
            continue
        best = min(best, C[io + j - 1] / denominator)
    return best if best != math.inf else 0.0


def io_cover_limit(C: list[float], r: float, io: int) -> float:
    """min_{p <= io} C_p / r; +inf when io = 0 or r = 0 (note D11)."""
    if io <= 0 or r == 0:
        return math.inf
    return min(c / r for c in C[:io])


def profile_capacity(profile: str, C: list[float], r: float, io: int = 0) -> float:
    """D_post of a sculpted, annuity or level profile."""
    if profile == "sculpted":
        return size_sculpted(C, r, io)
    if profile == "annuity":
        return size_annuity(C, r, io)
    if profile == "level":
        return size_level(C, r, io)
    raise ValueError(f"no capacity rule for profile {profile!r}")


def build_schedule(profile: str, amount: float, C: list[float], r: float,
                   io: int = 0) -> dict[str, list[float]]:
    """Note schedule over periods 1..n = len(C) for a profile and an amount already sized.

    Returns per-period lists ``opening``, ``interest``, ``principal``, ``service`` and ``closing``.
    interest_p = r B_(p-1); IO periods pay interest only. Post-IO: sculpted service = C_p x scale,
    annuity service = A x scale (A = min post-IO C), scale = amount / D_post (0 when D_post or amount
    is 0, note D14); principal = service - interest. Level: principal = amount / m, service =
    principal + interest. Bullet: interest only, principal = the balloon at n; for a bullet
    ``service`` EXCLUDES the balloon (it is the note service of note D17), ``principal`` includes it.
    The closing balance after n is left as computed (B_n = 0 within rounding), never forced.
    """
    n = len(C)
    m = n - io
    zeros = [0.0] * n
    if amount <= 0 or m <= 0:
        return {"opening": list(zeros), "interest": list(zeros), "principal": list(zeros),
                "service": list(zeros), "closing": list(zeros)}
    scale = 0.0
    annuity_a = 0.0
    if profile in ("sculpted", "annuity"):
        d_post = profile_capacity(profile, C, r, io)
        scale = amount / d_post if d_post > 0 else 0.0
        if profile == "annuity":
            annuity_a = min(C[io:])
    elif profile not in ("level", "bullet"):
        raise ValueError(f"unknown profile {profile!r}")

    opening, interest, principal, service, closing = [], [], [], [], []
    balance = amount
    for p in range(1, n + 1):
        interest_p = r * balance
        if profile == "bullet":
            principal_p = amount if p == n else 0.0
            service_p = interest_p
        elif p <= io:
            principal_p = 0.0
            service_p = interest_p
        elif profile == "sculpted":
            service_p = C[p - 1] * scale
            principal_p = service_p - interest_p
        elif profile == "annuity":
            service_p = annuity_a * scale
            principal_p = service_p - interest_p
        else:  # level
            principal_p = amount / m
            service_p = principal_p + interest_p
        opening.append(balance)
        interest.append(interest_p)
        principal.append(principal_p)
        service.append(service_p)
        balance = balance - principal_p
        closing.append(balance)
    return {"opening": opening, "interest": interest, "principal": principal, "service": service,
            "closing": closing}


# ================================================================================================
# Cash flows (section 4)
# ================================================================================================

def index_by_year(growth: list[float]) -> list[float]:
    """I_1 = 1, I_(y+1) = I_y (1 + g_y): lease-year index list from anniversary growths."""
    index = [1.0]
    for g in growth:
        index.append(index[-1] * (1 + g))
    return index


def lender_rent_growth(project: Project, derived: Derived, mode: str, hedge_years: int) -> list[float]:
    """Lender case: mode CPI_capped -> locked for y <= H, cpi_floor after; mode flat or basis flat -> 0."""
    anniversaries = range(1, project.lease_years)
    if project.indexation_basis == "flat" or mode == "flat":
        return [0.0 for _ in anniversaries]
    return [derived.locked_rate if y <= hedge_years else project.cpi_floor for y in anniversaries]


def realised_rent_growth(project: Project, derived: Derived, hedge_years: int,
                         cpi_by_anniversary: list[float]) -> list[float]:
    """Base case, stresses and Monte Carlo paths: locked + clamp(x) - x for y <= H, clamp(x) after
    (whatever the indexation mode); 0 everywhere with a flat basis (note D8)."""
    if project.indexation_basis == "flat":
        return [0.0 for _ in cpi_by_anniversary]
    growth = []
    for y, x in enumerate(cpi_by_anniversary, start=1):
        collared = clamp(x, project.cpi_floor, project.cpi_cap)
        if y <= hedge_years:
            growth.append(derived.locked_rate + collared - x)
        else:
            growth.append(collared)
    return growth


def cash_flows(project: Project, derived: Derived, rent_growth: list[float], cost_growth: list[float],
               rent_mult: float = 1.0, opex_mult: float = 1.0) -> dict[str, list[float]]:
    """Per-period CFADS_p = revenue_p - opex_p - admin_p, with the rent index and cost index per period."""
    ppy = project.periods_per_year
    rent_index = index_by_year(rent_growth)
    cost_index = index_by_year(cost_growth)
    cfads, rent_p, cost_p = [], [], []
    for p in range(1, project.n_periods + 1):
        y = lease_year(p, ppy)
        revenue = derived.gross_income_annual / ppy * rent_index[y - 1] * rent_mult
        opex = derived.opex_annual / ppy * cost_index[y - 1] * opex_mult
        admin = derived.admin_annual / ppy
        cfads.append(revenue - opex - admin)
        rent_p.append(rent_index[y - 1])
        cost_p.append(cost_index[y - 1])
    return {"cfads": cfads, "rent_index": rent_p, "cost_index": cost_p}


def realised_cash_flows(project: Project, derived: Derived, hedge_years: int, cpi_by_anniversary: list[float],
                        rent_mult: float = 1.0, opex_mult: float = 1.0) -> list[float]:
    """CFADS of a realised-CPI case (base, stress, Monte Carlo path): costs grow at the case's CPI x."""
    rent_growth = realised_rent_growth(project, derived, hedge_years, cpi_by_anniversary)
    return cash_flows(project, derived, rent_growth, list(cpi_by_anniversary), rent_mult, opex_mult)["cfads"]


def sidecar_flows(project: Project, derived: Derived, mode: str, hedge_years: int) -> list[float]:
    """sidecar_p = G / ppy ((1 + locked)^(y - 1) - 1) for y <= H + 1, only in mode flat with H > 0 and
    basis CPI_capped (note D10); otherwise 0."""
    n_periods = project.n_periods
    if not (mode == "flat" and hedge_years > 0 and project.indexation_basis == "CPI_capped"):
        return [0.0] * n_periods
    ppy = project.periods_per_year
    flows = []
    for p in range(1, n_periods + 1):
        y = lease_year(p, ppy)
        if y <= hedge_years + 1:
            flows.append(derived.gross_income_annual / ppy * ((1 + derived.locked_rate) ** (y - 1) - 1))
        else:
            flows.append(0.0)
    return flows


def scenario_cpi(project: Project, scenario: dict[str, Any]) -> tuple[list[float], float, float]:
    """(CPI x per anniversary, rent_mult, opex_mult) of a stress scenario of the ruleset (section 8, D9)."""
    anniversaries = range(1, project.lease_years)
    kind = scenario["kind"]
    if kind == "cpi":
        return [float(scenario["cpi"]) for _ in anniversaries], 1.0, 1.0
    if kind == "cpi_spike":
        spike, count = float(scenario["cpi"]), int(scenario["anniversaries"])
        return [spike if y <= count else project.base_cpi for y in anniversaries], 1.0, 1.0
    if kind == "base":
        return ([project.base_cpi for _ in anniversaries], float(scenario.get("rent_mult", 1.0)),
                float(scenario.get("opex_mult", 1.0)))
    raise ValueError(f"unknown stress kind {kind!r}")


# ================================================================================================
# Structure helpers
# ================================================================================================

def full_structure(project: Project, structure: dict[str, Any]) -> dict[str, Any]:
    """The structure with section 3 defaults filled in (a Grid.point is already full)."""
    st = dict(structure)
    st.setdefault("senior_amort", "sculpted")
    st.setdefault("indexation_mode", "CPI_capped")
    st.setdefault("zcis_tenor_years", 0)
    st.setdefault("io_months", 0)
    st.setdefault("wrap", False)
    st.setdefault("mezz_on", False)
    st.setdefault("sidecar_haircut_pct", project.sidecar_haircut_pct)
    if st["mezz_on"]:
        st.setdefault("mezz_coupon", project.mezz_coupon)
        st.setdefault("mezz_dscr", project.mezz_dscr)
        st.setdefault("mezz_amort", project.mezz_amort)
        if st.get("mezz_tenor") is None:
            st["mezz_tenor"] = project.mezz_tenor if project.mezz_tenor is not None else st["senior_tenor"]
    return st


def underlying_rating(project: Project, derived: Derived, rs: Ruleset, senior_dscr: float) -> str:
    """Worse of the ladder grade of the target senior_dscr and the tenant's rating cap."""
    return worse_rating(rating_from_dscr(rs, project.country, senior_dscr), derived.rating_cap)


# ================================================================================================
# Ruleset v2 (section 11): market coupon, lending value, the ltv limit
# ================================================================================================

def is_priced(rs: Ruleset) -> bool:
    """A v2-shaped ruleset: it has benchmark curves."""
    return "benchmark_curves" in rs.data


def benchmark(curve: list[list[float]] | tuple, tenor: float) -> float:
    """The curve linearly interpolated at ``tenor`` years, flat beyond its first and last points (11.1)."""
    points = [(float(t), float(r)) for t, r in curve]
    if tenor <= points[0][0]:
        return points[0][1]
    if tenor >= points[-1][0]:
        return points[-1][1]
    for i in range(len(points) - 1):
        (t0, r0), (t1, r1) = points[i], points[i + 1]
        if t0 <= tenor <= t1:
            weight = (tenor - t0) / (t1 - t0)
            return r0 + weight * (r1 - r0)
    raise AssertionError("unreachable: tenors are increasing")


def project_curve(project: Project, rs: Ruleset) -> list:
    """The project's benchmark curve: its own override, else the ruleset's curve for its currency."""
    if project.benchmark_curve is not None:
        return [list(p) for p in project.benchmark_curve]
    return rs.data["benchmark_curves"][project.currency]["points"]


def market_coupon(project: Project, derived: Derived, rs: Ruleset, st: dict[str, Any]) -> float:
    """round(benchmark(T) + (spread(underlying) + bps_per_year x max(T - above_years, 0)) / 10^4, 10)."""
    tenor = float(st["senior_tenor"])
    underlying = underlying_rating(project, derived, rs, float(st["senior_dscr"]))
    premium = rs.data["term_premium"]
    spread = float(rs.data["spread_bps"][underlying])
    term = float(premium["bps_per_year"]) * max(tenor - float(premium["above_years"]), 0.0)
    return round(benchmark(project_curve(project, rs), tenor) + (spread + term) / 1e4, 10)


def coupon_used(project: Project, derived: Derived, rs: Ruleset, st: dict[str, Any]) -> float:
    """The coupon a structure pays: its number, or the market coupon when it says "market"."""
    if st["senior_coupon"] == "market":
        assert is_priced(rs), '"market" needs a priced ruleset'
        return market_coupon(project, derived, rs, st)
    return float(st["senior_coupon"])


def lending(project: Project, derived: Derived, rs: Ruleset) -> dict[str, float]:
    """income_value = NOI / cap rate, lending_value = min(market value, income value), the ltv limit (11.2)."""
    cap_rate = project.cap_rate if project.cap_rate is not None else float(rs.data["cap_rates"][project.country])
    income = derived.noi_annual / cap_rate
    value = min(derived.market_value, income)
    return {"cap_rate": cap_rate, "income_value": income, "lending_value": value,
            "ltv_limit": float(rs.data["max_ltv"][project.tenant_rating]) * value}


def all_in_rate(project: Project, derived: Derived, rs: Ruleset, st: dict[str, Any]) -> float:
    """All-in rate R: the coupon; wrapped:
    round(coupon - (spread(underlying) - spread(AAA)) / 10^4 + wrap_premium_bps / 10^4, 10)."""
    coupon = coupon_used(project, derived, rs, st)
    if not st["wrap"]:
        return coupon
    underlying = underlying_rating(project, derived, rs, float(st["senior_dscr"]))
    spreads = rs.data["spread_bps"]
    saving = (float(spreads[underlying]) - float(spreads["AAA"])) / 1e4
    return round(coupon - saving + project.wrap_premium_bps / 1e4, 10)


# ================================================================================================
# Senior sizing (section 5, notes D11-D17)
# ================================================================================================

def size_senior(project: Project, derived: Derived, rs: Ruleset, st: dict[str, Any],
                lender_cfads: list[float]) -> dict[str, Any]:
    """Size the senior note and build its schedule and the senior service s_p (length N lists)."""
    ppy = project.periods_per_year
    n_periods = project.n_periods
    k = float(st["senior_dscr"])
    profile = st["senior_amort"]
    capacity = [max(cf, 0.0) / k for cf in lender_cfads]  # C_p, p = 1..N
    n = min(int(st["senior_tenor"]), project.lease_years) * ppy
    io = int(st["io_months"]) * ppy // 12
    big_r = all_in_rate(project, derived, rs, st)
    r = big_r / ppy
    bullet = profile == "bullet"
    refi_end = n_periods - int(rs.gates["refinancing_buffer_years"]) * ppy  # last period of W
    test_end = refi_end if bullet else n  # senior test periods T = 1..test_end

    d_post = 0.0
    tail = math.inf
    limits: list[tuple[str, float]] = []
    if io >= n:  # note D12: no post-IO period
        amount, binding = 0.0, "dscr"
    else:
        if bullet:
            d_ic = math.inf if r == 0 else min(c / r for c in capacity[io:n])
            r_f = (big_r + float(rs.gates["refinancing_spread"])) / ppy
            tail = 0.0
            for p in range(n + 1, refi_end + 1):
                tail += capacity[p - 1] * (1 + r_f) ** (-(p - n))
            d_post = min(d_ic, tail)
            dscr_limit = d_ic
        else:
            d_post = profile_capacity(profile, capacity[:n], r, io)
            dscr_limit = d_post
        limits = [
            ("dscr", dscr_limit),
            ("io_cover", io_cover_limit(capacity[:n], r, io)),
            ("refinancing_tail", tail),
            ("advance_factor", derived.af_max * derived.funding_need),
            *([("ltv", lending(project, derived, rs)["ltv_limit"])] if is_priced(rs) else []),
            ("funding_need", derived.funding_need),
        ]
        smallest = min(value for _, value in limits)
        binding = next(name for name, value in limits if value == smallest)
        amount = smallest if smallest > 0 else 0.0

    note = build_schedule(profile, amount, capacity[:n], r, io)

    # s_p (note D17): note service without the balloon, plus a bullet's refinancing service; on T only.
    service = [0.0] * n_periods
    for p in range(1, min(n, test_end) + 1):
        service[p - 1] = note["service"][p - 1]
    if bullet and amount > 0 and tail > 0:
        for p in range(n + 1, refi_end + 1):
            service[p - 1] = capacity[p - 1] * amount / tail

    def padded(values: list[float]) -> list[float]:
        return values + [0.0] * (n_periods - len(values))

    return {
        "amount": amount, "binding": binding, "limits": limits, "rate": big_r, "r": r, "n": n, "io": io,
        "test_end": test_end, "d_post": d_post, "tail": tail, "capacity": capacity, "bullet": bullet,
        "opening": padded(note["opening"]), "interest": padded(note["interest"]),
        "principal": padded(note["principal"]), "closing": padded(note["closing"]), "service": service,
    }


# ================================================================================================
# Mezzanine (section 6, note D18)
# ================================================================================================

def size_mezz(project: Project, derived: Derived, rs: Ruleset, st: dict[str, Any], lender_cfads: list[float],
              senior_service: list[float], senior_amount: float) -> dict[str, Any]:
    n_periods = project.n_periods
    zeros = [0.0] * n_periods
    if not st["mezz_on"]:
        return {"amount": 0.0, "capacity_amount": 0.0, "n": 0, "opening": list(zeros),
                "interest": list(zeros), "principal": list(zeros), "service": list(zeros),
                "closing": list(zeros)}
    ppy = project.periods_per_year
    n_m = min(int(st["mezz_tenor"]), project.lease_years) * ppy
    r_m = float(st["mezz_coupon"]) / ppy
    mezz_dscr = float(st["mezz_dscr"])
    capacity = []
    for p in range(1, n_m + 1):
        cover = max(lender_cfads[p - 1], 0.0) / mezz_dscr
        room = max(cover - senior_service[p - 1], 0.0)
        capacity.append(room if room > 1e-9 * cover else 0.0)  # D18: rounding noise is no capacity
    sized = profile_capacity(st["mezz_amort"], capacity, r_m, 0)
    headroom = (derived.af_max + float(rs.gates["mezz_af_headroom"])) * derived.funding_need - senior_amount
    amount = min(sized, headroom)
    amount = amount if amount > 0 else 0.0
    schedule = build_schedule(st["mezz_amort"], amount, capacity, r_m, 0)

    def padded(values: list[float]) -> list[float]:
        return values + [0.0] * (n_periods - len(values))

    return {"amount": amount, "capacity_amount": sized, "n": n_m, "capacity": capacity,
            **{key: padded(values) for key, values in schedule.items()}}


# ================================================================================================
# Ratios, DSRA, IRR
# ================================================================================================

def min_ratio(cash: list[float], service: list[float], last_period: int) -> float | None:
    """min over p <= last_period with service_p > 0 of cash_p / service_p; None when no such period."""
    ratios = [cash[p - 1] / service[p - 1] for p in range(1, last_period + 1) if service[p - 1] > 0]
    return min(ratios) if ratios else None


def dsra_amount(service: list[float], test_end: int, window: int) -> float:
    """Largest sum of s_p over `window` consecutive periods of T = 1..test_end (note D22)."""
    if test_end < window:
        return sum(service[:test_end])
    best = -math.inf
    for start in range(0, test_end - window + 1):
        best = max(best, sum(service[start:start + window]))
    return best


def _npv_at_discount_factor(equity: float, flows: list[float], d: float) -> float:
    """-equity + sum_p flows[p-1] d^p by Horner's rule (all flows >= 0, so an overflow is +inf, never NaN)."""
    acc = 0.0
    for f in reversed(flows):
        acc = f + d * acc
    return d * acc - equity


def equity_irr(equity_required: float, flows: list[float], ppy: int,
               lo_rate: float = -0.99, hi_rate: float = 10.0) -> float | None:
    """Annualised equity IRR of -equity at t = 0 and ``flows`` at p = 1..N (section 7, note D25).

    None when equity <= 0, any flow < -1e-9 x equity, no flow > 0, or the periodic root is outside
    [lo_rate, hi_rate]. With those guards NPV is strictly increasing in the discount factor
    d = 1 / (1 + i), so plain bisection on d, run until the interval cannot shrink, finds the root.
    """
    noise = 1e-9 * equity_required  # D25: a flow above -noise is rounding, not a negative flow
    if not equity_required > 0 or any(f < -noise for f in flows) or all(f <= 0 for f in flows):
        return None
    d_lo = 1 / (1 + hi_rate)  # highest rate, smallest NPV
    d_hi = 1 / (1 + lo_rate)
    npv_lo = _npv_at_discount_factor(equity_required, flows, d_lo)
    npv_hi = _npv_at_discount_factor(equity_required, flows, d_hi)
    if npv_lo > 0 or npv_hi < 0:
        return None
    if npv_lo == 0:
        d_hi = d_lo
    elif npv_hi == 0:
        d_lo = d_hi
    for _ in range(2000):
        mid = 0.5 * (d_lo + d_hi)
        if mid <= d_lo or mid >= d_hi:
            break
        value = _npv_at_discount_factor(equity_required, flows, mid)
        if value == 0:
            d_lo = d_hi = mid
            break
        if value < 0:
            d_lo = mid
        else:
            d_hi = mid
    d = 0.5 * (d_lo + d_hi)
    periodic = 1 / d - 1
    return (1 + periodic) ** ppy - 1


def _finite_or_none(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return x


# ================================================================================================
# Gates, tiers, repo (section 8, notes D26-D29)
# ================================================================================================

MIN_CHECKS = frozenset({"all_in_rate", "senior_amount", "negative_amortisation", "advance_factor",
                        "min_equity", "min_dscr", "pricing"})
MAX_CHECKS = frozenset({"tenor", "io_months", "wal"})
NEVER_NEAR_MISS = frozenset({"io_months", "all_in_rate", "senior_amount", "negative_amortisation",
                             "wrap_underlying"})


def is_min_check(check: str) -> bool:
    return check in MIN_CHECKS or check.startswith("stress_")


def is_near_miss(failures: list[dict[str, Any]], band: float) -> bool:
    """Exactly one failure, of a near-miss kind (note D27), within the band (0.95 / 1.05 x threshold)."""
    if len(failures) != 1:
        return False
    f = failures[0]
    if f["check"] in NEVER_NEAR_MISS:
        return False
    if f["check"] == "pricing" and not f["threshold"] > 0:  # section 11.1: only when market_coupon > 0
        return False
    if is_min_check(f["check"]):
        return f["value"] >= (1 - band) * f["threshold"]
    return f["value"] <= (1 + band) * f["threshold"]


def _fmt_reason_value(x: Any) -> str:
    """null for None, floats to 6 significant digits ("1.35", "0.7"), others as str.

    Note D29 fixes the "<rule>: <value> vs <limit>" shape but not the number format; 6 significant
    digits keep float noise (1.3499999999999999) out of the text. Compare reasons loosely.
    """
    if x is None:
        return "null"
    if isinstance(x, float):
        return format(x, ".6g")
    return str(x)


def repo_check(project: Project, derived: Derived, rs: Ruleset, st: dict[str, Any], rating: str | None,
               min_dscr: float | None, ltv: float) -> tuple[bool, list[str]]:
    """Repo eligibility and the failed rules as "<rule>: <value> vs <limit>" (note D29)."""
    rules = rs.data["repo_rules"].get(project.country)
    if not rules:
        return False, [f"jurisdiction: {project.country} has no repo rules"]
    rule = rules["bullet" if st["senior_amort"] == "bullet" else "amortising"]
    reasons = []
    if rating is None or rating_notch(rating) > rating_notch(rule["min_rating"]):
        reasons.append(f"min_rating: {_fmt_reason_value(rating)} vs {rule['min_rating']}")
    if min_dscr is None or not passes_min(min_dscr, float(rule["min_dscr"])):
        reasons.append(f"min_dscr: {_fmt_reason_value(min_dscr)} vs {_fmt_reason_value(rule['min_dscr'])}")
    if not passes_max(ltv, float(rule["max_ltv"])):
        reasons.append(f"max_ltv: {_fmt_reason_value(ltv)} vs {_fmt_reason_value(rule['max_ltv'])}")
    tenor = int(st["senior_tenor"])
    if not passes_max(tenor, rule["max_tenor"]):
        reasons.append(f"max_tenor: {tenor} vs {rule['max_tenor']}")
    if not passes_min(derived.dsra_months, rule["min_dsra_months"]):
        reasons.append(f"min_dsra_months: {derived.dsra_months} vs {rule['min_dsra_months']}")
    return not reasons, reasons


# ================================================================================================
# evaluate
# ================================================================================================

def evaluate(project: Project, structure: dict[str, Any], ruleset: Ruleset | None = None) -> dict[str, Any]:
    """KPIs (section 7-8) and the per-period schedule of one structure (one grid point)."""
    rs = ruleset or load_ruleset()
    derived = derive(project, rs)
    st = full_structure(project, structure)
    if is_priced(rs):
        st.setdefault("senior_coupon", "market")  # section 11.1: the v2 default
    ppy = project.periods_per_year
    n_periods = project.n_periods
    lease = project.lease_years
    hedge_years = int(st["zcis_tenor_years"])
    mode = st["indexation_mode"]

    # --- cash flows (section 4)
    lender = cash_flows(project, derived, lender_rent_growth(project, derived, mode, hedge_years),
                        [project.base_cpi] * (lease - 1))
    lender_cf = lender["cfads"]
    base_cf = realised_cash_flows(project, derived, hedge_years, [project.base_cpi] * (lease - 1))
    sidecar = sidecar_flows(project, derived, mode, hedge_years)

    # --- senior and mezz (sections 5, 6)
    senior = size_senior(project, derived, rs, st, lender_cf)
    amount = senior["amount"]
    s = senior["service"]
    test_end = senior["test_end"]
    n = senior["n"]
    big_r, r = senior["rate"], senior["r"]
    mezz = size_mezz(project, derived, rs, st, lender_cf, s, amount)
    mezz_amount = mezz["amount"]
    m_service = mezz["service"]
    n_m = mezz["n"]

    # --- day-one value (section 7)
    window = math.ceil(derived.dsra_months * ppy / 12)
    dsra = dsra_amount(s, test_end, window) if amount > 0 else 0.0
    coupon_rate = coupon_used(project, derived, rs, st) / ppy
    sidecar_gross = sum(sidecar[p - 1] * (1 + coupon_rate) ** (-p) for p in range(1, n_periods + 1))
    sidecar_net = sidecar_gross * (1 - float(st["sidecar_haircut_pct"]))
    day_one = amount + mezz_amount + sidecar_net - dsra
    equity_required = derived.funding_need - day_one

    # --- ratios over the senior test periods (D21, D24)
    if amount > 0:
        ratios = [lender_cf[p - 1] / s[p - 1] for p in range(1, test_end + 1) if s[p - 1] > 0]
        min_dscr = min(ratios) if ratios else None
        avg_dscr = sum(ratios) / len(ratios) if ratios else None
        llcr = sum(lender_cf[p - 1] * (1 + r) ** (-p) for p in range(1, test_end + 1)) / amount
        if senior["bullet"]:
            wal = n / ppy
        else:
            wal = sum((p / ppy) * senior["principal"][p - 1] for p in range(1, n + 1)) / amount
        rating = "AAA" if st["wrap"] else (
            worse_rating(rating_from_dscr(rs, project.country, min_dscr), derived.rating_cap)
            if min_dscr is not None else None)
    else:
        min_dscr = avg_dscr = llcr = wal = None
        rating = None
    total_interest = sum(senior["interest"][:n])
    ltv = amount / (lending(project, derived, rs)["lending_value"] if is_priced(rs) else derived.market_value)
    advance_factor = amount / derived.funding_need
    mezz_coupon = float(st["mezz_coupon"]) if st["mezz_on"] else 0.0
    debt = amount + mezz_amount
    wacd = (amount * big_r + mezz_amount * mezz_coupon) / debt if debt > 0 else None

    # --- stresses (section 8)
    stress: dict[str, float | None] = {}
    stress_total: dict[str, float | None] | None = {} if mezz_amount > 0 else None
    combined_end = max(test_end, n_m)
    combined_service = [s[p] + m_service[p] for p in range(n_periods)]
    for name, scenario in rs.stress_scenarios.items():
        xs, rent_mult, opex_mult = scenario_cpi(project, scenario)
        cf = realised_cash_flows(project, derived, hedge_years, xs, rent_mult, opex_mult)
        cash = [cf[i] - sidecar[i] for i in range(n_periods)]
        stress[name] = min_ratio(cash, s, test_end) if amount > 0 else None
        if stress_total is not None:
            stress_total[name] = min_ratio(cash, combined_service, combined_end)

    # --- equity flows and IRR (D25)
    flows = [base_cf[i] - sidecar[i] - s[i] - m_service[i] for i in range(n_periods)]
    flows[test_end - 1] += dsra
    flows[n_periods - 1] += project.residual_value_pct * derived.market_value
    irr = equity_irr(equity_required, flows, ppy)

    # --- gates (D26)
    gate_a: list[dict[str, Any]] = []
    gate_b: list[dict[str, Any]] = []

    def fail(gate: list[dict[str, Any]], check: str, value: Any, threshold: Any) -> None:
        gate.append({"check": check, "value": value, "threshold": threshold})

    tenor = int(st["senior_tenor"])
    if not passes_max(tenor, derived.tenor_cap):
        fail(gate_a, "tenor", tenor, derived.tenor_cap)
    io_threshold = (n - 1) * 12 // ppy
    if not passes_max(int(st["io_months"]), io_threshold):
        fail(gate_a, "io_months", int(st["io_months"]), io_threshold)
    if not big_r > 0:
        fail(gate_a, "all_in_rate", big_r, 0.0)
    if not amount > 0:
        fail(gate_a, "senior_amount", amount, 0.0)
    amortisation = []
    if amount > 0:
        amortisation += [senior["principal"][p - 1] / amount for p in range(1, n + 1)]
    if mezz_amount > 0:
        amortisation += [mezz["principal"][p - 1] / mezz_amount for p in range(1, n_m + 1)]
    if amortisation and not passes_min(min(amortisation), 0.0):
        fail(gate_a, "negative_amortisation", min(amortisation), 0.0)
    if not passes_min(advance_factor, derived.af_min):
        fail(gate_a, "advance_factor", advance_factor, derived.af_min)
    equity_share = equity_required / derived.funding_need
    min_equity = float(rs.gates["min_equity_share"])
    if not passes_min(equity_share, min_equity):
        fail(gate_a, "min_equity", equity_share, min_equity)

    floor = derived.dscr_floor - (project.wrap_dscr_relief if st["wrap"] else 0.0)
    if min_dscr is not None and not passes_min(min_dscr, floor):
        fail(gate_b, "min_dscr", min_dscr, floor)
    stress_floor = float(rs.gates["stress_min_dscr"])
    for name, value in stress.items():
        if value is not None and not passes_min(value, stress_floor):
            fail(gate_b, f"stress_{name}", value, stress_floor)
    if stress_total is not None:
        for name, value in stress_total.items():
            if value is not None and not passes_min(value, stress_floor):
                fail(gate_b, f"stress_total_{name}", value, stress_floor)
    wal_max = float(rs.gates["wal_share_of_tenor_cap"]) * derived.tenor_cap
    if wal is not None and not passes_max(wal, wal_max):
        fail(gate_b, "wal", wal, wal_max)
    if st["wrap"]:
        underlying = underlying_rating(project, derived, rs, float(st["senior_dscr"]))
        needed = str(rs.gates["wrap_min_underlying"])
        if rating_notch(underlying) > rating_notch(needed):
            fail(gate_b, "wrap_underlying", underlying, needed)
    market = market_coupon(project, derived, rs, st) if is_priced(rs) else None
    if market is not None and st["senior_coupon"] != "market" and not passes_min(float(st["senior_coupon"]), market):
        fail(gate_b, "pricing", float(st["senior_coupon"]), market)
        whole_bp = math.ceil(round(market * 10_000, 6)) / 10_000  # 11.1: the market coupon up to a whole bp
        gate_b[-1]["hint"] = f"raise senior_coupon to {whole_bp:.4f}"

    failures = gate_a + gate_b
    viable = not failures
    repo_eligible, repo_reasons = repo_check(project, derived, rs, st, rating, min_dscr, ltv)
    near_miss = is_near_miss(failures, float(rs.gates["near_miss_band"]))
    if viable and rating is not None and rating_notch(rating) <= rating_notch("AA") and repo_eligible:
        tier = "Diamond"
    elif viable and rating is not None and rating_notch(rating) <= rating_notch("A"):
        tier = "Gold"
    elif viable:
        tier = "Silver"
    elif near_miss:
        tier = "Bronze"
    else:
        tier = "Not viable"

    kpis = {
        "senior_amount": amount,
        "senior_rate": big_r,
        "senior_rating": rating,
        "binding_constraint": senior["binding"],
        "mezz_amount": mezz_amount,
        "mezz_rate": float(st["mezz_coupon"]) if st["mezz_on"] else None,
        "sidecar_gross": sidecar_gross,
        "sidecar_net": sidecar_net,
        "dsra_amount": dsra,
        "day_one_value": day_one,
        "equity_required": equity_required,
        "min_dscr": _finite_or_none(min_dscr),
        "avg_dscr": _finite_or_none(avg_dscr),
        "llcr": _finite_or_none(llcr),
        "wal_years": _finite_or_none(wal),
        "ltv": ltv,
        "advance_factor": advance_factor,
        "wacd": _finite_or_none(wacd),
        "total_interest": total_interest,
        "equity_irr": _finite_or_none(irr),
        "stress": {k: _finite_or_none(v) for k, v in stress.items()},
        "stress_total": (None if stress_total is None
                         else {k: _finite_or_none(v) for k, v in stress_total.items()}),
        "gate_a": gate_a,
        "gate_b": gate_b,
        "viable": viable,
        "tier": tier,
        "near_miss": near_miss,
        "repo_eligible": repo_eligible,
        "repo_reasons": repo_reasons,
    }
    schedule = {
        "lender_cfads": lender_cf,
        "base_cfads": base_cf,
        "sidecar": sidecar,
        "senior_opening": senior["opening"],
        "senior_interest": senior["interest"],
        "senior_principal": senior["principal"],
        "senior_service": s,
        "mezz_opening": mezz["opening"],
        "mezz_interest": mezz["interest"],
        "mezz_principal": mezz["principal"],
        "mezz_service": m_service,
        "equity_flow": flows,
        "rent_index": lender["rent_index"],
        "cost_index": lender["cost_index"],
    }
    if is_priced(rs):  # section 11: the coupon used, the market coupon, the breakevens
        priced = {"senior_coupon": coupon_used(project, derived, rs, st), "market_coupon": market}
        kpis = {**priced, **kpis}
        kpis.update(breakevens(project, derived, rs, hedge_years, s, sidecar, test_end))
    return {"kpis": kpis, "schedule": schedule}


# ================================================================================================
# Breakevens (section 11.3)
# ================================================================================================

def breakevens(project: Project, derived: Derived, rs: Ruleset, hedge_years: int, service: list[float],
               sidecar: list[float], test_end: int) -> dict[str, Any]:
    """Rent cut, opex rise and CPI level at which the min senior DSCR falls to 1.00x (base case, cash =
    scenario CFADS - sidecar, senior service S_p, senior test periods with S_p > 0)."""
    ppy = project.periods_per_year
    lease = project.lease_years
    level = float(rs.data["breakevens"]["dscr"])
    served = [p for p in range(1, test_end + 1) if service[p - 1] > 0]
    if not served:
        return {"breakeven_rent_cut": None, "breakeven_opex_rise": None, "breakeven_cpi": None,
                "breakeven_cpi_capped": None}
    rent_index = index_by_year(realised_rent_growth(project, derived, hedge_years, [project.base_cpi] * (lease - 1)))
    cost_index = index_by_year([project.base_cpi] * (lease - 1))
    rev, opex = {}, {}
    for p in served:
        y = lease_year(p, ppy)
        rev[p] = derived.gross_income_annual / ppy * rent_index[y - 1]
        opex[p] = derived.opex_annual / ppy * cost_index[y - 1]
    admin = derived.admin_annual / ppy
    m_rent = max((service[p - 1] + opex[p] + admin + sidecar[p - 1]) / rev[p] for p in served)
    if derived.opex_annual == 0:
        opex_rise = None
    else:
        opex_rise = min((rev[p] - admin - sidecar[p - 1] - service[p - 1]) / opex[p] for p in served) - 1
    rules = rs.data["breakevens"]
    step, top = float(rules["cpi_step_bps"]), float(rules["cpi_max"])
    best, capped = None, None
    j = 0
    while True:
        x = round(project.base_cpi + j * step / 1e4, 10)
        if x > top:
            capped = best is not None
            break
        cf = realised_cash_flows(project, derived, hedge_years, [x] * (lease - 1))
        cash = [cf[i] - sidecar[i] for i in range(project.n_periods)]
        lowest = min_ratio(cash, service, test_end)
        if lowest is None or not passes_min(lowest, level):
            capped = False if best is not None else None
            break
        best = x
        j += 1
    return {"breakeven_rent_cut": 1 - m_rent, "breakeven_opex_rise": opex_rise, "breakeven_cpi": best,
            "breakeven_cpi_capped": capped}


# ================================================================================================
# Monte Carlo (section 9, note D31)
# ================================================================================================

def monte_carlo(project: Project, structure: dict[str, Any], seed: int,
                ruleset: Ruleset | None = None) -> tuple[float | None, float | None]:
    """(mc_breach_probability, mc_p5_min_dscr) of one structure; (None, None) without senior debt."""
    rs = ruleset or load_ruleset()
    derived = derive(project, rs)
    st = full_structure(project, structure)
    result = evaluate(project, st, rs)
    if not result["kpis"]["senior_amount"] > 0:
        return None, None
    s = result["schedule"]["senior_service"]
    sidecar = result["schedule"]["sidecar"]
    n = min(int(st["senior_tenor"]), project.lease_years) * project.periods_per_year
    if st["senior_amort"] == "bullet":
        test_end = project.n_periods - int(rs.gates["refinancing_buffer_years"]) * project.periods_per_year
    else:
        test_end = n
    hedge_years = int(st["zcis_tenor_years"])
    mc = rs.monte_carlo
    paths, rho, vol = int(mc["paths"]), float(mc["persistence"]), float(mc["volatility"])
    lease = project.lease_years
    rng = numpy.random.Generator(numpy.random.PCG64(seed))
    eps = rng.standard_normal((paths, lease))
    base = project.base_cpi
    minima = []
    for j in range(paths):
        pi = base
        xs = []
        for y in range(1, lease):  # anniversaries 1 .. lease_years - 1
            pi = base + rho * (pi - base) + vol * float(eps[j, y - 1])
            xs.append(pi)
        cf = realised_cash_flows(project, derived, hedge_years, xs)
        cash = [cf[i] - sidecar[i] for i in range(project.n_periods)]
        minima.append(min_ratio(cash, s, test_end))
    breach_level = float(mc["breach_dscr"]) - TOL
    breaches = sum(1 for x in minima if x < breach_level)
    p5 = float(numpy.percentile(minima, float(mc["percentile"])))
    return breaches / paths, p5

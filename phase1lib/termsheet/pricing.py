"""Ruleset v2 in the model (METHODOLOGY sections 11.1 and 11.2): the benchmark curve, the term premium, the cap
rate and the lending value on Assumptions; the market coupon and the pricing basis on Sizing.

The curve of the run's project (the project's ``benchmark_curve``, else the ruleset's curve for its currency) is
a labelled input table; ``benchmark_rate`` interpolates it at ``senior_tenor`` exactly as the engine does (the
segment whose upper tenor is the first at or above T, flat beyond the ends). A "market" point's ``senior_coupon``
cell holds ``=market_coupon``, so flexing the DSCR target or the tenor re-prices it; a typed number is a coupon
offered to investors, and the ``pricing`` check applies (``coupon_offered``: the cell is not a formula).
"""

from __future__ import annotations

from ..project import TENANT_RATINGS
from .formulas import Line, Rows, grid
from .source import Source
from .styles import Formula

F = Formula
#: Excel 2010+ function, prefixed as it is stored in OOXML (LibreOffice reads it too).
ISFORMULA = "_xlfn.ISFORMULA"


def curve_source(src: Source) -> str:
    """Where the benchmark curve comes from, for its label."""
    if src.project.benchmark_curve is not None:
        return "the project's benchmark_curve (an override of the ruleset's)"
    kind = src.ruleset.data["benchmark_curves"][src.project.currency].get("kind", "curve")
    return f"ruleset {src.ruleset.version}: the {src.project.currency} {kind} curve"


def write_v2_assumptions(rows: Rows, src: Source) -> None:
    """Cap rate, lending value, the LTV limit, the term premium, the benchmark curve and benchmark_rate."""
    rs, p, d = src.ruleset, src.project, src.derived
    book, ws = rows.book, rows.ws
    rows.section(f"Ruleset {rs.version} (METHODOLOGY section 11.2): lending value and the LTV limit")
    cap_note = ("the project's cap_rate (an override)" if p.cap_rate is not None
                else f"ruleset {rs.version}: cap rate of {p.country} (a fixed number: type another to flex)")
    rows.lines([
        Line("Cap rate", d.cap_rate, "pct", "cap_rate", role="input", unit="rate", note=cap_note),
        Line("Income value (NOI / cap rate)", F("=noi_annual/cap_rate"), "money", "income_value",
             unit=p.currency),
        Line("Lending value", F("=MIN(market_value,income_value)"), "money", "lending_value", unit=p.currency,
             note="min(market value, income value)"),
        Line("Maximum LTV of the tenant", F("=INDEX(tenant_max_ltv,MATCH(tenant_rating,tenants,0))"), "pct",
             "max_ltv", unit="share", note="table below"),
        Line("LTV limit", F("=max_ltv*lending_value"), "money", "ltv_limit", unit=p.currency,
             note="a sizing limit (Sizing), between advance_factor and funding_need"),
    ])
    body = [[t, f"max_ltv.{t}", rs.max_ltv(t)] for t in TENANT_RATINGS]
    _, last = grid(book, ws, rows.row, 1, ["Tenant", "key", "Max LTV"], body, [None, None, "pct"],
                   ["fixed", "fixed", "input"], [None, None, "tenant_max_ltv"])
    rows.blocks.append((rows.row - 1, last))
    rows.row = last + 1
    rows.section(f"Ruleset {rs.version} (METHODOLOGY section 11.1): market pricing of the senior note")
    bps_per_year, above = rs.term_premium
    rows.lines([
        Line("Term premium, bps per year of tenor", bps_per_year, "bps", "term_bps_per_year", role="input",
             unit="bps", note="term_premium.bps_per_year"),
        Line("Term premium accrues above", above, "int", "term_above_years", role="input", unit="years",
             note="term_premium.above_years"),
    ])
    rows.note(f"Benchmark curve: {curve_source(src)}. Rates by tenor in years; edit a rate or a tenor to flex "
              "(tenors strictly increasing).", height=13.0)
    curve = d.benchmark_curve or ()
    key = "benchmark_curve" if p.benchmark_curve is not None else f"benchmark_curves.{p.currency}"
    body = [[f"Point {i}", f"{key}[{i - 1}]", float(t), float(r)] for i, (t, r) in enumerate(curve, start=1)]
    _, last = grid(book, ws, rows.row, 1, ["Point", "key", "Tenor (years)", "Rate"], body,
                   [None, None, "number", "pct4"], ["fixed", "fixed", "input", "input"],
                   [None, None, "curve_tenors", "curve_rates"])
    rows.blocks.append((rows.row - 1, last))
    rows.row = last + 1
    rows.lines([
        Line("Curve points", F("=COUNT(curve_tenors)"), "int", "curve_points"),
        Line("Curve segment (tenors below T)", F("=SUMPRODUCT(--(curve_tenors<senior_tenor))"),
             "int", "benchmark_segment", note="0: flat at the first point; all: flat at the last"),
        Line("Benchmark rate at the senior tenor", F(
            "=IF(benchmark_segment=0,INDEX(curve_rates,1),IF(benchmark_segment>=curve_points,"
            "INDEX(curve_rates,curve_points),INDEX(curve_rates,benchmark_segment)+(senior_tenor-INDEX(curve_tenors,"
            "benchmark_segment))/(INDEX(curve_tenors,benchmark_segment+1)-INDEX(curve_tenors,benchmark_segment))"
            "*(INDEX(curve_rates,benchmark_segment+1)-INDEX(curve_rates,benchmark_segment))))"), "pct4",
             "benchmark_rate", key=True, note="linear between points, flat beyond the ends"),
    ])
    rows.section(f"Ruleset {rs.version} (METHODOLOGY section 11.3): breakevens")
    be = rs.breakevens
    rows.lines([
        Line("DSCR level of every breakeven", float(be["dscr"]), "ratio", "breakeven_dscr", role="input",
             note="breakevens.dscr"),
        Line("Step of the CPI grid", float(be["cpi_step_bps"]), "bps", "breakeven_cpi_step_bps", role="input",
             note="breakevens.cpi_step_bps"),
        Line("Last point of the CPI grid", float(be["cpi_max"]), "pct", "breakeven_cpi_max", role="input",
             note="breakevens.cpi_max"),
    ])


def market_lines() -> list[Line]:
    """Sizing lines after the underlying rating: the market coupon (section 11.1) and the coupon's basis."""
    return [
        Line("Term premium", F("=term_bps_per_year*MAX(senior_tenor-term_above_years,0)"), "bps",
             "term_premium_bps", note="bps_per_year x max(T - above_years, 0)"),
        Line("Market coupon",
             F("=ROUND(benchmark_rate+(underlying_spread+term_bps_per_year*MAX(senior_tenor-term_above_years,0))"
               "/10000,10)"), "pct4", "market_coupon", key=True,
             note="benchmark + (spread + term premium) / 10^4, 10 decimals"),
        Line("Coupon offered to investors (not =market_coupon)", F(f"=NOT({ISFORMULA}(senior_coupon))"), None,
             "coupon_offered", note="TRUE: a typed coupon, the pricing check applies"),
    ]

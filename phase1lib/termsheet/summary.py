"""The Term Sheet page: the capital structure, day-one value and equity, repo and gates on the left; the
transaction, sidecar, DSRA, fees, wrap and Monte Carlo on the right; the balance and DSCR chart on page 2.

Every figure is a formula over the model's named outputs, so the page follows any flexed input. The run's
rank, the engine's near-miss hint, the repo reasons, the gate failure details and the Monte Carlo results are
engine values at the exported inputs and are labelled so.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from openpyxl.chart import AreaChart, LineChart, Reference
from openpyxl.chart.axis import DateAxis
from openpyxl.chart.series import SeriesLabel
from openpyxl.styles import Border
from openpyxl.worksheet.pagebreak import Break
from openpyxl.worksheet.worksheet import Worksheet

from ..project import CURRENCY_SYMBOLS
from .formulas import PeriodTable
from .printing import A4_LANDSCAPE_HEIGHT_PX, A4_LANDSCAPE_PX, HEADING_PT, ROW_PT, page_setup, width_px
from .source import Source
from .styles import (
    ALIGN_HEADER,
    ALIGN_LEFT,
    ALIGN_RIGHT,
    ALIGN_WRAP,
    FILL_HEADER,
    FILL_KEY,
    FONT_HEADER,
    FONT_SECTION,
    FONT_SUBTITLE,
    FONT_TITLE,
    LEGEND,
    MEDIUM,
    THIN,
    Book,
    Formula,
    literal,
)

F = Formula
TERM_SHEET_WIDTHS = (31, 18, 18, 18, 3, 31, 19, 19)
Value = tuple[Any, str | None, str | None]  # (value, format, role)


def v(value: Any, fmt: str | None = None, role: str | None = None) -> Value:
    return (value, fmt, role)


NONE = v("—")


@dataclass
class Panel:
    """A block of label / value rows starting at (row, col); headings are recorded for the row heights."""

    book: Book
    ws: Worksheet
    row: int
    col: int
    span: int  # columns the panel occupies (label + values)
    merge_single: bool = False  # a single value spans every value column
    headings: list[int] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.row += 1
        self.book.put(self.ws, self.row, self.col, text).font = FONT_SECTION
        for c in range(self.col, self.col + self.span):
            self.ws.cell(row=self.row, column=c).border = Border(bottom=MEDIUM)
        self.headings.append(self.row)
        self.row += 1

    def line(self, label: str, *values: Value, key: bool = False, wide: bool = False) -> None:
        """One row: a label then (value, format, role) per value column; ``wide`` text is left-aligned so that it
        runs on into the empty cells to its right."""
        self.book.put(self.ws, self.row, self.col, label, bold=key, align=ALIGN_LEFT)
        for i, (value, fmt, role) in enumerate(values, start=1):
            cell = self.book.put(self.ws, self.row, self.col + i, value, fmt, role=role, bold=key)
            cell.alignment = ALIGN_LEFT if wide else ALIGN_RIGHT
            if key:
                cell.fill = FILL_KEY
        if self.merge_single and len(values) == 1 and self.span > 2 and not wide:
            self.ws.merge_cells(start_row=self.row, start_column=self.col + 1, end_row=self.row,
                                end_column=self.col + self.span - 1)
        for c in range(self.col, self.col + self.span):
            self.ws.cell(row=self.row, column=c).border = Border(bottom=THIN)
        self.row += 1


def write_term_sheet(book: Book, ws: Worksheet, src: Source, cash: PeriodTable) -> None:
    p = src.project
    for i, w in enumerate(TERM_SHEET_WIDTHS, start=1):
        ws.column_dimensions[chr(64 + i)].width = w
    book.put(ws, 1, 1, f"Indicative term sheet — {p.title}").font = FONT_TITLE
    book.put(ws, 2, 1, f"Rank {src.rank} of {len(src.run.top)} of run {src.run.run_id}. Indicative terms for "
                       f"discussion; every figure is a live formula of the Assumptions. " + LEGEND,
             align=ALIGN_WRAP).font = FONT_SUBTITLE
    ws.merge_cells("A2:H2")
    ws.row_dimensions[1].height = 24
    ws.row_dimensions[2].height = 27
    for col in range(1, 9):
        ws.cell(row=2, column=col).border = Border(bottom=MEDIUM)
    left = Panel(book, ws, 2, 1, 4)
    right = Panel(book, ws, 2, 6, 3, merge_single=True)
    _capital_structure(left, src.priced)
    _day_one(left)
    _repo_gates(left, src)
    if src.priced:
        _breakevens(left)
    _transaction(right, src)
    if src.priced:
        _pricing(right, src)
    _sidecar_dsra(right)
    _fees(right)
    _wrap(right)
    _monte_carlo(right, src)
    last = max(left.row, right.row) - 1
    for r in range(3, last + 1):
        ws.row_dimensions[r].height = HEADING_PT if r in left.headings + right.headings else ROW_PT
    chart_row = last + 2
    _chart(book, ws, src, cash, chart_row)
    page_setup(ws, src.footer())
    _one_page_scale(ws, last)
    ws.print_area = f"A1:H{chart_row + 30}"
    ws.row_breaks.append(Break(id=last))


def _one_page_scale(ws: Worksheet, last_row: int) -> None:
    """Scale the page so rows 1..last_row fill one landscape page, the chart the next (fit-to-page would
    ignore the page break before the chart)."""
    height = sum((ws.row_dimensions[r].height or ROW_PT) * 96 / 72 for r in range(1, last_row + 1))
    ws.sheet_properties.pageSetUpPr.fitToPage = False
    ws.page_setup.scale = int(100 * min(1.0, 0.97 * A4_LANDSCAPE_PX / width_px(TERM_SHEET_WIDTHS),
                                        0.97 * A4_LANDSCAPE_HEIGHT_PX / height))


def _capital_structure(panel: Panel, priced: bool = False) -> None:
    panel.heading("Capital structure")
    for i, text in enumerate(("Tranche", "Senior notes", "Mezzanine", "Total")):
        cell = panel.book.put(panel.ws, panel.row, panel.col + i, text, align=ALIGN_HEADER if i else ALIGN_LEFT)
        cell.font, cell.fill = FONT_HEADER, FILL_HEADER
    panel.row += 1
    dash = '"—"'
    panel.line("Amount", v(F("=senior_amount"), "money"), v(F("=mezz_amount"), "money"), v(F("=total_debt"), "money"),
               key=True)
    panel.line("% of funding need", v(F("=advance_factor"), "pct"), v(F("=mezz_amount/funding_need"), "pct"),
               v(F("=total_debt/funding_need"), "pct"))
    panel.line("Rating", v(F(f'=IF(senior_rating="",{dash},senior_rating)')),
               v(F(f'=IF(mezz_on,"unrated",{dash})')), NONE)
    panel.line("All-in rate (WACD for the total)", v(F("=senior_rate"), "pct"),
               v(F(f"=IF(mezz_on,mezz_coupon,{dash})"), "pct"), v(F(f'=IF(wacd="",{dash},wacd)'), "pct"))
    if priced:  # ruleset v2: the coupon used beside the market coupon (section 11.1)
        panel.line("Coupon used (before any wrap)", v(F("=senior_coupon"), "pct"), NONE, NONE)
        panel.line("Market coupon", v(F("=market_coupon"), "pct"), NONE, NONE)
    else:
        panel.line("Coupon (before any wrap)", v(F("=senior_coupon"), "pct"), NONE, NONE)
    panel.line("Tenor", v(F("=senior_tenor"), "tenor"), v(F(f"=IF(mezz_on,mezz_tenor,{dash})"), "tenor"), NONE)
    panel.line("Amortisation", v(F('=IF(is_bullet,"bullet, refinanced",senior_amort)')),
               v(F(f"=IF(mezz_on,mezz_amort,{dash})")), NONE)
    panel.line("Interest-only period", v(F("=io_months"), "months"), NONE, NONE)
    panel.line("Weighted average life", v(F(f'=IF(wal_years="",{dash},wal_years)'), "years"),
               v(F(f'=IF(mezz_wal_years="",{dash},mezz_wal_years)'), "years"), NONE)
    panel.line("Sizing DSCR (mezz: combined)", v(F("=senior_dscr"), "ratio"),
               v(F(f"=IF(mezz_on,mezz_dscr,{dash})"), "ratio"), NONE)
    panel.line("Minimum DSCR (mezz: combined)", v(F(f'=IF(min_dscr="",{dash},min_dscr)'), "ratio"),
               v(F(f'=IF(min_combined_dscr="",{dash},min_combined_dscr)'), "ratio"), NONE)
    panel.line("Average DSCR", v(F(f'=IF(avg_dscr="",{dash},avg_dscr)'), "ratio"), NONE, NONE)
    panel.line("LLCR", v(F(f'=IF(llcr="",{dash},llcr)'), "ratio"), NONE, NONE)
    panel.line("Loan to lending value" if priced else "Loan to value", v(F("=ltv"), "pct"), NONE, NONE)
    panel.line("Binding sizing limit", v(F("=binding_constraint")), NONE, NONE)
    panel.line("Final maturity", v(F("=INDEX(cf_date,note_periods)"), "date"),
               v(F(f"=IF(mezz_on,INDEX(cf_date,mezz_periods),{dash})"), "date"), NONE)
    panel.line("Balloon refinanced until", v(F(f"=IF(is_bullet,INDEX(cf_date,test_periods),{dash})"), "date"),
               NONE, NONE)
    panel.line("Total interest", v(F("=total_interest"), "money"), v(F("=mezz_total_interest"), "money"),
               v(F("=total_interest+mezz_total_interest"), "money"))


def _day_one(panel: Panel) -> None:
    panel.heading("Day-one value and equity")
    panel.line("Senior notes", v(F("=senior_amount"), "money"))
    panel.line("Mezzanine", v(F("=mezz_amount"), "money"))
    panel.line("Sidecar, net of haircut", v(F("=sidecar_net"), "money"))
    panel.line("Less: DSRA funded at closing", v(F("=-dsra_amount"), "money"))
    panel.line("Day-one value", v(F("=day_one_value"), "money"), key=True)
    panel.line("Funding need (capex + upfront fees)", v(F("=funding_need"), "money"))
    panel.line("Equity required", v(F("=equity_required"), "money"), key=True)
    panel.line("Equity share of funding need", v(F("=equity_share"), "pct"))
    panel.line("Equity IRR (base case)", v(F('=IF(equity_irr="","n/a: no unique IRR",equity_irr)'), "pct"), key=True)


def _rule_text(rule: dict[str, Any] | None) -> str:
    if rule is None:
        return "none"
    return (f"{rule['min_rating']}, DSCR ≥ {rule['min_dscr']:.2f}x, LTV ≤ {rule['max_ltv']:.0%}, "
            f"≤ {rule['max_tenor']} yrs, DSRA ≥ {rule['min_dsra_months']}m")


def _num_text(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _repo_gates(panel: Panel, src: Source) -> None:
    k, p, rs = src.kpis, src.project, src.ruleset
    panel.heading("Repo eligibility")
    panel.line("Eligible", v(F('=IF(repo_eligible,"Yes","No")')), key=True)
    amortising, bullet = rs.repo_rule(p.country, False), rs.repo_rule(p.country, True)
    if amortising is None:
        panel.line(f"{p.country} rule", v(f"jurisdiction: {p.country} has no repo rules"), wide=True)
    else:
        text = (f"=IF(is_bullet,{literal('bullet: ' + _rule_text(bullet))},"
                f"{literal('amortising: ' + _rule_text(amortising))})")
        panel.line(f"{p.country} rule", v(F(text)), wide=True)
    for reason in k["repo_reasons"]:
        panel.line("Fails (engine, at export)", v(reason, role="engine"), wide=True)
    panel.heading("Gates")
    panel.line("Gate A (feasibility)", v(F("=gate_a_failures")), wide=True)
    panel.line("Gate B (credit)", v(F("=gate_b_failures")), wide=True)
    for gate in ("gate_a", "gate_b"):
        for f in k[gate]:
            panel.line("Failure (engine, at export)",
                       v(f"{f['check']}: {_num_text(f['value'])} vs {_num_text(f['threshold'])}", role="engine"),
                       wide=True)
    panel.line("Tier (live) / in the run", v(F(f"=tier&{literal(' / ' + k['tier'] + ' in the run')}")), wide=True,
               key=True)
    panel.line("Near miss / hint (engine)", v(k["hint"] if k["near_miss"] and k["hint"] else "—", role="engine"),
               wide=True)


def _transaction(panel: Panel, src: Source) -> None:
    p, m = src.project, src.run.meta
    created = dt.datetime.fromisoformat(m["created_at"].replace("Z", "+00:00")).replace(tzinfo=None)
    panel.heading("Transaction")
    panel.line("Jurisdiction / currency", v(f"{p.country} / {p.currency}"))
    panel.line("Tenant rating / lease term", v(F(f'=tenant_rating&" / {p.lease_years} years"')))
    panel.line("IT load (gross / net, MW)", v(F('=FIXED(gross_it_load_mw,1)&" / "&FIXED(net_it_load_mw,1)')))
    panel.line("Closing date", v(src.closing, "date", "fixed"))
    panel.line("Rank / permutation (engine)", v(f"{src.rank} of {len(src.run.top)} / {src.entry['permutation_id']}",
                                                role="engine"))
    panel.line("Run id / seed", v(f"{src.run.run_id} / {m['seed']}", role="fixed"))
    panel.line("Ruleset / engine", v(f"{m['ruleset']['version']} ({m['ruleset']['sha256'][:12]}) / "
                                     f"{m['engine_version']}", role="fixed"))
    panel.line("Run timestamp", v(created, "datetime", "fixed"))


def _pricing(panel: Panel, src: Source) -> None:
    """Ruleset v2 (sections 11.1, 11.2): the market coupon against the coupon used, and the lending value."""
    curve = "project curve" if src.project.benchmark_curve is not None else f"{src.project.currency} curve"
    panel.heading("Pricing and lending value (ruleset v2)")
    panel.line("Benchmark at the tenor", v(F("=benchmark_rate"), "pct4"), v(curve))
    panel.line("Underlying spread / term premium", v(F("=underlying_spread"), "bps"), v(F("=term_premium_bps"), "bps"))
    panel.line("Market coupon (underlying: rating)", v(F("=market_coupon"), "pct4"), v(F("=underlying_rating")),
               key=True)
    panel.line("Coupon used", v(F("=senior_coupon"), "pct4"), v(F('=IF(coupon_offered,"offered","market")')))
    panel.line("Pricing check", v(F('=IF(coupon_offered,IF(pricing_failed,"fails: "&pricing_hint,'
                                    '"passes: at or above market"),"n/a: priced at market")')), wide=True)
    panel.line("Market value / income value", v(F("=market_value"), "money"), v(F("=income_value"), "money"))
    panel.line("Cap rate / lending value", v(F("=cap_rate"), "pct"), v(F("=lending_value"), "money"), key=True)
    panel.line("Max LTV / LTV limit", v(F("=max_ltv"), "pct"), v(F("=ltv_limit"), "money"))


def _breakevens(panel: Panel) -> None:
    """Ruleset v2 (section 11.3): where the min senior DSCR falls to 1.00x (base case, live on Sensitivity)."""
    dash = '"—"'
    panel.heading("Breakevens (min senior DSCR to 1.00x)")
    panel.line("Rent cut from day one", v(F(f'=IF(breakeven_rent_cut="",{dash},breakeven_rent_cut)'), "pct"))
    panel.line("Opex rise", v(F(f'=IF(breakeven_opex_rise="",{dash},breakeven_opex_rise)'), "pct"))
    panel.line("CPI at every anniversary", v(F(f'=IF(breakeven_cpi="",{dash},breakeven_cpi)'), "pct"),
               v(F('=IF(breakeven_cpi_capped=TRUE,"(at least: grid end)","")')))


def _sidecar_dsra(panel: Panel) -> None:
    panel.heading("Sidecar (ZCIS uplift sold at closing)")
    panel.line("Indexation mode / ZCIS tenor", v(F('=indexation_mode&" / "&zcis_tenor_years&" years"')))
    panel.line("Locked rate", v(F("=locked_rate"), "pct"))
    panel.line("Gross value (PV at the coupon)", v(F("=sidecar_gross"), "money"))
    panel.line("Haircut", v(F("=sidecar_haircut_pct"), "pct"))
    panel.line("Net value", v(F("=sidecar_net"), "money"))
    panel.heading("Debt service reserve (DSRA)")
    panel.line("Months of senior service", v(F("=dsra_months"), "months"))
    panel.line("Window", v(F("=dsra_window"), "periods"))
    panel.line("Amount (largest window)", v(F("=dsra_amount"), "money"), key=True)
    panel.line("Released", v(F("=INDEX(cf_date,test_periods)"), "date"))


def _fees(panel: Panel) -> None:
    panel.heading("Fees and costs")
    for name in ("arranger", "legal", "rating"):
        panel.line(f"{name.capitalize()} fee", v(F(f"={name}_fee_pct"), "pct"),
                   v(F(f"={name}_fee_pct*project_capex"), "money"))
    panel.line("Upfront fees (of capex)", v(F("=upfront_fees/project_capex"), "pct"), v(F("=upfront_fees"), "money"))
    panel.line("Admin cost, per year", v(F("=admin_bps"), "bps"), v(F("=admin_annual"), "money"))


def _wrap(panel: Panel) -> None:
    panel.heading("Wrap")
    panel.line("Wrapped", v(F('=IF(wrap,"Yes","No")')))
    panel.line("Underlying rating / spread", v(F("=underlying_rating")), v(F("=underlying_spread"), "bps"))
    panel.line("AAA spread / premium per year", v(F("=aaa_spread"), "bps"), v(F("=wrap_premium_bps"), "bps"))
    panel.line("Wrapped rating / DSCR relief", v(F('=IF(wrap,"AAA","—")')), v(F("=wrap_dscr_relief"), "ratio"))


def _monte_carlo(panel: Panel, src: Source) -> None:
    k, mc = src.kpis, src.ruleset.monte_carlo
    panel.heading("Monte Carlo CPI stress (engine, not recalculated)")
    panel.line("Paths / seed", v(f"{int(mc['paths']):,} / {src.run.meta['seed']}", role="engine"))
    for label, key, fmt in (("Breach probability (min DSCR < 1.00x)", "mc_breach_probability", "pct"),
                            ("P5 of the path minimum DSCR", "mc_p5_min_dscr", "ratio")):
        value = k.get(key)
        panel.line(label, NONE if value is None else v(value, fmt, "engine"))


def _chart(book: Book, ws: Worksheet, src: Source, cash: PeriodTable, row: int) -> None:
    """Debt balances (stacked areas) and DSCR (lines, right axis) by period date, over the whole lease."""
    cf = book.wb["Cash Flows"]
    L = cash.letters
    last = cash.last
    book.put(ws, row, 1, "Debt balance and DSCR profile").font = FONT_SECTION

    def col(key: str) -> int:
        return list(L).index(key) + 1

    area = AreaChart()
    area.grouping = "stacked"
    for key, text in (("senior_closing", "Senior balance"), ("mezz_closing", "Mezzanine balance")):
        area.add_data(Reference(cf, min_col=col(key), min_row=cash.first, max_row=last), titles_from_data=False)
        area.series[-1].tx = SeriesLabel(v=text)
    area.set_categories(Reference(cf, min_col=col("date"), min_row=cash.first, max_row=last))
    area.y_axis.title = f"Balance ({src.project.currency} m)"
    area.y_axis.number_format = f'"{CURRENCY_SYMBOLS[src.project.currency]}"#,##0,,"m"'
    area.y_axis.scaling.min = 0
    area.x_axis = DateAxis(crossAx=100, axId=10, majorTimeUnit="years", majorUnit=2,
                           baseTimeUnit="months" if src.ppy > 1 else "years", lblOffset=100)
    area.x_axis.number_format = "YYYY"
    line = LineChart()
    for key, text in (("dscr", "Senior DSCR (right axis)"), ("combined_dscr", "Combined DSCR (right axis)")):
        line.add_data(Reference(cf, min_col=col(key), min_row=cash.first, max_row=last), titles_from_data=False)
        line.series[-1].tx = SeriesLabel(v=text)
        line.series[-1].smooth = False
    line.set_categories(Reference(cf, min_col=col("date"), min_row=cash.first, max_row=last))
    line.x_axis = DateAxis(crossAx=200, axId=500, majorTimeUnit="years", majorUnit=2,
                           baseTimeUnit=area.x_axis.baseTimeUnit, delete=True)  # hidden secondary category axis
    low, high, unit = _dscr_axis(src)
    line.y_axis.axId = 200
    line.y_axis.crossAx = 500
    line.y_axis.title = "DSCR (x)"
    line.y_axis.number_format = '0.00"x"'
    line.y_axis.scaling.min, line.y_axis.scaling.max, line.y_axis.majorUnit = low, high, unit
    line.y_axis.crosses = "max"
    line.y_axis.majorGridlines = None
    for axis in (area.x_axis, area.y_axis, line.y_axis):
        axis.delete = False
    line.x_axis.delete = True
    area += line
    area.legend.position = "b"
    # as wide as the printed columns (cm): a wider chart is clipped at the page edge
    area.height, area.width = 14.0, round(width_px(TERM_SHEET_WIDTHS) / 96 * 2.54 * 0.98, 1)
    ws.add_chart(area, f"A{row + 1}")


def _dscr_axis(src: Source) -> tuple[float, float, float]:
    """DSCR axis bounds from the exported structure's period DSCRs (senior and combined), padded by a step of
    0.25x, 0.5x or 1x (at most about ten labels)."""
    values = [r["dscr"] for r in src.schedule if r["dscr"] is not None]
    values += [r["lender_cfads"] / (r["senior_service"] + r["mezz_service"]) for r in src.schedule
               if src.has_mezz and r["senior_service"] + r["mezz_service"] > 0]
    values = [x for x in values if math.isfinite(x)]
    low, high = (min(values), max(values)) if values else (1.0, 2.0)
    unit = next((u for u in (0.25, 0.5, 1.0, 2.0) if (high - low) / u <= 8), 5.0)
    return max(0.0, math.floor(low / unit - 1) * unit), math.ceil(high / unit + 1) * unit, unit

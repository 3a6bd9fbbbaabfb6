"""The Outputs sheet: the KPIs of METHODOLOGY section 7 as formulas over the Cash Flows columns, the equity IRR
by Newton's method in unrolled rows (D25, D33; no iterative calculation), and a check of every named output
against the engine's result at the exported inputs.
"""

from __future__ import annotations

from typing import Any

from openpyxl.styles import Alignment
from openpyxl.worksheet.worksheet import Worksheet

from ..engine.cashflows import STRESS_NAMES
from ..engine.irr import MAX_ITER
from ..project import Derived
from .formulas import Line, PeriodTable, Rows
from .printing import page_setup, paginate
from .sizing import KV_WIDTHS
from .source import Source
from .styles import FONT_NOTE, LEGEND, ArrayFormula, Book, Formula, header_row, rule_below

F = Formula
NEWTON_ROWS = MAX_ITER  # the engine's iteration limit (D33); converged rows repeat the root
SHOWN_ROWS = 10  # the rest are grouped and hidden (Excel's and LibreOffice's outline +)

#: Every named output of the model with its number format: what a lender re-runs (issue 13).
OUTPUTS: tuple[tuple[str, str | None], ...] = (
    ("senior_amount", "money"), ("binding_constraint", None), ("senior_rate", "pct4"), ("senior_rating", None),
    ("mezz_amount", "money"), ("mezz_rate", "pct"), ("dsra_amount", "money"), ("sidecar_gross", "money"),
    ("sidecar_net", "money"), ("day_one_value", "money"), ("equity_required", "money"), ("min_dscr", "ratio4"),
    ("avg_dscr", "ratio4"), ("llcr", "ratio4"), ("wal_years", "years"), ("ltv", "pct"), ("advance_factor", "pct"),
    ("wacd", "pct4"), ("total_interest", "money"), ("equity_irr", "pct4"),
    *((f"stress_{s}", "ratio4") for s in STRESS_NAMES), *((f"stress_total_{s}", "ratio4") for s in STRESS_NAMES),
    ("viable", None), ("near_miss", None), ("tier", None), ("repo_eligible", None), ("gate_a_failures", None),
    ("gate_b_failures", None),
)


#: Ruleset v2's named outputs (METHODOLOGY section 11): pricing, lending value, breakevens.
V2_OUTPUTS: tuple[tuple[str, str | None], ...] = (
    ("senior_coupon", "pct4"), ("market_coupon", "pct4"), ("pricing_failed", None), ("pricing_hint", None),
    ("income_value", "money"), ("lending_value", "money"), ("ltv_limit", "money"), ("breakeven_rent_cut", "pct4"),
    ("breakeven_opex_rise", "pct4"), ("breakeven_cpi", "pct4"), ("breakeven_cpi_capped", None),
)


def outputs(priced: bool) -> tuple[tuple[str, str | None], ...]:
    """The named outputs of a workbook: v1's, and under ruleset v2 also section 11's."""
    return OUTPUTS + V2_OUTPUTS if priced else OUTPUTS


def engine_outputs(kpis: dict[str, Any], derived: Derived | None = None) -> dict[str, Any]:
    """The engine's value of every named output (None where the methodology says null); under ruleset v2 (KPIs
    with market_coupon) also the pricing check, its hint, the breakevens and, given ``derived``, lending value."""
    priced = "market_coupon" in kpis
    out = {name: kpis.get(name) for name, _ in outputs(priced)}
    for s in STRESS_NAMES:
        out[f"stress_{s}"] = kpis["stress"][s]
        out[f"stress_total_{s}"] = (kpis["stress_total"] or {}).get(s)
    for gate in ("gate_a", "gate_b"):
        out[f"{gate}_failures"] = ", ".join(f["check"] for f in kpis[gate]) or "passed"
    if priced:
        pricing = next((f for f in kpis["gate_b"] if f["check"] == "pricing"), None)
        out["pricing_failed"] = pricing is not None
        out["pricing_hint"] = pricing["hint"] if pricing else None
        for name in ("income_value", "lending_value", "ltv_limit"):
            out[name] = getattr(derived, name) if derived is not None else None
    return out


def write_outputs(book: Book, ws: Worksheet, src: Source, cash: PeriodTable) -> None:
    rows = Rows.on_sheet(book, ws, KV_WIDTHS, f"Outputs — {src.project.title}",
                         "KPIs of METHODOLOGY section 7 over the Cash Flows columns, the equity IRR, and every "
                         "named output against the engine. " + LEGEND)
    rows.section("Reserve, sidecar, day-one value and equity")
    rows.lines([
        Line("DSRA amount",
             F("=IF(test_periods<dsra_window,INDEX(cf_service_to_date,test_periods),MAX(cf_dsra_window))"), "money",
             "dsra_amount", key=True, note="largest senior service over w consecutive test periods (D22)"),
        Line("Sidecar, gross",
             F("=SUMPRODUCT(cf_sidecar,(1+senior_coupon/periods_per_year)^-cf_period)"), "money", "sidecar_gross",
                 note="PV of the uplift sold, at the unwrapped coupon (D23)"),
        Line("Sidecar, net of the haircut", F("=sidecar_gross*(1-sidecar_haircut_pct)"), "money", "sidecar_net"),
        Line("Day-one value",
             F("=senior_amount+mezz_amount+sidecar_net-dsra_amount"), "money", "day_one_value", key=True,
                 note="senior + mezz + sidecar net - DSRA"),
        Line("Equity required", F("=funding_need-day_one_value"), "money",
             "equity_required", key=True, note="funding need - day-one value"),
        Line("Equity share of the funding need", F("=equity_required/funding_need"), "pct", "equity_share"),
        Line("Total debt", F("=senior_amount+mezz_amount"), "money", "total_debt"),
    ])
    rows.section("Senior and mezzanine ratios (blank without senior debt, D21, D24)")
    rows.lines([
        Line("Minimum DSCR", F('=IF(senior_amount>0,MIN(cf_dscr),"")'),
             "ratio4", "min_dscr", key=True, note="over the senior test periods with service (D21)"),
        Line("Average DSCR", F('=IF(senior_amount>0,AVERAGE(cf_dscr),"")'), "ratio4",
             "avg_dscr", note="mean of the period ratios"),
        Line("LLCR",
             F('=IF(senior_amount>0,SUMPRODUCT((cf_period<=test_periods)*cf_lender_cfads*senior_discount^cf_period)'
               '/senior_amount,"")'), "ratio4", "llcr",
                   note="PV of lender CFADS over the test periods at r / senior amount"),
        Line("Weighted average life", F('=IF(senior_amount>0,SUMPRODUCT(cf_period,cf_senior_principal)'
                                        '/periods_per_year/senior_amount,"")'), "years", "wal_years"),
        Line("Total senior interest", F("=SUM(cf_senior_interest)"), "money", "total_interest"),
        Line("Loan to value", F("=senior_amount/lending_value"), "pct", "ltv", note="against the lending value "
             "(ruleset v2, section 11.2)") if src.priced else Line("Loan to value", F("=senior_amount/market_value"),
                                                                    "pct", "ltv"),
        Line("Advance factor", F("=senior_amount/funding_need"), "pct", "advance_factor"),
        Line("Weighted average cost of debt",
             F('=IF(total_debt>0,(senior_amount*senior_rate+mezz_amount*IF(mezz_on,mezz_coupon,0))/total_debt,"")'),
             "pct4", "wacd"),
        Line("Lowest senior principal / amount",
             ArrayFormula("=IF(senior_amount>0,MIN(IF(cf_period<=note_periods,cf_senior_principal/senior_amount)),0)"),
             "factor", "senior_min_principal", note="over the note periods (negative amortisation check)"),
        Line("Lowest mezz principal / mezz amount",
             ArrayFormula('=IF(mezz_amount>0,MIN(IF(cf_period<=mezz_periods,cf_mezz_principal/mezz_amount)),"")'),
             "factor", "mezz_min_principal"),
        Line("Mezz weighted average life", F('=IF(mezz_amount>0,SUMPRODUCT(cf_period,cf_mezz_principal)'
                                             '/periods_per_year/mezz_amount,"")'), "years", "mezz_wal_years"),
        Line("Total mezz interest", F("=SUM(cf_mezz_interest)"), "money", "mezz_total_interest"),
        Line("Lowest combined DSCR", F('=IF(mezz_amount>0,MIN(cf_combined_dscr),"")'), "ratio4",
             "min_combined_dscr"),
    ])
    _irr(rows, cash)
    _check(rows, src)
    page_setup(ws, src.footer())
    paginate(ws, KV_WIDTHS, rows.row - 1, rows.headings, rows.blocks)


def _irr(rows: Rows, cash: PeriodTable) -> None:
    """Equity IRR: flows -equity at 0 and cf_equity_flow after; Newton on x = 1 / (1 + i) from one Halley step
    off x = 1 (D33), NPV and slope by SUMPRODUCT; null rules of D25."""
    book, ws = rows.book, rows.ws
    rows.section("Equity IRR (METHODOLOGY section 7; null rules D25; Newton on x = 1 / (1 + i), D33)")
    rows.lines([
        Line("A unique IRR exists",
             F("=AND(equity_required>0,MIN(cf_equity_flow)>=-irr_noise*equity_required,MAX(cf_equity_flow)>0)"),
             None, "irr_valid", note="equity > 0, no flow below -1e-9 x equity, some flow > 0"),
        Line("NPV at x = 1: sum of the flows", F('=IF(irr_valid,SUM(cf_equity_flow),"")'), "sci", "irr_m0"),
        Line("First derivative at x = 1: sum p f_p", F('=IF(irr_valid,SUMPRODUCT(cf_period,cf_equity_flow),"")'),
             "sci", "irr_m1"),
        Line("Second derivative at x = 1: sum p (p - 1) f_p",
             F('=IF(irr_valid,SUMPRODUCT(cf_period*(cf_period-1),cf_equity_flow),"")'), "sci", "irr_m2"),
        Line("Halley step from x = 1",
             F('=IF(irr_valid,IFERROR(1-2*(irr_m0-equity_required)*irr_m1/(2*irr_m1*irr_m1-(irr_m0-equity_required)'
               '*irr_m2),1),"")'), "factor", "irr_halley"),
        Line("Newton start",
             F('=IF(irr_valid,IF(AND(irr_halley>1/22,irr_halley<2),irr_halley,1),"")'), "factor", "irr_start",
                 note="the Halley step when within (1/22, 2), else 1"),
    ])
    header_row(book, ws, rows.row, 1, ["Newton step", "x", "NPV(x) - equity", "slope", "next x"], 18)
    first = rows.row + 1
    for i in range(NEWTON_ROWS):
        r = first + i
        book.put(ws, r, 1, i + 1, "int", role="fixed", align=Alignment(horizontal="left"))
        book.put(ws, r, 2, F("=irr_start" if i == 0 else f"=E{r - 1}"), "factor")
        book.put(ws, r, 3, F(f'=IF(irr_valid,IFERROR(SUMPRODUCT(cf_equity_flow,B{r}^cf_period)-equity_required,'
                             f'"overflow"),"")'), "sci")
        book.put(ws, r, 4, F(f'=IF(irr_valid,IFERROR(SUMPRODUCT(cf_equity_flow,cf_period*B{r}^(cf_period-1)),'
                             f'"overflow"),"")'), "sci")
        book.put(ws, r, 5, F(f'=IF(irr_valid,IFERROR(IF(B{r}-C{r}/D{r}>0,B{r}-C{r}/D{r},B{r}/2),B{r}/2),"")'),
                 "factor")
        rule_below(ws, r, 1, 5)
    last = first + NEWTON_ROWS - 1
    ws.row_dimensions.group(first + SHOWN_ROWS, last, outline_level=1, hidden=True)
    rows.row = last + 1
    book.put(ws, rows.row, 1, f"Steps {SHOWN_ROWS + 1}-{NEWTON_ROWS} are grouped (outline +): once converged they "
                              "repeat the root.").font = FONT_NOTE
    rows.row += 1
    equity = f"'Cash Flows'!${cash.letters['equity_flow']}${cash.row0}:${cash.letters['equity_flow']}${cash.last}"
    rows.lines([
        Line("Root x (the last row)", F(f"=E{last}"), "factor", "irr_x"),
        Line("Converged and in range",
             F(f"=IF(irr_valid,AND(ABS(E{last}-B{last})<=0.000000001*B{last},irr_x>=1/11,irr_x<=100),FALSE)"), None,
             "irr_ok", note="last step below 1e-9 x; x in [1/11, 100], i.e. i in [-0.99, 10]"),
        Line("Equity IRR per period", F('=IF(irr_ok,1/irr_x-1,"")'), "pct4", "equity_irr_periodic"),
        Line("Equity IRR, annualised",
             F('=IF(irr_ok,(1/irr_x)^periods_per_year-1,"")'), "pct4", "equity_irr", key=True,
                 note="(1 + i)^ppy - 1; blank: no unique IRR"),
        Line("Check: IRR() of the same flows",
             F(f'=IF(irr_ok,IFERROR((1+IRR({equity},equity_irr_periodic))^periods_per_year-1,"no convergence"),"")'),
             "pct4", "equity_irr_check", note="the spreadsheet's own IRR(), started at the root"),
    ])


def _check(rows: Rows, src: Source) -> None:
    """Every named output: the live value, the engine's at the exported inputs, the relative difference."""
    book, ws = rows.book, rows.ws
    rows.section("Check against the engine (engine values at the exported inputs, not recalculated)")
    cell = book.put(ws, rows.row, 1, "After an input is changed, the live values move and the engine's stay: a "
                                     "difference then shows how far the flexed deal is from the exported one.")
    cell.font = FONT_NOTE
    rows.row += 1
    header_row(book, ws, rows.row, 1, ["Output", "Workbook name", "Model (live)", "Engine", "Relative difference"], 18)
    rows.row += 1
    engine = engine_outputs(src.kpis, src.derived)
    for name, fmt in outputs(src.priced):
        r = rows.row
        label = name.replace("_", " ")
        book.put(ws, r, 1, label)
        book.put(ws, r, 2, name)
        live = book.put(ws, r, 3, F(f"={name}"), fmt)
        shown = book.put(ws, r, 4, engine[name], fmt, role="engine", align=Alignment(horizontal="right"))
        if name == "pricing_hint":  # a sentence in a number column
            live.alignment = shown.alignment = Alignment(horizontal="right", shrink_to_fit=True)
        book.put(ws, r, 5, F(f'=IF(AND(ISNUMBER(C{r}),ISNUMBER(D{r})),ABS(C{r}-D{r})/MAX(ABS(D{r}),1E-300),'
                             f'IF(C{r}&""=D{r}&"","same","differs"))'), "diff")
        rule_below(ws, r, 1, 5)
        rows.row += 1

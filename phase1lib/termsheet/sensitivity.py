"""The Sensitivity sheet: the stress grid as live formulas (the minimum of each Stress Flows column), the Monte
Carlo results (engine values), and a two-way table of the senior amount over the sizing DSCR x the coupon,
computed by formulas (every cell sizes the structure again with the same profile, IO and tenor; no data table).
"""

from __future__ import annotations

from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Alignment, Border, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from ..engine.cashflows import STRESS_NAMES
from .breakevens import write_breakevens
from .content import stress_description
from .printing import page_setup, paginate
from .source import Source
from .styles import (
    ALIGN_CENTER,
    FILL_KEY,
    FONT_NOTE,
    LEGEND,
    THIN,
    ArrayFormula,
    Book,
    Formula,
    header_row,
    section,
    title,
    widths,
)

F = Formula
SENS_WIDTHS = (16, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 13, 15)
AXIS = 5  # values per axis, the structure's own in the middle
FAIL_FONT = Font(name="Arial", size=10, bold=True, color="C62828")
PASS_FONT = Font(name="Arial", size=10, bold=True, color="2E7D32")


def sens_widths(priced: bool) -> tuple[float, ...]:
    """Column widths; ruleset v2 adds the ltv limit's column to the two-way table."""
    return (*SENS_WIDTHS[:-2], 12, *SENS_WIDTHS[-2:]) if priced else SENS_WIDTHS


def write_sensitivity(book: Book, ws: Worksheet, src: Source) -> None:
    cols = sens_widths(src.priced)
    widths(ws, cols)
    title(book, ws, f"Sensitivity — {src.project.title} — rank {src.rank}",
          "Stress grid " + ("and breakevens, " if src.priced else "") + "and a two-way table of the senior amount, "
          "all live. " + LEGEND, len(cols))
    headings: list[int] = []
    row = _stress_grid(book, ws, src, 4, headings)
    keep: list[tuple[int, int]] = []
    if src.priced:
        row, keep = write_breakevens(book, ws, src, row + 1, headings, len(cols))
    row = _monte_carlo(book, ws, src, row + 1, headings)
    two_way = row + 1
    row = _two_way(book, ws, src, two_way, headings)
    last = get_column_letter(len(cols))
    ws.conditional_formatting.add(f"A1:{last}{row}", CellIsRule(operator="equal", formula=['"Fail"'], font=FAIL_FONT))
    ws.conditional_formatting.add(f"A1:{last}{row}", CellIsRule(operator="equal", formula=['"Pass"'], font=PASS_FONT))
    page_setup(ws, src.footer())
    table = two_way + AXIS + 5  # the long table's header: the matrix and the table each print on one page
    paginate(ws, cols, row, headings, [*keep, (two_way, table - 1), (table, row)])


def _stress_grid(book: Book, ws: Worksheet, src: Source, row: int, headings: list[int]) -> int:
    section(book, ws, row, "Stress grid (METHODOLOGY section 8): minimum DSCR over the senior test periods",
            len(sens_widths(src.priced)))
    headings.append(row)
    head = row + 1
    header_row(book, ws, head, 1, ["Scenario", "Description", "", "", "Senior\nDSCR", "Threshold", "Headroom",
                                   "Result", "Combined\nDSCR", "Threshold", "Headroom", "Result"])
    ws.merge_cells(start_row=head, start_column=2, end_row=head, end_column=4)
    r = head
    for name in STRESS_NAMES:
        r += 1
        book.put(ws, r, 1, name)
        book.put(ws, r, 2, stress_description(src.ruleset, src.project, name),
                 align=Alignment(horizontal="left", shrink_to_fit=True))
        ws.merge_cells(start_row=r, start_column=2, end_row=r, end_column=4)
        _cells(book, ws, r, 5, f'=IF(senior_amount>0,MIN(sf_dscr_{name}),"")', f"stress_{name}")
        _cells(book, ws, r, 9, f'=IF(mezz_amount>0,MIN(sf_combined_{name}),"")', f"stress_total_{name}")
        for c in range(1, 13):
            ws.cell(row=r, column=c).border = Border(bottom=THIN)
    r += 1
    note = book.put(ws, r, 1, "Cash available = scenario CFADS - sidecar (Stress Flows). The combined DSCR adds the "
                              "mezz service and is blank without a mezz tranche. Pass: DSCR >= 1.00x - 1e-9.",
                    align=Alignment(horizontal="left", shrink_to_fit=True))
    note.font = FONT_NOTE
    ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=len(sens_widths(src.priced)))
    return r + 1


def _cells(book: Book, ws: Worksheet, r: int, col: int, formula: str, name: str) -> None:
    c = get_column_letter
    book.put(ws, r, col, F(formula), "ratio4", name=name)
    book.put(ws, r, col + 1, F("=stress_min_dscr"), "ratio")
    book.put(ws, r, col + 2, F(f'=IF(ISNUMBER({c(col)}{r}),{c(col)}{r}-{c(col + 1)}{r},"")'), "ratio4")
    book.put(ws, r, col + 3, F(f'=IF(ISNUMBER({c(col)}{r}),IF({c(col)}{r}>={c(col + 1)}{r}-tolerance,"Pass","Fail"),'
                               f'"n/a")'), align=ALIGN_CENTER)


def _monte_carlo(book: Book, ws: Worksheet, src: Source, row: int, headings: list[int]) -> int:
    k, mc = src.kpis, src.ruleset.monte_carlo
    section(book, ws, row, "Monte Carlo CPI stress (engine result, not recalculated)", len(sens_widths(src.priced)))
    headings.append(row)
    items = [
        ("Paths / seed", f"{int(mc['paths']):,} / {src.run.meta['seed']}", None),
        ("CPI model", f"AR(1) around base CPI {src.project.base_cpi:.2%}: persistence {float(mc['persistence']):g}, "
                      f"volatility {float(mc['volatility']):.2%} per year", None),
        ("Breach probability", k.get("mc_breach_probability"), "pct"),
        (f"P{float(mc['percentile']):g} of the path minimum DSCR", k.get("mc_p5_min_dscr"), "ratio"),
    ]
    r = row
    for label, value, fmt in items:
        r += 1
        book.put(ws, r, 1, label, bold=True)
        book.put(ws, r, 5 if fmt else 2, "—" if value is None else value, fmt, role="engine",
                 align=Alignment(horizontal="right" if fmt else "left"))
        if fmt:
            book.put(ws, r, 6, "engine result at the exported inputs, not recalculated").font = FONT_NOTE
    return r + 1


def _two_way(book: Book, ws: Worksheet, src: Source, row: int, headings: list[int]) -> int:
    """The senior amount at each (DSCR, coupon): a matrix over a long table that sizes each pair."""
    e = 1 if src.priced else 0  # ruleset v2: the ltv limit's column before funding_need
    width = len(SENS_WIDTHS) + e
    section(book, ws, row, "Senior amount over the sizing DSCR x the coupon (same profile, IO, tenor, wrap)", width)
    headings.append(row)
    r = row + 1
    book.put(ws, r, 1, "DSCR step")
    book.put(ws, r, 2, 0.05, "ratio", name="sens_dscr_step", role="input")
    book.put(ws, r, 4, "Coupon step")
    book.put(ws, r, 5, 0.0025, "pct", name="sens_coupon_step", role="input")
    book.put(ws, r, 7, "The structure's own DSCR and coupon are in the middle.").font = FONT_NOTE
    r += 2
    # matrix: DSCR down, coupon across
    book.put(ws, r, 1, "DSCR \\ coupon", bold=True, align=ALIGN_CENTER)
    for j in range(AXIS):
        book.put(ws, r, 2 + j, F(f"=senior_coupon+({j + 1}-{AXIS // 2 + 1})*sens_coupon_step"), "pct", bold=True)
    book.name("sens_coupon", ws, f"B{r}:{get_column_letter(1 + AXIS)}{r}")
    for i in range(AXIS):
        rr = r + 1 + i
        book.put(ws, rr, 1, F(f"=senior_dscr+({i + 1}-{AXIS // 2 + 1})*sens_dscr_step"), "ratio", bold=True)
        for j in range(AXIS):
            cell = book.put(ws, rr, 2 + j, F(f"=INDEX(sens_amount,{i * AXIS + j + 1})"), "money_m")
            if i == j == AXIS // 2:
                cell.fill = FILL_KEY
    book.name("sens_dscr", ws, f"A{r + 1}:A{r + AXIS}")
    book.name("sens_matrix", ws, f"B{r + 1}:{get_column_letter(1 + AXIS)}{r + AXIS}")
    r += AXIS + 2
    header_row(book, ws, r, 1, ["Case", "DSCR", "Coupon", "Underlying notch", "All-in rate", "Capacity at 1.00x",
                                "dscr", "io_cover", "Refinancing\ntail", "Advance\nfactor",
                                *(["LTV\nlimit"] if e else []), "Funding\nneed", "Senior amount", "Binding"])
    limits = f"G{{q}}:{get_column_letter(11 + e)}{{q}}"
    first = r + 1
    for i in range(AXIS):
        for j in range(AXIS):
            q = first + i * AXIS + j
            book.put(ws, q, 1, i * AXIS + j + 1, "int", role="fixed", align=Alignment(horizontal="left"))
            book.put(ws, q, 2, F(f"=INDEX(sens_dscr,{i + 1})"), "ratio")
            book.put(ws, q, 3, F(f"=INDEX(sens_coupon,{j + 1})"), "pct")
            book.put(ws, q, 4, F(f"=MAX(SUMPRODUCT(--(B{q}<ladder_dscr-tolerance)),cap_notch)"), "int")
            book.put(ws, q, 5, F(f"=IF(wrap,ROUND(C{q}-(INDEX(spread_bps,D{q}+1)-aaa_spread)/10000"
                                 f"+wrap_premium_bps/10000,10),C{q})"), "pct4")
            book.put(ws, q, 6, ArrayFormula(_capacity(f"E{q}/periods_per_year")), "money_m")
            rate = f"E{q}/periods_per_year"
            book.put(ws, q, 7, F(f'=IF(ISNUMBER(F{q}),F{q}/B{q},"n/a")'), "money_m")
            book.put(ws, q, 8, F(f'=IF(AND(io_periods>0,{rate}<>0),IF({rate}>0,MIN(sz_io_cfads),MAX(sz_io_cfads))'
                                 f'/({rate})/B{q},"n/a")'), "money_m")
            book.put(ws, q, 9, F(f"=IF(is_bullet,SUMPRODUCT(sz_window*sz_cfads_pos*(1+(E{q}+refinancing_spread)"
                                 f'/periods_per_year)^-(sz_period-note_periods))/B{q},"n/a")'), "money_m")
            book.put(ws, q, 10, F("=af_max*funding_need"), "money_m")
            if e:
                book.put(ws, q, 11, F("=ltv_limit"), "money_m")
            book.put(ws, q, 11 + e, F("=funding_need"), "money_m")
            span = limits.format(q=q)
            book.put(ws, q, 12 + e, F(f"=MAX(MIN({span}),0)"), "money_m", bold=True)
            book.put(ws, q, 13 + e, F(f"=INDEX(senior_limit_names,MATCH(MIN({span}),{span},0))"))
            for c in range(1, 14 + e):
                ws.cell(row=q, column=c).border = Border(bottom=THIN)
    last = first + AXIS * AXIS - 1
    amount, binding = get_column_letter(12 + e), get_column_letter(13 + e)
    book.name("sens_amount", ws, f"{amount}{first}:{amount}{last}")
    book.name("sens_binding", ws, f"{binding}{first}:{binding}{last}")
    tail = ("Under ruleset v2 every coupon of the table is offered (the middle one is the structure's own: for a "
            "market point its market coupon) and the ltv limit is the column before funding_need." if e else
            "A ruleset v2 ltv limit would be one more column before funding_need.")
    note = book.put(ws, last + 1, 1, "Each case re-sizes the senior notes at its own DSCR and coupon (the wrap's "
                                     "underlying notch and all-in rate move with them), with the cash flows, profile, "
                                     "IO and tenor of the structure. " + tail,
                    align=Alignment(horizontal="left", vertical="top", wrap_text=True))
    note.font = FONT_NOTE
    ws.merge_cells(start_row=last + 1, start_column=1, end_row=last + 1, end_column=width)
    ws.row_dimensions[last + 1].height = 27
    return last + 1


def _capacity(r: str) -> str:
    """k x the cash-flow limit of the structure's profile at periodic rate ``r`` (an array formula)."""
    j = "(sz_period-io_periods)"
    level = f"(1/post_periods+{r}*(post_periods-{j}+1)/post_periods)"
    sculpted = f"SUMPRODUCT(sz_post*sz_cfads_pos*(1+{r})^-{j})"
    annuity = f"MIN(sz_annuity_cfads)*IF({r}=0,post_periods,(1-(1+{r})^-post_periods)/({r}))"
    level_min = f"MIN(IF(sz_post=1,IF({level}>0,sz_cfads_pos/{level})))"
    bullet = f'IF({r}=0,"n/a",IF({r}>0,MIN(sz_annuity_cfads),MAX(sz_annuity_cfads))/({r}))'
    return (f"=IF(post_periods>0,CHOOSE(senior_amort_code,{sculpted},{annuity},{level_min},{bullet}),0)")

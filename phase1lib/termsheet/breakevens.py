"""Breakevens of ruleset v2 (METHODOLOGY section 11.3, D43) as live formulas: the rent cut, the opex rise and the
CPI level at which the min senior DSCR falls to 1.00x.

Base case, cash available = scenario CFADS - sidecar, the senior service S_p over the senior test periods with
S_p > 0. The rent cut and the opex rise are the closed forms of section 11.3 over per-period ratios (Stress Flows,
``sf_be_*``). The CPI breakeven is searched on the grid x_j = round(base_cpi + j x step / 10^4, 10) by bisection in
unrolled rows, each a single-cell array formula: the min over the served periods of the "CPI x" cash (rent index
(1 + hedged growth)^min(y - 1, H) x (1 + unhedged growth)^max(y - 1 - H, 0), cost index (1 + x)^(y - 1)) over S_p.

Bisection needs "every grid point up to j passes" to be monotone, which it is by definition; it is computed
from three evaluations because of the shape of case "CPI x" (docs/termsheet.md): below the CPI floor every
period's cash falls as x rises (the rent grows at the floor or less, costs at x), and from the floor up each
period's cash a (1 + x)^k - b (1 + x)^(y - 1) - c (k <= y - 1 unhedged anniversaries; capped rents above the cap)
rises then falls (or is monotone), so the min DSCR is quasi-concave there and its passing grid points form one
run. Hence, with s the first grid point at or above the floor: all of x_0 .. x_j pass iff x_j passes and (j < s,
or x_(s-1) and x_s pass).
"""

from __future__ import annotations

import math

from openpyxl.styles import Alignment, Border
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from .formulas import Column
from .source import Source
from .styles import FILL_KEY, FONT_NOTE, THIN, ArrayFormula, Book, Formula, header_row, section

F = Formula
GROUP = "Breakevens (base case)"
NAMES = ("breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi", "breakeven_cpi_capped")
#: The lowest base CPI a project may have (METHODOLOGY section 1): it bounds the length of the CPI grid.
LOWEST_BASE_CPI = -0.05


def breakeven_columns() -> list[Column]:
    """Stress Flows columns: the served periods and the per-period ratios of the rent cut, (S + opex + admin +
    sidecar) / revenue, and of the opex rise, (revenue - admin - sidecar - S) / opex."""
    rev, opex, admin = "INDEX(cf_revenue_base,{period})", "INDEX(cf_opex,{period})", "INDEX(cf_admin,{period})"
    return [
        Column("be_served", "Served\n(S > 0)", GROUP, "int", 7.5,
               "=IF(AND({period}<=test_periods,{senior_service}>0),1,0)"),
        Column("be_rent_need", "Rent need\n/ revenue", GROUP, "factor", 10,
               f'=IF({{be_served}}=1,IF({rev}<>0,({{senior_service}}+{opex}+{admin}+{{sidecar}})/{rev},""),"")'),
        Column("be_opex_room", "Opex room\n/ opex", GROUP, "factor", 10,
               f'=IF({{be_served}}=1,IF({opex}<>0,({rev}-{admin}-{{sidecar}}-{{senior_service}})/{opex},""),"")'),
    ]


def search_steps(src: Source) -> int:
    """Unrolled bisection steps: enough for the longest grid a project can have (base CPI at its lowest)."""
    be = src.ruleset.breakevens
    points = math.floor((float(be["cpi_max"]) - LOWEST_BASE_CPI) * 1e4 / float(be["cpi_step_bps"])) + 1
    return max(1, math.ceil(math.log2(points + 1))) + 1


def _min_dscr(x: str, hedged: str, unhedged: str) -> ArrayFormula:
    """Min senior DSCR of case "CPI x" over the served periods (cells holding x and the two rent growths)."""
    years = "(sf_lease_year-1)"
    rent = (f"(1+{hedged})^IF({years}<zcis_tenor_years,{years},zcis_tenor_years)"
            f"*(1+{unhedged})^IF({years}>zcis_tenor_years,{years}-zcis_tenor_years,0)")
    cash = (f"gross_income_annual/periods_per_year*({rent})-opex_annual/periods_per_year*(1+{x})^{years}"
            "-admin_annual/periods_per_year-sf_sidecar")
    return ArrayFormula(f"=MIN(IF(sf_be_served=1,({cash})*(1/IF(sf_senior_service>0,sf_senior_service,1))))")


EVAL_HEADERS = ["Grid index j", "CPI x_j", "Hedged\nrent growth", "Unhedged\nrent growth", "Min senior\nDSCR",
                "Passes"]


def _evaluation(book: Book, ws: Worksheet, r: int, col: int, j: str) -> tuple[str, str]:
    """Cells col.. of row r: j, x_j, the two rent growths, the min DSCR, passes. Returns (dscr, passes) refs."""
    book.put(ws, r, col, F(f"={j}"), "int")
    return _evaluation_tail(book, ws, r, col + 1, f"{get_column_letter(col)}{r}")


def _evaluation_tail(book: Book, ws: Worksheet, r: int, col: int, j: str) -> tuple[str, str]:
    """x_j of the grid index in cell ``j``, the hedged and unhedged rent growth at x_j, the min DSCR, passes."""
    c = [f"{get_column_letter(col + i)}{r}" for i in range(5)]
    book.put(ws, r, col, F(f"=ROUND(base_cpi+{j}*breakeven_cpi_step_bps/10000,10)"), "pct4")
    clamp = f"MIN(MAX({c[0]},cpi_floor),cpi_cap)"
    book.put(ws, r, col + 1, F(f'=IF(indexation_basis="flat",0,locked_rate+{clamp}-{c[0]})'), "pct4")
    book.put(ws, r, col + 2, F(f'=IF(indexation_basis="flat",0,{clamp})'), "pct4")
    book.put(ws, r, col + 3, _min_dscr(c[0], c[1], c[2]), "ratio4")
    book.put(ws, r, col + 4, F(f"={c[3]}>=breakeven_dscr-tolerance"))
    return c[3], c[4]


def _rule(ws: Worksheet, r: int, first: int, last: int) -> None:
    for c in range(first, last + 1):
        ws.cell(row=r, column=c).border = Border(bottom=THIN)


def write_breakevens(book: Book, ws: Worksheet, src: Source, row: int, headings: list[int], width: int
                     ) -> tuple[int, list[tuple[int, int]]]:
    """The breakeven block of the Sensitivity sheet from ``row``: results (live, engine, check), then the CPI
    search. Returns the next free row and the (first, last) rows to print on one page each."""
    k = src.kpis
    keep: list[tuple[int, int]] = []
    section(book, ws, row, "Breakevens (METHODOLOGY section 11.3): min senior DSCR falls to 1.00x", width)
    headings.append(row)
    head = row + 1
    header_row(book, ws, head, 1, ["Breakeven", "Model (live)", "Engine", "Relative\ndifference", "Meaning"])
    ws.merge_cells(start_row=head, start_column=5, end_row=head, end_column=width)
    results = {
        "breakeven_rent_cut": ('=IF(be_has_service,1-MAX(sf_be_rent_need),"")', "pct4",
                               "rent cut from day one (negative: the base case already fails)"),
        "breakeven_opex_rise": ('=IF(AND(be_has_service,opex_annual<>0),MIN(sf_be_opex_room)-1,"")', "pct4",
                                "opex rise (below 0: the base case already fails; blank without opex)"),
        "breakeven_cpi": ('=IF(be_has_service,IF(be_converged,IF(be_lo>=0,ROUND(base_cpi+be_lo*breakeven_cpi_step_bps'
                          '/10000,10),""),"search did not converge: more steps"),"")', "pct4",
                          "CPI at every anniversary: the last grid point up to which every point passes"),
        "breakeven_cpi_capped": ('=IF(ISNUMBER(breakeven_cpi),be_lo=be_grid_last,"")', None,
                                 "TRUE: the grid's last point passes (the breakeven is at least that)"),
    }
    r = head
    for name in NAMES:
        r += 1
        formula, fmt, meaning = results[name]
        book.put(ws, r, 1, name.replace("breakeven_", ""), bold=True)
        book.put(ws, r, 2, F(formula), fmt, name=name).fill = FILL_KEY
        book.put(ws, r, 3, k.get(name), fmt, role="engine", align=Alignment(horizontal="right"))
        book.put(ws, r, 4, F(f'=IF(AND(ISNUMBER(B{r}),ISNUMBER(C{r})),ABS(B{r}-C{r})/MAX(ABS(C{r}),1E-300),'
                             f'IF(B{r}&""=C{r}&"","same","differs"))'), "diff")
        book.put(ws, r, 5, meaning, align=Alignment(horizontal="left", indent=1, shrink_to_fit=True))
        ws.merge_cells(start_row=r, start_column=5, end_row=r, end_column=width)
        _rule(ws, r, 1, width)
    r += 1
    note = book.put(ws, r, 1, "Engine: the engine's value at the exported inputs (not recalculated); after a flex "
                              "the difference shows how far the deal moved.", align=Alignment(horizontal="left"))
    note.font = FONT_NOTE
    keep.append((row, r))
    r = _cpi_search(book, ws, src, r + 2, headings, width, keep)
    return r, keep


def _scalar(book: Book, ws: Worksheet, r: int, label: str, formula: str, fmt: str | None, name: str,
            note: str, width: int) -> None:
    book.put(ws, r, 1, label, align=Alignment(horizontal="left", shrink_to_fit=True))
    ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=4)
    book.put(ws, r, 5, F(formula), fmt, name=name)
    if note:
        book.put(ws, r, 6, note, align=Alignment(horizontal="left", shrink_to_fit=True)).font = FONT_NOTE
        ws.merge_cells(start_row=r, start_column=6, end_row=r, end_column=width)
    _rule(ws, r, 1, width)


def _cpi_search(book: Book, ws: Worksheet, src: Source, row: int, headings: list[int], width: int,
                keep: list[tuple[int, int]]) -> int:
    """The CPI breakeven: grid bounds, the two points around the CPI floor, the bisection rows, the result's
    neighbourhood."""
    section(book, ws, row, "CPI breakeven: bisection over the CPI grid (every row live)", width)
    headings.append(row)
    r = row + 1
    scalars = [
        ("Senior service in some test period", "=SUM(sf_be_served)>0", None, "be_has_service", ""),
        ("Grid points above base CPI (nearest)",
         "=ROUND((breakeven_cpi_max-base_cpi)*10000/breakeven_cpi_step_bps,0)", "int", "be_grid_near", ""),
        ("Last grid index J (x_J <= the grid's last point)",
         "=IF(ROUND(base_cpi+be_grid_near*breakeven_cpi_step_bps/10000,10)<=breakeven_cpi_max,be_grid_near,"
         "be_grid_near-1)", "int", "be_grid_last", "x_j = round(base_cpi + j x step / 10^4, 10), j = 0..J"),
        ("First grid index s at or above the CPI floor",
         "=MAX(0,MIN(be_grid_last+1,-INT(-ROUND((cpi_floor-base_cpi)*10000/breakeven_cpi_step_bps,6))))", "int",
         "be_floor_index", "below it the min DSCR falls with x; from it, it rises then falls"),
    ]
    for label, formula, fmt, name, note in scalars:
        _scalar(book, ws, r, label, formula, fmt, name, note, width)
        r += 1
    header_row(book, ws, r, 1, ["Point", *EVAL_HEADERS], 30)
    first = r
    around = [("x_(s-1), below floor", "be_floor_index-1"), ("x_s, at/above floor", "be_floor_index")]
    passes = []
    for label, j in around:
        r += 1
        book.put(ws, r, 1, label, align=Alignment(horizontal="left", shrink_to_fit=True))
        _, ok = _evaluation(book, ws, r, 2, j)
        passes.append(ok)
        _rule(ws, r, 1, 7)
    r += 1
    _scalar(book, ws, r, "Both pass (x_(s-1) is virtual when s = 0)",
            f"=AND(OR(be_floor_index=0,{passes[0]}),OR(be_floor_index>be_grid_last,{passes[1]}))", None,
            "be_floor_ok", "then every point from s to j passes when x_j does", width)
    keep.append((first, r))
    r += 2
    steps = search_steps(src)
    header_row(book, ws, r, 1, ["Step", "lo (passes\nso far)", "hi (fails)", "mid", *EVAL_HEADERS[1:],
                                "x_0..x_mid\nall pass"], 30)
    first = r
    lo0, hi0 = "-1", "be_grid_last+1"
    for i in range(steps):
        r += 1
        book.put(ws, r, 1, i + 1, "int", role="fixed", align=Alignment(horizontal="left"))
        book.put(ws, r, 2, F(f"={lo0}" if i == 0 else f"=IF(AND(C{r - 1}-B{r - 1}>1,J{r - 1}),D{r - 1},B{r - 1})"),
                 "int")
        book.put(ws, r, 3, F(f"={hi0}" if i == 0 else
                             f"=IF(AND(C{r - 1}-B{r - 1}>1,NOT(J{r - 1})),D{r - 1},C{r - 1})"), "int")
        book.put(ws, r, 4, F(f"=IF(C{r}-B{r}>1,INT((B{r}+C{r})/2),B{r})"), "int")
        _, ok = _evaluation_tail(book, ws, r, 5, f"D{r}")
        book.put(ws, r, 10, F(f"=AND({ok},OR(D{r}<be_floor_index,be_floor_ok))"))
        _rule(ws, r, 1, 10)
    last_step = r
    r += 1
    book.put(ws, r, 1, "Result", bold=True)
    book.put(ws, r, 2, F(f"=IF(AND(C{last_step}-B{last_step}>1,J{last_step}),D{last_step},B{last_step})"), "int",
             name="be_lo")
    book.put(ws, r, 3, F(f"=IF(AND(C{last_step}-B{last_step}>1,NOT(J{last_step})),D{last_step},C{last_step})"),
             "int", name="be_hi")
    book.put(ws, r, 4, F("=be_hi-be_lo<=1"), name="be_converged")
    book.put(ws, r, 5, "lo: the breakeven's grid index (-1: x_0 fails); converged when hi = lo + 1").font = FONT_NOTE
    keep.append((first, r))
    r += 2
    header_row(book, ws, r, 1, ["Check", *EVAL_HEADERS], 30)
    first = r
    for label, j in (("at the breakeven", "MAX(be_lo,0)"), ("one step above", "be_lo+1")):
        r += 1
        book.put(ws, r, 1, label, align=Alignment(horizontal="left"))
        _evaluation(book, ws, r, 2, j)
        _rule(ws, r, 1, 7)
    r += 1
    note = book.put(ws, r, 1, "Exact for case \"CPI x\" of section 4 (see docs/termsheet.md): below the CPI floor the "
                              "min DSCR falls as CPI rises; from the floor up each period's cash rises then falls. "
                              "The engine's value is beside the result above.",
                    align=Alignment(horizontal="left", vertical="top", wrap_text=True))
    note.font = FONT_NOTE
    ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=width)
    ws.row_dimensions[r].height = 27
    keep.append((first, r))
    return r + 1

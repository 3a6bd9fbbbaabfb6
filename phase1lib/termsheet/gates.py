"""The Gates sheet: every check of gates A and B (METHODOLOGY section 8, D26) as formulas, the near-miss rule
(D27), the senior rating, repo eligibility and the tier. The near-miss hint needs the engine's ladder search and
stays an engine result; so do the run's rank and its tier among its peers.
"""

from __future__ import annotations

from openpyxl.styles import Alignment, Border
from openpyxl.worksheet.worksheet import Worksheet

from ..engine.cashflows import STRESS_NAMES
from ..engine.gates import CHECKS, GATE_A, KIND, MAX, MIN, NEAR_MISS_CHECKS, POSITIVE, RATING, REPO_RULES, TIERS
from .formulas import Line, Rows
from .printing import page_setup, paginate
from .source import Source
from .styles import FONT_NOTE, LEGEND, THIN, Book, Formula, header_row, title, widths

F = Formula
GATE_WIDTHS = (34, 24, 16, 15, 15, 9, 9, 10, 10)
KIND_TEXT = {MIN: "min", MAX: "max", POSITIVE: "positive", RATING: "rating"}
HAS_DEBT, HAS_MEZZ = "senior_amount>0", "mezz_amount>0"


def check_formulas(priced: bool = False) -> dict[str, tuple[str, str, str]]:
    """(value, threshold, applies) of each check, as formula text: ruleset v1's, and under v2 ``pricing`` (an
    offered coupon at or above the market coupon, section 11.1)."""
    out = {
        "tenor": ("senior_tenor", "tenor_cap", "TRUE"),
        "io_months": ("io_months", "(MIN(senior_tenor,lease_years)*periods_per_year-1)*12/periods_per_year", "TRUE"),
        "all_in_rate": ("senior_rate", "0", "TRUE"),
        "senior_amount": ("senior_amount", "0", "TRUE"),
        "negative_amortisation": ("IF(ISNUMBER(mezz_min_principal),MIN(senior_min_principal,mezz_min_principal),"
                                  "senior_min_principal)", "-tolerance", "TRUE"),
        "advance_factor": ("advance_factor", "af_min", "TRUE"),
        "min_equity": ("equity_required/funding_need", "min_equity_share", "TRUE"),
        "min_dscr": ("min_dscr", "dscr_floor-IF(wrap,wrap_dscr_relief,0)", HAS_DEBT),
        "wal": ("wal_years", "wal_share_of_tenor_cap*tenor_cap", HAS_DEBT),
        "wrap_underlying": ("underlying_notch", "MATCH(wrap_min_underlying,ratings,0)-1", "wrap"),
    }
    for s in STRESS_NAMES:
        out[f"stress_{s}"] = (f"stress_{s}", "stress_min_dscr", HAS_DEBT)
        out[f"stress_total_{s}"] = (f"stress_total_{s}", "stress_min_dscr", HAS_MEZZ)
    if priced:
        out["pricing"] = ("senior_coupon", "market_coupon", "coupon_offered")
    return out


def _failed(kind: int, r: int) -> str:
    """Whether the check on row r fails, by its kind (comparisons of section 8 within 1e-9)."""
    value, threshold, applies = f"D{r}", f"E{r}", f"F{r}"
    test = {MIN: f"{value}<{threshold}-tolerance", MAX: f"{value}>{threshold}+tolerance",
            POSITIVE: f"NOT({value}>{threshold})", RATING: f"{value}>{threshold}"}.get(kind, f"{value}<{threshold}")
    return f"=IF({applies},{test},FALSE)"


def write_gates(book: Book, ws: Worksheet, src: Source) -> None:
    widths(ws, GATE_WIDTHS)
    title(book, ws, f"Gates, rating, repo and tier — {src.project.title}",
          "Every check of METHODOLOGY section 8 as a formula: a minimum passes at value >= threshold - 1e-9, a "
          "maximum at value <= threshold + 1e-9. " + LEGEND, len(GATE_WIDTHS))
    head = 4
    header_row(book, ws, head, 1, ["Check", "Gate", "Kind", "Value", "Threshold", "Applies", "Fails",
                                   "Near-miss check", "Within 5 %"])
    formulas = check_formulas(src.priced)
    checks = [c for c in CHECKS if c in formulas]  # v1: pricing is ruleset v2's
    first = head + 1
    for i, check in enumerate(checks):
        r = first + i
        value, threshold, applies = formulas[check]
        kind = KIND[check]
        book.put(ws, r, 1, check)
        book.put(ws, r, 2, "A" if check in GATE_A else "B", align=Alignment(horizontal="center"))
        book.put(ws, r, 3, KIND_TEXT.get(kind, "negative"))
        book.put(ws, r, 4, F(f"={value}"), "general")
        book.put(ws, r, 5, F(f"={threshold}"), "general")
        book.put(ws, r, 6, F(f"={applies}"))
        book.put(ws, r, 7, F(_failed(kind, r)))
        book.put(ws, r, 8, check in NEAR_MISS_CHECKS, role="fixed")
        close = (f"D{r}>=(1-near_miss_band)*E{r}" if kind == MIN else f"D{r}<=(1+near_miss_band)*E{r}")
        if check == "pricing":  # a near miss only when the market coupon is positive (section 11.1)
            close = f"AND({close},E{r}>0)"
        book.put(ws, r, 9, F(f"=IF(AND(H{r},G{r}),{close},FALSE)"))
        if check == "pricing":
            book.name("pricing_failed", ws, f"G{r}")
        for c in range(1, 10):
            ws.cell(row=r, column=c).border = Border(bottom=THIN)
    last = first + len(checks) - 1
    a_last = first + sum(c in GATE_A for c in checks) - 1
    book.name("gate_checks", ws, f"A{first}:A{last}")
    book.name("gate_failed", ws, f"G{first}:G{last}")
    book.name("gate_within", ws, f"I{first}:I{last}")
    rows = Rows(book, ws, last + 1, width=len(GATE_WIDTHS))
    rows.section("Results")
    rows.lines([
        Line("Failed checks, gate A (feasibility)", F(_failure_list(checks, first, first, a_last)), None,
             "gate_a_failures", wide=True),
        Line("Failed checks, gate B (credit)", F(_failure_list(checks, first, a_last + 1, last)), None,
             "gate_b_failures", wide=True),
        Line("Failures", F("=SUMPRODUCT(--gate_failed)"), "int", "failures"),
        Line("Viable (no failure)", F("=failures=0"), None, "viable", key=True),
        Line("Near miss",
             F("=AND(failures=1,SUMPRODUCT(--gate_within)=1)"), None, "near_miss",
                 note="one failure, of a near-miss check, within 5 % (D27)"),
        Line("Senior rating notch",
             F('=IF(senior_amount>0,IF(wrap,0,MAX(SUMPRODUCT(--(min_dscr<ladder_dscr-tolerance)),cap_notch)),"")'),
             "int", "senior_rating_notch", note="AAA (0) when wrapped; else the worse of min DSCR and the cap"),
        Line("Senior rating", F('=IF(senior_amount>0,INDEX(ratings,senior_rating_notch+1),"")'), None,
             "senior_rating", key=True),
    ])
    if src.priced:
        rows.add(Line("Pricing hint (offered coupon below market)",
                      F('=IF(pricing_failed,"raise senior_coupon to "&FIXED(-INT(-ROUND(market_coupon*10000,6))'
                        '/10000,4,TRUE),"")'), None, "pricing_hint", wide=True,
                      note="the market coupon up to a whole bp (D38)"))
    _repo(rows, src)
    rows.lines([
        Line("Tier",
             F(f'=IF(viable,IF(AND(senior_rating_notch<=1,repo_eligible),"{TIERS[0]}",IF(senior_rating_notch<=2,'
               f'"{TIERS[1]}","{TIERS[2]}")),IF(near_miss,"{TIERS[3]}","{TIERS[4]}"))'), None, "tier", key=True,
                   note="Diamond: viable, AA or better, repo; Gold: A or better; Silver; Bronze: near miss"),
    ])
    rows.section("Engine results (not recalculated)")
    k = src.kpis
    rows.lines([
        Line("Near-miss hint", k["hint"] if k["near_miss"] and k["hint"] else "—",
             None, None, role="engine", note="engine result, not recalculated"),
        Line("Rank among the run's viable structures", f"{src.rank} of {len(src.run.top)}", None, None,
             role="engine", note="the run's ranking, not recalculated"),
        Line("Tier in the run", k["tier"], None, None, role="engine", note="engine result at the exported inputs"),
    ])
    ws.freeze_panes = ws.cell(row=first, column=2)
    page_setup(ws, src.footer())
    paginate(ws, GATE_WIDTHS, rows.row - 1, rows.headings, rows.blocks)


def _failure_list(checks: list[str], first: int, a: int, b: int) -> str:
    """Text of the failed checks on rows a..b ("passed" when none)."""
    parts = "&".join(f'IF(G{r},", {checks[r - first]}","")' for r in range(a, b + 1))
    return f'=IF(SUMPRODUCT(--(G{a}:G{b}))=0,"passed",MID({parts},3,2000))'


def _repo(rows: Rows, src: Source) -> None:
    book, ws = rows.book, rows.ws
    country = src.project.country
    rows.section(f"Repo eligibility ({country}; class from the amortisation: bullet or amortising)")
    if src.ruleset.repo_rule(country, False) is None:
        rows.add(Line("Repo eligible", F("=FALSE"), None, "repo_eligible",
                      note=f"jurisdiction: {country} has no repo rules", key=True))
        return
    header_row(book, ws, rows.row, 1, ["Rule", "", "Required", "Actual", "Passes"], 18)
    rows.row += 1
    actual = {"min_rating": "senior_rating", "min_dscr": "min_dscr", "max_ltv": "ltv", "max_tenor": "senior_tenor",
              "min_dsra_months": "dsra_months"}
    fmts = {"min_rating": None, "min_dscr": "ratio4", "max_ltv": "pct", "max_tenor": "tenor",
            "min_dsra_months": "int"}
    first = rows.row
    for rule in REPO_RULES:
        r = rows.row
        passes = {
            "min_rating": f"=IF(senior_amount>0,senior_rating_notch<=MATCH(C{r},ratings,0)-1,FALSE)",
            "min_dscr": f"=IF(senior_amount>0,min_dscr>=C{r}-tolerance,FALSE)",
            "max_ltv": f"=ltv<=C{r}+tolerance", "max_tenor": f"=senior_tenor<=C{r}",
            "min_dsra_months": f"=dsra_months>=C{r}",
        }[rule]
        book.put(ws, r, 1, rule)
        book.put(ws, r, 3, F(f"=INDEX(repo_{rule},IF(is_bullet,2,1))"), fmts[rule])
        book.put(ws, r, 4, F(f"={actual[rule]}"), fmts[rule])
        book.put(ws, r, 5, F(passes))
        for c in range(1, 6):
            ws.cell(row=r, column=c).border = Border(bottom=THIN)
        rows.row += 1
    cell = book.put(ws, rows.row, 1, "A rating or DSCR that is blank (no senior debt) fails its rule (D29).")
    cell.font = FONT_NOTE
    rows.row += 1
    rows.add(Line("Repo eligible (every rule passes)", F(f"=AND(E{first}:E{rows.row - 2})"), None, "repo_eligible",
                  key=True))

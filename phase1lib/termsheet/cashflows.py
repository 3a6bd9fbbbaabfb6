"""The Cash Flows sheet: one row per period (period 0 = closing), every cell a live formula of the inputs.

Indices come from the Indices sheet by lease year; revenue, opex, admin and CFADS follow section 4; the senior
service is the senior amount times the service per unit of debt (Sizing Flows); the schedule is opening balance,
interest, principal, closing balance (a bullet repays its balloon at n and is refinanced, the refinancing
service tested to N - 2 ppy); the mezzanine likewise; then the DSRA windows (D22) and the equity flows (D25).
Every column is a workbook name ``cf_<key>`` over periods 1..N.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

from openpyxl.worksheet.worksheet import Worksheet

from ..project import CURRENCY_SYMBOLS
from .content import PERIOD_NAMES
from .formulas import Column, PeriodTable, write_period_sheet
from .source import Source
from .styles import LEGEND, Book

TITLE_COLUMNS = 3  # period, date, lease year: repeated on every printed block
SENIOR, MEZZ, RESERVE = "Senior notes", "Mezzanine", "Reserve and equity"


def cash_columns(src: Source) -> list[Column]:
    """The Cash Flows columns (every structure has all of them, so any input can be flexed)."""
    n = src.n_periods
    rows = src.schedule
    cols = [
        Column("period", "Period", "Period", "int", 7.5, values=list(range(1, n + 1))),
        Column("date", "Date", "Period", "date", 12.5, values=[dt.date.fromisoformat(r["date"]) for r in rows]),
        Column("lease_year", "Lease\nyear", "Period", "int", 6.5, values=[r["lease_year"] for r in rows]),
        Column("lender_rent_index", "Rent index\n(lender)", "Indices", "index", 10,
               "=INDEX(ix_lender_rent_index,{lease_year})"),
        Column("base_rent_index", "Rent index\n(base)", "Indices", "index", 10,
               "=INDEX(ix_base_rent_index,{lease_year})"),
        Column("cost_index", "Cost\nindex", "Indices", "index", 9, "=INDEX(ix_cost_index,{lease_year})"),
        Column("revenue_lender", "Revenue\n(lender)", "Cash flow", "money_whole", 9,
               "=gross_income_annual/periods_per_year*{lender_rent_index}", total=True),
        Column("revenue_base", "Revenue\n(base)", "Cash flow", "money_whole", 9,
               "=gross_income_annual/periods_per_year*{base_rent_index}", total=True),
        Column("opex", "Opex", "Cash flow", "money_whole", 9, "=opex_annual/periods_per_year*{cost_index}", total=True),
        Column("admin", "Admin", "Cash flow", "money_whole", 9, "=admin_annual/periods_per_year", total=True),
        Column("lender_cfads", "CFADS\n(lender)", "Cash flow", "money_whole", 9, "={revenue_lender}-{opex}-{admin}",
               total=True),
        Column("base_cfads", "CFADS\n(base)", "Cash flow", "money_whole", 9, "={revenue_base}-{opex}-{admin}",
               total=True),
        Column("sidecar", "Sidecar\n(uplift sold)", "Cash flow", "money_whole", 9,
               "=gross_income_annual/periods_per_year*INDEX(ix_sidecar_uplift,{lease_year})", total=True),
        Column("senior_opening", "Opening\nbalance", SENIOR, "money_whole", 9, "={prev.senior_closing}"),
        Column("senior_interest", "Interest", SENIOR, "money_whole", 9.5,
               "=IF({period}<=note_periods,senior_rate_periodic*{senior_opening},0)", total=True),
        Column("senior_service", "Tested\nservice", SENIOR, "money_whole", 9.5,
               "=senior_amount*INDEX(sz_unit_service,{period})", total=True),
        Column("senior_principal", "Principal", SENIOR, "money_whole", 9,
               "=IF({period}<=note_periods,IF(is_bullet,IF({period}=note_periods,{senior_opening},0),"
               "{senior_service}-{senior_interest}),0)", total=True),
        Column("senior_closing", "Closing\nbalance", SENIOR, "money_whole", 9,
               "={senior_opening}-{senior_principal}", row0="=senior_amount"),
        Column("note_service", "Note service\n(incl. balloon)", SENIOR, "money_whole", 13,
               "={senior_interest}+{senior_principal}", total=True),
        Column("refinancing_service", "Refinancing\nservice", SENIOR, "money_whole", 9.5,
               "=IF(AND(is_bullet,{period}>note_periods),{senior_service},0)", total=True),
        Column("dscr", "DSCR", SENIOR, "ratio", 8,
               '=IF(AND({period}<=test_periods,{senior_service}>0),{lender_cfads}/{senior_service},"")'),
        Column("mezz_opening", "Opening\nbalance", MEZZ, "money_whole", 9, "={prev.mezz_closing}"),
        Column("mezz_interest", "Interest", MEZZ, "money_whole", 9,
               "=IF({period}<=mezz_periods,mezz_rate_periodic*{mezz_opening},0)", total=True),
        Column("mezz_service", "Debt\nservice", MEZZ, "money_whole", 9,
               "=mezz_amount*INDEX(sz_mezz_unit_service,{period})", total=True),
        Column("mezz_principal", "Principal", MEZZ, "money_whole", 9,
               "=IF({period}<=mezz_periods,{mezz_service}-{mezz_interest},0)", total=True),
        Column("mezz_closing", "Closing\nbalance", MEZZ, "money_whole", 9, "={mezz_opening}-{mezz_principal}",
               row0="=mezz_amount"),
        Column("combined_dscr", "Combined\nDSCR", MEZZ, "ratio", 9.5,
               '=IF(AND({period}<=MAX(test_periods,mezz_periods),{senior_service}+{mezz_service}>0),'
               '{lender_cfads}/({senior_service}+{mezz_service}),"")'),
        Column("service_to_date", "Tested service\nto date", RESERVE, "money_whole", 12,
               "={prev.service_to_date}+IF({period}<=test_periods,{senior_service},0)", row0="=0"),
        Column("dsra_window", "Service over\nthe last w", RESERVE, "money_whole", 11,
               '=IF(AND({period}>=dsra_window,{period}<=test_periods),{service_to_date}-IF({period}>dsra_window,'
               'INDEX(cf_service_to_date,{period}-dsra_window),0),"")'),
        Column("dsra_release", "DSRA\nrelease", RESERVE, "money_whole", 9, "=IF({period}=test_periods,dsra_amount,0)",
               total=True),
        Column("residual", "Residual\nvalue", RESERVE, "money_whole", 9,
               "=IF({period}=n_periods,residual_value_pct*market_value,0)", total=True),
        Column("equity_flow", "Equity\nflow", RESERVE, "money_whole", 9,
               "={base_cfads}-{sidecar}-{senior_service}-{mezz_service}+{dsra_release}+{residual}",
               row0="=-equity_required", total=True),
    ]
    return [_fit(src, c) for c in cols]


#: Engine schedule keys (or estimates) that size each money column.
_WIDTH_FROM = {"note_service": "senior_note_service", "mezz_closing": "mezz_opening",
               "service_to_date": "senior_service", "dsra_window": "senior_service"}


def _fit(src: Source, col: Column) -> Column:
    """Column width: the header's minimum, or the widest formatted amount (totals in bold) with padding."""
    if col.fmt != "money_whole":
        return col
    rows, k = src.schedule, src.kpis
    key = _WIDTH_FROM.get(col.key, col.key)
    if col.key in ("dsra_release", "residual"):
        values = [k["dsra_amount"] if col.key == "dsra_release" else src.residual]
    else:
        values = [float(r[key]) for r in rows]
    if col.key == "service_to_date":
        values = [math.fsum(values)]
    if col.key == "dsra_window":
        values = [v * src.dsra_window for v in values]
    sym = CURRENCY_SYMBOLS[src.project.currency]
    widest = max(len(f"{sym}{abs(v):,.0f}") + (2 if v < 0 else 0) for v in values)
    if col.total:
        total = math.fsum(values)
        widest = max(widest, 1.1 * (len(f"{sym}{abs(total):,.0f}") + (2 if total < 0 else 0)))
    if col.key in ("equity_flow", "senior_closing", "mezz_closing"):
        widest = max(widest, len(f"{sym}{max(abs(k['equity_required']), k['senior_amount']):,.0f}") + 2)
    # flexed inputs move the amounts: a 30 % margin keeps them readable
    return replace(col, width=max(col.width, round(1.3 * widest + 1.5, 1)))


def write_cash_flows(book: Book, ws: Worksheet, src: Source) -> PeriodTable:
    """The Cash Flows sheet: headers, the closing row, one row per period, totals."""
    p = src.project
    note = (f"{PERIOD_NAMES.get(src.ppy, str(src.ppy))} periods from closing {src.closing:%d-%b-%Y}; amounts in "
            f"{p.currency}. Lender case: the sizing case (DSCR); base case: base CPI (equity flows). " + LEGEND)
    table = write_period_sheet(book, ws, "cf", cash_columns(src), src.n_periods,
                               f"Cash flows — {p.title} — rank {src.rank}", note, TITLE_COLUMNS, src.footer(),
                               with_row0=True, totals=True)
    book.put(ws, table.row0, 1, 0, "int", role="fixed")
    book.put(ws, table.row0, 2, src.closing, "date", role="fixed")
    return table

"""The Stress Flows sheet: per period, the cash available in each stress scenario of METHODOLOGY section 8
(scenario CFADS less the sidecar) and the senior and combined DSCR it gives against the sized structure's
service. The Sensitivity sheet takes the minimum of each column: the stress grid.
"""

from __future__ import annotations

from dataclasses import replace

from openpyxl.worksheet.worksheet import Worksheet

from ..engine.cashflows import STRESS_NAMES
from .breakevens import breakeven_columns
from .formulas import Column, PeriodTable, write_period_sheet
from .source import Source
from .styles import LEGEND, Book, money_width


def stress_columns(src: Source) -> list[Column]:
    rows = src.schedule
    base = "Structure"
    cols = [
        Column("period", "Period", "Period", "int", 7.5, values=[r["period"] for r in rows]),
        Column("lease_year", "Lease\nyear", "Period", "int", 6.5, values=[r["lease_year"] for r in rows]),
        Column("senior_service", "Senior\nservice", base, "money_whole", 11, "=INDEX(cf_senior_service,{period})"),
        Column("mezz_service", "Mezz\nservice", base, "money_whole", 11, "=INDEX(cf_mezz_service,{period})"),
        Column("sidecar", "Sidecar", base, "money_whole", 10, "=INDEX(cf_sidecar,{period})"),
    ]
    for i, name in enumerate(STRESS_NAMES, start=1):
        cash = (f"=gross_income_annual/periods_per_year*INDEX(ix_rent_index_{name},{{lease_year}})"
                f"*INDEX(stress_rent_mult,{i})-opex_annual/periods_per_year*INDEX(ix_cost_index_{name},{{lease_year}})"
                f"*INDEX(stress_opex_mult,{i})-admin_annual/periods_per_year-{{sidecar}}")
        cols += [
            Column(f"cash_{name}", "Cash\navailable", name, "money_whole", 11, cash),
            Column(f"dscr_{name}", "Senior\nDSCR", name, "ratio", 8,
                   f'=IF(AND({{period}}<=test_periods,{{senior_service}}>0),{{cash_{name}}}/{{senior_service}},"")'),
            Column(f"combined_{name}", "Combined\nDSCR", name, "ratio", 10.5,
                   f"=IF(AND({{period}}<=MAX(test_periods,mezz_periods),{{senior_service}}+{{mezz_service}}>0),"
                   f'{{cash_{name}}}/({{senior_service}}+{{mezz_service}}),"")'),
        ]
    if src.priced:  # ruleset v2: the per-period ratios of the breakevens (section 11.3)
        cols += breakeven_columns()
    big = max(max(abs(r["base_cfads"]), abs(r["senior_service"]), abs(r["mezz_service"])) for r in rows)
    return [replace(c, width=money_width(src.project.currency, big, c.width)) if c.fmt == "money_whole" else c
            for c in cols]


def write_stress_flows(book: Book, ws: Worksheet, src: Source) -> PeriodTable:
    """One row per period of the stress scenarios (names sf_<column>)."""
    return write_period_sheet(book, ws, "sf", stress_columns(src), src.n_periods, f"Stress flows — {src.project.title}",
                              "Cash available = scenario CFADS - sidecar, over the senior test periods (METHODOLOGY "
                              "section 8); the combined DSCR adds the mezz service. " + LEGEND, 2, src.footer())

"""The Indices sheet: one row per lease year, the rent and cost indices of METHODOLOGY section 4 as formulas.

Growth g_y is applied at anniversary y (row y), so I_(y+1) = I_y x (1 + g_y). The lender case earns the ZCIS
locked rate on hedged anniversaries (y <= H) and the CPI floor after (mode CPI_capped), nothing in mode flat;
the base case and every stress scenario earn locked + clamp(x) - x when hedged and clamp(x) after; a flat basis
earns nothing; costs follow the case's CPI x uncollared. The sidecar's uplift (1 + locked)^(y - 1) - 1 is sold
for y <= H + 1 in mode flat with H > 0 and basis CPI_capped (D10).
"""

from __future__ import annotations

from openpyxl.worksheet.worksheet import Worksheet

from ..engine.cashflows import STRESS_NAMES
from .formulas import Column, PeriodTable, write_period_sheet
from .source import Source
from .styles import LEGEND, Book

CLAMP = "MIN(MAX({x},cpi_floor),cpi_cap)"


def _rent_growth(x: str) -> str:
    """Rent growth at an anniversary for realised CPI ``x`` (a cell or a name): hedged, unhedged, flat basis."""
    clamped = CLAMP.format(x=x)
    return (f'=IF({{lease_year}}>=lease_years,"",IF(indexation_basis="flat",0,IF({{hedged}}=1,'
            f"locked_rate+{clamped}-{x},{clamped})))")


def _index(growth: str) -> str:
    return f"={{prev.{growth}_index}}*(1+{{prev.{growth}}})"


def index_columns(src: Source) -> list[Column]:
    years = src.project.lease_years
    base, lender, side = "Base case", "Lender case", "Sidecar"
    cols = [
        Column("lease_year", "Lease\nyear", "Year", "int", 6.5, values=list(range(1, years + 1))),
        Column("hedged", "Hedged\n(y <= H)", "ZCIS", "int", 8, "=IF({lease_year}<=zcis_tenor_years,1,0)"),
        Column("lender_growth", "Rent growth", lender, "pct4", 10,
               '=IF({lease_year}>=lease_years,"",IF(OR(indexation_basis="flat",indexation_mode="flat"),0,'
               "IF({hedged}=1,locked_rate,cpi_floor)))"),
        Column("lender_growth_index", "Rent index", lender, "index", 10, _index("lender_growth"), first=1.0),
        Column("base_growth", "Rent growth", base, "pct4", 10, _rent_growth("base_cpi")),
        Column("base_growth_index", "Rent index", base, "index", 10, _index("base_growth"), first=1.0),
        Column("cost_growth", "Cost CPI", base, "pct4", 9, '=IF({lease_year}>=lease_years,"",base_cpi)'),
        Column("cost_growth_index", "Cost index", base, "index", 10, _index("cost_growth"), first=1.0),
        Column("uplift_growth", "Locked\nrate", side, "pct4", 9, '=IF({lease_year}>=lease_years,"",locked_rate)'),
        Column("uplift_growth_index", "(1 + locked)\n^(y - 1)", side, "index", 10, _index("uplift_growth"),
               first=1.0),
        Column("sidecar_uplift", "Uplift sold", side, "index", 9.5,
               '=IF(AND(indexation_mode="flat",zcis_tenor_years>0,indexation_basis="CPI_capped",'
               "{lease_year}<=zcis_tenor_years+1),{uplift_growth_index}-1,0)"),
    ]
    for i, name in enumerate(STRESS_NAMES, start=1):
        kind, cpi = f"INDEX(stress_kind,{i})", f"INDEX(stress_cpi,{i})"
        cpi_x = (f'=IF({{lease_year}}>=lease_years,"",IF({kind}="cpi",{cpi},IF({kind}="cpi_spike",'
                 f"IF({{lease_year}}<=INDEX(stress_anniversaries,{i}),{cpi},base_cpi),base_cpi)))")
        cols += [
            Column(f"{name}_cpi", "CPI x", name, "pct4", 8.5, cpi_x),
            Column(f"{name}_growth", "Rent growth", name, "pct4", 9.5, _rent_growth(f"{{{name}_cpi}}")),
            Column(f"{name}_growth_index", "Rent index", name, "index", 9.5, _index(f"{name}_growth"), first=1.0),
            Column(f"{name}_cpi_index", "Cost index", name, "index", 9.5, _index(f"{name}_cpi"), first=1.0),
        ]
    return cols


#: Index columns under the names the other sheets read (ix_<name>).
ALIASES = {"lender_rent_index": "lender_growth_index", "base_rent_index": "base_growth_index",
           "cost_index": "cost_growth_index"}


def write_indices(book: Book, ws: Worksheet, src: Source) -> PeriodTable:
    """One row per lease year; names ix_<column>, plus ix_lender_rent_index, ix_base_rent_index, ix_cost_index,
    ix_rent_index_<scenario> and ix_cost_index_<scenario>."""
    table = write_period_sheet(book, ws, "ix", index_columns(src), src.project.lease_years,
                               f"Indices by lease year — {src.project.title}",
                               "Rent and cost indices of METHODOLOGY section 4: growth at anniversary y (row y) takes "
                               "the index of year y to year y + 1. " + LEGEND, 1, src.footer())
    for alias, key in ALIASES.items():
        _alias(book, ws, table, alias, key)
    for name in STRESS_NAMES:
        _alias(book, ws, table, f"rent_index_{name}", f"{name}_growth_index")
        _alias(book, ws, table, f"cost_index_{name}", f"{name}_cpi_index")
    return table


def _alias(book: Book, ws: Worksheet, table: PeriodTable, alias: str, key: str) -> None:
    letter = table.letters[key]
    book.name(table.name(alias), ws, f"{letter}{table.first}:{letter}{table.last}")

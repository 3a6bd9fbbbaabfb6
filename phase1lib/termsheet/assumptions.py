"""The Assumptions sheet: every input the model uses, as a named cell, and the ruleset tables its formulas read.

Blue cells are inputs an analyst may change (the structure keys and the project fields, each a workbook name
equal to its methodology name, e.g. ``senior_dscr``, ``opex_pct``); grey cells are fixed by the layout (the
lease term and the periods per year set the number of rows; the jurisdiction picks the ladder and repo rules).
The derived fields of METHODOLOGY section 2 are formulas. The ruleset tables (tenants, the jurisdiction's rating
ladder and spreads, its repo rules, the stress scenarios, the gate constants) are labelled values in grids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from ..engine.cashflows import STRESS_NAMES
from ..project import (
    AMORTISATIONS,
    HOURS_PER_MONTH,
    INDEXATION_BASES,
    MEZZ_AMORTS,
    TENANT_RATINGS,
    field_spec,
)
from ..ranges import INDEXATION_MODES
from ..ruleset import RATINGS
from .content import DERIVED_INFO, STRUCTURE_INFO
from .formulas import Line, Rows, grid
from .pricing import write_v2_assumptions
from .printing import page_setup, paginate
from .source import Source
from .styles import LEGEND, ROLE_FONTS, Book, Formula

ASSUMPTION_WIDTHS = (32, 26, 17, 16, 15, 15, 15)
#: The methodology's comparison tolerance and noise rules (sections 5-8, D18, D25).
CONSTANTS = (
    ("Comparison tolerance (a minimum passes at value >= threshold - tolerance)", "tolerance", 1e-9),
    ("Mezz room counted as rounding noise (share of the cover, D18)", "mezz_noise", 1e-9),
    ("Equity flow counted as rounding of zero (share of equity, D25)", "irr_noise", 1e-9),
)
#: Project fields an analyst may change (the others are fixed by the layout or are text).
FLEXIBLE = {"gross_it_load_mw", "pue", "tenant_rating", "gross_monthly_rent", "rent_per_kwh_month", "opex_pct",
            "capex_cost_per_mw", "capex_market_per_mw", "land_fees_total", "indexation_basis", "base_cpi", "cpi_floor",
            "cpi_cap", "zcis_rate", "zcis_basis_bps", "arranger_fee_pct", "legal_fee_pct", "rating_fee_pct",
            "admin_bps", "wrap_premium_bps", "wrap_dscr_relief", "residual_value_pct"}
FIXED = {"lease_years": "fixed: one row per lease year and period; re-export to change",
         "periods_per_year": "fixed: one row per period; re-export to change",
         "country": "fixed: picks the rating ladder and the repo rules"}
#: Structure keys that are also project fields: the project's value is the default of a structure without mezz.
PROJECT_DEFAULTS = ("mezz_coupon", "mezz_dscr", "mezz_tenor", "mezz_amort", "sidecar_haircut_pct")
OPTIONS: dict[str, Sequence[str]] = {
    "senior_amort": AMORTISATIONS, "indexation_mode": INDEXATION_MODES, "mezz_amort": MEZZ_AMORTS,
    "wrap": ("TRUE", "FALSE"), "mezz_on": ("TRUE", "FALSE"), "tenant_rating": TENANT_RATINGS,
    "indexation_basis": INDEXATION_BASES,
}


def unit_format(unit: str) -> str | None:
    """Number format key of a field unit."""
    if unit.startswith(("rate", "share")):
        return "pct"
    if unit == "currency / kWh":
        return "money_rate"
    if unit.startswith("currency"):
        return "money"
    if unit.startswith("bps"):
        return "bps"
    return {"ratio": "ratio", "MW": "number", "years": "int", "periods": "int", "months": "int"}.get(unit)


def derived_formula(key: str, rent: str) -> str | None:
    """Formula of a derived field over the named inputs (METHODOLOGY section 2)."""
    monthly = "=gross_monthly_rent" if rent == "gross_monthly_rent" else \
        f"=rent_per_kwh_month*net_it_load_mw*1000*{HOURS_PER_MONTH}"
    tenant = "MATCH(tenant_rating,tenants,0)"
    return {
        "net_it_load_mw": "=gross_it_load_mw/pue", "gross_income_monthly": monthly,
        "gross_income_annual": "=12*gross_income_monthly", "opex_annual": "=opex_pct*gross_income_annual",
        "noi_annual": "=gross_income_annual-opex_annual",
        "project_capex": "=capex_cost_per_mw*gross_it_load_mw+land_fees_total",
        "market_value": "=capex_market_per_mw*gross_it_load_mw+land_fees_total",
        "upfront_fees": "=(arranger_fee_pct+legal_fee_pct+rating_fee_pct)*project_capex",
        "funding_need": "=project_capex+upfront_fees", "admin_annual": "=admin_bps/10000*funding_need",
        "tenor_cap": "=lease_years-tenor_cap_buffer_years",
        "dscr_floor": f"=INDEX(tenant_dscr_floor,{tenant})", "dsra_months": f"=INDEX(tenant_dsra_months,{tenant})",
        "af_min": f"=INDEX(tenant_af_min,{tenant})", "af_max": f"=INDEX(tenant_af_max,{tenant})",
        "rating_cap": f"=INDEX(tenant_rating_cap,{tenant})",
        "locked_rate": "=MIN(MAX(zcis_rate-zcis_basis_bps/10000,cpi_floor),cpi_cap)",
        "n_periods": "=lease_years*periods_per_year",
    }.get(key)


def rent_field(src: Source) -> str:
    return "gross_monthly_rent" if src.project.gross_monthly_rent is not None else "rent_per_kwh_month"


def structure_value(src: Source, key: str) -> Any:
    """The model's value of a structure key: the point's, or the project's default where the point has none
    (the mezz keys of a structure without mezz; a mezz tenor that follows the senior tenor)."""
    if key in src.point:
        return src.point[key]
    value = getattr(src.project, key)
    if key == "mezz_tenor" and value is None:
        return Formula("=senior_tenor")
    return value


def write_assumptions(book: Book, ws: Worksheet, src: Source) -> None:
    """Inputs (structure, project), derived fields, ruleset tables, the run."""
    p = src.project
    rows = Rows.on_sheet(book, ws, ASSUMPTION_WIDTHS, f"Assumptions — {p.title}",
                         "Every input of the model, each a workbook name equal to its methodology name. " + LEGEND)
    _structure(rows, src)
    _project(rows, src)
    _derived(rows, src)
    _ruleset(rows, src)
    _run(rows, src)
    _validations(ws, rows.validations)
    ws.freeze_panes = "A4"
    page_setup(ws, src.footer())
    paginate(ws, ASSUMPTION_WIDTHS, rows.row - 1, rows.headings, rows.blocks)


def _validations(ws: Worksheet, cells: list[tuple[str, Sequence[str]]]) -> None:
    """A drop-down list on each enumerated input (Excel and LibreOffice both show it)."""
    by_options: dict[tuple[str, ...], list[str]] = {}
    for coordinate, options in cells:
        by_options.setdefault(tuple(options), []).append(coordinate)
    for options, coordinates in by_options.items():
        dv = DataValidation(type="list", formula1='"' + ",".join(options) + '"', allow_blank=False,
                            showErrorMessage=True, errorTitle="Not a valid value",
                            error="Choose one of: " + ", ".join(options))
        for coordinate in coordinates:
            dv.add(coordinate)
        ws.add_data_validation(dv)


def _structure(rows: Rows, src: Source) -> None:
    rows.section("Structure (the ranked permutation): change these to flex the deal")
    for key, (label, unit) in STRUCTURE_INFO.items():
        value = structure_value(src, key)
        note = ""
        if key not in src.point:
            note = "project default (the structure has no mezzanine)"
        if key == "senior_coupon":
            note = "ruleset v2: becomes the formula =market_coupon"
            if src.priced:
                value, note = _coupon(src)
        elif isinstance(value, Formula):
            note = "the senior tenor (project default); type a number to override"
        cell = rows.add(Line(label, value, unit_format(unit), key, role="input", unit=_unit_text(unit, src),
                             note=note, options=OPTIONS.get(key)))
        if key == "senior_coupon" and isinstance(value, Formula):
            cell.font = ROLE_FONTS["input"][0]  # a formula the analyst may replace by an offered coupon


def _coupon(src: Source) -> tuple[Any, str]:
    """The senior_coupon input under ruleset v2: =market_coupon for a "market" point, else the offered number."""
    if src.market:
        return Formula("=market_coupon"), "market (Sizing); type a number to offer a coupon (pricing check)"
    return src.point["senior_coupon"], "offered: the pricing check applies; type =market_coupon for market"


def _unit_text(unit: str, src: Source) -> str:
    return "" if unit in ("text", "bool", "ISO date") else unit.replace("currency", src.project.currency)


def _project(rows: Rows, src: Source) -> None:
    p = src.project
    rows.section("Project inputs")
    for key, value in p.to_dict().items():
        spec = field_spec(key)
        unit = spec["unit"]
        label, fmt = spec["label"], unit_format(unit)
        if key in PROJECT_DEFAULTS:
            if value is None:
                value = "senior tenor"
            rows.add(Line(label, value, fmt, None, role="fixed", unit=_unit_text(unit, src),
                          note=f"project default of {key}: the structure input above applies"))
            continue
        if key in ("benchmark_curve", "cap_rate"):
            note = "ruleset v2 field: not used under v1"
            if src.priced:
                note = "the input is in the Ruleset v2 section below" if key == "cap_rate" else \
                    "the curve table in the Ruleset v2 section below"
            rows.add(Line(label, str(value), None, None, role="fixed", note=note))
            continue
        note = "" if spec["required"] or value != spec["default"] else "default"
        if value is None and key in ("gross_monthly_rent", "rent_per_kwh_month"):
            rows.add(Line(label, "not given", None, None, role="fixed", note="the other rent is given"))
            continue
        if key == "closing_date":
            rows.add(Line(label, src.closing, "date", None, role="fixed",
                          note="the run's closing date (dates only; no figure depends on it)"))
            continue
        if key in ("title", "currency"):
            rows.add(Line(label, str(value), None, None, role="fixed"))
            continue
        if key == "zcis_rate" and value == p.base_cpi:
            note = "default: base CPI (a fixed number: it does not follow base_cpi)"
        if key == "capex_market_per_mw" and value == p.capex_cost_per_mw:
            note = "default: capex cost per MW (a fixed number)"
        role = "input" if key in FLEXIBLE else "fixed"
        note = FIXED.get(key, note)
        rows.add(Line(label, value, "number" if key == "pue" else fmt, key, role=role,
                      unit=_unit_text(unit, src), note=note, options=OPTIONS.get(key)))


def _derived(rows: Rows, src: Source) -> None:
    rows.section("Derived fields (METHODOLOGY section 2)")
    rent = rent_field(src)
    for key, value in src.derived.to_dict().items():
        if key not in DERIVED_INFO:
            continue
        label, unit = DERIVED_INFO[key]
        formula = derived_formula(key, rent)
        if formula is None:  # repo_jurisdiction: the country's repo rules, fixed with the country
            rows.add(Line(label, str(value) if value else "none", None, None, role="fixed",
                          note="the jurisdiction's repo rules below"))
            continue
        note = "tenant table below" if "tenant" in formula else ""
        rows.add(Line(label, Formula(formula), unit_format(unit), key, unit=_unit_text(unit, src), note=note))
    if src.priced:
        write_v2_assumptions(rows, src)
        return
    rows.section("Ruleset v2 (METHODOLOGY section 11): not applied under v1")
    rows.note("Under ruleset v2 this section holds the inputs cap_rate and benchmark_rate (the benchmark curve at the "
              "senior tenor); senior_coupon becomes the formula =market_coupon, and the sizing limits on the Sizing "
              "sheet gain the row ltv = max_ltv x lending value, before funding_need.")


def _ruleset(rows: Rows, src: Source) -> None:
    rs, p = src.ruleset, src.project
    book, ws = rows.book, rows.ws
    rows.section(f"Ruleset {rs.version}: tenant table")
    body = [[t, f"tenants.{t}", *(rs.tenant(t)[f] for f in ("dscr_floor", "dsra_months", "af_min", "af_max",
                                                             "rating_cap"))] for t in TENANT_RATINGS]
    first, last = grid(book, ws, rows.row, 1, ["Tenant", "key", "DSCR floor", "DSRA months", "Advance factor min",
                                               "Advance factor max", "Rating cap"], body,
                       [None, None, "ratio", "int", "pct", "pct", None], ["fixed", "fixed", *["input"] * 5],
                       ["tenants", None, "tenant_dscr_floor", "tenant_dsra_months", "tenant_af_min", "tenant_af_max",
                        "tenant_rating_cap"])
    rows.blocks.append((rows.row - 1, last))
    rows.row = last + 1
    rows.section(f"Ruleset {rs.version}: rating ladder ({p.country}) and spreads")
    ladder = rs.ladder(p.country)
    body = [[r, f"rating_ladder.{p.country}.{r}", ladder.get(r, "below BB"), rs.spread_bps(r)] for r in RATINGS]
    first, last = grid(book, ws, rows.row, 1, ["Rating", "key", "Minimum DSCR", "Spread"], body,
                       [None, None, "ratio", "bps"], ["fixed", "fixed", "input", "input"],
                       ["ratings", None, None, "spread_bps"])
    book.name("ladder_dscr", ws, f"C{first}:C{last - 1}")
    rows.blocks.append((rows.row - 1, last))
    rows.row = last + 1
    rows.section(f"Ruleset {rs.version}: repo rules ({p.country})")
    if rs.repo_rule(p.country, False) is None:
        rows.add(Line("Repo rules", "none", None, None, role="fixed",
                      note=f"jurisdiction: {p.country} has no repo rules (never repo eligible)"))
    else:
        keys = ("min_rating", "min_dscr", "max_ltv", "max_tenor", "min_dsra_months")
        body = [[klass, f"repo_rules.{p.country}.{klass}", *(rs.repo_rule(p.country, klass == "bullet")[k]
                                                             for k in keys)] for klass in ("amortising", "bullet")]
        first, last = grid(book, ws, rows.row, 1, ["Class", "key", "Min rating", "Min DSCR", "Max LTV", "Max tenor",
                                                   "Min DSRA months"], body,
                           [None, None, None, "ratio", "pct", "tenor", "int"], ["fixed", "fixed", *["input"] * 5],
                           [None, None, *(f"repo_{k}" for k in keys)])
        rows.blocks.append((rows.row - 1, last))
        rows.row = last + 1
    rows.section(f"Ruleset {rs.version}: stress scenarios")
    body = []
    for name in STRESS_NAMES:
        spec = rs.stress_scenarios[name]
        body.append([name, f"stress_scenarios.{name}", spec["kind"], spec.get("cpi"), spec.get("anniversaries"),
                     spec.get("rent_mult", 1.0), spec.get("opex_mult", 1.0)])
    first, last = grid(book, ws, rows.row, 1, ["Scenario", "key", "Kind", "CPI", "Anniversaries", "Rent x", "Opex x"],
                       body, [None, None, None, "pct", "int", "number", "number"],
                       ["fixed", "fixed", "input", "input", "input", "input", "input"],
                       ["stress_names", None, "stress_kind", "stress_cpi", "stress_anniversaries", "stress_rent_mult",
                        "stress_opex_mult"])
    rows.blocks.append((rows.row - 1, last))
    rows.row = last + 1
    rows.section(f"Ruleset {rs.version}: gates, sizing constants, profiles")
    for key, value in rs.gates.items():
        fmt = None if isinstance(value, str) else "general"
        rows.add(Line(f"Gate constant: {key.replace('_', ' ')}", value, fmt, key, role="input"))
    for label, name, value in CONSTANTS:
        rows.add(Line(label, value, "general", name, role="fixed"))
    body = [[a, "amortisation", i] for i, a in enumerate(AMORTISATIONS, start=1)]
    first, last = grid(book, ws, rows.row, 1, ["Profile", "of", "Code"], body, [None, None, "int"],
                       ["fixed", "fixed", "fixed"], ["amort_profiles"])
    book.name("mezz_profiles", ws, f"A{first}:A{first + len(MEZZ_AMORTS) - 1}")
    rows.blocks.append((rows.row - 1, last))
    rows.row = last + 1
    rows.section(f"Ruleset {rs.version}: Monte Carlo (used by the engine only)")
    for key, value in rs.monte_carlo.items():
        rows.add(Line(f"Monte Carlo {key.replace('_', ' ')}", value, "general", None, role="fixed",
                      note="engine result, not recalculated"))


def _run(rows: Rows, src: Source) -> None:
    m = src.run.meta
    rows.section("Run")
    for label, value, fmt in (("Run id", src.run.run_id, None), ("Seed", m["seed"], "int"),
                              ("Top-N", m["topn"], "int"), ("Sample", m["sample"], "int"),
                              ("Gates applied", "Yes" if m["gates"] else "No", None),
                              ("Permutations", m["cardinality"], "count"), ("Evaluated", m["evaluated"], "count"),
                              ("Tier counts", ", ".join(f"{t} {n:,}" for t, n in m["counts"].items()), None),
                              ("Engine version", m["engine_version"], None),
                              ("Ruleset", f"{m['ruleset']['version']} ({m['ruleset']['sha256']})", None),
                              ("Created", m["created_at"], None)):
        rows.add(Line(label, "—" if value is None else value, fmt, None, role="fixed"))

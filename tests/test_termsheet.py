"""Term sheets (issue 4): the workbook read back with openpyxl carries the engine's inputs and KPIs, its formulas
sit where docs/termsheet.md says, the bytes are reproducible, and the CLI and service fail cleanly.

Expected numbers come from the run's Top-N entry, ``engine.schedule`` and the project, never from constants.
The values of the formulas are checked by tests/test_termsheet_libreoffice.py (LibreOffice recalculation).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pytest
from openpyxl.worksheet.formula import ArrayFormula

from phase1lib import ops, service, termsheet
from phase1lib.cli import main
from phase1lib.engine import schedule
from phase1lib.engine.cashflows import STRESS_NAMES
from phase1lib.engine.evaluate import LIMITS
from phase1lib.engine.runner import RunResult, run
from phase1lib.engine.structure import structure_detail
from phase1lib.errors import ConflictError, DisabledError, NotFoundError
from phase1lib.presets import preset_ranges
from phase1lib.project import TENANT_RATINGS, derive, load_project, parse_project
from phase1lib.ruleset import RATINGS, load_ruleset, ruleset_from_bytes
from phase1lib.runs import load_run, save_run
from phase1lib.store import SQLiteStore
from phase1lib.termsheet import printing
from phase1lib.termsheet.cashflows import TITLE_COLUMNS, cash_columns

ROOT = Path(__file__).resolve().parents[1]
MIXED = {"senior_tenor": [12], "senior_coupon": [0.05], "senior_dscr": [1.3],
         "senior_amort": ["sculpted", "annuity", "level", "bullet"], "indexation_mode": ["flat", "CPI_capped"],
         "zcis_tenor_years": [5], "io_months": [0, 12], "wrap": [False, True], "mezz_on": [False, True]}


@pytest.fixture(scope="module")
def london() -> RunResult:
    """The London sample with the current_1920 preset (rank 1: 20-year sculpted senior at 4 %, 1.35x)."""
    return run(load_project(ROOT / "examples" / "london_dc_alpha.json"), preset_ranges("current_1920"))


@pytest.fixture(scope="module")
def mixed() -> RunResult:
    """Every senior profile with and without wrap, IO and a (sculpted) mezz; gates off so all are ranked."""
    return run(load_project(ROOT / "examples" / "london_dc_alpha.json"), MIXED, gates=False, topn=200)


def first_rank(result: RunResult, **want: Any) -> int:
    """The first rank whose structure has the given values (io=True: some IO)."""
    for row in result.top:
        s = row["structure"]
        if all((s["io_months"] > 0) == v if k == "io" else s.get(k) == v for k, v in want.items()):
            return row["rank"]
    raise AssertionError(f"no ranked structure with {want}")


@pytest.fixture(scope="module")
def shapes(london, mixed) -> dict[str, tuple[RunResult, int]]:
    return {
        "sculpted": (london, 1),
        "bullet_mezz": (mixed, first_rank(mixed, senior_amort="bullet", mezz_on=True, wrap=False)),
        "wrap_io": (mixed, first_rank(mixed, senior_amort="annuity", wrap=True, io=True, mezz_on=False)),
        "level_sidecar": (mixed, first_rank(mixed, senior_amort="level", indexation_mode="flat", mezz_on=True)),
        "bullet_wrap": (mixed, first_rank(mixed, senior_amort="bullet", wrap=True, mezz_on=False)),
    }


_EXPORTS: dict[tuple[str, int], bytes] = {}


def workbook(result: RunResult, rank: int) -> openpyxl.Workbook:
    """The exported workbook read back with openpyxl (formulas as text); exports are cached per run and rank."""
    key = (result.run_id, rank)
    if key not in _EXPORTS:
        _EXPORTS[key] = termsheet.to_xlsx_bytes(result, rank)
    return openpyxl.load_workbook(io.BytesIO(_EXPORTS[key]))


def named(wb: openpyxl.Workbook, name: str) -> Any:
    """The (first) cell a workbook name points at."""
    sheet, ref = wb.defined_names[name].attr_text.rsplit("!", 1)
    return wb[sheet.strip("'")][ref.replace("$", "").split(":")[0]]


def column(wb: openpyxl.Workbook, name: str) -> list[Any]:
    """Cells of a Cash Flows column name (periods 1..N)."""
    sheet, ref = wb.defined_names[name].attr_text.rsplit("!", 1)
    return [row[0] for row in wb[sheet.strip("'")][ref.replace("$", "")]]


def engine_schedule(result: RunResult, rank: int) -> list[dict[str, Any]]:
    entry = result.top_row(rank)
    return schedule(parse_project(result.meta["project"]), entry["structure"],
                    closing_date=dt.date.fromisoformat(result.meta["closing_date"]))


# ---- the workbook -------------------------------------------------------------------------------------

STRUCTURE_KEYS = ("senior_tenor", "senior_coupon", "senior_dscr", "senior_amort", "io_months", "indexation_mode",
                  "zcis_tenor_years", "wrap", "mezz_on", "mezz_coupon", "mezz_dscr", "mezz_tenor", "mezz_amort",
                  "sidecar_haircut_pct")
PROJECT_KEYS = ("gross_it_load_mw", "pue", "tenant_rating", "opex_pct", "capex_cost_per_mw", "capex_market_per_mw",
                "land_fees_total", "indexation_basis", "base_cpi", "cpi_floor", "cpi_cap", "zcis_rate",
                "zcis_basis_bps",
                "arranger_fee_pct", "legal_fee_pct", "rating_fee_pct", "admin_bps", "wrap_premium_bps",
                "wrap_dscr_relief", "residual_value_pct", "lease_years", "periods_per_year")
OUTPUT_NAMES = ("senior_amount", "binding_constraint", "senior_rate", "mezz_amount", "dsra_amount", "sidecar_gross",
                "sidecar_net", "day_one_value", "equity_required", "min_dscr", "avg_dscr", "llcr", "wal_years", "ltv",
                "advance_factor", "wacd", "total_interest", "equity_irr", "senior_rating", "viable", "near_miss",
                "tier", "repo_eligible", "gate_a_failures", "gate_b_failures",
                *(f"stress_{s}" for s in STRESS_NAMES), *(f"stress_total_{s}" for s in STRESS_NAMES))
PERIOD_SHEETS = ("Cash Flows", "Sizing Flows", "Stress Flows", "Indices")


def is_formula(cell: Any) -> bool:
    return cell.data_type == "f" or isinstance(cell.value, ArrayFormula)


def test_sheets_names_and_properties(london) -> None:
    wb = workbook(london, 1)
    assert wb.sheetnames == ["Term Sheet", "Assumptions", "Sizing", "Outputs", "Gates", "Sensitivity", "Cash Flows",
                             "Sizing Flows", "Stress Flows", "Indices"]
    created = dt.datetime.fromisoformat(london.meta["created_at"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert wb.properties.creator == "Phase-1 Workbench"
    assert wb.properties.created == created and wb.properties.modified == created
    for name in (*STRUCTURE_KEYS, *PROJECT_KEYS, "gross_monthly_rent", *OUTPUT_NAMES, "funding_need", "cf_dscr",
                 "cf_senior_closing", "cf_equity_flow", "senior_limits", "sens_matrix"):
        assert name in wb.defined_names, name
    cash = wb["Cash Flows"]
    assert cash.freeze_panes == "D6"
    assert cash.print_title_rows == "$4:$5"
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape"
        assert int(ws.page_setup.paperSize) == 9  # A4


@pytest.mark.parametrize("shape", ["sculpted", "bullet_mezz", "wrap_io", "level_sidecar", "bullet_wrap"])
def test_named_inputs_hold_the_exported_structure_and_project(shapes, shape) -> None:
    result, rank = shapes[shape]
    point = result.top_row(rank)["structure"]
    project = parse_project(result.meta["project"])
    wb = workbook(result, rank)
    for key in STRUCTURE_KEYS:
        cell = named(wb, key)
        if key in point:
            assert cell.value == point[key] and not is_formula(cell), key
            assert cell.font.color.rgb.endswith("0B3FB0"), key  # blue: an input
        elif key == "mezz_tenor" and project.mezz_tenor is None:
            assert cell.value == "=senior_tenor"
        else:
            assert cell.value == getattr(project, key), key  # the project's default for a structure without mezz
    for key in PROJECT_KEYS:
        assert named(wb, key).value == getattr(project, key), key
    rent = "gross_monthly_rent" if project.gross_monthly_rent is not None else "rent_per_kwh_month"
    assert named(wb, rent).value == getattr(project, rent)
    rs = load_ruleset()
    ladder = column(wb, "ladder_dscr")
    assert [c.value for c in ladder] == [rs.ladder(project.country)[r] for r in ("AAA", "AA", "A", "BBB", "BB")]
    assert [c.value for c in column(wb, "tenant_af_max")] == [rs.tenant(t)["af_max"] for t in TENANT_RATINGS]
    assert [c.value for c in column(wb, "spread_bps")] == [rs.spread_bps(r) for r in RATINGS]


@pytest.mark.parametrize("shape", ["sculpted", "bullet_mezz"])
def test_every_engine_number_is_a_formula(shapes, shape) -> None:
    """Named outputs are formulas; the period sheets hold no pasted number beyond period, date and lease year."""
    result, rank = shapes[shape]
    wb = workbook(result, rank)
    for name in OUTPUT_NAMES:
        assert is_formula(named(wb, name)), name
    for title in PERIOD_SHEETS:
        ws = wb[title]
        for row in ws.iter_rows(min_row=6):
            for cell in row:
                if isinstance(cell.value, int | float | dt.datetime) and not isinstance(cell.value, bool):
                    header = ws.cell(row=5, column=cell.column).value
                    assert header in ("Period", "Date", "Lease\nyear") or (title == "Indices" and cell.value == 1.0), (
                        title, cell.coordinate, header, cell.value)


def test_formulas_read_like_the_methodology(shapes) -> None:
    result, rank = shapes["bullet_mezz"]
    wb = workbook(result, rank)
    assert named(wb, "day_one_value").value == "=senior_amount+mezz_amount+sidecar_net-dsra_amount"
    assert named(wb, "equity_required").value == "=funding_need-day_one_value"
    assert named(wb, "funding_need").value == "=project_capex+upfront_fees"
    assert named(wb, "senior_amount").value == "=MAX(smallest_limit,0)"
    assert named(wb, "smallest_limit").value == "=MIN(senior_limits)"
    assert named(wb, "binding_constraint").value == "=INDEX(senior_limit_names,MATCH(smallest_limit,senior_limits,0))"
    assert named(wb, "senior_rate").value.startswith("=IF(wrap,ROUND(senior_coupon-(underlying_spread-aaa_spread)")
    assert named(wb, "stress_cpi_0").value == '=IF(senior_amount>0,MIN(sf_dscr_cpi_0),"")'
    assert [c.value for c in column(wb, "senior_limit_names")] == list(LIMITS)
    opening, interest, principal, closing = (column(wb, f"cf_senior_{k}") for k in ("opening", "interest",
                                                                                    "principal", "closing"))
    o, p, c = (x[0].column_letter for x in (opening, principal, closing))
    r = opening[1].row
    assert opening[1].value == f"={c}{r - 1}"
    assert interest[1].value == f"=IF(A{r}<=note_periods,senior_rate_periodic*{o}{r},0)"
    assert closing[1].value == f"={o}{r}-{p}{r}"
    assert column(wb, "cf_senior_service")[0].value == "=senior_amount*INDEX(sz_unit_service,A7)"
    assert isinstance(named(wb, "senior_min_principal").value, ArrayFormula)
    found = formulas(wb)
    assert len(found) > 8000
    assert not any("#REF" in f for f in found.values())


def test_text_is_never_a_formula(london) -> None:
    """A project title that looks like a formula (formula injection) is written as a string everywhere."""
    title = '=HYPERLINK("http://x.example","click")'
    hostile = run(parse_project({**london.meta["project"], "title": title}),
                  {"senior_tenor": [20], "senior_coupon": [0.04], "senior_dscr": [1.35]}, gates=False)
    wb = openpyxl.load_workbook(io.BytesIO(termsheet.to_xlsx_bytes(hostile, 1)))
    seen = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and "HYPERLINK" in cell.value:
                    assert cell.data_type == "s", (ws.title, cell.coordinate)
                    seen += 1
        assert "HYPERLINK" in ws.oddFooter.left.text
    assert seen >= 10
    assert named(wb, "tier").data_type == "f"  # the writer's own formulas stay formulas
    assert not any("HYPERLINK" in f for f in formulas(wb).values())
    assert termsheet.term_sheet_json(hostile, 1)["header"]["title"] == title


def test_engine_results_are_labelled(shapes) -> None:
    """The Monte Carlo, the hint and the rank stay engine values (purple), labelled as not recalculated."""
    for result, rank in shapes.values():
        k = result.top_row(rank)["kpis"]
        wb = workbook(result, rank)
        sens = wb["Sensitivity"]
        cells = {c.value: c for row in sens.iter_rows() for c in row if c.value is not None}
        assert "Monte Carlo CPI stress (engine result, not recalculated)" in cells
        for key in ("mc_breach_probability", "mc_p5_min_dscr"):
            assert cells[k[key]].font.color.rgb.endswith("7030A0")
        gates = {c.value for row in wb["Gates"].iter_rows() for c in row if c.value is not None}
        assert (k["hint"] if k["near_miss"] and k["hint"] else "—") in gates
        texts = {str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None}
        for reason in k["repo_reasons"]:
            assert reason in texts
        for failure in k["gate_a"] + k["gate_b"]:
            assert any(t.startswith(f"{failure['check']}: ") for t in texts), failure


def test_enumerated_inputs_have_drop_downs(london) -> None:
    ws = workbook(london, 1)["Assumptions"]
    lists = {dv.formula1: {str(r) for r in dv.sqref.ranges} for dv in ws.data_validations.dataValidation}
    assert '"sculpted,annuity,level,bullet"' in lists and '"flat,CPI_capped"' in lists
    senior_amort = named(workbook(london, 1), "senior_amort").coordinate
    assert senior_amort in lists['"sculpted,annuity,level,bullet"']


def test_package_layout() -> None:
    """One module per concept, none over ~700 lines, and only openpyxl's public API."""
    folder = ROOT / "phase1lib" / "termsheet"
    modules = sorted(folder.glob("*.py"))
    assert len(modules) >= 10
    for module in modules:
        text = module.read_text()
        assert len(text.splitlines()) <= 700, module.name
        assert not re.search(r"openpyxl\.\S*\._|\._fonts|_named_styles|IndexedList|ExcelWriter|import _", text), module


def formulas(wb: openpyxl.Workbook) -> dict[str, str]:
    return {f"{ws.title}!{c.coordinate}": str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row
            if is_formula(c)}


# ---- reproducibility ----------------------------------------------------------------------------------

def test_byte_identical_and_timestamps_from_the_run(london, tmp_path) -> None:
    first = termsheet.to_xlsx_bytes(london, 1)
    assert termsheet.to_xlsx_bytes(london, 1) == first
    created = london.meta["created_at"]
    stamp = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        for info in archive.infolist():
            assert info.date_time == (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute,
                                      stamp.second - stamp.second % 2), info.filename
        core = archive.read("docProps/core.xml").decode()
    assert core.count(created) == 2 and "Phase-1 Workbench" in core
    save_run(london, tmp_path)
    assert termsheet.to_xlsx_bytes(load_run(london.run_id, tmp_path), 1) == first


def test_byte_identical_in_another_process(london, tmp_path) -> None:
    """Another interpreter with another hash seed writes the same bytes (no set or dict order leaks in)."""
    save_run(london, tmp_path)
    code = ("import hashlib, sys; from pathlib import Path; from phase1lib.runs import load_run; "
            "from phase1lib.termsheet import to_xlsx_bytes; "
            "print(hashlib.sha256(to_xlsx_bytes(load_run(sys.argv[1], Path(sys.argv[2])), 1)).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code, london.run_id, str(tmp_path)], capture_output=True, text=True,
                         env=env, check=True, timeout=120)
    assert out.stdout.strip() == hashlib.sha256(termsheet.to_xlsx_bytes(london, 1)).hexdigest()


# ---- JSON ---------------------------------------------------------------------------------------------

def test_json_has_the_same_content(shapes) -> None:
    for result, rank in shapes.values():
        entry = result.top_row(rank)
        k = entry["kpis"]
        doc = termsheet.term_sheet_json(result, rank)
        json.dumps(doc, allow_nan=False)
        assert set(doc) >= {"header", "capital_structure", "sidecar", "dsra", "fees", "wrap", "day_one_value", "equity",
                            "repo", "gates", "monte_carlo", "schedule", "stress", "assumptions"}
        assert doc["header"]["run_id"] == result.run_id and doc["header"]["rank"] == rank
        assert doc["header"]["created_at"] == result.meta["created_at"]
        assert doc["capital_structure"]["senior"]["amount"] == k["senior_amount"]
        assert doc["capital_structure"]["senior"]["wal_years"] == k["wal_years"]
        assert doc["day_one_value"]["value"] == k["day_one_value"]
        assert doc["equity"]["required"] == k["equity_required"] and doc["equity"]["irr"] == k["equity_irr"]
        assert doc["dsra"]["amount"] == k["dsra_amount"]
        assert doc["repo"]["reasons"] == k["repo_reasons"]
        assert doc["gates"]["gate_a"] == k["gate_a"] and doc["gates"]["gate_b"] == k["gate_b"]
        assert doc["monte_carlo"]["breach_probability"] == k["mc_breach_probability"]
        assert doc["schedule"] == engine_schedule(result, rank)
        assert [s["min_dscr"] for s in doc["stress"]["scenarios"]] == list(k["stress"].values())
        assert doc["assumptions"]["project"] == result.meta["project"]
        assert doc["structure"] == entry["structure"]
        detail = structure_detail(parse_project(result.meta["project"]), entry["structure"])
        assert doc["capital_structure"]["senior"]["sizing_limits"] == detail["limits"]
        assert doc["dsra"]["release_period"] == detail["test_periods"]
        mezz = doc["capital_structure"]["mezzanine"]
        assert (mezz is None) == (not entry["structure"]["mezz_on"])


def test_no_unique_irr_is_blank(london) -> None:
    """Equity required below zero (cheap capex, a large sidecar): the engine's IRR is null; the model's IRR is the
    formula that gives a blank then (its value is checked in tests/test_termsheet_libreoffice.py)."""
    cheap = run(parse_project({**london.meta["project"], "capex_cost_per_mw": 1_000_000, "capex_market_per_mw": None}),
                {"senior_tenor": [20], "senior_coupon": [0.04], "senior_dscr": [1.2], "indexation_mode": ["flat"],
                 "zcis_tenor_years": [20]}, gates=False)
    assert cheap.top_row(1)["kpis"]["equity_irr"] is None
    wb = workbook(cheap, 1)
    assert named(wb, "equity_irr").value == '=IF(irr_ok,(1/irr_x)^periods_per_year-1,"")'
    assert named(wb, "irr_valid").value.startswith("=AND(equity_required>0,")
    assert termsheet.term_sheet_json(cheap, 1)["equity"]["irr"] is None


# ---- ruleset v2 (METHODOLOGY section 11) ----------------------------------------------------------------

V2_NAMES = ("market_coupon", "benchmark_rate", "curve_tenors", "curve_rates", "term_bps_per_year", "term_above_years",
            "cap_rate", "income_value", "lending_value", "max_ltv", "ltv_limit", "limit_ltv", "coupon_offered",
            "pricing_failed", "pricing_hint", "breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi",
            "breakeven_cpi_capped", "sf_be_served", "sf_be_rent_need", "sf_be_opex_room", "be_lo", "be_floor_ok")


@pytest.fixture(scope="module")
def v2_runs(london) -> dict[str, RunResult]:
    """London under ruleset v2: 20 years at 1.35x priced at market (0.0600) and offered at 0.05 (fails pricing);
    the same market note for a project with a curve override and a cap rate."""
    v2 = load_ruleset("v2")
    project = london.meta["project"]
    override = parse_project({**project, "benchmark_curve": [[3, 0.03], [12, 0.036], [25, 0.041]],
                              "cap_rate": 0.065})
    return {
        "market": run(parse_project(project), {"senior_tenor": [20], "senior_dscr": [1.35]}, ruleset=v2,
                      gates=False),
        "offered": run(parse_project(project), {"senior_tenor": [20], "senior_coupon": [0.05], "senior_dscr": [1.35]},
                       ruleset=v2, gates=False),
        "override": run(override, {"senior_tenor": [20], "senior_dscr": [1.35]}, ruleset=v2, gates=False),
    }


def test_v2_workbook_prices_the_note_and_names_section_11(v2_runs) -> None:
    """A "market" point's coupon is the formula =market_coupon; the curve, term premium, cap rate and the v2 tables
    are labelled inputs; ltv is a sizing limit before funding_need and the KPI ltv is against lending value."""
    from phase1lib.engine.evaluate import LIMITS_V2

    rs = load_ruleset("v2")
    wb = workbook(v2_runs["market"], 1)
    for name in V2_NAMES:
        assert name in wb.defined_names, name
    coupon = named(wb, "senior_coupon")
    assert coupon.value == "=market_coupon" and coupon.font.color.rgb.endswith("0B3FB0")
    assert named(wb, "market_coupon").value == ("=ROUND(benchmark_rate+(underlying_spread+term_bps_per_year"
                                                "*MAX(senior_tenor-term_above_years,0))/10000,10)")
    assert named(wb, "coupon_offered").value == "=NOT(_xlfn.ISFORMULA(senior_coupon))"
    assert named(wb, "ltv").value == "=senior_amount/lending_value"
    assert named(wb, "lending_value").value == "=MIN(market_value,income_value)"
    assert named(wb, "ltv_limit").value == "=max_ltv*lending_value"
    assert named(wb, "limit_ltv").value == "=ltv_limit"
    assert [c.value for c in column(wb, "senior_limit_names")] == list(LIMITS_V2)
    assert [c.value for c in column(wb, "curve_tenors")] == [t for t, _ in rs.benchmark_curve("GBP")]
    assert [c.value for c in column(wb, "curve_rates")] == [r for _, r in rs.benchmark_curve("GBP")]
    assert [c.value for c in column(wb, "spread_bps")] == [rs.spread_bps(r) for r in RATINGS]
    assert [c.value for c in column(wb, "tenant_max_ltv")] == [rs.max_ltv(t) for t in TENANT_RATINGS]
    assert named(wb, "cap_rate").value == rs.cap_rate("UK")
    assert (named(wb, "term_bps_per_year").value, named(wb, "term_above_years").value) == rs.term_premium
    assert named(wb, "breakeven_cpi_max").value == rs.breakevens["cpi_max"]
    assert named(wb, "breakeven_rent_cut").value == '=IF(be_has_service,1-MAX(sf_be_rent_need),"")'
    checks = [c.value for c in column(wb, "gate_checks")]
    assert checks[-1] == "pricing" and "wrap_underlying" in checks
    for name in ("breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi", "breakeven_cpi_capped",
                 "market_coupon", "lending_value", "pricing_hint"):
        assert is_formula(named(wb, name)), name
    texts = {str(c.value) for row in wb["Term Sheet"].iter_rows() for c in row if c.value is not None}
    assert {"Pricing and lending value (ruleset v2)", "Breakevens (min senior DSCR to 1.00x)", "Market coupon",
            "Loan to lending value"} <= texts
    found = formulas(wb)
    assert not any("#REF" in f for f in found.values())
    assert sum("_xlfn.ISFORMULA" in f for f in found.values()) == 1


def test_v2_offered_coupon_and_overrides_are_inputs(v2_runs) -> None:
    offered = workbook(v2_runs["offered"], 1)
    coupon = named(offered, "senior_coupon")
    assert coupon.value == 0.05 and not is_formula(coupon) and coupon.font.color.rgb.endswith("0B3FB0")
    override = v2_runs["override"]
    project = parse_project(override.meta["project"])
    wb = workbook(override, 1)
    assert [[c.value for c in column(wb, k)] for k in ("curve_tenors", "curve_rates")] == [
        [t for t, _ in project.benchmark_curve], [r for _, r in project.benchmark_curve]]
    assert named(wb, "cap_rate").value == 0.065


def test_v2_json_carries_pricing_lending_value_and_breakevens(v2_runs) -> None:
    """The JSON term sheet under v2: the structure keeps "market", the coupon used is the KPI, the pricing check
    is the engine's (with its hint), the lending value is the engine's derived fields (section 11.4's worked check
    for London), the breakevens are the engine's."""
    for key, result in v2_runs.items():
        entry = result.top_row(1)
        k = entry["kpis"]
        doc = termsheet.term_sheet_json(result, 1)
        json.dumps(doc, allow_nan=False)
        assert doc["structure"]["senior_coupon"] == entry["structure"]["senior_coupon"]
        senior = doc["capital_structure"]["senior"]
        assert senior["coupon"] == k["senior_coupon"] and senior["market_coupon"] == k["market_coupon"]
        assert doc["pricing"]["coupon_used"] == k["senior_coupon"]
        assert doc["pricing"]["market_coupon"] == k["market_coupon"]
        failure = [f for f in k["gate_b"] if f["check"] == "pricing"]
        assert doc["pricing"]["check"]["passed"] == (not failure)
        assert doc["pricing"]["check"]["hint"] == (failure[0]["hint"] if failure else None)
        assert doc["pricing"]["check"]["applies"] == (entry["structure"]["senior_coupon"] != "market")
        derived = derive(parse_project(result.meta["project"]), load_ruleset("v2"))
        for name in ("income_value", "lending_value", "ltv_limit", "cap_rate", "max_ltv"):
            assert doc["lending_value"][name] == getattr(derived, name), (key, name)
        assert doc["lending_value"]["ltv"] == k["ltv"]
        for name in ("breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi", "breakeven_cpi_capped"):
            assert doc["breakevens"][name] == k[name], (key, name)
        assert "ltv" in senior["sizing_limits"]
    market = termsheet.term_sheet_json(v2_runs["market"], 1)
    assert market["structure"]["senior_coupon"] == "market" and market["pricing"]["basis"] == "market"
    assert market["pricing"]["market_coupon"] == pytest.approx(0.06, abs=1e-12)  # section 11.4
    assert market["lending_value"]["income_value"] == pytest.approx(23_400_000 / 0.0575, rel=1e-12)
    assert market["lending_value"]["ltv_limit"] == pytest.approx(0.70 * 23_400_000 / 0.0575, rel=1e-12)
    offered = termsheet.term_sheet_json(v2_runs["offered"], 1)
    assert offered["pricing"]["check"] == {"applies": True, "passed": False, "value": 0.05, "threshold": 0.06,
                                           "hint": "raise senior_coupon to 0.0600"}
    v1 = termsheet.term_sheet_json(run(load_project(ROOT / "examples" / "london_dc_alpha.json"),
                                       {"senior_tenor": [20], "senior_coupon": [0.05], "senior_dscr": [1.35]},
                                       gates=False), 1)
    assert not {"pricing", "lending_value", "breakevens"} & set(v1)
    assert "market_coupon" not in v1["capital_structure"]["senior"]


def test_v2_exports_are_byte_identical_and_the_cli_writes_them(v2_runs, tmp_path, monkeypatch, capsys) -> None:
    result = v2_runs["market"]
    first = termsheet.to_xlsx_bytes(result, 1)
    assert termsheet.to_xlsx_bytes(result, 1) == first
    monkeypatch.delenv("PHASE1_REDIS_URL", raising=False)
    monkeypatch.setenv("PHASE1_HOME", str(tmp_path))
    save_run(result, tmp_path)
    target = tmp_path / "v2.xlsx"
    code, out, _ = cli(capsys, "export", result.run_id, "--rank", "1", "--output", str(target))
    assert code == 0, out
    assert target.read_bytes() == first


def workbook_cpi_search(minima: np.ndarray, xs: np.ndarray, base: float, floor: float, step_bps: float,
                        level: float, steps: int) -> int:
    """The workbook's CPI search (termsheet/breakevens.py) on given grid minima: the split index s of
    be_floor_index, Q(j) = P(j) and (j < s or P(s-1) and P(s)), bisection from (-1, J + 1) in ``steps`` rows.
    Returns lo: the breakeven's grid index (-1: x_0 fails)."""
    last = len(xs) - 1
    s = max(0, min(last + 1, -math.floor(-round((floor - base) * 10000 / step_bps, 6))))
    assert s == int(np.sum(xs < floor)), (s, base, floor)  # the formula counts the grid points below the floor
    ok = minima >= level - 1e-9
    floor_ok = (s == 0 or ok[s - 1]) and (s > last or ok[s])
    lo, hi = -1, last + 1
    for _ in range(steps):
        if hi - lo > 1:
            mid = (lo + hi) // 2
            if ok[mid] and (mid < s or floor_ok):
                lo = mid
            else:
                hi = mid
    assert hi - lo <= 1
    return lo


def test_the_workbooks_cpi_search_finds_the_engines_breakeven() -> None:
    """The bisection of the model (three evaluations per step, docs/termsheet.md) gives the engine's breakeven_cpi
    (the last grid point up to which every point passes) over projects whose min DSCR is not monotone in CPI: base
    CPI below, inside and above the collar, a collar of one point, hedged and unhedged years, no opex, a flat
    basis; every profile, both modes, low and high DSCR targets, with wraps and IO."""
    from phase1lib.engine.breakevens import breakevens, cpi_cash, cpi_grid
    from phase1lib.engine.evaluate import evaluate_detail, make_context, table_from_points
    from phase1lib.termsheet.breakevens import search_steps

    rs = load_ruleset("v2")
    london = load_project(ROOT / "examples" / "london_dc_alpha.json").to_dict()
    points = [{"senior_tenor": t, "senior_coupon": "market", "senior_dscr": k, "senior_amort": a,
               "indexation_mode": m, "zcis_tenor_years": h, "io_months": io, "wrap": w, "mezz_on": False,
               "sidecar_haircut_pct": 0.15}
              for t, a in ((20, "sculpted"), (15, "annuity"), (12, "level"), (10, "bullet"))
              for k in (1.2, 1.45) for m in ("flat", "CPI_capped") for h in (0, 4, 12)
              for io, w in ((0, False), (12, True))]
    checked = non_monotone = 0
    for base, floor, cap in ((-0.03, 0.0, 0.03), (0.0, 0.01, 0.04), (0.02, 0.01, 0.04), (0.05, 0.01, 0.04),
                             (0.015, 0.02, 0.02), (0.005, 0.0, 0.05)):
        for opex, basis in ((0.22, "CPI_capped"), (0.0, "CPI_capped"), (0.45, "CPI_capped"), (0.22, "flat")):
            project = parse_project({**london, "base_cpi": base, "cpi_floor": floor, "cpi_cap": cap,
                                     "zcis_rate": 0.02, "opex_pct": opex, "indexation_basis": basis})
            ctx = make_context(project, rs)
            table = table_from_points(points)
            engine = breakevens(ctx, table)
            out, det = evaluate_detail(ctx, table)
            service = out["senior_amount"][:, None] * det.senior.u[det.cls]
            served = (np.arange(1, project.n_periods + 1) <= det.senior.test_periods[det.cls][:, None]) & (service > 0)
            xs = cpi_grid(ctx)
            for row in range(len(points)):
                if not served[row].any():
                    continue
                cash = cpi_cash(ctx, int(det.case[row]), xs)
                minima = np.where(served[row], cash / np.where(served[row], service[row], 1.0), np.inf).min(axis=1)
                passes = minima >= 1.0 - 1e-9
                fails = np.flatnonzero(~passes)
                non_monotone += bool(len(fails) and passes[fails[0]:].any())  # a naive bisection could miss it
                lo = workbook_cpi_search(minima, xs, base, floor, float(rs.breakevens["cpi_step_bps"]),
                                         float(rs.breakevens["dscr"]), search_steps_for(rs, search_steps))
                expected = engine["breakeven_cpi"][row]
                assert (lo < 0) == np.isnan(expected), (base, floor, cap, opex, basis, points[row])
                if lo >= 0:
                    assert xs[lo] == expected, (base, floor, cap, opex, basis, points[row], xs[lo], expected)
                    assert (lo == len(xs) - 1) == bool(engine["breakeven_cpi_capped"][row])
                checked += 1
    assert checked > 2000 and non_monotone >= 10


def search_steps_for(rs: Any, steps: Any) -> int:
    """The workbook's number of bisection rows for a ruleset (as exported)."""
    class _Src:
        ruleset = rs
    return steps(_Src())


def test_rank_outside_top_n_and_a_foreign_ruleset(london) -> None:
    with pytest.raises(NotFoundError, match="rank 99"):
        termsheet.to_xlsx_bytes(london, 99)
    with pytest.raises(NotFoundError):
        termsheet.term_sheet_json(london, 0)
    other = ruleset_from_bytes(json.dumps({**load_ruleset().data, "description": "changed"}).encode())
    with pytest.raises(ConflictError, match="not the one run"):
        termsheet.to_xlsx_bytes(london, 1, ruleset=other)


# ---- presentation -------------------------------------------------------------------------------------

def test_currency_formats() -> None:
    assert termsheet.number_formats("GBP")["money"].startswith('"£"#,##0.00;')
    assert termsheet.number_formats("EUR")["money"].startswith('"€"#,##0.00;')
    assert termsheet.number_formats("USD")["money"].startswith('"$"#,##0.00;')
    assert termsheet.number_formats("JPY")["money"].startswith('"¥"#,##0;')
    assert termsheet.number_formats("GBP")["ratio"] == '0.00"x"'
    assert termsheet.number_formats("GBP")["date"] == "DD-MMM-YYYY"


def test_wide_cash_flows_print_in_readable_blocks(shapes) -> None:
    for result, rank in shapes.values():
        src = termsheet.load_source(result, rank)
        cols = [c.col for c in cash_columns(src)]
        blocks = printing.print_blocks(cols, TITLE_COLUMNS)
        assert [c for b in blocks for c in b] == cols[TITLE_COLUMNS:]
        title = printing.px(cols[:TITLE_COLUMNS])
        for block in blocks:
            assert printing.A4_LANDSCAPE_PX / (title + printing.px(block)) >= printing.MIN_PRINT_SCALE
        ws = workbook(result, rank)["Cash Flows"]
        if len(blocks) > 1:
            assert ws.page_setup.scale >= 100 * printing.MIN_PRINT_SCALE - 1
            assert len(ws.col_breaks.brk) == len(blocks) - 1
        amounts = [max(abs(r["senior_opening"]), abs(r["revenue_base"])) for r in src.schedule]
        widest = max(len(f"£{x:,.0f}") for x in amounts)
        assert min(c.width for c in cols if c.key in ("senior_opening", "revenue_base")) >= widest


# ---- CLI and service ----------------------------------------------------------------------------------

@pytest.fixture
def home(london, tmp_path, monkeypatch) -> Path:
    """A PHASE1_HOME (SQLite store) with the London run saved."""
    monkeypatch.delenv("PHASE1_REDIS_URL", raising=False)
    monkeypatch.setenv("PHASE1_HOME", str(tmp_path))
    save_run(london, tmp_path)
    return tmp_path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_the_xlsx(london, home, capsys) -> None:
    target = home / "out" / "term-sheet.xlsx"
    code, out, _ = cli(capsys, "export", london.run_id, "--rank", "1", "--output", str(target))
    assert code == 0
    assert target.read_bytes() == termsheet.to_xlsx_bytes(london, 1)
    summary = json.loads(out)
    assert summary["bytes"] == target.stat().st_size and summary["format"] == "xlsx"
    assert summary["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert not list(target.parent.glob(".*.tmp"))


def test_cli_json_to_stdout_and_to_a_file(london, home, capsys) -> None:
    code, out, _ = cli(capsys, "export", london.run_id, "--rank", "2", "--format", "json")
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(termsheet.term_sheet_json(london, 2)))
    target = home / "rank2.json"
    code, out, _ = cli(capsys, "export", london.run_id, "--rank", "2", "--output", str(target))
    assert code == 0 and json.loads(out)["format"] == "json"
    assert json.loads(target.read_text()) == json.loads(json.dumps(termsheet.term_sheet_json(london, 2)))


@pytest.mark.parametrize(("args", "exit_code", "words"), [
    (["--rank", "99", "--output", "x.xlsx"], 4, "outside the Top-"),
    (["--rank", "0", "--format", "json"], 4, "outside the Top-"),
    (["--rank", "1"], 2, "output"),
])
def test_cli_clean_errors(london, home, capsys, args, exit_code, words) -> None:
    code, out, err = cli(capsys, "export", london.run_id, *args)
    assert code == exit_code
    assert words in json.loads(out)["message"] and "Traceback" not in err


def test_cli_unknown_run(home, capsys) -> None:
    code, out, _ = cli(capsys, "export", "0123456789abcdef", "--rank", "1", "--output", str(home / "x.xlsx"))
    assert code == 4 and "unknown run" in json.loads(out)["message"]


def test_cli_unwritable_path(london, home, capsys) -> None:
    blocker = home / "a-file"
    blocker.write_text("not a folder")
    for target in (blocker / "x.xlsx", home):  # a file as the parent folder; an existing folder
        code, out, err = cli(capsys, "export", london.run_id, "--rank", "1", "--output", str(target))
        assert code == 2, out
        error = json.loads(out)
        assert error["error"] == "invalid_input" and error["errors"][0]["field"] == "output"
        assert "Traceback" not in err


def test_docs_exports_flag_off_refuses(london, home, tmp_path, capsys) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        assert service.export_term_sheet(store, london.run_id, 1, "json", home=home)[1].endswith(".json")
        ops.update_flags(store, 0, {"docs_exports": False}, actor="test")
        with pytest.raises(DisabledError, match="docs_exports"):
            service.export_term_sheet(store, london.run_id, 1, home=home)
    finally:
        store.close()
    cli_store = SQLiteStore(home / "phase1.db")
    try:
        ops.update_flags(cli_store, 0, {"docs_exports": False}, actor="test")
    finally:
        cli_store.close()
    code, out, _ = cli(capsys, "export", london.run_id, "--rank", "1", "--output", str(home / "x.xlsx"))
    assert code == 5 and "docs_exports" in json.loads(out)["message"]
    assert not (home / "x.xlsx").exists()

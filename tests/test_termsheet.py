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
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from phase1lib import ops, service, termsheet
from phase1lib.cli import main
from phase1lib.engine import schedule
from phase1lib.engine.runner import RunResult, run
from phase1lib.errors import ConflictError, DisabledError, NotFoundError
from phase1lib.presets import preset_ranges
from phase1lib.project import derive, load_project, parse_project
from phase1lib.ruleset import load_ruleset, ruleset_from_bytes
from phase1lib.runs import load_run, save_run
from phase1lib.store import SQLiteStore

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
    """The cell a workbook name points at."""
    sheet, ref = wb.defined_names[name].attr_text.rsplit("!", 1)
    return wb[sheet.strip("'")][ref.replace("$", "")]


def column(wb: openpyxl.Workbook, name: str) -> list[Any]:
    """Cells of a Cash Flows column name (periods 1..N)."""
    sheet, ref = wb.defined_names[name].attr_text.rsplit("!", 1)
    return [row[0] for row in wb[sheet.strip("'")][ref.replace("$", "")]]


def engine_schedule(result: RunResult, rank: int) -> list[dict[str, Any]]:
    entry = result.top_row(rank)
    return schedule(parse_project(result.meta["project"]), entry["structure"],
                    closing_date=dt.date.fromisoformat(result.meta["closing_date"]))


# ---- the workbook -------------------------------------------------------------------------------------

def test_sheets_names_and_properties(london) -> None:
    wb = workbook(london, 1)
    assert wb.sheetnames == ["Term Sheet", "Cash Flows", "Stress", "Assumptions"]
    created = dt.datetime.fromisoformat(london.meta["created_at"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert wb.properties.creator == "Phase-1 Workbench"
    assert wb.properties.created == created and wb.properties.modified == created
    for name in ("SeniorAmount", "DayOneValue", "EquityRequired", "EquityIrr", "FundingNeed", "DsraAmount",
                 "SeniorMinDscr", "SeniorLlcr", "SeniorWal", "CF_SeniorClosing", "CF_EquityFlow"):
        assert name in wb.defined_names, name
    cash = wb["Cash Flows"]
    assert cash.freeze_panes == "D6"
    assert cash.print_title_rows == "$4:$5"
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape"
        assert int(ws.page_setup.paperSize) == 9  # A4


@pytest.mark.parametrize("shape", ["sculpted", "bullet_mezz", "wrap_io", "level_sidecar", "bullet_wrap"])
def test_inputs_and_kpis_match_the_engine(shapes, shape) -> None:
    result, rank = shapes[shape]
    entry = result.top_row(rank)
    k, s = entry["kpis"], entry["structure"]
    rows = engine_schedule(result, rank)
    wb = workbook(result, rank)
    assert named(wb, "SeniorAmount").value == k["senior_amount"]
    assert named(wb, "MezzAmount").value == k["mezz_amount"]
    if not s["wrap"]:
        assert named(wb, "SeniorRate").value == k["senior_rate"]
    else:
        assert named(wb, "UnderlyingSpreadBps").value - named(wb, "AaaSpreadBps").value > 0
    inputs = ["lender_rent_index", "base_rent_index", "cost_index", "senior_principal"]
    inputs += ["mezz_principal"] if s["mezz_on"] else []
    inputs += ["refinancing_service"] if s["senior_amort"] == "bullet" else []
    inputs += ["sidecar"] if any(r["sidecar"] for r in rows) else []
    for key in inputs:
        cells = column(wb, f"CF_{termsheet.camel(key)}")
        assert len(cells) == len(rows)
        for cell, row in zip(cells, rows, strict=True):
            assert cell.value in (row[key], None), (key, row["period"])
            if cell.value is None:  # blank only outside the tranche's life, where the engine has 0
                assert row[key] == 0.0, (key, row["period"])
    dates = [c.value for c in column(wb, "CF_LenderRentIndex")]
    assert len(dates) == len(rows)
    cash = wb["Cash Flows"]
    first = column(wb, "CF_LenderRentIndex")[0].row
    for i, row in enumerate(rows):
        assert cash.cell(row=first + i, column=1).value == row["period"]
        assert cash.cell(row=first + i, column=2).value.date() == dt.date.fromisoformat(row["date"])
    assert cash.cell(row=first - 1, column=2).value.date() == dt.date.fromisoformat(result.meta["closing_date"])
    stress = wb["Stress"]
    for name, value in k["stress"].items():
        cell = named(wb, f"Stress{termsheet.camel(name)}")
        assert cell.value == value
        assert stress.cell(row=cell.row, column=1).value == name
    headers = [c.value for c in stress[4]]
    for name, value in (k["stress_total"] or {}).items():
        cell = named(wb, f"StressTotal{termsheet.camel(name)}")
        assert cell.value == value and headers[cell.column - 1] == "Min combined DSCR"
        assert headers[named(wb, f"StressTotal{termsheet.camel(name)}Result").column - 1] == "Result"
    for name in k["stress"]:
        assert headers[named(wb, f"Stress{termsheet.camel(name)}Headroom").column - 1] == "Headroom"


def test_term_sheet_texts_and_monte_carlo(shapes) -> None:
    for result, rank in shapes.values():
        k = result.top_row(rank)["kpis"]
        wb = workbook(result, rank)
        texts = {str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None}
        for reason in k["repo_reasons"]:
            assert reason in texts
        for failure in k["gate_a"] + k["gate_b"]:
            assert any(t.startswith(f"{failure['check']}: ") for t in texts), failure
        if k["hint"]:
            assert k["hint"] in texts
        values = {c.value for row in wb["Term Sheet"].iter_rows() for c in row}
        assert k["mc_breach_probability"] in values and k["mc_p5_min_dscr"] in values
        assert (k["senior_rating"] or "—") in values


def test_assumptions_carry_every_project_input_and_ruleset_table(london) -> None:
    wb = workbook(london, 1)
    project = parse_project(london.meta["project"])
    ws = wb["Assumptions"]
    keys = {ws.cell(row=r, column=2).value: ws.cell(row=r, column=3).value for r in range(1, ws.max_row + 1)}
    for key, value in project.to_dict().items():
        assert key in keys, key
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert keys[key] == value, key
    derived = derive(project)
    for key, value in derived.to_dict().items():
        assert key in keys, key
        cell = keys[key]
        assert cell == value or (isinstance(cell, str) and cell.startswith("=")), key
    rs = load_ruleset()
    assert keys["tenants.AA.dscr_floor"] == rs.tenant("AA")["dscr_floor"]
    assert keys["rating_ladder.UK.AA"] == rs.ladder("UK")["AA"]
    assert keys["repo_rules.UK.amortising.min_dscr"] == rs.repo_rule("UK", False)["min_dscr"]
    for key in london.top_row(1)["structure"]:
        assert key in keys, key


def formulas(wb: openpyxl.Workbook) -> dict[str, str]:
    return {f"{ws.title}!{c.coordinate}": c.value for ws in wb.worksheets for row in ws.iter_rows() for c in row
            if isinstance(c.value, str) and c.value.startswith("=")}


def test_derived_figures_are_live_formulas(shapes) -> None:
    result, rank = shapes["bullet_mezz"]
    wb = workbook(result, rank)
    assert named(wb, "DayOneValue").value == "=SeniorAmount+MezzAmount+SidecarNet-DsraAmount"
    assert named(wb, "EquityRequired").value == "=FundingNeed-DayOneValue"
    assert named(wb, "FundingNeed").value == "=ProjectCapex+UpfrontFees"
    assert named(wb, "DsraAmount").value == "=MAX(CF_DsraWindow)"
    assert named(wb, "EquityIrr").value == "=(1+EquityIrrPeriodic)^PeriodsPerYear-1"
    assert re.fullmatch(r"=IRR\([A-Z]+\d+:[A-Z]+\d+,-?[0-9.]+\)", named(wb, "EquityIrrPeriodic").value)
    opening, interest, principal, closing = (column(wb, f"CF_Senior{k}") for k in ("Opening", "Interest",
                                                                                    "Principal", "Closing"))
    note, refi, tested = (column(wb, n) for n in ("CF_SeniorNoteService", "CF_RefinancingService",
                                                 "CF_SeniorService"))
    dscr, equity = column(wb, "CF_Dscr"), column(wb, "CF_EquityFlow")
    o, i, p, c = (x[0].column_letter for x in (opening, interest, principal, closing))
    r = opening[1].row
    assert opening[1].value == f"={c}{r - 1}"
    assert interest[1].value == f"=SeniorRate/PeriodsPerYear*{o}{r}"
    assert closing[1].value == f"={o}{r}-{p}{r}"
    assert note[1].value == f"={i}{r}+{p}{r}"
    assert tested[1].value == f"={i}{r}+{refi[0].column_letter}{r}"  # the balloon is refinanced, not tested
    assert dscr[1].value.startswith("=IF(") and f"/{tested[0].column_letter}{r}" in dscr[1].value
    assert equity[1].value.startswith("=")
    assert named(wb, "TotalEquityFlow").value.startswith("=SUM(")
    found = formulas(wb)
    assert len(found) > 800
    assert not any("#REF" in f for f in found.values())


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
        mezz = doc["capital_structure"]["mezzanine"]
        assert (mezz is None) == (not entry["structure"]["mezz_on"])


def test_no_unique_irr_shows_na(london) -> None:
    """Equity required below zero (cheap capex, a large sidecar): the engine's IRR is null, so is the sheet's."""
    cheap = run(parse_project({**london.meta["project"], "capex_cost_per_mw": 1_000_000, "capex_market_per_mw": None}),
                {"senior_tenor": [20], "senior_coupon": [0.04], "senior_dscr": [1.2], "indexation_mode": ["flat"],
                 "zcis_tenor_years": [20]}, gates=False)
    assert cheap.top_row(1)["kpis"]["equity_irr"] is None
    wb = workbook(cheap, 1)
    assert "EquityIrr" not in wb.defined_names and "EquityIrrPeriodic" not in wb.defined_names
    assert not any("IRR(" in f for f in formulas(wb).values())
    texts = {c.value for row in wb["Term Sheet"].iter_rows() for c in row}
    assert "n/a: no unique IRR" in texts
    assert named(wb, "SidecarGross").value == "=SidecarPv"
    assert termsheet.term_sheet_json(cheap, 1)["equity"]["irr"] is None


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
        cols = termsheet.cash_columns(src)
        blocks = termsheet.print_blocks(cols)
        assert [c for b in blocks for c in b] == cols[termsheet.TITLE_COLUMNS:]
        title = termsheet._px(cols[: termsheet.TITLE_COLUMNS])
        for block in blocks:
            assert termsheet.A4_LANDSCAPE_PX / (title + termsheet._px(block)) >= termsheet.MIN_PRINT_SCALE
        ws = workbook(result, rank)["Cash Flows"]
        if len(blocks) > 1:
            assert ws.page_setup.scale >= 100 * termsheet.MIN_PRINT_SCALE - 1
            assert len(ws.col_breaks.brk) == len(blocks) - 1
        amounts = [max(abs(r["senior_opening"]), abs(r["revenue_base"])) for r in src.schedule]
        widest = max(len(f"£{x:,.0f}") for x in amounts)
        money = [c for c in cols if c.fmt == "money_whole"]
        assert min(c.width for c in money if c.key in ("senior_opening", "revenue_base")) >= widest


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

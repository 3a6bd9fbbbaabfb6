"""Term-sheet workbooks recalculated by LibreOffice equal the engine: as exported and after flexing inputs.

One ``soffice --headless --convert-to xlsx`` call recalculates every workbook (the exports carry no cached
values, so every value read back was computed by LibreOffice). The expected values come from the engine, never
from the workbook: the run's Top-N KPIs, ``engine.schedule`` and ``structure_detail`` for an export as it is; for
a flexed workbook (named inputs changed with openpyxl), ``evaluate_structure`` on the same changed project and
structure. Named outputs agree to 1e-9 relative (the binding constraint, tier and gate lists identically), the
per-period Cash Flows columns to 1e-9 relative to the size of the row's amounts, and no formula cell evaluates to
an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
import re
import shutil
import subprocess
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from phase1lib import termsheet
from phase1lib.engine import evaluate_points, evaluate_structure, schedule
from phase1lib.engine.cashflows import STRESS_NAMES
from phase1lib.engine.runner import RunResult, run
from phase1lib.engine.structure import parse_structure, structure_detail
from phase1lib.presets import preset_ranges
from phase1lib.project import derive, load_project, parse_project
from phase1lib.ruleset import load_ruleset

SOFFICE = shutil.which("soffice")
PDFTOPPM = shutil.which("pdftoppm")
SKIP_REASON = ("LibreOffice is not installed: the recalculation and PDF checks need soffice from the Debian package "
               "libreoffice-calc-nogui (apt-get install libreoffice-calc-nogui)")
pytestmark = [
    pytest.mark.skipif(SOFFICE is None, reason=SKIP_REASON),
    pytest.mark.filterwarnings("ignore:Unable to read chart:UserWarning"),  # openpyxl on LibreOffice's chart XML
]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_S = 600
REL = 1e-9
ERROR = re.compile(r"^(#[A-Z/0!?]+|Err:\d+)")  # an error value as LibreOffice writes it
#: Forces a full recalculation of OOXML files on load (the exports have no cached values anyway).
RECALC_ALWAYS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">
<value>0</value></prop></item>
</oor:items>
"""
OSAKA = {"title": "Osaka DC Epsilon", "country": "JP", "currency": "JPY", "gross_it_load_mw": 60, "pue": 1.3,
         "lease_years": 20, "tenant_rating": "AA", "gross_monthly_rent": 550_000_000, "opex_pct": 0.22,
         "capex_cost_per_mw": 1_100_000_000, "land_fees_total": 4_000_000_000, "base_cpi": 0.01, "cpi_floor": 0.0,
         "cpi_cap": 0.02, "zcis_rate": 0.012, "residual_value_pct": 0.1, "periods_per_year": 12,
         "closing_date": "2026-03-31"}
MIXED = {"senior_tenor": [12], "senior_coupon": [0.05], "senior_dscr": [1.3],
         "senior_amort": ["sculpted", "annuity", "level", "bullet"], "indexation_mode": ["flat", "CPI_capped"],
         "zcis_tenor_years": [5], "io_months": [0, 12], "wrap": [False, True], "mezz_on": [False, True],
         "mezz_amort": ["sculpted", "annuity", "level"]}
SHAPES = [  # (senior_amort, wrap, IO, mezz_amort or None, indexation_mode): every profile and option once
    ("bullet", True, True, "annuity", "CPI_capped"), ("level", True, True, "sculpted", "flat"),
    ("sculpted", False, True, "level", "flat"), ("annuity", True, False, None, "CPI_capped"),
    ("annuity", False, True, "annuity", "flat"), ("bullet", False, False, "sculpted", "flat"),
]
#: Cash Flows columns and the engine schedule key they equal.
COLUMNS = {"lender_rent_index": "lender_rent_index", "base_rent_index": "base_rent_index", "cost_index": "cost_index",
           "revenue_lender": "revenue_lender", "revenue_base": "revenue_base", "opex": "opex", "admin": "admin",
           "lender_cfads": "lender_cfads", "base_cfads": "base_cfads", "sidecar": "sidecar",
           "senior_opening": "senior_opening", "senior_interest": "senior_interest",
           "senior_principal": "senior_principal", "senior_closing": "senior_closing",
           "note_service": "senior_note_service", "refinancing_service": "refinancing_service",
           "senior_service": "senior_service", "dscr": "dscr", "mezz_opening": "mezz_opening",
           "mezz_interest": "mezz_interest", "mezz_principal": "mezz_principal", "mezz_service": "mezz_service",
           "equity_flow": "equity_flow"}


V2_BREAKEVENS = ("breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi", "breakeven_cpi_capped")
#: A benchmark curve override (section 11): the 8-year note lies between its points, the 20-year flex beyond them.
CURVE = [[2, 0.031], [5, 0.0345], [10, 0.0455]]

EXPORTS: dict[tuple[str, int], bytes] = {}


class Case:
    """One workbook: an export of (run, rank), optionally with named inputs changed, and the engine's answer (under
    the ruleset the run applied)."""

    def __init__(self, name: str, result: RunResult, rank: int, flex: Mapping[str, Any] | None = None):
        self.name, self.result, self.rank, self.flex = name, result, rank, dict(flex or {})
        self.ruleset = load_ruleset(result.meta["ruleset"]["version"])
        assert self.ruleset.sha256 == result.meta["ruleset"]["sha256"]
        entry = result.top_row(rank)
        project = parse_project(result.meta["project"])
        point = dict(entry["structure"])
        fields = {f.name for f in dataclasses.fields(project)}
        project_changes = {k: v for k, v in self.flex.items() if k in fields and k not in point}
        point_changes = {k: v for k, v in self.flex.items() if k not in project_changes}
        self.project = parse_project({**project.to_dict(), **project_changes}) if project_changes else project
        closing = dt.date.fromisoformat(result.meta["closing_date"])
        rs = self.ruleset
        if self.flex:
            self.point = parse_structure({**point, **point_changes}, self.project, rs)
            evaluated = evaluate_structure(self.project, self.point, rs, closing_date=closing)
            self.kpis, self.rows = evaluated["kpis"], evaluated["schedule"]
        else:
            self.point, self.kpis = point, entry["kpis"]
            self.rows = schedule(self.project, point, rs, closing_date=closing)
        self.detail = structure_detail(self.project, self.point, rs)
        self.derived = derive(self.project, rs)

    def workbook_bytes(self) -> bytes:
        key = (self.result.run_id, self.rank)
        if key not in EXPORTS:
            EXPORTS[key] = termsheet.to_xlsx_bytes(self.result, self.rank)
        data = EXPORTS[key]
        if not self.flex:
            return data
        wb = openpyxl.load_workbook(io.BytesIO(data))
        for name, value in self.flex.items():
            cell(wb, name).value = value
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue()


def cell(wb: openpyxl.Workbook, name: str) -> Any:
    sheet, ref = wb.defined_names[name].attr_text.rsplit("!", 1)
    return wb[sheet.strip("'")][ref.replace("$", "").split(":")[0]]


def column(wb: openpyxl.Workbook, name: str) -> list[Any]:
    sheet, ref = wb.defined_names[name].attr_text.rsplit("!", 1)
    return [row[0].value for row in wb[sheet.strip("'")][ref.replace("$", "")]]


def engine_outputs(case: Case) -> dict[str, Any]:
    """Every named output of the model from the engine's KPIs (independently of the package's own mapping); under
    ruleset v2 also the coupon used, the market coupon, the pricing check and its hint, the lending value and the
    ltv limit (the engine's derived fields) and the breakevens."""
    k = case.kpis
    out = {name: k[name] for name in ("senior_amount", "binding_constraint", "senior_rate", "senior_rating",
                                      "mezz_amount", "mezz_rate", "dsra_amount", "sidecar_gross", "sidecar_net",
                                      "day_one_value", "equity_required", "min_dscr", "avg_dscr", "llcr", "wal_years",
                                      "ltv", "advance_factor", "wacd", "total_interest", "equity_irr", "viable",
                                      "near_miss", "tier", "repo_eligible")}
    for s in STRESS_NAMES:
        out[f"stress_{s}"] = k["stress"][s]
        out[f"stress_total_{s}"] = (k["stress_total"] or {}).get(s)
    out["gate_a_failures"] = ", ".join(f["check"] for f in k["gate_a"]) or "passed"
    out["gate_b_failures"] = ", ".join(f["check"] for f in k["gate_b"]) or "passed"
    if case.ruleset.priced:
        for name in ("senior_coupon", "market_coupon", *V2_BREAKEVENS):
            out[name] = k[name]
        pricing = [f for f in k["gate_b"] if f["check"] == "pricing"]
        out["pricing_failed"] = bool(pricing)
        out["pricing_hint"] = pricing[0]["hint"] if pricing else None
        for name in ("income_value", "lending_value", "ltv_limit"):
            out[name] = getattr(case.derived, name)
    return out


def soffice(args: list[str], profile: Path) -> None:
    """Run soffice headless with a private profile; fail with its output on error or timeout."""
    (profile / "user").mkdir(parents=True, exist_ok=True)
    (profile / "user" / "registrymodifications.xcu").write_text(RECALC_ALWAYS)
    cmd = [SOFFICE or "soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"soffice failed ({done.returncode}): {done.stdout}\n{done.stderr}"


def first_rank(result: RunResult, want: tuple[Any, ...]) -> int:
    def shape(s: dict[str, Any]) -> tuple[Any, ...]:
        return (s["senior_amort"], s["wrap"], s["io_months"] > 0, s.get("mezz_amort") if s["mezz_on"] else None,
                s["indexation_mode"])

    return next(row["rank"] for row in result.top if shape(row["structure"]) == want)


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    london = load_project(ROOT / "examples" / "london_dc_alpha.json")
    current = run(london, preset_ranges("current_1920"))
    frankfurt = run(load_project(ROOT / "examples" / "frankfurt_dc_beta.json"),
                    {"senior_tenor": [15], "senior_coupon": [0.045], "senior_dscr": [1.25], "senior_amort": ["annuity"],
                     "indexation_mode": ["flat"], "zcis_tenor_years": [5], "wrap": [True], "mezz_on": [True],
                     "mezz_dscr": [1.1], "mezz_amort": ["sculpted"]}, gates=False)
    ashburn = run(parse_project({**load_project(ROOT / "examples" / "ashburn_dc_gamma.json").to_dict(),
                                 "periods_per_year": 2}),
                  {"senior_tenor": [8], "senior_coupon": [0.05], "senior_dscr": [1.3], "senior_amort": ["bullet"],
                   "mezz_on": [True], "mezz_dscr": [1.1], "mezz_amort": ["level"]}, gates=False)
    osaka = run(parse_project(OSAKA), {"senior_tenor": [15], "senior_coupon": [0.015], "senior_dscr": [1.4],
                                       "senior_amort": ["level"], "io_months": [12], "zcis_tenor_years": [5]},
                gates=False)
    mixed = run(london, MIXED, gates=False, topn=200)
    cheap = run(parse_project({**london.to_dict(), "capex_cost_per_mw": 1_000_000, "capex_market_per_mw": None}),
                {"senior_tenor": [20], "senior_coupon": [0.04], "senior_dscr": [1.2], "indexation_mode": ["flat"],
                 "zcis_tenor_years": [20], "sidecar_haircut_pct": [0.0]}, gates=False)  # equity < 0: no IRR
    v2 = load_ruleset("v2")
    market = run(load_project(ROOT / "examples" / "frankfurt_dc_beta.json"), preset_ranges("market_1920"), ruleset=v2)
    london_market = run(london, {"senior_tenor": [20], "senior_dscr": [1.35]}, ruleset=v2, gates=False)
    offered = run(london, {"senior_tenor": [20], "senior_coupon": [0.05], "senior_dscr": [1.35]}, ruleset=v2,
                  gates=False)  # below the 0.0600 market coupon: pricing fails
    high_cap = run(parse_project({**london.to_dict(), "cap_rate": 0.12}),
                   {"senior_tenor": [20], "senior_dscr": [1.35], "senior_amort": ["annuity"]}, ruleset=v2, gates=False)
    curve = run(parse_project({**ashburn.meta["project"], "benchmark_curve": CURVE}),
                {"senior_tenor": [8], "senior_dscr": [1.3], "senior_amort": ["bullet"], "mezz_on": [True],
                 "mezz_dscr": [1.1], "mezz_amort": ["level"]}, ruleset=v2, gates=False)
    out = [
        Case("london-rank1", current, 1), Case("frankfurt-mezz-wrap", frankfurt, 1),
        Case("ashburn-semiannual-bullet", ashburn, 1), Case("osaka-monthly-level-io", osaka, 1),
        Case("cheap-no-irr", cheap, 1),
        *(Case(f"mixed-rank{first_rank(mixed, s)}", mixed, first_rank(mixed, s)) for s in SHAPES),
        # flexed: named inputs changed in the workbook, the engine re-run on the same inputs
        Case("flex-dscr", current, 1, {"senior_dscr": 1.25}),
        Case("flex-coupon-opex-rent", current, 1, {"senior_coupon": 0.05, "opex_pct": 0.26,
                                                   "gross_monthly_rent": 2_300_000}),
        Case("flex-rent-af-cap", current, 1, {"gross_monthly_rent": 3_600_000}),
        Case("flex-cpi-cap-zcis", frankfurt, 1, {"base_cpi": 0.028, "cpi_cap": 0.03, "zcis_tenor_years": 8}),
        Case("flex-cpi-capped-mode", osaka, 1, {"base_cpi": 0.03, "cpi_cap": 0.025, "zcis_tenor_years": 2}),
        Case("flex-annuity", current, 1, {"senior_amort": "annuity"}),
        Case("flex-bullet-io", current, 1, {"senior_amort": "bullet", "io_months": 12, "senior_tenor": 15}),
        Case("flex-level-wrap-mezz", ashburn, 1, {"senior_amort": "level", "wrap": True, "mezz_amort": "sculpted"}),
        Case("flex-sidecar-io", current, 1, {"indexation_mode": "flat", "io_months": 24}),
        Case("flex-mezz-on-wrap", current, 1, {"mezz_on": True, "wrap": True}),  # the project's mezz defaults
        Case("flex-tenant-rating", current, 1, {"tenant_rating": "A", "senior_dscr": 1.3}),  # another tenant row
        Case("flex-io-covers-the-note", current, 1, {"senior_tenor": 10, "io_months": 120}),  # D12: no senior debt
        # ruleset v2 (METHODOLOGY section 11): as exported
        Case("v2-frankfurt-market-rank1", market, 1), Case("v2-london-offered-fails-pricing", offered, 1),
        Case("v2-cap-rate-ltv-binds", high_cap, 1), Case("v2-curve-override", curve, 1),
        # ruleset v2, flexed: a market point re-prices; the cap rate moves the ltv limit
        Case("v2-flex-dscr-tenor", market, 1, {"senior_dscr": 1.35, "senior_tenor": 12}),
        Case("v2-flex-cap-rate", london_market, 1, {"cap_rate": 0.09}),
        Case("v2-flex-offered-coupon", market, 1, {"senior_coupon": 0.045}),
        Case("v2-flex-curve-tenor-beyond", curve, 1, {"senior_tenor": 12}),
        Case("v2-flex-cpi-below-floor", london_market, 1, {"base_cpi": 0.0, "zcis_rate": 0.02}),
        Case("v2-flex-no-opex-capped", london_market, 1, {"opex_pct": 0.0, "zcis_tenor_years": 0}),
        Case("v2-flex-no-senior-debt", london_market, 1, {"senior_tenor": 10, "io_months": 120}),  # blank breakevens
        # the min DSCR dips below 1.00x under the CPI floor and recovers inside the collar: the first failure counts
        Case("v2-flex-cpi-dip-below-floor", london_market, 1, {"base_cpi": -0.03, "cpi_floor": 0.0, "cpi_cap": 0.03,
                                                               "zcis_rate": 0.02, "opex_pct": 0.45,
                                                               "senior_dscr": 1.2}),
    ]
    return {c.name: c for c in out}


@pytest.fixture(scope="module")
def recalculated(cases, tmp_path_factory) -> dict[str, tuple[int, openpyxl.Workbook]]:
    """{case: (formula cells written, LibreOffice's recalculated values)}, all converted in one soffice call."""
    folder = tmp_path_factory.mktemp("lo")
    (folder / "in").mkdir()
    sources = []
    for case in cases.values():
        path = folder / "in" / f"{case.name}.xlsx"
        path.write_bytes(case.workbook_bytes())
        sources.append(path)
    started = time.perf_counter()
    soffice(["--calc", "--convert-to", "xlsx", "--outdir", str(folder / "out"), *map(str, sources)],
            folder / "profile")
    print(f"\nLibreOffice recalculated {len(sources)} workbooks in {time.perf_counter() - started:.1f} s")
    return {p.stem: (formula_count(p), openpyxl.load_workbook(folder / "out" / p.name, data_only=True))
            for p in sources}


def formula_count(path: Path) -> int:
    """Formula cells of a workbook as written (its sheets' <f> elements)."""
    with zipfile.ZipFile(path) as archive:
        return sum(archive.read(n).count(b"<f") for n in archive.namelist() if n.startswith("xl/worksheets/sheet"))


def close(actual: Any, expected: Any, scale: float = 0.0) -> float:
    """Relative error of a number (against max(|expected|, scale)); strings and booleans must be equal; a blank
    matches None."""
    if expected is None or isinstance(expected, str | bool):
        blank = actual in (None, "")
        return 0.0 if (expected is None and blank) or actual == expected else math.inf
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return math.inf
    return abs(actual - expected) / max(abs(expected), scale, 1e-300)


def test_named_outputs_equal_the_engine(cases, recalculated) -> None:
    """Every named output (senior amount, binding constraint, rate, mezz, DSRA, sidecar, day-one value, equity,
    the ratios, WACD, interest, IRR, the stress grid, the gates and the tier) as exported and flexed."""
    problems, worst = [], {}
    for name, case in cases.items():
        values = recalculated[name][1]
        errors = []
        for output, expected in engine_outputs(case).items():
            err = close(cell(values, output).value, expected)
            errors.append(err)
            if err > REL:
                problems.append(f"{name}: {output} LibreOffice {cell(values, output).value!r}, engine {expected!r}")
        worst[name] = max(errors)
    assert not problems, "\n".join(problems)
    print("\nlargest relative error per case: " + ", ".join(f"{n} {e:.1e}" for n, e in worst.items()))


def test_flexed_inputs_move_the_debt(cases) -> None:
    """The flexed cases exercise what they name: the advance-factor cap binds, the profile switches re-size."""
    base = cases["london-rank1"].kpis
    assert cases["flex-rent-af-cap"].kpis["binding_constraint"] == "advance_factor"
    assert cases["flex-dscr"].kpis["senior_amount"] > base["senior_amount"]
    assert cases["flex-annuity"].kpis["senior_amount"] != base["senior_amount"]
    assert cases["flex-bullet-io"].kpis["binding_constraint"] in ("dscr", "io_cover", "refinancing_tail")
    assert cases["flex-cpi-cap-zcis"].kpis["sidecar_gross"] != cases["frankfurt-mezz-wrap"].kpis["sidecar_gross"]
    assert cases["flex-io-covers-the-note"].kpis["senior_amount"] == 0
    assert cases["flex-sidecar-io"].detail["has_sidecar"]
    covered = {(c.point["senior_amort"], c.point["io_months"] > 0, c.point["wrap"], c.point["mezz_on"],
                c.detail["has_sidecar"]) for c in cases.values()}
    for profile in ("sculpted", "annuity", "level", "bullet"):
        assert any(s[0] == profile for s in covered), profile
    assert any(s[1] for s in covered) and any(s[2] for s in covered) and any(s[3] for s in covered)
    assert any(s[4] for s in covered)


def test_v2_cases_exercise_what_they_name(cases) -> None:
    """Ruleset v2: the ltv limit binds where named, an offered coupon below market fails pricing, a market point
    re-prices when its DSCR target and tenor move, the curve override prices the note, the CPI grid starts below the
    floor, and a structure without opex has a capped CPI breakeven and no opex breakeven."""
    k = {name: c.kpis for name, c in cases.items()}
    for name in ("v2-frankfurt-market-rank1", "v2-cap-rate-ltv-binds", "v2-flex-cap-rate"):
        assert k[name]["binding_constraint"] == "ltv", name
    assert cases["v2-frankfurt-market-rank1"].point["senior_coupon"] == "market"
    for name in ("v2-london-offered-fails-pricing", "v2-flex-offered-coupon"):
        assert "pricing" in [f["check"] for f in k[name]["gate_b"]], name
    base, flexed = k["v2-frankfurt-market-rank1"], k["v2-flex-dscr-tenor"]
    assert flexed["market_coupon"] != base["market_coupon"] and flexed["senior_coupon"] == flexed["market_coupon"]
    assert k["v2-london-offered-fails-pricing"]["market_coupon"] == pytest.approx(0.06, abs=1e-12)
    curve = cases["v2-curve-override"]
    assert curve.derived.benchmark_curve == tuple(tuple(map(float, p)) for p in CURVE)
    assert k["v2-flex-curve-tenor-beyond"]["market_coupon"] != k["v2-curve-override"]["market_coupon"]
    low = cases["v2-flex-cpi-below-floor"].project
    assert low.base_cpi < low.cpi_floor
    assert k["v2-flex-no-opex-capped"]["breakeven_cpi_capped"] is True
    assert k["v2-flex-no-opex-capped"]["breakeven_opex_rise"] is None
    assert all(k["v2-flex-no-senior-debt"][name] is None for name in V2_BREAKEVENS)
    dip = cases["v2-flex-cpi-dip-below-floor"]
    assert dip.project.base_cpi < k["v2-flex-cpi-dip-below-floor"]["breakeven_cpi"] < dip.project.cpi_floor
    assert sum(c.ruleset.priced for c in cases.values()) >= 10


def test_period_columns_equal_the_schedule(cases, recalculated) -> None:
    problems = []
    for name, case in cases.items():
        values = recalculated[name][1]
        for key, engine_key in COLUMNS.items():
            got = column(values, f"cf_{key}")
            assert len(got) == len(case.rows)
            for p, (actual, row) in enumerate(zip(got, case.rows, strict=True), start=1):
                scale = max(abs(row[k]) for k in ("revenue_lender", "revenue_base", "senior_opening", "mezz_opening",
                                                  "senior_principal", "mezz_principal", "base_cfads", "equity_flow"))
                err = close(actual, row[engine_key], 1.0 if key == "dscr" or key.endswith("index") else scale)
                if err > REL:
                    problems.append(f"{name}: cf_{key} period {p}: {actual!r} vs {row[engine_key]!r}")
    assert not problems, "\n".join(problems[:30])


def test_sizing_limits_equal_the_engine(cases, recalculated) -> None:
    """Every senior sizing limit (n/a where it does not apply), the period counts and the underlying rating."""
    for name, case in cases.items():
        values = recalculated[name][1]
        for limit, expected in case.detail["limits"].items():
            got = cell(values, f"limit_{limit}").value
            assert (got == "n/a") if expected is None else close(got, expected) <= REL, (name, limit, got, expected)
        for key in ("note_periods", "io_periods", "test_periods", "mezz_periods", "dsra_window", "underlying_rating"):
            assert cell(values, key).value == case.detail[key], (name, key)


def test_no_formula_cell_is_an_error(recalculated) -> None:
    """No cell of any recalculated workbook holds an error value (#DIV/0!, #VALUE!, #N/A, Err:5xx...): inputs and
    labels never do, so every error would be a formula's."""
    bad = []
    for name, (_, values) in recalculated.items():
        for ws in values.worksheets:
            for row in ws.iter_rows():
                for c in row:
                    if c.data_type == "e" or (isinstance(c.value, str) and ERROR.match(c.value)):
                        bad.append(f"{name} {ws.title}!{c.coordinate} {c.value}")
    assert sum(count for count, _ in recalculated.values()) > 200_000
    assert not bad, "\n".join(bad[:30])


def test_sensitivity_table_equals_the_engine(cases, recalculated) -> None:
    """Each cell of the DSCR x coupon table is the engine's senior amount at that DSCR and coupon."""
    for name in ("london-rank1", "frankfurt-mezz-wrap", "ashburn-semiannual-bullet", "osaka-monthly-level-io",
                 "v2-frankfurt-market-rank1", "v2-london-offered-fails-pricing", "v2-cap-rate-ltv-binds"):
        case = cases[name]
        values = recalculated[name][1]
        dscrs, coupons = column(values, "sens_dscr"), None
        sheet, ref = values.defined_names["sens_coupon"].attr_text.rsplit("!", 1)
        coupons = [c.value for c in values[sheet.strip("'")][ref.replace("$", "")][0]]
        points = [{**case.point, "senior_dscr": round(k, 10), "senior_coupon": round(c, 10)}
                  for k in dscrs for c in coupons]
        engine = evaluate_points(case.project, points, case.ruleset, seed=None)
        got = column(values, "sens_amount")
        binding = column(values, "sens_binding")
        for i, evaluated in enumerate(engine):
            assert close(got[i], evaluated["kpis"]["senior_amount"]) <= REL, (name, points[i])
            assert binding[i] == evaluated["kpis"]["binding_constraint"], (name, points[i])


def test_spreadsheet_irr_agrees(cases, recalculated) -> None:
    """The spreadsheet's own IRR() of the equity flows, started at the model's root, agrees with the engine."""
    checked = 0
    for name, case in cases.items():
        irr = case.kpis["equity_irr"]
        got = cell(recalculated[name][1], "equity_irr_check").value
        if irr is None:
            assert got in (None, ""), name
            continue
        assert close(got, irr) <= 1e-8, (name, got, irr)
        checked += 1
    assert checked >= 10


def test_pdf_pages_fit(cases, tmp_path) -> None:
    """The London rank-1 and the Osaka exports print to PDF; the pages are kept in test-artifacts/ (and rendered
    to PNG when poppler is there) for a look."""
    sources = []
    for name in ("london-rank1", "osaka-monthly-level-io", "v2-frankfurt-market-rank1"):
        path = tmp_path / f"{name}.xlsx"
        path.write_bytes(cases[name].workbook_bytes())
        sources.append(path)
    soffice(["--convert-to", "pdf", "--outdir", str(tmp_path), *map(str, sources)], tmp_path / "profile")
    ARTIFACTS.mkdir(exist_ok=True)
    for source in sources:
        pdf = source.with_suffix(".pdf")
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF")
        pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
        assert 10 <= pages <= 150, (source.name, pages)
        shutil.copy(pdf, ARTIFACTS / pdf.name)
        if PDFTOPPM:
            subprocess.run([PDFTOPPM, "-png", "-r", "50", str(pdf), str(ARTIFACTS / source.stem)], check=True,
                           timeout=TIMEOUT_S)

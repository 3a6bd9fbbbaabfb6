"""Term-sheet workbooks recalculated by LibreOffice: every formula evaluates to the engine's number.

One ``soffice --headless --convert-to xlsx`` call recalculates several workbooks (a sculpted senior, bullets,
wraps, IO, every mezz profile, a sidecar, a JPY monthly project with a residual value, an annual one);
openpyxl then reads the values LibreOffice computed (the exports carry no cached values, so every value
read back was computed by LibreOffice). The expected value of each formula cell is built here from the
engine's data (the run's Top-N KPIs, ``engine.schedule``, ``project.derive``), never from the workbook.

Tolerance: |value - expected| <= 1e-9 x max(|expected|, scale), where scale is the size of the numbers
the cell's arithmetic combines (the row's balances and revenues for a period cell, the sum of absolute
values for a total, the equity for the NPV-at-IRR check, 1.00x for a stress headroom). It only matters
where the expected value is (near) zero, e.g. a closing balance at maturity.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from phase1lib import termsheet
from phase1lib.engine import schedule
from phase1lib.engine.runner import RunResult, run
from phase1lib.presets import preset_ranges
from phase1lib.project import derive, load_project, parse_project
from phase1lib.ruleset import load_ruleset

SOFFICE = shutil.which("soffice")
SKIP_REASON = ("LibreOffice is not installed: the recalculation and PDF checks need soffice from the Debian package "
               "libreoffice-calc-nogui (apt-get install libreoffice-calc-nogui)")
pytestmark = [
    pytest.mark.skipif(SOFFICE is None, reason=SKIP_REASON),
    pytest.mark.filterwarnings("ignore:Unable to read chart:UserWarning"),  # openpyxl on LibreOffice's chart XML
]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_S = 120
REL = 1e-9
#: Forces a full recalculation of OOXML files on load (the exports have no cached values anyway).
RECALC_ALWAYS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">
<value>0</value></prop></item>
</oor:items>
"""

JP_PROJECT = {
    "title": "Tokyo DC Delta", "country": "JP", "currency": "JPY", "gross_it_load_mw": 40, "pue": 1.3,
    "lease_years": 15, "tenant_rating": "A", "rent_per_kwh_month": 21.5, "opex_pct": 0.25,
    "capex_cost_per_mw": 900_000_000, "land_fees_total": 2_000_000_000, "residual_value_pct": 0.2,
    "periods_per_year": 12, "closing_date": "2026-06-30",
}
MIXED = {"senior_tenor": [12], "senior_coupon": [0.05], "senior_dscr": [1.3],
         "senior_amort": ["sculpted", "annuity", "level", "bullet"], "indexation_mode": ["flat", "CPI_capped"],
         "zcis_tenor_years": [5], "io_months": [0, 12], "wrap": [False, True], "mezz_on": [False, True],
         "mezz_amort": ["sculpted", "annuity", "level"]}


def soffice(args: list[str], profile: Path) -> None:
    """Run soffice headless with a private profile; fail with its output on error or timeout."""
    (profile / "user").mkdir(parents=True, exist_ok=True)
    (profile / "user" / "registrymodifications.xcu").write_text(RECALC_ALWAYS)
    cmd = [SOFFICE or "soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"soffice failed ({done.returncode}): {done.stdout}\n{done.stderr}"


SHAPES = [  # (senior_amort, wrap, IO, mezz_amort or None, indexation_mode): every profile and option once
    ("bullet", False, False, "sculpted", "CPI_capped"), ("bullet", True, True, "annuity", "CPI_capped"),
    ("bullet", True, False, None, "flat"), ("level", True, True, "sculpted", "flat"),
    ("sculpted", False, True, "level", "flat"), ("annuity", True, False, None, "CPI_capped"),
    ("level", False, False, None, "CPI_capped"), ("annuity", False, True, "annuity", "flat"),
]


def pick_ranks(result: RunResult) -> list[int]:
    """The first rank of each shape in SHAPES."""
    def shape(s: dict[str, Any]) -> tuple[Any, ...]:
        return (s["senior_amort"], s["wrap"], s["io_months"] > 0, s.get("mezz_amort") if s["mezz_on"] else None,
                s["indexation_mode"])

    ranks = [next(row["rank"] for row in result.top if shape(row["structure"]) == want) for want in SHAPES]
    return ranks


@pytest.fixture(scope="module")
def cases() -> list[tuple[str, RunResult, int]]:
    london = load_project(ROOT / "examples" / "london_dc_alpha.json")
    current = run(london, preset_ranges("current_1920"))
    mixed = run(london, MIXED, gates=False, topn=200)
    tokyo = run(parse_project(JP_PROJECT), {"senior_tenor": [10], "senior_coupon": [0.02], "senior_dscr": [1.3],
                                            "senior_amort": ["sculpted", "bullet"], "mezz_on": [False, True]},
                gates=False)
    annual = run(parse_project({**load_project(ROOT / "examples" / "frankfurt_dc_beta.json").to_dict(),
                                "periods_per_year": 1, "closing_date": None}),
                 {"senior_tenor": [12], "senior_coupon": [0.045], "senior_dscr": [1.35],
                  "senior_amort": ["annuity", "level"], "indexation_mode": ["flat"], "zcis_tenor_years": [4]},
                 gates=False)
    cheap = run(parse_project({**london.to_dict(), "capex_cost_per_mw": 1_000_000, "capex_market_per_mw": None}),
                {"senior_tenor": [20], "senior_coupon": [0.04], "senior_dscr": [1.2], "indexation_mode": ["flat"],
                 "zcis_tenor_years": [20], "sidecar_haircut_pct": [0.0]}, gates=False)  # equity < 0: no IRR
    out = [("london-rank1", current, 1), ("london-rank2", current, 2), ("cheap-rank1", cheap, 1)]
    out += [(f"mixed-rank{r}", mixed, r) for r in pick_ranks(mixed)]
    out += [(f"tokyo-rank{r['rank']}", tokyo, r["rank"]) for r in tokyo.top]
    out += [(f"annual-rank{r['rank']}", annual, r["rank"]) for r in annual.top]
    return out


@pytest.fixture(scope="module")
def recalculated(cases, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{case: (exported workbook, LibreOffice's recalculated copy)}, all converted in one soffice call."""
    folder = tmp_path_factory.mktemp("lo")
    sources = []
    for name, result, rank in cases:
        path = folder / "in" / f"{name}.xlsx"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(termsheet.to_xlsx_bytes(result, rank))
        sources.append(path)
    soffice(["--calc", "--convert-to", "xlsx", "--outdir", str(folder / "out"), *map(str, sources)],
            folder / "profile")
    return {path.stem: (path, folder / "out" / path.name) for path in sources}


# ---- expected values from the engine ----------------------------------------------------------------------

class Expected:
    """The engine's number for every formula cell of one term sheet, keyed by workbook name or column key."""

    def __init__(self, result: RunResult, rank: int):
        entry = result.top_row(rank)
        self.k = k = entry["kpis"]
        self.s = s = entry["structure"]
        self.project = p = parse_project(result.meta["project"])
        self.d = d = derive(p)
        self.rs = load_ruleset(result.meta["ruleset"]["version"])
        self.rows = schedule(p, s, self.rs, closing_date=dt.date.fromisoformat(result.meta["closing_date"]))
        ppy = p.periods_per_year
        self.bullet = s["senior_amort"] == "bullet"
        n = min(s["senior_tenor"], p.lease_years) * ppy
        self.t = p.n_periods - 2 * ppy if self.bullet else n
        self.n_m = min(s["mezz_tenor"], p.lease_years) * ppy if s["mezz_on"] else 0
        self.w = math.ceil(d.dsra_months * ppy / 12)
        S, M, FN = k["senior_amount"], k["mezz_amount"], d.funding_need
        mezz_interest = math.fsum(r["mezz_interest"] for r in self.rows)
        combined = [self.combined(q) for q in range(1, max(self.t, self.n_m) + 1)]
        combined = [c for c in combined if c is not None]
        underlying = self.underlying()
        self.names: dict[str, Any] = {
            **{termsheet.camel(key): getattr(d, key) for key in ("net_it_load_mw", "gross_income_monthly",
               "gross_income_annual", "opex_annual", "noi_annual", "project_capex", "market_value", "upfront_fees",
               "funding_need", "admin_annual", "tenor_cap", "locked_rate", "n_periods")},
            **{termsheet.camel(key): value for key, value in p.to_dict().items() if isinstance(value, int | float)},
            **{f"Gate{termsheet.camel(key)}": v for key, v in self.rs.gates.items()},
            "SeniorAmount": S, "MezzAmount": M, "TotalDebt": S + M, "SeniorShareOfNeed": k["advance_factor"],
            "MezzShareOfNeed": M / FN, "TotalShareOfNeed": (S + M) / FN, "SeniorRate": k["senior_rate"],
            "SeniorCoupon": s["senior_coupon"], "MezzCoupon": s.get("mezz_coupon"), "Wacd": k["wacd"],
            "SeniorWal": k["wal_years"], "MezzWal": math.fsum(r["period"] / ppy * r["mezz_principal"]
                                                              for r in self.rows) / M if M else None,
            "SeniorMinDscr": k["min_dscr"], "SeniorAvgDscr": k["avg_dscr"], "SeniorLlcr": k["llcr"],
            "CombinedMinDscr": min(combined) if combined else None, "SeniorLtv": k["ltv"],
            "SeniorTotalInterest": k["total_interest"], "MezzTotalInterest": mezz_interest,
            "TotalInterest": k["total_interest"] + (mezz_interest if s["mezz_on"] else 0.0),
            **{f"{name}FeeAmount": getattr(p, f"{name.lower()}_fee_pct") * d.project_capex
               for name in ("Arranger", "Legal", "Rating")},
            "UpfrontFeePct": d.upfront_fees / d.project_capex, "UpfrontFeesTotal": d.upfront_fees,
            "AdminPerYear": d.admin_annual, "UnderlyingSpreadBps": self.rs.spread_bps(underlying),
            "AaaSpreadBps": self.rs.spread_bps("AAA"), "SidecarGross": k["sidecar_gross"],
            "SidecarHaircut": s["sidecar_haircut_pct"], "SidecarNet": k["sidecar_net"], "DsraAmount": k["dsra_amount"],
            "DayOneValue": k["day_one_value"], "EquityRequired": k["equity_required"],
            "EquityShare": k["equity_required"] / FN, "LenderCfadsPv": k["llcr"] * S, "SidecarPv": k["sidecar_gross"],
            "EquityIrr": k["equity_irr"], "EquityNpvAtIrr": 0.0,
            "EquityIrrPeriodic": None if k["equity_irr"] is None else (1 + k["equity_irr"]) ** (1 / ppy) - 1,
        }
        failed = {f["check"] for f in k["gate_b"]}
        for name, value in k["stress"].items():
            self.stress(f"Stress{termsheet.camel(name)}", value, f"stress_{name}" in failed)
        for name, value in (k["stress_total"] or {}).items():
            self.stress(f"StressTotal{termsheet.camel(name)}", value, f"stress_total_{name}" in failed)

    def stress(self, name: str, value: float | None, failed: bool) -> None:
        if value is not None:
            self.names[f"{name}Headroom"] = value - 1.0
            self.names[f"{name}Result"] = "Fail" if failed else "Pass"

    def underlying(self) -> str:
        from phase1lib.ruleset import RATINGS, notch

        ladder = self.rs.rating_from_dscr(self.project.country, self.s["senior_dscr"])
        return RATINGS[max(notch(ladder), notch(self.d.rating_cap))]

    def combined(self, p: int) -> float | None:
        r = self.rows[p - 1]
        service = r["senior_service"] + r["mezz_service"]
        return r["lender_cfads"] / service if service > 0 else None

    def column(self, key: str) -> Callable[[int], Any]:
        """Expected value of column ``key`` at period p (1..N)."""
        rows, k = self.rows, self.k
        direct = {"revenue_lender", "revenue_base", "opex", "admin", "lender_cfads", "base_cfads", "senior_opening",
                  "senior_interest", "senior_closing", "senior_note_service", "senior_service", "dscr", "mezz_opening",
                  "mezz_interest", "mezz_service", "equity_flow", "sidecar", "senior_principal", "mezz_principal",
                  "refinancing_service"}
        if key in direct:
            return lambda p: rows[p - 1][key]
        return {
            "mezz_closing": lambda p: rows[p - 1]["mezz_opening"] - rows[p - 1]["mezz_principal"],
            "combined_dscr": self.combined,
            "dsra_window": lambda p: math.fsum(r["senior_service"] for r in rows[p - 1: p - 1 + min(self.w, self.t)]),
            "dsra_release": lambda p: k["dsra_amount"] if p == self.t else 0.0,
            "residual": lambda p: self.project.residual_value_pct * self.d.market_value
            if p == self.project.n_periods else 0.0,
        }[key]

    def row_scale(self, p: int) -> float:
        """Size of the numbers a period row's arithmetic combines."""
        r = self.rows[p - 1]
        return max(abs(r[key]) for key in ("revenue_lender", "revenue_base", "senior_opening", "mezz_opening",
                                          "senior_principal", "mezz_principal", "base_cfads"))

    def row0(self, key: str) -> float:
        return {"senior_closing": self.k["senior_amount"], "mezz_closing": self.k["mezz_amount"],
                "equity_flow": -self.k["equity_required"]}[key]


# ---- the check --------------------------------------------------------------------------------------------

REF = re.compile(r"^=(-?)([A-Za-z_][A-Za-z0-9_]*)$")


def parse_target(target: str) -> tuple[str, str, int, int]:
    """'Sheet'!$C$7:$C$106 -> (sheet, column letter, first row, last row)."""
    sheet, ref = target.rsplit("!", 1)
    cells = ref.replace("$", "").split(":")
    col = "".join(c for c in cells[0] if c.isalpha())
    first = int("".join(c for c in cells[0] if c.isdigit()))
    last = int("".join(c for c in cells[-1] if c.isdigit()))
    return sheet.strip("'"), col, first, last


def expected_cells(wb: openpyxl.Workbook, exp: Expected) -> dict[tuple[str, str], tuple[Any, float]]:
    """{(sheet, cell): (expected value, scale)} for every formula cell the workbook's names identify."""
    keys = {termsheet.camel(k): k for k in ("revenue_lender", "revenue_base", "opex", "admin", "lender_cfads",
            "base_cfads", "sidecar", "senior_opening", "senior_interest", "senior_principal", "senior_closing",
            "senior_note_service", "refinancing_service", "senior_service", "dscr", "mezz_opening", "mezz_interest",
            "mezz_principal", "mezz_closing", "mezz_service", "combined_dscr", "dsra_window", "dsra_release",
            "residual", "equity_flow", "lender_rent_index", "base_rent_index", "cost_index")}
    out: dict[tuple[str, str], tuple[Any, float]] = {}
    for name, dn in wb.defined_names.items():
        sheet, col, first, last = parse_target(dn.attr_text)
        if name.startswith("CF_"):
            key = keys[name[3:]]
            if key in ("lender_rent_index", "base_rent_index", "cost_index"):
                continue
            f = exp.column(key)
            values = [f(p) for p in range(1, last - first + 2)]
            for p, value in enumerate(values, start=1):
                out[(sheet, f"{col}{first + p - 1}")] = (value, exp.row_scale(p))
            if key in ("senior_closing", "mezz_closing", "equity_flow"):
                out[(sheet, f"{col}{first - 1}")] = (exp.row0(key), abs(exp.row0(key)))
            total = [v for v in values if isinstance(v, float)]
            out[(sheet, f"{col}{last + 1}")] = (math.fsum(total), math.fsum(map(abs, total)))
        elif name in exp.names:
            value = exp.names[name]
            scale = {"EquityNpvAtIrr": exp.k["equity_required"]}.get(name, 1.0 if name.endswith("Headroom") else 0.0)
            out[(sheet, f"{col}{first}")] = (value, scale)
    return out


def close(actual: Any, expected: Any, scale: float) -> float:
    """Error relative to max(|expected|, scale); strings must match; blank matches None or ""."""
    if expected is None or isinstance(expected, str):
        return 0.0 if (actual in (None, "") and expected in (None, "")) or actual == expected else math.inf
    if not isinstance(actual, int | float):
        return math.inf
    return abs(actual - expected) / max(abs(expected), scale, 1e-300)


def check_workbook(source: Path, computed: Path, exp: Expected) -> tuple[int, float, list[str]]:
    """(formula cells checked, largest relative error, problems) of one recalculated workbook."""
    formulas = openpyxl.load_workbook(source)
    values = openpyxl.load_workbook(computed, data_only=True)
    targets = expected_cells(formulas, exp)
    problems, worst, count = [], 0.0, 0
    for ws in formulas.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if not (isinstance(cell.value, str) and cell.value.startswith("=")):
                    continue
                count += 1
                key = (ws.title, cell.coordinate)
                if key not in targets:
                    ref = REF.match(cell.value)
                    if not ref or ref.group(2) not in exp.names:
                        problems.append(f"{key} {cell.value}: no expected value")
                        continue
                    value = exp.names[ref.group(2)]
                    targets[key] = (-value if ref.group(1) else value, 0.0)
                expected, scale = targets[key]
                actual = values[ws.title][cell.coordinate].value
                err = close(actual, expected, scale)
                worst = max(worst, err if math.isfinite(err) else worst)
                if err > REL:
                    problems.append(f"{key} {cell.value}: LibreOffice {actual!r}, engine {expected!r} "
                                    f"(error {err:.3g})")
    return count, worst, problems


def test_every_formula_matches_the_engine(cases, recalculated) -> None:
    total, worst, problems = 0, 0.0, []
    for name, result, rank in cases:
        source, computed = recalculated[name]
        count, err, found = check_workbook(source, computed, Expected(result, rank))
        assert count > 200, f"{name}: only {count} formula cells"
        total += count
        worst = max(worst, err)
        problems += [f"{name}: {p}" for p in found]
    assert not problems, "\n".join(problems[:40])
    print(f"\n{len(cases)} workbooks, {total} formula cells, largest relative error {worst:.3g}")


def test_irr_cell_matches_equity_irr(cases, recalculated) -> None:
    checked = 0
    for name, result, rank in cases:
        irr = result.top_row(rank)["kpis"]["equity_irr"]
        if irr is None:
            continue
        values = openpyxl.load_workbook(recalculated[name][1], data_only=True)
        sheet, col, row, _ = parse_target(values.defined_names["EquityIrr"].attr_text)
        got = values[sheet][f"{col}{row}"].value
        assert got == pytest.approx(irr, rel=1e-9, abs=0), name
        checked += 1
    assert checked >= 5


def test_rank1_london_converts_to_pdf(tmp_path) -> None:
    """The rank-1 export of the London current_1920 run converts to PDF; pages kept in test-artifacts/."""
    london = load_project(ROOT / "examples" / "london_dc_alpha.json")
    result = run(london, preset_ranges("current_1920"))
    source = tmp_path / "london-current_1920-rank1.xlsx"
    source.write_bytes(termsheet.to_xlsx_bytes(result, 1))
    soffice(["--convert-to", "pdf", "--outdir", str(tmp_path), str(source)], tmp_path / "profile")
    pdf = (tmp_path / source.name).with_suffix(".pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert 4 <= pages <= 20, pages
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(pdf, ARTIFACTS / pdf.name)

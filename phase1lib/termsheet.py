"""Term sheets of a ranked structure: an Excel workbook with live formulas, and the same content as JSON.

``to_xlsx_bytes(run, rank)`` builds the workbook in memory (sheets Term Sheet, Cash Flows, Stress,
Assumptions); ``write_xlsx`` writes it to a file atomically; ``term_sheet_json(run, rank)`` is the
same content as a JSON-safe dict. Numbers come from the run's Top-N entry, the engine's per-period
``schedule`` and the project; nothing is re-derived here except what the workbook shows as formulas.

Auditability: values only the engine knows (rent and cost indices, principal, sidecar, refinancing
service) are *inputs* in blue; everything that follows from other cells (revenue, CFADS, interest,
balances, debt service, DSCR, equity flows, totals, NPVs, the IRR, the term-sheet figures) is a live
Excel formula in black, using workbook names (``SeniorAmount``, ``FundingNeed``...) where that reads
better. Each formula evaluates to the engine's number (checked with LibreOffice, docs/termsheet.md).

Reproducibility: the same run and rank give byte-identical files: document properties and zip entry
timestamps come from the run's ``created_at``, never the wall clock.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import AreaChart, LineChart, Reference
from openpyxl.chart.axis import DateAxis
from openpyxl.chart.series import SeriesLabel
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.utils.indexed_list import IndexedList
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from .engine import schedule
from .engine.runner import RunResult
from .errors import ConflictError, NotFoundError
from .fsutil import atomic_write_bytes
from .project import CURRENCY_SYMBOLS, Derived, Project, derive, field_spec, parse_project
from .ruleset import RATINGS, Ruleset, available_versions, load_ruleset, notch

CREATOR = "Phase-1 Workbench"
FORMAT_VERSION = 1
SHEETS = ("Term Sheet", "Cash Flows", "Stress", "Assumptions")
PERIOD_NAMES = {1: "Annual", 2: "Semi-annual", 4: "Quarterly", 12: "Monthly"}
STRESS_PASS_TOL = 1e-9  # METHODOLOGY section 8: a minimum passes when value >= threshold - 1e-9


# ---- the source data of one term sheet -------------------------------------------------------------------

@dataclass
class Source:
    """Everything one term sheet shows: the run's entry for ``rank``, the project, the schedule, the tables."""

    run: RunResult
    rank: int
    entry: dict[str, Any]
    project: Project
    derived: Derived
    ruleset: Ruleset
    schedule: list[dict[str, Any]]
    closing: dt.date

    @property
    def point(self) -> dict[str, Any]:
        return self.entry["structure"]

    @property
    def kpis(self) -> dict[str, Any]:
        return self.entry["kpis"]

    @property
    def ppy(self) -> int:
        return self.project.periods_per_year

    @property
    def n_periods(self) -> int:
        return self.project.n_periods

    @property
    def bullet(self) -> bool:
        return self.point["senior_amort"] == "bullet"

    @property
    def n(self) -> int:
        """Periods of the senior note: min(tenor, lease_years) x ppy."""
        return min(int(self.point["senior_tenor"]), self.project.lease_years) * self.ppy

    @property
    def test_periods(self) -> int:
        """Last senior test period T (1..n, or 1..N - 2 ppy for a bullet); the DSRA is released there."""
        if self.bullet:
            return self.n_periods - int(self.ruleset.gates["refinancing_buffer_years"]) * self.ppy
        return self.n

    @property
    def has_mezz(self) -> bool:
        return bool(self.point.get("mezz_on"))

    @property
    def n_mezz(self) -> int:
        if not self.has_mezz:
            return 0
        return min(int(self.point["mezz_tenor"]), self.project.lease_years) * self.ppy

    @property
    def has_sidecar(self) -> bool:
        """D10: a sidecar exists only in mode flat with H > 0 and basis CPI_capped."""
        return (self.point["indexation_mode"] == "flat" and int(self.point["zcis_tenor_years"]) > 0
                and self.project.indexation_basis == "CPI_capped")

    @property
    def residual(self) -> float:
        return self.project.residual_value_pct * self.derived.market_value

    @property
    def dsra_window(self) -> int:
        """w = ceil(dsra_months x ppy / 12) consecutive senior test periods (D22)."""
        return math.ceil(self.derived.dsra_months * self.ppy / 12)

    @property
    def underlying_rating(self) -> str:
        """The worse of the ladder rating of senior_dscr and the tenant's rating cap (the wrap's underlying)."""
        ladder = self.ruleset.rating_from_dscr(self.project.country, float(self.point["senior_dscr"]))
        return RATINGS[max(notch(ladder), notch(self.derived.rating_cap))]

    def date_of(self, period: int) -> dt.date:
        return self.closing if period == 0 else dt.date.fromisoformat(self.schedule[period - 1]["date"])


def resolve_ruleset(run: RunResult, ruleset: Ruleset | None = None) -> Ruleset:
    """The ruleset the run applied: the one given, a shipped one with the same hash, or a store candidate."""
    want = run.meta["ruleset"]
    if ruleset is not None:
        if ruleset.sha256 != want["sha256"]:
            raise ConflictError(f"ruleset {ruleset.version} ({ruleset.sha256[:12]}) is not the one run "
                                f"{run.run_id} applied ({want['version']}, {want['sha256'][:12]})")
        return ruleset
    if want["version"] in available_versions():
        shipped = load_ruleset(want["version"])
        if shipped.sha256 == want["sha256"]:
            return shipped
    from . import ops
    from .store import open_store

    store = open_store()
    try:
        found = ops.load_ruleset_version(store, want["version"])
    except NotFoundError:
        found = None
    finally:
        store.close()
    if found is None or found.sha256 != want["sha256"]:
        raise ConflictError(f"run {run.run_id} applied ruleset {want['version']} ({want['sha256'][:12]}), "
                            f"which is no longer available: its term sheet cannot be reproduced")
    return found


def load_source(run: RunResult, rank: int, ruleset: Ruleset | None = None) -> Source:
    """Collect the term sheet's data (NotFoundError for a rank outside the Top-N)."""
    entry = run.top_row(rank)
    project = parse_project(run.meta["project"])
    rs = resolve_ruleset(run, ruleset)
    closing = dt.date.fromisoformat(run.meta["closing_date"])
    rows = schedule(project, entry["structure"], rs, closing_date=closing)
    return Source(run=run, rank=rank, entry=entry, project=project, derived=derive(project, rs), ruleset=rs,
                  schedule=rows, closing=closing)


# ---- figures that follow from the schedule (the workbook shows them as formulas) ----------------------------

def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def mezz_figures(src: Source) -> dict[str, Any] | None:
    """Mezz WAL, total interest and the lowest combined lender-case DSCR, from the schedule."""
    if not src.has_mezz:
        return None
    amount = float(src.kpis["mezz_amount"])
    rows = src.schedule
    wal = math.fsum(r["period"] / src.ppy * r["mezz_principal"] for r in rows) / amount if amount > 0 else None
    span = max(src.test_periods, src.n_mezz)
    combined = [r["lender_cfads"] / (r["senior_service"] + r["mezz_service"]) for r in rows[:span]
                if r["senior_service"] + r["mezz_service"] > 0]
    return {"amount": amount, "wal_years": _finite(wal), "total_interest": math.fsum(r["mezz_interest"] for r in rows),
            "min_combined_dscr": min(combined) if combined and amount > 0 else None}


def stress_description(ruleset: Ruleset, project: Project, name: str) -> str:
    """One line describing a stress scenario of the ruleset."""
    spec = ruleset.stress_scenarios[name]
    if spec["kind"] == "cpi":
        return f"CPI {float(spec['cpi']):.1%} at every anniversary (rent and costs)"
    if spec["kind"] == "cpi_spike":
        return (f"CPI {float(spec['cpi']):.1%} at anniversaries 1-{int(spec['anniversaries'])}, "
                f"base CPI {project.base_cpi:.1%} after")
    parts = []
    if float(spec["rent_mult"]) != 1.0:
        parts.append(f"rent {float(spec['rent_mult']) - 1:+.0%}")
    if float(spec["opex_mult"]) != 1.0:
        parts.append(f"opex {float(spec['opex_mult']) - 1:+.0%}")
    return "Base case, " + " and ".join(parts or ["unchanged"])


def _passes(value: float | None, threshold: float) -> bool | None:
    return None if value is None else value >= threshold - STRESS_PASS_TOL


# ---- JSON -----------------------------------------------------------------------------------------------

def term_sheet_json(run: RunResult, rank: int, ruleset: Ruleset | None = None) -> dict[str, Any]:
    """The term sheet of ``rank`` as JSON: header, capital structure, sidecar, DSRA, fees, wrap, day-one
    value, equity, repo, gates, Monte Carlo, schedule, stress grid and assumptions (no NaN or infinity)."""
    return build_json(load_source(run, rank, ruleset))


def build_json(src: Source) -> dict[str, Any]:
    """JSON content of a term sheet from its source data."""
    k, p, d, pt = src.kpis, src.project, src.derived, src.point
    threshold = float(src.ruleset.gates["stress_min_dscr"])
    return {
        "format": "phase1-term-sheet", "format_version": FORMAT_VERSION,
        "header": _json_header(src),
        "structure": dict(pt),
        "capital_structure": _json_capital(src),
        "sidecar": {"indexation_mode": pt["indexation_mode"], "zcis_tenor_years": int(pt["zcis_tenor_years"]),
                    "exists": src.has_sidecar, "locked_rate": d.locked_rate, "gross": k["sidecar_gross"],
                    "haircut_pct": float(pt["sidecar_haircut_pct"]), "net": k["sidecar_net"]},
        "dsra": {"months": d.dsra_months, "window_periods": src.dsra_window, "amount": k["dsra_amount"],
                 "release_period": src.test_periods, "release_date": src.date_of(src.test_periods).isoformat()},
        "fees": _json_fees(src),
        "wrap": _json_wrap(src),
        "day_one_value": {"senior": k["senior_amount"], "mezzanine": k["mezz_amount"], "sidecar_net": k["sidecar_net"],
                          "dsra": k["dsra_amount"], "value": k["day_one_value"]},
        "equity": {"funding_need": d.funding_need, "required": k["equity_required"],
                   "share_of_funding_need": k["equity_required"] / d.funding_need, "irr": k["equity_irr"]},
        "repo": _json_repo(src),
        "gates": {"viable": k["viable"], "tier": k["tier"], "gate_a": k["gate_a"], "gate_b": k["gate_b"],
                  "near_miss": k["near_miss"], "hint": k["hint"]},
        "monte_carlo": _json_monte_carlo(src),
        "schedule": src.schedule,
        "stress": {"threshold": threshold, "scenarios": [
            {"name": name, "description": stress_description(src.ruleset, p, name),
             "min_dscr": k["stress"][name], "passed": _passes(k["stress"][name], threshold),
             "combined_min_dscr": (k["stress_total"] or {}).get(name),
             "combined_passed": _passes((k["stress_total"] or {}).get(name), threshold)}
            for name in src.ruleset.stress_scenarios]},
        "assumptions": {"project": p.to_dict(), "derived": d.to_dict(), "structure": dict(pt),
                        "ruleset": _json_ruleset(src)},
    }


def _json_header(src: Source) -> dict[str, Any]:
    m, p = src.run.meta, src.project
    return {"title": p.title, "country": p.country, "currency": p.currency, "tenant_rating": p.tenant_rating,
            "lease_years": p.lease_years, "gross_it_load_mw": p.gross_it_load_mw,
            "periods_per_year": p.periods_per_year,
            "run_id": src.run.run_id, "seed": m["seed"], "ruleset": dict(m["ruleset"]),
            "engine_version": m["engine_version"], "rank": src.rank, "topn": len(src.run.top),
            "tier": src.kpis["tier"], "permutation_id": src.entry["permutation_id"],
            "permutation_index": src.entry["permutation_index"], "created_at": m["created_at"],
            "closing_date": m["closing_date"]}


def _json_capital(src: Source) -> dict[str, Any]:
    k, d, pt = src.kpis, src.derived, src.point
    senior = {
        "amount": k["senior_amount"], "share_of_funding_need": k["advance_factor"], "rating": k["senior_rating"],
        "all_in_rate": k["senior_rate"], "coupon": float(pt["senior_coupon"]), "tenor_years": int(pt["senior_tenor"]),
        "amortisation": pt["senior_amort"], "io_months": int(pt["io_months"]), "wal_years": k["wal_years"],
        "min_dscr": k["min_dscr"], "avg_dscr": k["avg_dscr"], "llcr": k["llcr"],
        "sizing_dscr": float(pt["senior_dscr"]),
        "binding_constraint": k["binding_constraint"], "final_maturity": src.date_of(src.n).isoformat(),
        "refinanced_until": src.date_of(src.test_periods).isoformat() if src.bullet else None,
        "total_interest": k["total_interest"], "ltv": k["ltv"],
    }
    mz = mezz_figures(src)
    mezz = None
    if mz is not None:
        mezz = {"amount": mz["amount"], "share_of_funding_need": mz["amount"] / d.funding_need, "rating": None,
                "rate": k["mezz_rate"], "tenor_years": int(pt["mezz_tenor"]), "amortisation": pt["mezz_amort"],
                "wal_years": mz["wal_years"], "sizing_combined_dscr": float(pt["mezz_dscr"]),
                "min_combined_dscr": mz["min_combined_dscr"], "final_maturity": src.date_of(src.n_mezz).isoformat(),
                "total_interest": mz["total_interest"]}
    total = k["senior_amount"] + k["mezz_amount"]
    return {"senior": senior, "mezzanine": mezz,
            "total": {"amount": total, "share_of_funding_need": total / d.funding_need, "wacd": k["wacd"]}}


def _json_fees(src: Source) -> dict[str, Any]:
    p, d = src.project, src.derived
    fees = {name: {"pct": getattr(p, f"{name}_fee_pct"), "amount": getattr(p, f"{name}_fee_pct") * d.project_capex}
            for name in ("arranger", "legal", "rating")}
    return {**fees, "upfront_total": d.upfront_fees, "project_capex": d.project_capex,
            "admin_bps": p.admin_bps, "admin_annual": d.admin_annual, "wrap_premium_bps": p.wrap_premium_bps}


def _json_wrap(src: Source) -> dict[str, Any]:
    wrapped = bool(src.point["wrap"])
    u = src.underlying_rating
    return {"wrapped": wrapped, "underlying_rating": u if wrapped else None,
            "underlying_spread_bps": src.ruleset.spread_bps(u) if wrapped else None,
            "aaa_spread_bps": src.ruleset.spread_bps("AAA"), "premium_bps": src.project.wrap_premium_bps,
            "all_in_rate": src.kpis["senior_rate"], "rating": "AAA" if wrapped else None,
            "dscr_relief": src.project.wrap_dscr_relief}


def _json_repo(src: Source) -> dict[str, Any]:
    rule = src.ruleset.repo_rule(src.project.country, src.bullet)
    return {"eligible": src.kpis["repo_eligible"], "jurisdiction": src.project.country,
            "class": "bullet" if src.bullet else "amortising", "rule": rule, "reasons": src.kpis["repo_reasons"]}


def _json_monte_carlo(src: Source) -> dict[str, Any]:
    mc = src.ruleset.monte_carlo
    return {"paths": int(mc["paths"]), "persistence": float(mc["persistence"]), "volatility": float(mc["volatility"]),
            "seed": src.run.meta["seed"], "breach_dscr": float(mc["breach_dscr"]),
            "percentile": float(mc["percentile"]), "breach_probability": src.kpis.get("mc_breach_probability"),
            "p5_min_dscr": src.kpis.get("mc_p5_min_dscr")}


def _json_ruleset(src: Source) -> dict[str, Any]:
    rs, p = src.ruleset, src.project
    return {"version": rs.version, "sha256": rs.sha256, "tenant": {p.tenant_rating: rs.tenant(p.tenant_rating)},
            "rating_ladder": {p.country: rs.ladder(p.country)}, "spread_bps": rs.data["spread_bps"],
            "repo_rule": rs.repo_rule(p.country, src.bullet), "stress_scenarios": rs.stress_scenarios,
            "gates": rs.gates, "monte_carlo": rs.monte_carlo}


# ---- workbook styles ------------------------------------------------------------------------------------

#: Arial everywhere: Excel has it and LibreOffice substitutes the metric-compatible Liberation Sans, so column
#: widths and page breaks come out the same in both (Calibri falls back to the wider DejaVu Sans without Carlito).
FONT_NAME = "Arial"
BASE_FONT = Font(name=FONT_NAME, sz=10, family=2)
NAVY = "1F3864"
INPUT_BLUE = "0B3FB0"
THIN = Side(style="thin", color="A6A6A6")
MEDIUM = Side(style="medium", color=NAVY)
FONT_TITLE = Font(name=FONT_NAME, size=16, bold=True, color=NAVY)
FONT_SUBTITLE = Font(name=FONT_NAME, size=10, italic=True, color="595959")
FONT_SECTION = Font(name=FONT_NAME, size=12, bold=True, color=NAVY)
FONT_HEADER = Font(name=FONT_NAME, size=10, bold=True, color="FFFFFF")
FONT_LABEL = Font(name=FONT_NAME, size=10)
FONT_BOLD = Font(name=FONT_NAME, size=10, bold=True)
FONT_INPUT = Font(name=FONT_NAME, size=10, color=INPUT_BLUE)
FONT_INPUT_BOLD = Font(name=FONT_NAME, size=10, bold=True, color=INPUT_BLUE)
FONT_FORMULA = Font(name=FONT_NAME, size=10, color="000000")
FONT_FORMULA_BOLD = Font(name=FONT_NAME, size=10, bold=True, color="000000")
FONT_PASS = Font(name=FONT_NAME, size=10, bold=True, color="2E7D32")
FONT_FAIL = Font(name=FONT_NAME, size=10, bold=True, color="C62828")
FILL_HEADER = PatternFill("solid", fgColor=NAVY)
FILL_GROUP = PatternFill("solid", fgColor="D9E1F2")
FILL_TOTAL = PatternFill("solid", fgColor="F2F2F2")
FILL_KEY = PatternFill("solid", fgColor="FFF2CC")
ALIGN_HEADER = Alignment(horizontal="center", vertical="center", wrap_text=True)
ALIGN_RIGHT = Alignment(horizontal="right", vertical="center")
ALIGN_LEFT = Alignment(horizontal="left", vertical="center")
ALIGN_WRAP = Alignment(horizontal="left", vertical="top", wrap_text=True)


def number_formats(currency: str) -> dict[str, str]:
    """Number formats of a workbook in ``currency``: money with 2 decimals (0 for JPY), whole money for the
    periodic table (amounts below half a unit show as "-"), percentages, ratios, dates."""
    sym = CURRENCY_SYMBOLS[currency]
    decimals = "" if currency == "JPY" else ".00"
    money = f'"{sym}"#,##0{decimals}'
    whole = f'"{sym}"#,##0'
    return {
        "money": f'{money};({money});"-"',
        "money_whole": f'[>=0.5]{whole};[<=-0.5]({whole});"-"',
        "money_rate": f'"{sym}"#,##0.0000',
        "pct": "0.00%", "pct4": "0.0000%", "ratio": '0.00"x"', "index": "0.0000", "int": "0", "number": "#,##0.00",
        "count": "#,##0",
        "years": '0.00" yrs"', "tenor": '0" yrs"', "months": '0" months"', "bps": '0.0" bps"', "date": "DD-MMM-YYYY",
        "datetime": 'DD-MMM-YYYY HH:MM" UTC"', "text": "@", "general": "General", "periods": '0" periods"',
    }


def camel(key: str) -> str:
    """Workbook name of a field: gross_it_load_mw -> GrossItLoadMw."""
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


@dataclass
class Book:
    """The workbook being built, its number formats and the defined names of its cells."""

    wb: Workbook
    fmt: dict[str, str]
    names: dict[str, str] = field(default_factory=dict)

    def name(self, name: str, ws: Worksheet, ref: str) -> None:
        """Define a workbook name for a cell or range (absolute reference)."""
        if name in self.names:
            raise ValueError(f"duplicate workbook name {name}")
        parts = [f"${''.join(c for c in part if c.isalpha())}${''.join(c for c in part if c.isdigit())}"
                 for part in ref.split(":")]
        target = f"{quote_sheetname(ws.title)}!{':'.join(parts)}"
        self.names[name] = target
        self.wb.defined_names[name] = DefinedName(name, attr_text=target)

    def put(self, ws: Worksheet, row: int, col: int, value: Any, fmt: str | None = None, *, name: str | None = None,
            bold: bool = False, align: Alignment | None = None, text: bool = False) -> Any:
        """Write a value or a formula (a str starting with "="); inputs in blue, formulas in black.

        ``text``: the value is text (a label, a title, anything holding user data), written as a string shown
        as typed even when it starts with "=" (see :func:`text_cell`); only the writer's own formulas are not.
        """
        if text and isinstance(value, str):
            cell = text_cell(ws.cell(row=row, column=col), value)
        else:
            cell = ws.cell(row=row, column=col, value=_cell_value(value))
        is_formula = not text and isinstance(value, str) and value.startswith("=")
        is_number = isinstance(value, int | float | dt.date) and not isinstance(value, bool)
        if is_formula:
            cell.font = FONT_FORMULA_BOLD if bold else FONT_FORMULA
        elif is_number:
            cell.font = FONT_INPUT_BOLD if bold else FONT_INPUT
        else:
            cell.font = FONT_BOLD if bold else FONT_LABEL
        if fmt:
            cell.number_format = self.fmt[fmt]
        if align is not None:
            cell.alignment = align
        elif is_formula or is_number:
            cell.alignment = ALIGN_RIGHT
        if name:
            self.name(name, ws, cell.coordinate)
        return cell


def text_cell(cell: Any, value: str) -> Any:
    """Put ``value`` in ``cell`` as a string (cell type "s"), never a formula: a project title such as
    ``=HYPERLINK(...)`` reaches a third party's spreadsheet as the text typed, not as a live link."""
    cell.value = value
    cell.data_type = "s"
    return cell


def footer_text(value: str) -> str:
    """Text for a header or footer: "&" starts a code there (&P page, &D date), so a literal one is "&&"."""
    return value.replace("&", "&&")


def _cell_value(value: Any) -> Any:
    """Cell value: None and non-finite numbers are left blank; bools as Yes / No."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _title(book: Book, ws: Worksheet, title: str, subtitle: str, width: int) -> None:
    book.put(ws, 1, 1, title, text=True).font = FONT_TITLE
    book.put(ws, 2, 1, subtitle, text=True).font = FONT_SUBTITLE
    ws.row_dimensions[1].height = 24
    for col in range(1, width + 1):
        ws.cell(row=2, column=col).border = Border(bottom=MEDIUM)


def _page_setup(ws: Worksheet, footer: str, title_rows: str | None = None) -> None:
    """Landscape A4, fit to one page wide, print titles, narrow margins, a footer with page numbers."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = 0.5
    ws.page_margins.bottom = 0.6
    ws.page_margins.footer = 0.25
    ws.oddFooter.left.text = footer_text(footer)
    ws.oddFooter.left.size = 8
    ws.oddFooter.right.text = "&A · page &P of &N"
    ws.oddFooter.right.size = 8
    if title_rows:
        ws.print_title_rows = title_rows


def _widths(ws: Worksheet, widths: Sequence[float]) -> None:
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w


def _footer(src: Source) -> str:
    return (f"{src.project.title} · run {src.run.run_id} · rank {src.rank} · "
            f"indicative terms, Phase-1 engine {src.run.meta['engine_version']}")


# ---- Cash Flows -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Col:
    """A column of the Cash Flows sheet: key, header, group, number format, width, whether it is totalled."""

    key: str
    title: str
    group: str
    fmt: str
    width: float = 13.0
    total: bool = False


def cash_columns(src: Source) -> list[Col]:
    """The Cash Flows columns of a structure: sidecar, bullet, mezz and residual columns only where they apply."""
    w = src.dsra_window
    cols = [
        Col("period", "Period", "Period", "int", 7.5), Col("date", "Date", "Period", "date", 12.5),
        Col("lease_year", "Lease\nyear", "Period", "int", 6.5),
        Col("lender_rent_index", "Rent index\n(lender)", "Indices", "index", 10),
        Col("base_rent_index", "Rent index\n(base)", "Indices", "index", 10),
        Col("cost_index", "Cost\nindex", "Indices", "index", 9),
        Col("revenue_lender", "Revenue\n(lender)", "Cash flow", "money_whole", 9, True),
        Col("revenue_base", "Revenue\n(base)", "Cash flow", "money_whole", 9, True),
        Col("opex", "Opex", "Cash flow", "money_whole", 9, True),
        Col("admin", "Admin", "Cash flow", "money_whole", 9, True),
        Col("lender_cfads", "CFADS\n(lender)", "Cash flow", "money_whole", 9, True),
        Col("base_cfads", "CFADS\n(base)", "Cash flow", "money_whole", 9, True),
    ]
    if src.has_sidecar:
        cols.append(Col("sidecar", "Sidecar\n(uplift sold)", "Cash flow", "money_whole", 9, True))
    senior = "Senior notes"
    cols += [Col("senior_opening", "Opening\nbalance", senior, "money_whole", 9),
             Col("senior_interest", "Interest", senior, "money_whole", 9.5, True),
             Col("senior_principal", "Principal", senior, "money_whole", 9, True),
             Col("senior_closing", "Closing\nbalance", senior, "money_whole", 9)]
    if src.bullet:
        cols += [Col("senior_note_service", "Note service\n(incl. balloon)", senior, "money_whole", 13, True),
                 Col("refinancing_service", "Refinancing\nservice", senior, "money_whole", 9.5, True),
                 Col("senior_service", "Tested\nservice", senior, "money_whole", 9.5, True)]
    else:
        cols.append(Col("senior_service", "Debt\nservice", senior, "money_whole", 9.5, True))
    cols.append(Col("dscr", "DSCR", senior, "ratio", 8))
    if src.has_mezz:
        mezz = "Mezzanine"
        cols += [Col("mezz_opening", "Opening\nbalance", mezz, "money_whole", 9),
                 Col("mezz_interest", "Interest", mezz, "money_whole", 9, True),
                 Col("mezz_principal", "Principal", mezz, "money_whole", 9, True),
                 Col("mezz_closing", "Closing\nbalance", mezz, "money_whole", 9),
                 Col("mezz_service", "Debt\nservice", mezz, "money_whole", 9, True),
                 Col("combined_dscr", "Combined\nDSCR", mezz, "ratio", 9.5)]
    cols += [Col("dsra_window", f"Service, next\n{w} periods", "Reserve and equity", "money_whole", 12.5),
             Col("dsra_release", "DSRA\nrelease", "Reserve and equity", "money_whole", 9, True)]
    if src.residual > 0:
        cols.append(Col("residual", "Residual\nvalue", "Reserve and equity", "money_whole", 9, True))
    cols.append(Col("equity_flow", "Equity\nflow", "Reserve and equity", "money_whole", 9, True))
    return [replace(c, width=fit_width(src, c)) for c in cols]


def _column_values(src: Source, key: str) -> list[float]:
    """The engine's values of a money column (an estimate for the derived ones), for sizing its width."""
    rows, k = src.schedule, src.kpis
    estimate = {"mezz_closing": "mezz_opening", "dsra_window": "senior_service"}
    if key in ("dsra_release", "residual"):
        return [k["dsra_amount"] if key == "dsra_release" else src.residual]
    values = [float(r[estimate.get(key, key)]) for r in rows]
    if key == "dsra_window":
        values = [v * src.dsra_window for v in values]
    return values


def fit_width(src: Source, col: Col) -> float:
    """Column width: the header's minimum, or the widest formatted amount (totals in bold) with padding."""
    if col.fmt != "money_whole":
        return col.width
    values = _column_values(src, col.key)
    sym = CURRENCY_SYMBOLS[src.project.currency]
    widest = max(len(f"{sym}{abs(v):,.0f}") + (2 if v < 0 else 0) for v in values)
    if col.total:
        total = math.fsum(values)
        widest = max(widest, 1.1 * (len(f"{sym}{abs(total):,.0f}") + (2 if total < 0 else 0)))
    equity = src.kpis["equity_required"]
    if col.key == "equity_flow":
        widest = max(widest, len(f"{sym}{equity:,.0f}") + 2)
    return max(col.width, round(widest + 1.5, 1))


@dataclass
class CashLayout:
    """Where things are on the Cash Flows sheet (rows and column letters)."""

    letters: dict[str, str]
    row0: int  # period 0 (closing)
    first: int  # period 1
    last: int  # period N
    total_row: int

    def row(self, period: int) -> int:
        return self.row0 + period

    def col_range(self, key: str, first_period: int = 1, last_period: int | None = None) -> str:
        c = self.letters[key]
        return f"'Cash Flows'!${c}${self.row(first_period)}:${c}${self.row(last_period or self.last - self.row0)}"


CASH_HEADER_ROWS = (4, 5)  # group header, column header


def _cash_cell(src: Source, key: str, p: int, r: int, L: dict[str, str]) -> Any:
    """Value or formula of one Cash Flows cell (period p on sheet row r); None leaves it blank."""
    s = src.schedule[p - 1]
    if key in ("period", "lease_year", "lender_rent_index", "base_rent_index", "cost_index", "sidecar"):
        return s[key]
    if key == "date":
        return dt.date.fromisoformat(s["date"])
    simple = {
        "revenue_lender": f"=GrossIncomeAnnual/PeriodsPerYear*{L['lender_rent_index']}{r}",
        "revenue_base": f"=GrossIncomeAnnual/PeriodsPerYear*{L['base_rent_index']}{r}",
        "opex": f"=OpexAnnual/PeriodsPerYear*{L['cost_index']}{r}",
        "admin": "=AdminAnnual/PeriodsPerYear",
        "lender_cfads": f"={L['revenue_lender']}{r}-{L['opex']}{r}-{L['admin']}{r}",
        "base_cfads": f"={L['revenue_base']}{r}-{L['opex']}{r}-{L['admin']}{r}",
    }
    if key in simple:
        return simple[key]
    if key.startswith("senior_") or key in ("refinancing_service", "dscr"):
        return _senior_cell(src, key, p, r, L, s)
    if key.startswith("mezz_") or key == "combined_dscr":
        return _mezz_cell(src, key, p, r, L, s)
    return _equity_cell(src, key, p, r, L)


def _senior_cell(src: Source, key: str, p: int, r: int, L: dict[str, str], s: dict[str, Any]) -> Any:
    op, it, pr, cl = (L[k] for k in ("senior_opening", "senior_interest", "senior_principal", "senior_closing"))
    if key == "dscr":
        sv = L["senior_service"]
        return f'=IF({sv}{r}>0,{L["lender_cfads"]}{r}/{sv}{r},"")' if p <= src.test_periods else None
    if key == "senior_service":
        if p > src.test_periods:
            return None
        if src.bullet:  # the balloon is refinanced: tested service = interest + refinancing service
            return f"={it}{r}+{L['refinancing_service']}{r}" if p <= src.n else f"={L['refinancing_service']}{r}"
        return f"={it}{r}+{pr}{r}"
    if key == "refinancing_service":
        return s["refinancing_service"] if src.n < p <= src.test_periods else None
    if p > src.n:
        return None
    return {"senior_opening": f"={cl}{r - 1}", "senior_interest": f"=SeniorRate/PeriodsPerYear*{op}{r}",
            "senior_principal": s["senior_principal"], "senior_closing": f"={op}{r}-{pr}{r}",
            "senior_note_service": f"={it}{r}+{pr}{r}"}[key]


def _mezz_cell(src: Source, key: str, p: int, r: int, L: dict[str, str], s: dict[str, Any]) -> Any:
    if key == "combined_dscr":
        if p > max(src.test_periods, src.n_mezz):
            return None
        sv, ms, cf = L["senior_service"], L["mezz_service"], L["lender_cfads"]
        return f'=IF({sv}{r}+{ms}{r}>0,{cf}{r}/({sv}{r}+{ms}{r}),"")'
    if p > src.n_mezz:
        return None
    op, it, pr, cl = (L[k] for k in ("mezz_opening", "mezz_interest", "mezz_principal", "mezz_closing"))
    return {"mezz_opening": f"={cl}{r - 1}", "mezz_interest": f"=MezzCoupon/PeriodsPerYear*{op}{r}",
            "mezz_principal": s["mezz_principal"], "mezz_closing": f"={op}{r}-{pr}{r}",
            "mezz_service": f"={it}{r}+{pr}{r}"}[key]


def _equity_cell(src: Source, key: str, p: int, r: int, L: dict[str, str]) -> Any:
    t, w = src.test_periods, src.dsra_window
    if key == "dsra_window":
        span = min(w, t)
        if p > t - span + 1:
            return None
        return f"=SUM({L['senior_service']}{r}:{L['senior_service']}{r + span - 1})"
    if key == "dsra_release":
        return "=DsraAmount" if p == t else None
    if key == "residual":
        return "=ResidualValuePct*MarketValue" if p == src.n_periods else None
    if key != "equity_flow":
        raise KeyError(key)
    terms = f"={L['base_cfads']}{r}"
    for minus in ("sidecar", "senior_service", "mezz_service"):
        if minus in L:
            terms += f"-{L[minus]}{r}"
    for plus in ("dsra_release", "residual"):
        if plus in L:
            terms += f"+{L[plus]}{r}"
    return terms


def _irr_guess(src: Source) -> float:
    """IRR() guess: the engine's periodic IRR rounded down to 0.1 %, so Newton starts below the root and
    converges monotonically (LibreOffice's default guess of 10 % per period does not converge)."""
    irr = src.kpis["equity_irr"]
    periodic = (1.0 + irr) ** (1.0 / src.ppy) - 1.0
    return math.floor(periodic * 1000.0) / 1000.0


def write_cash_flows(book: Book, ws: Worksheet, src: Source) -> CashLayout:
    """The Cash Flows sheet: one row per period (period 0 = closing), totals, NPVs and the equity IRR."""
    cols = cash_columns(src)
    letters = {c.key: get_column_letter(i) for i, c in enumerate(cols, start=1)}
    n_periods = src.n_periods
    layout = CashLayout(letters=letters, row0=6, first=7, last=6 + n_periods, total_row=7 + n_periods)
    breaks = block_breaks(cols)
    _cash_title(book, ws, src, cols, breaks)
    _cash_headers(book, ws, cols, breaks)
    _widths(ws, [c.width for c in cols])
    _cash_row0(book, ws, src, layout)
    for period in range(1, n_periods + 1):
        r = layout.row(period)
        for i, c in enumerate(cols, start=1):
            value = _cash_cell(src, c.key, period, r, letters)
            if value is not None:
                book.put(ws, r, i, value, c.fmt)
    for c in cols:
        if c.key not in ("period", "date", "lease_year"):
            book.name(f"CF_{camel(c.key)}", ws, f"{letters[c.key]}{layout.first}:{letters[c.key]}{layout.last}")
    _cash_totals(book, ws, cols, layout)
    _cash_summary(book, ws, src, layout)
    ws.freeze_panes = ws.cell(row=layout.row0, column=4)
    _page_setup(ws, _footer(src), f"{CASH_HEADER_ROWS[0]}:{CASH_HEADER_ROWS[1]}")
    _print_in_blocks(ws, cols, breaks)
    return layout


def _cash_title(book: Book, ws: Worksheet, src: Source, cols: list[Col], breaks: list[int]) -> None:
    """"Cash flows" over the repeated title columns; the project and rank over each printed block, the
    explanation wrapped inside the first block (text running past a block would print cut on the next page)."""
    p = src.project
    _title(book, ws, "Cash flows", "", len(cols))
    bounds = [TITLE_COLUMNS, *breaks, len(cols)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        book.put(ws, 1, a + 1, f"{p.title} — rank {src.rank}" + (" (continued)" if i else ""),
                 text=True).font = FONT_SECTION
        ws.merge_cells(start_row=1, start_column=a + 1, end_row=1, end_column=b)
    note = (f"{PERIOD_NAMES.get(src.ppy, str(src.ppy))} periods from closing {src.closing:%d-%b-%Y}; amounts in "
            f"{p.currency}. Blue figures are engine inputs, black figures are live formulas. Lender case: the "
            f"sizing case (DSCR); base case: base CPI (equity flows).")
    book.put(ws, 2, TITLE_COLUMNS + 1, note, align=ALIGN_WRAP).font = FONT_SUBTITLE
    ws.merge_cells(start_row=2, start_column=TITLE_COLUMNS + 1, end_row=2, end_column=bounds[1])
    ws.row_dimensions[2].height = 26


#: Printable width of landscape A4 with 0.4 in margins, in pixels at 96 dpi; a column of width w is ~7 w + 5 px.
A4_LANDSCAPE_PX = 1045
MIN_PRINT_SCALE = 0.62  # 10 pt figures print at 6.2 pt or larger
MAX_PRINT_SCALE = 0.80  # larger only adds pages
TITLE_COLUMNS = 3  # period, date, lease year: repeated on every printed block


def _px(cols: Sequence[Col]) -> float:
    return sum(7 * c.width + 5 for c in cols)


def _fill(units: list[list[Col]], budget: float) -> list[list[Col]] | None:
    """Greedy page-wide blocks of whole units within ``budget`` px; None if a unit alone is too wide."""
    blocks: list[list[Col]] = [[]]
    for unit in units:
        if _px(unit) > budget:
            return None
        if blocks[-1] and _px(blocks[-1]) + _px(unit) > budget:
            blocks.append([])
        blocks[-1].extend(unit)
    return blocks


def print_blocks(cols: Sequence[Col]) -> list[list[Col]]:
    """The columns after the title columns in as few page-wide blocks as print at MIN_PRINT_SCALE, balanced;
    breaks fall between column groups (Senior notes, Mezzanine...) unless splitting a group saves a page width
    or makes the widest block over 10 % narrower."""
    title, body = cols[:TITLE_COLUMNS], list(cols[TITLE_COLUMNS:])
    budget = A4_LANDSCAPE_PX / MIN_PRINT_SCALE - _px(title)
    groups: list[list[Col]] = []
    for c in body:
        if groups and groups[-1][0].group == c.group:
            groups[-1].append(c)
        else:
            groups.append([c])
    options = [(blocks, penalty) for blocks, penalty in ((_balanced(groups, budget), 1.0),
                                                         (_balanced([[c] for c in body], budget), 1.1))
               if blocks is not None]
    if not options:
        return [body]
    best, _ = min(options, key=lambda o: (len(o[0]), o[1] * max(_px(b) for b in o[0])))
    return best


def _balanced(units: list[list[Col]], budget: float) -> list[list[Col]] | None:
    """The fewest blocks of whole units within ``budget``, filled against the narrowest budget that keeps them."""
    fewest = _fill(units, budget)
    if fewest is None:
        return None
    best, low, high = fewest, max(_px(u) for u in units), budget
    while high - low > 1:
        mid = (low + high) / 2
        trial = _fill(units, mid)
        if trial is not None and len(trial) <= len(fewest):
            best, high = trial, mid
        else:
            low = mid
    return best


def block_breaks(cols: Sequence[Col]) -> list[int]:
    """Column numbers (1-based) after which a printed block ends; none when the table fits one page wide."""
    blocks = print_blocks(cols)
    ends, end = [], TITLE_COLUMNS
    for block in blocks[:-1]:
        end += len(block)
        ends.append(end)
    return ends


def _print_in_blocks(ws: Worksheet, cols: Sequence[Col], breaks: list[int]) -> None:
    """Print a wide table in page-wide column blocks: one scale for all blocks (each fits the page width), a
    column break between blocks, the title columns repeated, pages ordered across then down.

    Fitting 30 columns to one page wide would print 10 pt figures at ~4 pt; narrow tables keep fit-to-width."""
    from openpyxl.worksheet.pagebreak import Break

    if not breaks:
        return
    bounds = [TITLE_COLUMNS, *breaks, len(cols)]
    widest = max(_px(cols[:TITLE_COLUMNS]) + _px(cols[a:b]) for a, b in itertools.pairwise(bounds))
    ws.sheet_properties.pageSetUpPr.fitToPage = False
    ws.page_setup.scale = int(100 * min(MAX_PRINT_SCALE, 0.97 * A4_LANDSCAPE_PX / widest))
    ws.page_setup.pageOrder = "overThenDown"
    ws.print_title_cols = f"A:{get_column_letter(TITLE_COLUMNS)}"
    for end in breaks:
        ws.col_breaks.append(Break(id=end))


def _cash_headers(book: Book, ws: Worksheet, cols: list[Col], breaks: list[int]) -> None:
    """Group header (merged per group, cut at printed block breaks) and the column headers."""
    group_row, head_row = CASH_HEADER_ROWS
    start = 1
    for i in range(1, len(cols) + 1):
        if i == len(cols) or cols[i].group != cols[start - 1].group or i in breaks:
            continued = start > 1 and cols[start - 2].group == cols[start - 1].group
            title = cols[start - 1].group + (" (continued)" if continued else "")
            book.put(ws, group_row, start, title, align=ALIGN_HEADER, bold=True, text=True)
            for j in range(start, i + 1):
                cell = ws.cell(row=group_row, column=j)
                cell.fill = FILL_GROUP
                cell.border = Border(left=THIN if j == start else None, right=THIN if j == i else None)
            if i > start:
                ws.merge_cells(start_row=group_row, start_column=start, end_row=group_row, end_column=i)
            start = i + 1
    for i, c in enumerate(cols, start=1):
        cell = book.put(ws, head_row, i, c.title, align=ALIGN_HEADER, text=True)
        cell.font = FONT_HEADER
        cell.fill = FILL_HEADER
    ws.row_dimensions[head_row].height = 30


def _cash_row0(book: Book, ws: Worksheet, src: Source, layout: CashLayout) -> None:
    """Period 0: the closing date, the drawn tranches and the equity invested."""
    r, L = layout.row0, layout.letters
    book.put(ws, r, 1, 0, "int")
    book.put(ws, r, 2, src.closing, "date")
    book.put(ws, r, _col(L["senior_closing"]), "=SeniorAmount", "money_whole")
    if "mezz_closing" in L:
        book.put(ws, r, _col(L["mezz_closing"]), "=MezzAmount", "money_whole")
    book.put(ws, r, _col(L["equity_flow"]), "=-EquityRequired", "money_whole")
    for col in range(1, len(L) + 1):
        ws.cell(row=r, column=col).fill = FILL_TOTAL


def _col(letter: str) -> int:
    from openpyxl.utils import column_index_from_string

    return column_index_from_string(letter)


def _cash_totals(book: Book, ws: Worksheet, cols: list[Col], layout: CashLayout) -> None:
    r = layout.total_row
    book.put(ws, r, 1, f"Total, periods 1-{layout.last - layout.row0}", bold=True, align=ALIGN_LEFT)
    for i, c in enumerate(cols, start=1):
        cell = ws.cell(row=r, column=i)
        cell.fill = FILL_TOTAL
        cell.border = Border(top=THIN, bottom=MEDIUM)
        if c.total:
            letter = layout.letters[c.key]
            book.put(ws, r, i, f"=SUM({letter}{layout.first}:{letter}{layout.last})", c.fmt, bold=True,
                     name=f"Total{camel(c.key)}")


def _cash_summary(book: Book, ws: Worksheet, src: Source, layout: CashLayout) -> None:
    """NPVs and the equity IRR below the totals: label (merged A:F), value (G), how it is computed (H...)."""
    L, first, last = layout.letters, layout.first, layout.last
    t_row = layout.row(src.test_periods)
    eq = L["equity_flow"]
    lines: list[tuple[str, Any, str, str | None, str]] = [
        ("PV of lender-case CFADS over the senior test periods, at the all-in rate",
         f"=NPV(SeniorRate/PeriodsPerYear,{L['lender_cfads']}{first}:{L['lender_cfads']}{t_row})", "money",
         "LenderCfadsPv", f"periods 1-{src.test_periods}; LLCR = this PV / senior amount"),
    ]
    if src.has_sidecar:
        lines.append(("PV of the sidecar (sold rent uplift) at the unwrapped coupon",
                      f"=NPV(SeniorCoupon/PeriodsPerYear,{L['sidecar']}{first}:{L['sidecar']}{last})", "money",
                      "SidecarPv", "the sidecar's gross value"))
    if src.kpis["equity_irr"] is not None:
        guess = _irr_guess(src)
        lines += [
            ("Equity IRR per period", f"=IRR({eq}{layout.row0}:{eq}{last},{guess:g})", "pct4", "EquityIrrPeriodic",
             f"IRR of the equity flows, periods 0-{src.n_periods} (guess {guess:g})"),
            ("Equity IRR, annualised", "=(1+EquityIrrPeriodic)^PeriodsPerYear-1", "pct", "EquityIrr",
             "(1 + periodic IRR)^periods per year - 1"),
            ("NPV of the equity flows at the IRR (check: zero)",
             f"={eq}{layout.row0}+NPV(EquityIrrPeriodic,{eq}{first}:{eq}{last})", "money", "EquityNpvAtIrr",
             "equity invested at closing plus the PV of every later flow"),
        ]
    else:
        lines.append(("Equity IRR", "n/a", "text", None, "no unique IRR: a later equity flow is negative, "
                                                         "or no equity is required (METHODOLOGY section 7)"))
    # inside the first printed block (columns after the repeated title columns): label over six columns with
    # its explanation, the value over the next two
    label_col, value_col = TITLE_COLUMNS + 1, TITLE_COLUMNS + 7
    r = layout.total_row + 2
    book.put(ws, r, label_col, "Present values and equity return", bold=True).font = FONT_SECTION
    for label, value, fmt, name, note in lines:
        r += 1
        book.put(ws, r, label_col, f"{label}\n{note}", align=ALIGN_WRAP, text=True)
        ws.merge_cells(start_row=r, start_column=label_col, end_row=r, end_column=value_col - 1)
        book.put(ws, r, value_col, value, fmt, name=name, bold=True, align=Alignment(horizontal="right",
                                                                                       vertical="top"))
        ws.merge_cells(start_row=r, start_column=value_col, end_row=r, end_column=value_col + 1)
        ws.cell(row=r, column=value_col).fill = FILL_KEY
        ws.row_dimensions[r].height = 27


# ---- Term Sheet -----------------------------------------------------------------------------------------

@dataclass
class Panel:
    """A block of label / value rows on the Term Sheet, starting at (row, col); headings are recorded."""

    book: Book
    ws: Worksheet
    row: int
    col: int
    span: int  # columns the panel occupies (label + values)
    merge_single: bool = False  # a single value spans every value column (right-aligned at the panel's edge)
    headings: list[int] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.row += 1
        self.book.put(self.ws, self.row, self.col, text, text=True).font = FONT_SECTION
        for c in range(self.col, self.col + self.span):
            self.ws.cell(row=self.row, column=c).border = Border(bottom=MEDIUM)
        self.headings.append(self.row)
        self.row += 1

    def line(self, label: str, *values: tuple[Any, str | None, str | None], key: bool = False,
             wide: bool = False) -> None:
        """One row: a label then (value, format, workbook name) per value column; ``wide`` text is left-aligned
        so that it runs on into the empty cells to its right."""
        self.book.put(self.ws, self.row, self.col, label, bold=key, align=ALIGN_LEFT, text=True)
        for i, (value, fmt, name) in enumerate(values, start=1):
            cell = self.book.put(self.ws, self.row, self.col + i, value, fmt, name=name, bold=key)
            if isinstance(value, str | bool) and not str(value).startswith("="):
                cell.alignment = ALIGN_LEFT if wide else ALIGN_RIGHT
            if key:
                cell.fill = FILL_KEY
        if self.merge_single and len(values) == 1 and self.span > 2 and not wide:
            self.ws.merge_cells(start_row=self.row, start_column=self.col + 1, end_row=self.row,
                                end_column=self.col + self.span - 1)
        for c in range(self.col, self.col + self.span):
            border = self.ws.cell(row=self.row, column=c).border
            self.ws.cell(row=self.row, column=c).border = Border(bottom=THIN, top=border.top)
        self.row += 1


def _v(value: Any, fmt: str | None = None, name: str | None = None) -> tuple[Any, str | None, str | None]:
    return (value, fmt, name)


NONE = _v("—")


def _or_none(value: Any, fmt: str) -> tuple[Any, str | None, str | None]:
    return NONE if value is None else _v(value, fmt)


TERM_SHEET_WIDTHS = (31, 18, 18, 18, 3, 31, 19, 19)
ROW_PT, HEADING_PT = 13.0, 15.5
A4_LANDSCAPE_HEIGHT_PX = 688  # 8.27 in less 0.5 in top and 0.6 in bottom margins, at 96 dpi


def write_term_sheet(book: Book, ws: Worksheet, src: Source, cash: CashLayout) -> None:
    """The Term Sheet: on the left the capital structure, day-one value and equity, repo and gates; on the right
    the transaction, sidecar, DSRA, fees, wrap and Monte Carlo; the DSCR and balance chart on a second page."""
    p, k = src.project, src.kpis
    _widths(ws, TERM_SHEET_WIDTHS)
    _title(book, ws, f"Indicative term sheet — {p.title}",
           f"Rank {src.rank} of {len(src.run.top)} ({k['tier']}) of run {src.run.run_id}. Indicative terms for "
           f"discussion. Blue figures are engine inputs, black figures are live formulas.", 8)
    left = Panel(book, ws, 2, 1, 4)
    right = Panel(book, ws, 2, 6, 3, merge_single=True)
    _capital_structure(left, src, cash)
    _day_one(left, src)
    _repo_gates(left, src)
    _transaction(right, src)
    _sidecar_dsra(right, src)
    _fees(right, src)
    _wrap(right, src)
    _monte_carlo(right, src)
    last = max(left.row, right.row) - 1
    for r in range(3, last + 1):
        ws.row_dimensions[r].height = HEADING_PT if r in left.headings + right.headings else ROW_PT
    chart_row = last + 2
    _chart(book, ws, src, cash, chart_row)
    _page_setup(ws, _footer(src))
    _one_page_scale(ws, last)
    ws.print_area = f"A1:H{chart_row + 30}"
    from openpyxl.worksheet.pagebreak import Break

    ws.row_breaks.append(Break(id=last))


def _term_sheet_width_px() -> int:
    """Width of the Term Sheet's printed columns A..H at 96 dpi (Arial 10: 7 px per character + 5 px padding)."""
    return sum(7 * w + 5 for w in TERM_SHEET_WIDTHS)


def _one_page_scale(ws: Worksheet, last_row: int) -> None:
    """Scale the Term Sheet so rows 1..last_row fill one landscape page (width and height), the chart the next.

    Fit-to-page would ignore the page break before the chart, so the scale is computed from the known widths and
    row heights (Arial 10; LibreOffice uses the metric-compatible Liberation Sans)."""
    width = _term_sheet_width_px()
    height = sum((ws.row_dimensions[r].height or ROW_PT) * 96 / 72 for r in range(1, last_row + 1))
    ws.sheet_properties.pageSetUpPr.fitToPage = False
    ws.page_setup.scale = int(100 * min(1.0, 0.97 * A4_LANDSCAPE_PX / width,
                                        0.97 * A4_LANDSCAPE_HEIGHT_PX / height))


def _capital_structure(panel: Panel, src: Source, cash: CashLayout) -> None:
    k, pt = src.kpis, src.point
    mz = mezz_figures(src)
    L = cash.letters
    panel.heading("Capital structure")
    for i, title in enumerate(("Senior notes", "Mezzanine", "Total"), start=1):
        cell = panel.book.put(panel.ws, panel.row, panel.col + i, title, align=ALIGN_HEADER)
        cell.font, cell.fill = FONT_HEADER, FILL_HEADER
    cell = panel.book.put(panel.ws, panel.row, panel.col, "Tranche", align=ALIGN_LEFT)
    cell.font, cell.fill = FONT_HEADER, FILL_HEADER
    panel.row += 1
    mezz_on = mz is not None
    wrapped = bool(pt["wrap"])
    rate = ("=ROUND(SeniorCoupon-(UnderlyingSpreadBps-AaaSpreadBps)/10000+WrapPremiumBps/10000,10)" if wrapped
            else k["senior_rate"])
    cf = f"'Cash Flows'!${L['period']}${cash.first}:${L['period']}${cash.last}"
    panel.line("Amount", _v(k["senior_amount"], "money", "SeniorAmount"),
               _v(k["mezz_amount"], "money", "MezzAmount"), _v("=SeniorAmount+MezzAmount", "money", "TotalDebt"),
               key=True)
    panel.line("% of funding need", _v("=SeniorAmount/FundingNeed", "pct", "SeniorShareOfNeed"),
               _v("=MezzAmount/FundingNeed", "pct", "MezzShareOfNeed"),
               _v("=TotalDebt/FundingNeed", "pct", "TotalShareOfNeed"))
    panel.line("Rating", _v(k["senior_rating"] or "—"), _v("unrated") if mezz_on else NONE, NONE)
    panel.line("All-in rate (WACD for the total)", _v(rate, "pct", "SeniorRate"),
               _v(float(pt["mezz_coupon"]), "pct", "MezzCoupon") if mezz_on else NONE,
               _v("=(SeniorAmount*SeniorRate+MezzAmount*MezzCoupon)/TotalDebt" if mezz_on
                  else "=SeniorAmount*SeniorRate/TotalDebt", "pct", "Wacd"))
    if wrapped:
        panel.line("Coupon before wrap", _v("=SeniorCoupon", "pct"), NONE, NONE)
    panel.line("Tenor", _v(int(pt["senior_tenor"]), "tenor"), _v(int(pt["mezz_tenor"]), "tenor") if mezz_on else NONE,
               NONE)
    panel.line("Amortisation", _v(_amort_text(src)), _v(pt["mezz_amort"]) if mezz_on else NONE, NONE)
    panel.line("Interest-only period", _v(int(pt["io_months"]), "months"), NONE, NONE)
    panel.line("Weighted average life",
               _v(f"=SUMPRODUCT({cf},{cash.col_range('senior_principal')})/PeriodsPerYear/SeniorAmount",
                  "years", "SeniorWal"),
               _v(f"=SUMPRODUCT({cf},{cash.col_range('mezz_principal')})/PeriodsPerYear/MezzAmount", "years",
                  "MezzWal") if mezz_on and mz["amount"] > 0 else NONE, NONE)
    panel.line("Sizing DSCR (mezz: combined)", _v(float(pt["senior_dscr"]), "ratio"),
               _v(float(pt["mezz_dscr"]), "ratio") if mezz_on else NONE, NONE)
    panel.line("Minimum DSCR (mezz: combined)", _v("=MIN(CF_Dscr)", "ratio", "SeniorMinDscr"),
               _v("=MIN(CF_CombinedDscr)", "ratio", "CombinedMinDscr")
               if mezz_on and mz["amount"] > 0 else NONE, NONE)
    panel.line("Average DSCR", _v("=AVERAGE(CF_Dscr)", "ratio", "SeniorAvgDscr"), NONE, NONE)
    panel.line("LLCR", _v("=LenderCfadsPv/SeniorAmount", "ratio", "SeniorLlcr"), NONE, NONE)
    panel.line("Loan to value", _v("=SeniorAmount/MarketValue", "pct", "SeniorLtv"), NONE, NONE)
    panel.line("Binding sizing limit", _v(k["binding_constraint"] or "—"), NONE, NONE)
    panel.line("Final maturity", _v(src.date_of(src.n), "date"),
               _v(src.date_of(src.n_mezz), "date") if mezz_on else NONE, NONE)
    if src.bullet:
        panel.line("Balloon refinanced until", _v(src.date_of(src.test_periods), "date"), NONE, NONE)
    panel.line("Total interest", _v("=TotalSeniorInterest", "money", "SeniorTotalInterest"),
               _v("=TotalMezzInterest", "money", "MezzTotalInterest") if mezz_on else NONE,
               _v("=SeniorTotalInterest+MezzTotalInterest" if mezz_on else "=SeniorTotalInterest", "money",
                  "TotalInterest"))


def _amort_text(src: Source) -> str:
    return "bullet, refinanced" if src.bullet else str(src.point["senior_amort"])


def _transaction(panel: Panel, src: Source) -> None:
    p, m, d = src.project, src.run.meta, src.derived
    created = dt.datetime.fromisoformat(m["created_at"].replace("Z", "+00:00")).replace(tzinfo=None)
    panel.heading("Transaction")
    panel.line("Jurisdiction / currency", _v(f"{p.country} / {p.currency}"))
    panel.line("Tenant rating / lease term", _v(f"{p.tenant_rating} / {p.lease_years} years"))
    panel.line("IT load (gross / net)", _v(f"{p.gross_it_load_mw:,.1f} / {d.net_it_load_mw:,.1f} MW"))
    panel.line("Closing date", _v(src.closing, "date"))
    panel.line("Rank / tier / permutation", _v(f"{src.rank} of {len(src.run.top)} / {src.kpis['tier']} / "
                                               f"{src.entry['permutation_id']}"))
    panel.line("Run id / seed", _v(f"{src.run.run_id} / {m['seed']}"))
    panel.line("Ruleset / engine", _v(f"{m['ruleset']['version']} ({m['ruleset']['sha256'][:12]}) / "
                                      f"{m['engine_version']}"))
    panel.line("Run timestamp", _v(created, "datetime"))


def _fees(panel: Panel, src: Source) -> None:
    panel.heading("Fees and costs")
    for name in ("arranger", "legal", "rating"):
        panel.line(f"{name.capitalize()} fee", _v(f"={camel(name)}FeePct", "pct"),
                   _v(f"={camel(name)}FeePct*ProjectCapex", "money", f"{camel(name)}FeeAmount"))
    panel.line("Upfront fees (of capex)", _v("=UpfrontFees/ProjectCapex", "pct", "UpfrontFeePct"),
               _v("=UpfrontFees", "money", "UpfrontFeesTotal"))
    panel.line("Admin cost, per year", _v("=AdminBps", "bps"), _v("=AdminAnnual", "money", "AdminPerYear"))


def _wrap(panel: Panel, src: Source) -> None:
    p = src.project
    wrapped = bool(src.point["wrap"])
    panel.heading("Wrap")
    panel.line("Wrapped", _v(wrapped))
    if wrapped:
        u = src.underlying_rating
        panel.line("Underlying rating / spread", _v(u), _v(src.ruleset.spread_bps(u), "bps", "UnderlyingSpreadBps"))
        panel.line("AAA spread", _v(None), _v(src.ruleset.spread_bps("AAA"), "bps", "AaaSpreadBps"))
        panel.line("Premium, per year", _v(None), _v("=WrapPremiumBps", "bps"))
        panel.line("Wrapped rating / DSCR relief", _v("AAA"), _v(p.wrap_dscr_relief, "ratio"))
    else:
        panel.line("Premium if wrapped, per year", _v(None), _v("=WrapPremiumBps", "bps"))


def _day_one(panel: Panel, src: Source) -> None:
    k = src.kpis
    panel.heading("Day-one value and equity")
    panel.line("Senior notes", _v("=SeniorAmount", "money"))
    panel.line("Mezzanine", _v("=MezzAmount", "money"))
    panel.line("Sidecar, net of haircut", _v("=SidecarNet", "money"))
    panel.line("Less: DSRA funded at closing", _v("=-DsraAmount", "money"))
    panel.line("Day-one value", _v("=SeniorAmount+MezzAmount+SidecarNet-DsraAmount", "money", "DayOneValue"),
               key=True)
    panel.line("Funding need (capex + upfront fees)", _v("=FundingNeed", "money"))
    panel.line("Equity required", _v("=FundingNeed-DayOneValue", "money", "EquityRequired"), key=True)
    panel.line("Equity share of funding need", _v("=EquityRequired/FundingNeed", "pct", "EquityShare"))
    if k["equity_irr"] is None:
        panel.line("Equity IRR (base case)", _v("n/a: no unique IRR"))
    else:
        panel.line("Equity IRR (base case)", _v("=EquityIrr", "pct"), key=True)


def _sidecar_dsra(panel: Panel, src: Source) -> None:
    k, pt, d = src.kpis, src.point, src.derived
    panel.heading("Sidecar (ZCIS uplift sold at closing)")
    panel.line("Indexation mode / ZCIS tenor", _v(f"{pt['indexation_mode']} / {int(pt['zcis_tenor_years'])} years"))
    panel.line("Locked rate", _v("=LockedRate", "pct"))
    if src.has_sidecar:
        panel.line("Gross value (PV at the senior coupon)", _v("=SidecarPv", "money", "SidecarGross"))
    else:
        panel.line("Gross value (no uplift sold)", _v(k["sidecar_gross"], "money", "SidecarGross"))
    panel.line("Haircut", _v(float(pt["sidecar_haircut_pct"]), "pct", "SidecarHaircut"))
    panel.line("Net value", _v("=SidecarGross*(1-SidecarHaircut)", "money", "SidecarNet"))
    panel.heading("Debt service reserve (DSRA)")
    panel.line("Months of senior service", _v(d.dsra_months, "months"))
    panel.line("Window", _v(src.dsra_window, "periods"))
    panel.line("Amount (largest window)", _v("=MAX(CF_DsraWindow)", "money", "DsraAmount"), key=True)
    panel.line("Released", _v(src.date_of(src.test_periods), "date"))


def _repo_gates(panel: Panel, src: Source) -> None:
    k, p = src.kpis, src.project
    rule = src.ruleset.repo_rule(p.country, src.bullet)
    panel.heading("Repo eligibility")
    panel.line("Eligible", _v(bool(k["repo_eligible"])), key=True)
    if rule is not None:
        panel.line(f"{p.country} {'bullet' if src.bullet else 'amortising'} rule",
                   _v(f"min {rule['min_rating']}, DSCR ≥ {rule['min_dscr']:.2f}x, LTV ≤ {rule['max_ltv']:.0%}, "
                      f"tenor ≤ {rule['max_tenor']} yrs, DSRA ≥ {rule['min_dsra_months']} months"), wide=True)
    for reason in k["repo_reasons"]:
        panel.line("Fails", _v(reason), wide=True)
    panel.heading("Gates")
    for gate in ("gate_a", "gate_b"):
        title = "Gate A (feasibility)" if gate == "gate_a" else "Gate B (credit)"
        failures = k[gate]
        if not failures:
            panel.line(title, _v("passed"), wide=True)
        for f in failures:
            panel.line(title, _v(f"{f['check']}: {_num_text(f['value'])} vs {_num_text(f['threshold'])}"), wide=True)
    panel.line("Near miss / hint", _v(k["hint"] if k["near_miss"] and k["hint"] else "—"), wide=True)


def _num_text(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _monte_carlo(panel: Panel, src: Source) -> None:
    k, mc = src.kpis, src.ruleset.monte_carlo
    panel.heading("Monte Carlo CPI stress")
    panel.line("Paths / seed", _v(f"{int(mc['paths']):,} / {src.run.meta['seed']}"))
    panel.line("Breach probability (min DSCR < 1.00x)", _or_none(k.get("mc_breach_probability"), "pct"))
    panel.line("P5 of the path minimum DSCR", _or_none(k.get("mc_p5_min_dscr"), "ratio"))


def _chart(book: Book, ws: Worksheet, src: Source, cash: CashLayout, row: int) -> None:
    """Debt balances (stacked areas) and DSCR (lines, right axis) by period date, over the debt's life."""
    cf = book.wb["Cash Flows"]
    L = cash.letters
    last = cash.row(max(src.test_periods, src.n_mezz, src.n))
    book.put(ws, row, 1, "Debt balance and DSCR profile").font = FONT_SECTION
    bar = AreaChart()
    bar.grouping = "stacked"
    series = [("senior_closing", "Senior balance")]
    if src.has_mezz:
        series.append(("mezz_closing", "Mezzanine balance"))
    for key, title in series:
        bar.add_data(Reference(cf, min_col=_col(L[key]), min_row=cash.first, max_row=last), titles_from_data=False)
        bar.series[-1].tx = SeriesLabel(v=title)
    bar.set_categories(Reference(cf, min_col=_col(L["date"]), min_row=cash.first, max_row=last))
    bar.y_axis.title = f"Balance ({src.project.currency} m)"
    bar.y_axis.number_format = f'"{CURRENCY_SYMBOLS[src.project.currency]}"#,##0,,"m"'
    bar.y_axis.scaling.min = 0
    bar.x_axis = DateAxis(crossAx=100, axId=10, majorTimeUnit="years", majorUnit=2,
                          baseTimeUnit="months" if src.ppy > 1 else "years", lblOffset=100)
    bar.x_axis.number_format = "YYYY"
    line = LineChart()
    lines = [("dscr", "Senior DSCR (right axis)", src.test_periods)]
    if src.has_mezz and src.kpis["mezz_amount"] > 0:
        lines.append(("combined_dscr", "Combined DSCR (right axis)", max(src.test_periods, src.n_mezz)))
    for key, title, periods in lines:
        line.add_data(Reference(cf, min_col=_col(L[key]), min_row=cash.first, max_row=cash.row(periods)),
                      titles_from_data=False)
        line.series[-1].tx = SeriesLabel(v=title)
        line.series[-1].smooth = False
    line.set_categories(Reference(cf, min_col=_col(L["date"]), min_row=cash.first, max_row=last))
    line.x_axis = DateAxis(crossAx=200, axId=500, majorTimeUnit="years", majorUnit=2,
                           baseTimeUnit=bar.x_axis.baseTimeUnit, delete=True)  # hidden secondary category axis
    low, high = _dscr_axis(src)
    line.y_axis.axId = 200
    line.y_axis.crossAx = 500
    line.y_axis.title = "DSCR (x)"
    line.y_axis.number_format = '0.00"x"'
    line.y_axis.scaling.min, line.y_axis.scaling.max, line.y_axis.majorUnit = low, high, 0.25
    line.y_axis.crosses = "max"
    line.y_axis.majorGridlines = None
    for axis in (bar.x_axis, bar.y_axis, line.y_axis):
        axis.delete = False
    line.x_axis.delete = True
    bar += line
    bar.legend.position = "b"
    # As wide as the printed columns (cm): a wider chart was clipped at the page edge, losing the last years and
    # the right-hand DSCR axis.
    bar.height, bar.width = 14.0, round(_term_sheet_width_px() / 96 * 2.54 * 0.98, 1)
    ws.add_chart(bar, f"A{row + 1}")


def _dscr_axis(src: Source) -> tuple[float, float]:
    """DSCR axis bounds: the period DSCRs (senior and combined) padded by 0.25x, on 0.25x steps, from >= 0."""
    values = [r["dscr"] for r in src.schedule if r["dscr"] is not None]
    values += [r["lender_cfads"] / (r["senior_service"] + r["mezz_service"]) for r in src.schedule
               if src.has_mezz and r["senior_service"] + r["mezz_service"] > 0]
    low, high = (min(values), max(values)) if values else (1.0, 2.0)
    return max(0.0, math.floor(low * 4 - 1) / 4), math.ceil(high * 4 + 1) / 4


# ---- Stress ---------------------------------------------------------------------------------------------

def write_stress(book: Book, ws: Worksheet, src: Source) -> None:
    """The stress grid with pass / fail formulas against 1.00x, and the Monte Carlo summary."""
    k, p = src.kpis, src.project
    threshold = float(src.ruleset.gates["stress_min_dscr"])
    combined = k["stress_total"] is not None
    headers = ["Scenario", "Description", "Min senior DSCR", "Threshold", "Headroom", "Result"]
    if combined:
        headers += ["Min combined DSCR", "Threshold", "Headroom", "Result"]
    _widths(ws, [16, 52, 14, 11, 11, 10, 14, 11, 11, 10])
    _title(ws=ws, book=book, title=f"Stress tests — {p.title} — rank {src.rank}",
           subtitle="Minimum DSCR over the senior test periods with cash available = scenario CFADS - sidecar "
                    "(METHODOLOGY section 8). Pass: DSCR ≥ 1.00x (within 1e-9).", width=len(headers))
    head = 4
    for i, h in enumerate(headers, start=1):
        cell = book.put(ws, head, i, h, align=ALIGN_HEADER)
        cell.font, cell.fill = FONT_HEADER, FILL_HEADER
    ws.row_dimensions[head].height = 30
    r = head
    for name in src.ruleset.stress_scenarios:
        r += 1
        book.put(ws, r, 1, name, align=ALIGN_LEFT)
        book.put(ws, r, 2, stress_description(src.ruleset, p, name), align=ALIGN_LEFT)
        _stress_cells(book, ws, r, 3, k["stress"][name], threshold, f"Stress{camel(name)}")
        if combined:
            _stress_cells(book, ws, r, 7, k["stress_total"][name], threshold, f"StressTotal{camel(name)}")
        for c in range(1, len(headers) + 1):
            ws.cell(row=r, column=c).border = Border(bottom=THIN)
    r += 2
    mc = src.ruleset.monte_carlo
    book.put(ws, r, 1, "Monte Carlo CPI stress").font = FONT_SECTION
    rows = [
        ("Paths", int(mc["paths"]), "count"), ("Seed", src.run.meta["seed"], "int"),
        ("CPI model", f"AR(1) around base CPI {p.base_cpi:.2%}: persistence {float(mc['persistence']):g}, "
                      f"volatility {float(mc['volatility']):.2%} per year", None),
        ("Breach", f"path minimum senior DSCR below {float(mc['breach_dscr']):.2f}x", None),
        ("Breach probability", k.get("mc_breach_probability"), "pct"),
        (f"P{float(mc['percentile']):g} of the path minimum DSCR", k.get("mc_p5_min_dscr"), "ratio"),
    ]
    for label, value, fmt in rows:
        r += 1
        book.put(ws, r, 1, label, bold=True)
        book.put(ws, r, 2 if fmt is None else 3, "—" if value is None else value, fmt,
                 align=ALIGN_LEFT if fmt is None else None)
    ws.freeze_panes = ws.cell(row=head + 1, column=1)
    _page_setup(ws, _footer(src), f"{head}:{head}")


def _stress_cells(book: Book, ws: Worksheet, r: int, col: int, value: float | None, threshold: float,
                  name: str) -> None:
    """DSCR (input), threshold (input), headroom and result (formulas); "n/a" when the engine has no value."""
    c = get_column_letter
    book.put(ws, r, col + 1, threshold, "ratio")
    if value is None:
        book.put(ws, r, col, "n/a", align=ALIGN_RIGHT)
        return
    book.put(ws, r, col, value, "ratio", name=name)
    book.put(ws, r, col + 2, f"={c(col)}{r}-{c(col + 1)}{r}", "ratio", name=f"{name}Headroom")
    result = book.put(ws, r, col + 3, f'=IF({c(col)}{r}>={c(col + 1)}{r}-{STRESS_PASS_TOL:g},"Pass","Fail")',
                      name=f"{name}Result", align=Alignment(horizontal="center", vertical="center"))
    result.font = FONT_PASS if _passes(value, threshold) else FONT_FAIL


# ---- Assumptions ----------------------------------------------------------------------------------------

DERIVED_INFO: dict[str, tuple[str, str]] = {
    "net_it_load_mw": ("Net IT load", "MW"), "gross_income_monthly": ("Gross income, per month", "currency"),
    "gross_income_annual": ("Gross income, per year", "currency"), "opex_annual": ("Opex, per year", "currency"),
    "noi_annual": ("Net operating income, per year", "currency"), "project_capex": ("Project capex", "currency"),
    "market_value": ("Market value", "currency"), "upfront_fees": ("Upfront fees", "currency"),
    "funding_need": ("Funding need", "currency"), "admin_annual": ("Admin cost, per year", "currency"),
    "tenor_cap": ("Tenor cap", "years"), "dscr_floor": ("Tenant DSCR floor", "ratio"),
    "dsra_months": ("DSRA months", "months"), "af_min": ("Advance factor, minimum", "share"),
    "af_max": ("Advance factor, maximum", "share"), "rating_cap": ("Rating cap", "text"),
    "locked_rate": ("ZCIS locked rate", "rate"), "repo_jurisdiction": ("Repo jurisdiction", "text"),
    "n_periods": ("Periods (N)", "periods"),
}

STRUCTURE_INFO: dict[str, tuple[str, str]] = {
    "senior_tenor": ("Senior tenor", "years"), "senior_coupon": ("Senior coupon", "rate"),
    "senior_dscr": ("Senior sizing DSCR", "ratio"), "senior_amort": ("Senior amortisation", "text"),
    "indexation_mode": ("Indexation mode", "text"), "zcis_tenor_years": ("ZCIS tenor", "years"),
    "io_months": ("Interest-only months", "months"), "wrap": ("Wrap", "text"), "mezz_on": ("Mezzanine", "text"),
    "mezz_coupon": ("Mezz coupon", "rate"), "mezz_dscr": ("Mezz combined DSCR", "ratio"),
    "mezz_tenor": ("Mezz tenor", "years"), "mezz_amort": ("Mezz amortisation", "text"),
    "sidecar_haircut_pct": ("Sidecar haircut", "share"),
}


def _unit_format(unit: str) -> str | None:
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


def _derived_formula(key: str, project: Project) -> str | None:
    """Formula of a derived field over the project inputs (METHODOLOGY section 2); None for table lookups."""
    monthly = ("=GrossMonthlyRent" if project.gross_monthly_rent is not None
               else "=RentPerKwhMonth*NetItLoadMw*1000*730")
    return {
        "net_it_load_mw": "=GrossItLoadMw/Pue", "gross_income_monthly": monthly,
        "gross_income_annual": "=12*GrossIncomeMonthly", "opex_annual": "=OpexPct*GrossIncomeAnnual",
        "noi_annual": "=GrossIncomeAnnual-OpexAnnual",
        "project_capex": "=CapexCostPerMw*GrossItLoadMw+LandFeesTotal",
        "market_value": "=CapexMarketPerMw*GrossItLoadMw+LandFeesTotal",
        "upfront_fees": "=(ArrangerFeePct+LegalFeePct+RatingFeePct)*ProjectCapex",
        "funding_need": "=ProjectCapex+UpfrontFees", "admin_annual": "=AdminBps/10000*FundingNeed",
        "tenor_cap": "=LeaseYears-GateTenorCapBufferYears",
        "locked_rate": "=MIN(MAX(ZcisRate-ZcisBasisBps/10000,CpiFloor),CpiCap)",
        "n_periods": "=LeaseYears*PeriodsPerYear",
    }.get(key)


class _Rows:
    """Rows of the Assumptions sheet: label, key, value, unit, note."""

    def __init__(self, book: Book, ws: Worksheet, currency: str, row: int):
        self.book, self.ws, self.currency, self.row = book, ws, currency, row
        self.headings: list[int] = []

    def section(self, title: str) -> None:
        self.row += 1
        self.headings.append(self.row)
        self.book.put(self.ws, self.row, 1, title, text=True).font = FONT_SECTION
        for c in range(1, 6):
            self.ws.cell(row=self.row, column=c).border = Border(bottom=MEDIUM)
        self.row += 1

    def add(self, label: str, key: str, value: Any, unit: str = "", note: str = "", name: str | None = None,
            fmt: str | None = None, data: bool = False) -> None:
        """One row; ``data``: the value is input data (never a formula, whatever text it holds)."""
        self.book.put(self.ws, self.row, 1, label, text=True)
        self.book.put(self.ws, self.row, 2, key, text=True).font = Font(name="Courier New", size=9, color="595959")
        fmt = fmt or _unit_format(unit)
        if value is None:
            value = "—"
        is_text = isinstance(value, str) and (data or not value.startswith("="))
        cell = self.book.put(self.ws, self.row, 3, value, None if is_text else fmt, name=name, text=is_text)
        if is_text:
            cell.alignment = ALIGN_LEFT
        self.book.put(self.ws, self.row, 4, unit.replace("currency", self.currency),
                      align=Alignment(horizontal="left", indent=1), text=True)
        self.book.put(self.ws, self.row, 5, note, text=True).font = FONT_SUBTITLE
        for c in range(1, 6):
            self.ws.cell(row=self.row, column=c).border = Border(bottom=THIN)
        self.row += 1


NUMERIC_INPUTS = {"gross_it_load_mw", "pue", "lease_years", "gross_monthly_rent", "rent_per_kwh_month", "opex_pct",
                  "capex_cost_per_mw", "capex_market_per_mw", "land_fees_total", "base_cpi", "cpi_floor", "cpi_cap",
                  "zcis_rate", "zcis_basis_bps", "arranger_fee_pct", "legal_fee_pct", "rating_fee_pct", "admin_bps",
                  "wrap_premium_bps", "wrap_dscr_relief", "residual_value_pct", "periods_per_year"}


ASSUMPTION_WIDTHS = (34, 41, 20, 24, 50)


def _paginate(ws: Worksheet, widths: Sequence[float], last_row: int, headings: list[int]) -> None:
    """Fit the columns to the page width with an explicit scale (Excel ignores manual breaks under fit-to-page)
    and break before a section heading that would otherwise end a page without at least three of its rows."""
    from openpyxl.worksheet.pagebreak import Break

    scale = min(1.0, 0.97 * A4_LANDSCAPE_PX / sum(7 * w + 5 for w in widths))
    ws.sheet_properties.pageSetUpPr.fitToPage = False
    ws.page_setup.scale = int(100 * scale)
    for r in range(3, last_row + 1):
        ws.row_dimensions[r].height = HEADING_PT if r in headings else ROW_PT
    capacity = 0.97 * A4_LANDSCAPE_HEIGHT_PX / scale * 72 / 96  # points of rows per page
    used = 0.0
    for r in range(1, last_row + 1):
        height = ws.row_dimensions[r].height or ROW_PT
        keep = height + 3 * ROW_PT if r in headings else height
        if used + keep > capacity:
            ws.row_breaks.append(Break(id=r - 1))
            used = 0.0
        used += height


def write_assumptions(book: Book, ws: Worksheet, src: Source) -> None:
    """Every project input and derived field, the structure's parameters and the ruleset tables applied."""
    p, d, m = src.project, src.derived, src.run.meta
    _widths(ws, ASSUMPTION_WIDTHS)
    _title(book, ws, f"Assumptions — {p.title}",
           "Project inputs, derived fields (formulas where METHODOLOGY section 2 gives one), the structure and "
           "the ruleset tables applied. Blue figures are inputs, black figures are live formulas.", 5)
    rows = _Rows(book, ws, p.currency, 3)
    rows.section("Project inputs")
    for key, value in p.to_dict().items():
        spec = field_spec(key)
        note = "" if spec["required"] or value != spec["default"] else "default"
        if value is None:
            note = "not given"
        if key == "closing_date" and value is None:
            value, note = src.closing, "the run's default: last quarter end on or before the run date"
        if key == "mezz_tenor" and value is None:
            note = "each structure's senior tenor"
        fmt = {"closing_date": "date", "pue": "number"}.get(key)
        rows.add(spec["label"], key, value, spec["unit"] if spec["unit"] not in ("text", "ISO date") else "", note,
                 name=camel(key) if key in NUMERIC_INPUTS else None, fmt=fmt, data=True)
    rows.section("Derived fields")
    for key, value in d.to_dict().items():
        label, unit = DERIVED_INFO.get(key, (key, ""))
        formula = _derived_formula(key, p)
        rows.add(label, key, formula or value, unit if unit != "text" else "",
                 "" if formula else "ruleset table" if key not in ("repo_jurisdiction",) else "ruleset repo rules",
                 name=camel(key) if formula or key == "n_periods" else None)
    rows.section("Structure (ranked permutation)")
    for key, value in src.point.items():
        label, unit = STRUCTURE_INFO.get(key, (key, ""))
        if isinstance(value, bool):
            value = "Yes" if value else "No"
        rows.add(label, key, value, unit if unit != "text" else "",
                 name="SeniorCoupon" if key == "senior_coupon" else None)
    _ruleset_rows(rows, src)
    rows.section("Run")
    for label, key, value in (("Run id", "run_id", src.run.run_id), ("Seed", "seed", m["seed"]),
                              ("Top-N", "topn", m["topn"]), ("Sample", "sample", m["sample"]),
                              ("Gates applied", "gates", "Yes" if m["gates"] else "No"),
                              ("Permutations", "cardinality", m["cardinality"]),
                              ("Evaluated", "evaluated", m["evaluated"]),
                              ("Tier counts", "counts", ", ".join(f"{t} {n:,}" for t, n in m["counts"].items())),
                              ("Engine version", "engine_version", m["engine_version"]),
                              ("Ruleset sha256", "ruleset.sha256", m["ruleset"]["sha256"]),
                              ("Created", "created_at", m["created_at"])):
        rows.add(label, key, value, fmt="count" if key in ("cardinality", "evaluated") else "int")
    ws.freeze_panes = "A4"
    _page_setup(ws, _footer(src))
    _paginate(ws, ASSUMPTION_WIDTHS, rows.row - 1, rows.headings)


def _ruleset_rows(rows: _Rows, src: Source) -> None:
    rs, p = src.ruleset, src.project
    rows.section(f"Ruleset {rs.version}: tenant {p.tenant_rating}")
    tenant = rs.tenant(p.tenant_rating)
    for key, unit in (("dscr_floor", "ratio"), ("dsra_months", "months"), ("af_min", "share"), ("af_max", "share"),
                      ("rating_cap", "")):
        rows.add(DERIVED_INFO[key][0], f"tenants.{p.tenant_rating}.{key}", tenant[key], unit)
    rows.section(f"Ruleset {rs.version}: rating ladder ({p.country}) and spreads")
    ladder = rs.ladder(p.country)
    for rating in RATINGS:
        rows.add(f"{rating}: minimum DSCR / spread", f"rating_ladder.{p.country}.{rating}",
                 ladder.get(rating, "below BB"), "ratio" if rating in ladder else "",
                 f"spread {rs.spread_bps(rating):g} bps")
    rule = rs.repo_rule(p.country, src.bullet)
    klass = "bullet" if src.bullet else "amortising"
    rows.section(f"Ruleset {rs.version}: repo rule ({p.country} {klass})")
    if rule is None:
        rows.add("Repo rules", f"repo_rules.{p.country}", "none", note="jurisdiction without repo rules")
    else:
        for key, value in rule.items():
            unit = {"min_dscr": "ratio", "max_ltv": "share", "max_tenor": "years", "min_dsra_months": "months"}.get(
                key, "")
            rows.add(key.replace("_", " ").capitalize(), f"repo_rules.{p.country}.{klass}.{key}", value, unit)
    rows.section(f"Ruleset {rs.version}: stress scenarios, gates, Monte Carlo")
    for name in rs.stress_scenarios:
        rows.add(f"Stress {name}", f"stress_scenarios.{name}", stress_description(rs, p, name))
    for key, value in rs.gates.items():
        rows.add(f"Gate parameter {key.replace('_', ' ')}", f"gates.{key}", value,
                 fmt="general" if not isinstance(value, str) else None, name=f"Gate{camel(key)}")
    for key, value in rs.monte_carlo.items():
        rows.add(f"Monte Carlo {key.replace('_', ' ')}", f"monte_carlo.{key}", value, fmt="general")


# ---- the workbook and its bytes -------------------------------------------------------------------------

def build_workbook(src: Source) -> Workbook:
    """The four-sheet workbook of a term sheet (in memory)."""
    wb = Workbook()
    wb._fonts = IndexedList([BASE_FONT])  # the default font sets Excel's column-width unit: Arial 10
    wb._named_styles[0].font = BASE_FONT
    book = Book(wb=wb, fmt=number_formats(src.project.currency))
    term = wb.active
    term.title = SHEETS[0]
    cash_ws, stress_ws, assumptions_ws = (wb.create_sheet(title) for title in SHEETS[1:])
    write_assumptions(book, assumptions_ws, src)
    cash = write_cash_flows(book, cash_ws, src)
    write_term_sheet(book, term, src, cash)
    write_stress(book, stress_ws, src)
    _properties(wb, src)
    return wb


def run_timestamp(src: Source) -> dt.datetime:
    """The run's created_at as a naive UTC datetime (document properties and zip entry times)."""
    return dt.datetime.fromisoformat(src.run.meta["created_at"].replace("Z", "+00:00")).replace(tzinfo=None)


def _properties(wb: Workbook, src: Source) -> None:
    props = wb.properties
    when = run_timestamp(src)
    props.creator = CREATOR
    props.lastModifiedBy = CREATOR
    props.created = when
    props.modified = when
    props.title = f"Term sheet: {src.project.title}, rank {src.rank}"
    props.subject = f"Phase-1 run {src.run.run_id}, permutation {src.entry['permutation_id']}"
    props.keywords = f"phase1 {src.run.run_id} rank{src.rank}"
    props.description = "Indicative term sheet generated by Phase-1 Workbench; formulas are live."


def workbook_bytes(wb: Workbook, when: dt.datetime) -> bytes:
    """Serialise without the wall clock: openpyxl's writer (not ``save``, which stamps ``modified`` with now),
    then every zip entry rewritten in order with the fixed timestamp ``when`` and full-precision numbers."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(wb, archive).write_data()
    sheets = {f"xl/worksheets/sheet{i}.xml": ws for i, ws in enumerate(wb.worksheets, start=1)}
    return normalise_zip(raw.getvalue(), when, {name: _exact_numbers(ws) for name, ws in sheets.items()})


_NUMBER_CELL = re.compile(rb'<c r="([A-Z]+[0-9]+)"((?: s="[0-9]+")?(?: t="n")?)><v>([^<]+)</v></c>')


def _exact_numbers(ws: Worksheet) -> Callable[[bytes], bytes]:
    """A rewrite of a sheet's XML giving every float cell Python's round-trip repr (17 significant digits
    where needed): openpyxl writes "%.16g", which can move an engine number by one unit in the last place."""
    def rewrite(xml: bytes) -> bytes:
        def exact(m: re.Match[bytes]) -> bytes:
            value = ws[m.group(1).decode()].value
            if type(value) is not float:
                return m.group(0)
            return b'<c r="%s"%s><v>%s</v></c>' % (m.group(1), m.group(2), repr(value).encode())
        return _NUMBER_CELL.sub(exact, xml)
    return rewrite


def normalise_zip(data: bytes, when: dt.datetime, rewrites: dict[str, Callable[[bytes], bytes]] | None = None
                  ) -> bytes:
    """The same zip with fixed entry metadata (date, permissions, creator system), entry order preserved, and
    the content of some entries rewritten."""
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second - when.second % 2)
    rewrites = rewrites or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=stamp)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.create_system = 3
            entry.external_attr = 0o644 << 16
            content = src.read(info.filename)
            if info.filename in rewrites:
                content = rewrites[info.filename](content)
            dst.writestr(entry, content)
    return out.getvalue()


def to_xlsx_bytes(run: RunResult, rank: int, ruleset: Ruleset | None = None) -> bytes:
    """The term sheet of ``rank`` as .xlsx bytes (nothing written to disk); byte-identical for the same run."""
    src = load_source(run, rank, ruleset)
    return workbook_bytes(build_workbook(src), run_timestamp(src))


def write_xlsx(run: RunResult, rank: int, path: str | Path, ruleset: Ruleset | None = None) -> Path:
    """Write the term sheet of ``rank`` to ``path`` atomically; returns the path."""
    target = Path(path)
    atomic_write_bytes(target, to_xlsx_bytes(run, rank, ruleset))
    return target


__all__ = ["Source", "build_json", "build_workbook", "load_source", "term_sheet_json", "to_xlsx_bytes",
           "write_xlsx"]

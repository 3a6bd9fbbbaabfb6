"""Project inputs (METHODOLOGY section 1) and derived fields (section 2).

``parse_project`` turns a JSON-like mapping into a validated, immutable :class:`Project`, reporting
every problem at once as :class:`~phase1lib.errors.FieldError` (field, rule, value). ``derive``
computes the derived fields the engine and the analyst's preview use.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import FieldError, InputError
from .fsutil import atomic_write_text
from .ruleset import Ruleset, curve_errors, load_ruleset
from .text import text_problem

COUNTRY_CURRENCY = {"UK": "GBP", "EU": "EUR", "US": "USD", "JP": "JPY"}
CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$", "JPY": "¥"}
TENANT_RATINGS = ("AAA", "AA", "A", "BBB", "NR")
INDEXATION_BASES = ("flat", "CPI_capped")
#: Amortisation profiles, in code order (METHODOLOGY section 5); the mezzanine takes all but the bullet.
AMORTISATIONS = ("sculpted", "annuity", "level", "bullet")
MEZZ_AMORTS = AMORTISATIONS[:3]
PERIODS_PER_YEAR = (1, 2, 4, 12)
HOURS_PER_MONTH = 730  # METHODOLOGY section 2: kWh per kW per month
#: Optional project fields of ruleset v2 (METHODOLOGY section 11): validated always, used by priced rulesets.
V2_FIELDS = ("benchmark_curve", "cap_rate")


@dataclass(frozen=True)
class Project:
    """A data-centre lease project; every field of METHODOLOGY section 1 with defaults filled in.

    ``mezz_tenor`` None means "the senior tenor of each structure"; ``closing_date`` None means
    "the run's closing date" (recorded in the run, see :func:`default_closing_date`).
    """

    title: str
    country: str
    currency: str
    gross_it_load_mw: float
    pue: float
    lease_years: int
    tenant_rating: str
    gross_monthly_rent: float | None
    rent_per_kwh_month: float | None
    opex_pct: float
    capex_cost_per_mw: float
    capex_market_per_mw: float
    land_fees_total: float
    indexation_basis: str
    base_cpi: float
    cpi_floor: float
    cpi_cap: float
    zcis_rate: float
    zcis_basis_bps: float
    arranger_fee_pct: float
    legal_fee_pct: float
    rating_fee_pct: float
    admin_bps: float
    wrap_premium_bps: float
    wrap_dscr_relief: float
    mezz_coupon: float
    mezz_dscr: float
    mezz_tenor: int | None
    mezz_amort: str
    sidecar_haircut_pct: float
    residual_value_pct: float
    periods_per_year: int
    closing_date: str | None
    benchmark_curve: tuple[tuple[float, float], ...] | None = None
    cap_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON form: every field, unset optional fields as null; the ruleset-v2 overrides
        (benchmark_curve, cap_rate) only when given, so a project without them hashes as before v2."""
        data = asdict(self)
        for name in V2_FIELDS:
            if data[name] is None:
                del data[name]
        if self.benchmark_curve is not None:
            data["benchmark_curve"] = [list(point) for point in self.benchmark_curve]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @property
    def n_periods(self) -> int:
        """N = lease_years x periods_per_year."""
        return self.lease_years * self.periods_per_year


@dataclass(frozen=True)
class Derived:
    """Derived fields of METHODOLOGY section 2 (full precision; round only for display)."""

    net_it_load_mw: float
    gross_income_monthly: float
    gross_income_annual: float
    opex_annual: float
    noi_annual: float
    project_capex: float
    market_value: float
    upfront_fees: float
    funding_need: float
    admin_annual: float
    tenor_cap: int
    dscr_floor: float
    dsra_months: int
    af_min: float
    af_max: float
    rating_cap: str
    locked_rate: float
    repo_jurisdiction: str | None
    n_periods: int
    # ruleset v2 (section 11.2): None under v1
    cap_rate: float | None = None
    income_value: float | None = None
    lending_value: float | None = None
    max_ltv: float | None = None
    ltv_limit: float | None = None
    benchmark_curve: tuple[tuple[float, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every derived field; the ruleset-v2 ones only under a priced ruleset."""
        data = asdict(self)
        for name in DERIVED_V2_FIELDS:
            if data[name] is None:
                del data[name]
        if self.benchmark_curve is not None:
            data["benchmark_curve"] = [list(point) for point in self.benchmark_curve]
        return data


DERIVED_V2_FIELDS = ("cap_rate", "income_value", "lending_value", "max_ltv", "ltv_limit", "benchmark_curve")


# --- field specs -------------------------------------------------------------------------------

_MISSING = object()


@dataclass(frozen=True)
class _Spec:
    kind: str  # "text", "enum", "number", "integer", "date", "curve"
    default: Any = _MISSING  # _MISSING = required; None = optional / derived from another field
    choices: tuple[Any, ...] = ()
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""
    label: str = ""


SPECS: dict[str, _Spec] = {
    "title": _Spec("text", label="Project title", unit="text"),
    "country": _Spec("enum", choices=tuple(COUNTRY_CURRENCY), label="Country"),
    "currency": _Spec("enum", choices=tuple(COUNTRY_CURRENCY.values()), label="Currency"),
    "gross_it_load_mw": _Spec("number", lo=0, hi=3000, lo_open=True, unit="MW", label="Gross IT load"),
    "pue": _Spec("number", lo=1.0, hi=3.0, unit="ratio", label="PUE"),
    "lease_years": _Spec("integer", lo=5, hi=40, unit="years", label="Lease term"),
    "tenant_rating": _Spec("enum", choices=TENANT_RATINGS, label="Tenant rating"),
    "gross_monthly_rent": _Spec("number", default=None, lo=0, lo_open=True, unit="currency / month",
                                label="Gross monthly rent"),
    "rent_per_kwh_month": _Spec("number", default=None, lo=0, lo_open=True, unit="currency / kWh",
                                label="Rent per kWh (monthly)"),
    "opex_pct": _Spec("number", lo=0, hi=1, hi_open=True, unit="share of gross income", label="Opex"),
    "capex_cost_per_mw": _Spec("number", lo=0, lo_open=True, unit="currency / MW", label="Capex cost per MW"),
    "capex_market_per_mw": _Spec("number", default=None, lo=0, lo_open=True, unit="currency / MW",
                                 label="Market value per MW"),
    "land_fees_total": _Spec("number", default=0.0, lo=0, unit="currency", label="Land and fees"),
    "indexation_basis": _Spec("enum", default="CPI_capped", choices=INDEXATION_BASES, label="Indexation basis"),
    "base_cpi": _Spec("number", default=0.02, lo=-0.05, hi=0.20, unit="rate", label="Base CPI"),
    "cpi_floor": _Spec("number", default=0.01, unit="rate", label="CPI floor"),
    "cpi_cap": _Spec("number", default=0.04, unit="rate", label="CPI cap"),
    "zcis_rate": _Spec("number", default=None, lo=-0.05, hi=0.20, unit="rate", label="ZCIS breakeven"),
    "zcis_basis_bps": _Spec("number", default=15.0, lo=0, unit="bps", label="ZCIS basis"),
    "arranger_fee_pct": _Spec("number", default=0.0125, lo=0, hi=0.1, unit="share of capex", label="Arranger fee"),
    "legal_fee_pct": _Spec("number", default=0.0025, lo=0, hi=0.1, unit="share of capex", label="Legal fee"),
    "rating_fee_pct": _Spec("number", default=0.0015, lo=0, hi=0.1, unit="share of capex", label="Rating fee"),
    "admin_bps": _Spec("number", default=15.0, lo=0, unit="bps of funding need / yr", label="Admin cost"),
    "wrap_premium_bps": _Spec("number", default=60.0, lo=0, unit="bps / yr", label="Wrap premium"),
    "wrap_dscr_relief": _Spec("number", default=0.15, lo=0, hi=0.5, unit="ratio", label="Wrap DSCR relief"),
    "mezz_coupon": _Spec("number", default=0.09, lo=0, hi=1, hi_open=True, unit="rate", label="Mezz coupon"),
    "mezz_dscr": _Spec("number", default=1.10, lo=1.0, unit="ratio", label="Mezz combined DSCR"),
    "mezz_tenor": _Spec("integer", default=None, lo=1, unit="years", label="Mezz tenor"),
    "mezz_amort": _Spec("enum", default="sculpted", choices=MEZZ_AMORTS, label="Mezz amortisation"),
    "sidecar_haircut_pct": _Spec("number", default=0.15, lo=0, hi=1, unit="share", label="Sidecar haircut"),
    "residual_value_pct": _Spec("number", default=0.0, lo=0, hi=2, unit="share of market value",
                                label="Residual value"),
    "periods_per_year": _Spec("integer", default=4, choices=PERIODS_PER_YEAR, unit="periods", label="Periods / yr"),
    "closing_date": _Spec("date", default=None, unit="ISO date", label="Closing date"),
    "benchmark_curve": _Spec("curve", default=None, unit="[years, rate] points",
                             label="Benchmark curve (v2)"),
    "cap_rate": _Spec("number", default=None, lo=0.02, hi=0.20, unit="rate", label="Cap rate (v2)"),
}

REQUIRED_FIELDS = tuple(name for name, s in SPECS.items() if s.default is _MISSING)


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _range_rule(spec: _Spec) -> str:
    if spec.lo is not None and spec.hi is not None:
        lo = ">" if spec.lo_open else ">="
        hi = "<" if spec.hi_open else "<="
        return f"must be {lo} {spec.lo:g} and {hi} {spec.hi:g}"
    if spec.lo is not None:
        return f"must be {'>' if spec.lo_open else '>='} {spec.lo:g}"
    return f"must be {'<' if spec.hi_open else '<='} {spec.hi:g}"


def coerce_number(value: Any) -> float | None:
    """A finite JSON number as float, or None (bools and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def coerce_integer(value: Any) -> int | None:
    """A JSON integer (10 and 10.0 are both 10), or None."""
    x = coerce_number(value)
    if x is None or x != int(x):
        return None
    return int(x)


def _check_field(name: str, spec: _Spec, raw: Any) -> tuple[Any, str | None]:
    """Validate one present field against its spec: (normalised value, error message or None)."""
    if spec.kind == "text":
        if not isinstance(raw, str):
            return None, f"must be text (got {_fmt(raw)})"
        if not 1 <= len(raw) <= 200 or not raw.strip():
            return None, f"must be 1..200 characters, not blank (got {len(raw)})"
        return raw, text_problem(raw, max_len=200)
    if spec.kind == "enum":
        if not isinstance(raw, str) or raw not in spec.choices:
            return None, f"must be one of {', '.join(map(str, spec.choices))} (got {_fmt(raw)})"
        return raw, None
    if spec.kind == "curve":
        problems = curve_errors(raw)
        if problems:
            return None, "; ".join(problems)
        return tuple((float(t), float(r)) for t, r in raw), None
    if spec.kind == "date":
        if not isinstance(raw, str):
            return None, f"must be an ISO date YYYY-MM-DD (got {_fmt(raw)})"
        try:
            return dt.date.fromisoformat(raw).isoformat(), None
        except ValueError:
            return None, f"must be an ISO date YYYY-MM-DD (got {_fmt(raw)})"
    if spec.kind == "integer":
        value: Any = coerce_integer(raw)
        if value is None:
            return None, f"must be an integer (got {_fmt(raw)})"
        if spec.choices and value not in spec.choices:
            return None, f"must be one of {', '.join(map(str, spec.choices))} (got {value})"
    else:
        value = coerce_number(raw)
        if value is None:
            return None, f"must be a finite number (got {_fmt(raw)})"
    bad_lo = spec.lo is not None and (value <= spec.lo if spec.lo_open else value < spec.lo)
    bad_hi = spec.hi is not None and (value >= spec.hi if spec.hi_open else value > spec.hi)
    if bad_lo or bad_hi:
        return None, f"{_range_rule(spec)} (got {value:g})"
    return value, None


def validate_project(data: Any) -> tuple[Project | None, list[FieldError]]:
    """Validate a JSON-like mapping: (project, []) when valid, else (None, every error found)."""
    if not isinstance(data, Mapping):
        return None, [FieldError("project", f"must be a JSON object (got {type(data).__name__})")]
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for key in data:
        if key not in SPECS:
            errors.append(FieldError(str(key), f"unknown field; known fields: {', '.join(SPECS)}"))
    for name, spec in SPECS.items():
        raw = data.get(name, _MISSING)
        if raw is _MISSING or (raw is None and spec.default is not _MISSING):
            if spec.default is _MISSING:
                errors.append(FieldError(name, "is required"))
            values[name] = spec.default
            continue
        value, message = _check_field(name, spec, raw)
        if message:
            errors.append(FieldError(name, message))
        values[name] = value

    bad = {e.field for e in errors}
    country, currency = values.get("country"), values.get("currency")
    if country and currency and "country" not in bad and "currency" not in bad \
            and COUNTRY_CURRENCY[country] != currency:
        errors.append(FieldError("currency", f"must be {COUNTRY_CURRENCY[country]} for country {country} "
                                             f"(got {currency}); pairs: UK-GBP, EU-EUR, US-USD, JP-JPY"))
    rents = [r for r in ("gross_monthly_rent", "rent_per_kwh_month") if data.get(r) is not None]
    if len(rents) != 1:
        message = "give exactly one rent: gross_monthly_rent or rent_per_kwh_month"
        message += " (got both)" if rents else " (got neither)"
        errors.append(FieldError("gross_monthly_rent" if not rents else "rent_per_kwh_month", message))
    if "cpi_floor" not in bad and "cpi_cap" not in bad and values["cpi_floor"] > values["cpi_cap"]:
        errors.append(FieldError("cpi_floor", f"must be <= cpi_cap {values['cpi_cap']:g} "
                                              f"(got {values['cpi_floor']:g})"))
    lease = values.get("lease_years")
    mezz_tenor = values.get("mezz_tenor")
    if mezz_tenor is not None and lease is not None and "lease_years" not in bad and mezz_tenor > lease:
        errors.append(FieldError("mezz_tenor", f"must be <= lease_years {lease} (got {mezz_tenor})"))
    if errors:
        return None, errors
    if values["capex_market_per_mw"] is None:
        values["capex_market_per_mw"] = values["capex_cost_per_mw"]
    if values["zcis_rate"] is None:
        values["zcis_rate"] = values["base_cpi"]
    return Project(**values), []


def parse_project(data: Any) -> Project:
    """Validated :class:`Project` from a mapping, or :class:`InputError` listing every problem."""
    project, errors = validate_project(data)
    if errors:
        raise InputError(errors, "project")
    assert project is not None
    return project


def locked_rate(project: Project) -> float:
    """ZCIS locked rate: clamp(zcis_rate - zcis_basis_bps / 10^4, cpi_floor, cpi_cap)."""
    return min(max(project.zcis_rate - project.zcis_basis_bps / 1e4, project.cpi_floor), project.cpi_cap)


def derive(project: Project, ruleset: Ruleset | None = None) -> Derived:
    """Derived fields of METHODOLOGY section 2 under a ruleset (v1 by default)."""
    rs = ruleset or load_ruleset()
    net = project.gross_it_load_mw / project.pue
    if project.gross_monthly_rent is not None:
        monthly = project.gross_monthly_rent
    else:
        assert project.rent_per_kwh_month is not None
        monthly = project.rent_per_kwh_month * net * 1000 * HOURS_PER_MONTH
    annual = 12 * monthly
    opex = project.opex_pct * annual
    capex = project.capex_cost_per_mw * project.gross_it_load_mw + project.land_fees_total
    market = project.capex_market_per_mw * project.gross_it_load_mw + project.land_fees_total
    fees = (project.arranger_fee_pct + project.legal_fee_pct + project.rating_fee_pct) * capex
    need = capex + fees
    tenant = rs.tenant(project.tenant_rating)
    v2: dict[str, Any] = {}
    if rs.priced:  # section 11.2: lending value = min(market value, NOI / cap rate), the LTV limit against it
        cap_rate = project.cap_rate if project.cap_rate is not None else rs.cap_rate(project.country)
        income = (annual - opex) / cap_rate
        lending = min(market, income)
        v2 = {"cap_rate": cap_rate, "income_value": income, "lending_value": lending,
              "max_ltv": rs.max_ltv(project.tenant_rating), "ltv_limit": rs.max_ltv(project.tenant_rating) * lending,
              "benchmark_curve": project.benchmark_curve or rs.benchmark_curve(project.currency)}
    return Derived(
        net_it_load_mw=net,
        gross_income_monthly=monthly,
        gross_income_annual=annual,
        opex_annual=opex,
        noi_annual=annual - opex,
        project_capex=capex,
        market_value=market,
        upfront_fees=fees,
        funding_need=need,
        admin_annual=project.admin_bps / 1e4 * need,
        tenor_cap=project.lease_years - int(rs.gates["tenor_cap_buffer_years"]),
        dscr_floor=float(tenant["dscr_floor"]),
        dsra_months=int(tenant["dsra_months"]),
        af_min=float(tenant["af_min"]),
        af_max=float(tenant["af_max"]),
        rating_cap=str(tenant["rating_cap"]),
        locked_rate=locked_rate(project),
        repo_jurisdiction=project.country if rs.data["repo_rules"].get(project.country) else None,
        n_periods=project.n_periods,
        **v2,
    )


def default_closing_date(today: dt.date) -> dt.date:
    """The last quarter end (31 Mar, 30 Jun, 30 Sep, 31 Dec) on or before ``today``."""
    quarter_ends = [dt.date(today.year, m, d) for m, d in ((3, 31), (6, 30), (9, 30), (12, 31))]
    past = [q for q in quarter_ends if q <= today]
    return past[-1] if past else dt.date(today.year - 1, 12, 31)


# --- JSON files ----------------------------------------------------------------------------------

def read_json_file(path: str | Path, what: str) -> Any:
    """Read a JSON file, or raise InputError naming the file and the problem (missing, not JSON)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([FieldError(what, f"file not found: {p}")], what) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise InputError([FieldError(what, f"cannot read {p}: {exc.__class__.__name__}")], what) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError([FieldError(what, f"{p} is not valid JSON: {exc.msg} at line {exc.lineno} "
                                           f"column {exc.colno}")], what) from None


def load_project(path: str | Path) -> Project:
    """Read and validate a project JSON file."""
    return parse_project(read_json_file(path, "project"))


def save_project(project: Project, path: str | Path) -> None:
    """Write a project as JSON atomically (temporary file, then rename)."""
    atomic_write_text(Path(path), project.to_json())


def field_spec(name: str) -> dict[str, Any]:
    """Public description of a field for forms: kind, default, bounds, choices, unit, label."""
    s = SPECS[name]
    return {
        "kind": s.kind,
        "required": s.default is _MISSING,
        "default": None if s.default is _MISSING else s.default,
        "choices": list(s.choices),
        "lo": s.lo,
        "hi": s.hi,
        "unit": s.unit,
        "label": s.label,
    }


"""Project inputs (METHODOLOGY section 1) and derived fields (section 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from phase1lib.errors import InputError
from phase1lib.project import (
    REQUIRED_FIELDS,
    SPECS,
    default_closing_date,
    derive,
    load_project,
    parse_project,
    save_project,
    validate_project,
)

LONDON = json.loads((Path(__file__).resolve().parent.parent / "examples" / "london_dc_alpha.json").read_text())


def errors_of(data):
    project, errors = validate_project(data)
    assert project is None
    return {e.field: e.message for e in errors}


def test_london_derived_matches_issue_acceptance():
    d = derive(parse_project(LONDON))
    expected = {
        "net_it_load_mw": 60, "gross_income_annual": 30_000_000, "noi_annual": 23_400_000,
        "project_capex": 408_500_000, "market_value": 423_500_000, "upfront_fees": 6_740_250,
        "funding_need": 415_240_250, "admin_annual": 622_860.375, "tenor_cap": 23, "dscr_floor": 1.35,
        "dsra_months": 6, "af_min": 0.60, "af_max": 0.75,
    }
    for key, value in expected.items():
        assert getattr(d, key) == pytest.approx(value, rel=1e-12), key


def test_derived_formulas_independently_for_kwh_rent():
    data = dict(LONDON, gross_monthly_rent=None, rent_per_kwh_month=0.07, pue=1.4, land_fees_total=0)
    d = derive(parse_project({k: v for k, v in data.items() if v is not None}))
    net = 75 / 1.4
    monthly = 0.07 * net * 1000 * 730
    assert d.net_it_load_mw == pytest.approx(net, rel=1e-15)
    assert d.gross_income_monthly == pytest.approx(monthly, rel=1e-15)
    assert d.opex_annual == pytest.approx(0.22 * 12 * monthly, rel=1e-15)
    capex = 5_400_000 * 75
    assert d.funding_need == pytest.approx(capex * (1 + 0.0125 + 0.0025 + 0.0015), rel=1e-15)
    assert d.admin_annual == pytest.approx(15 / 1e4 * d.funding_need, rel=1e-15)


def test_defaults_filled():
    p = parse_project(LONDON)
    assert p.capex_market_per_mw == 5_600_000
    assert p.zcis_rate == p.base_cpi == 0.02
    assert (p.cpi_floor, p.cpi_cap, p.zcis_basis_bps, p.periods_per_year) == (0.01, 0.04, 15, 4)
    assert p.mezz_tenor is None and p.closing_date is None
    q = parse_project(dict(LONDON, capex_market_per_mw=None, base_cpi=0.03))
    assert q.capex_market_per_mw == 5_400_000 and q.zcis_rate == 0.03


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"title": None, "_drop": "title"}, "title", "required"),
        ({"pue": "1.25"}, "pue", "number"),
        ({"gross_it_load_mw": -5}, "gross_it_load_mw", "> 0"),
        ({"gross_it_load_mw": 3001}, "gross_it_load_mw", "3000"),
        ({"pue": 0.5}, "pue", "1"),
        ({"currency": "EUR"}, "currency", "GBP"),
        ({"rent_per_kwh_month": 0.1}, "rent_per_kwh_month", "both"),
        ({"gross_monthly_rent": None, "_drop": "gross_monthly_rent"}, "gross_monthly_rent", "neither"),
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"lease_years": 2}, "lease_years", "5"),
        ({"lease_years": 25.5}, "lease_years", "integer"),
        ({"cpi_floor": 0.05}, "cpi_floor", "cpi_cap"),
        ({"opex_pct": 1.0}, "opex_pct", "< 1"),
        ({"periods_per_year": 3}, "periods_per_year", "1, 2, 4, 12"),
        ({"tenant_rating": "CCC"}, "tenant_rating", "AAA"),
        ({"closing_date": "2026-13-01"}, "closing_date", "ISO"),
        ({"mezz_tenor": 30}, "mezz_tenor", "lease_years"),
        ({"mezz_dscr": 0.9}, "mezz_dscr", ">= 1"),
        ({"arranger_fee_pct": 0.2}, "arranger_fee_pct", "0.1"),
        ({"gross_it_load_mw": True}, "gross_it_load_mw", "number"),
        ({"base_cpi": float("nan")}, "base_cpi", "finite"),
    ],
)
def test_bad_input_names_field_and_rule(change, field, words):
    data = dict(LONDON)
    drop = change.pop("_drop", None)
    data.update(change)
    if drop:
        data.pop(drop)
    errors = errors_of(data)
    assert field in errors, errors
    assert words in errors[field]


def test_every_problem_reported_at_once():
    data = dict(LONDON, pue=9, lease_years=2, colour="x", currency="USD")
    errors = errors_of(data)
    assert {"pue", "lease_years", "colour", "currency"} <= set(errors)


def test_missing_everything_lists_each_required_field():
    errors = errors_of({})
    for name in REQUIRED_FIELDS:
        if name != "gross_monthly_rent":
            assert errors[name] == "is required"
    assert "neither" in errors["gross_monthly_rent"]


def test_not_an_object():
    assert "project" in errors_of([1, 2])


def test_integer_float_accepted():
    assert parse_project(dict(LONDON, lease_years=25.0)).lease_years == 25


def test_json_round_trip(tmp_path):
    p = parse_project(dict(LONDON, closing_date="2026-09-30", mezz_tenor=12))
    path = tmp_path / "p.json"
    save_project(p, path)
    assert load_project(path) == p
    assert not [f for f in tmp_path.iterdir() if f.name != "p.json"]  # no temp files left


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_project(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_project(bad)


def test_specs_cover_every_methodology_field():
    assert len(SPECS) == 33 + 2  # section 1's 33 fields and section 11's benchmark_curve, cap_rate
    assert math.isclose(SPECS["wrap_dscr_relief"].hi, 0.5)


@pytest.mark.parametrize(
    ("today", "expected"),
    [("2026-11-28", "2026-09-30"), ("2026-09-30", "2026-09-30"), ("2026-01-15", "2025-12-31"),
     ("2026-03-31", "2026-03-31"), ("2026-07-01", "2026-06-30")],
)
def test_default_closing_date_is_last_quarter_end(today, expected):
    import datetime as dt

    assert default_closing_date(dt.date.fromisoformat(today)).isoformat() == expected

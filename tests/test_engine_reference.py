"""The vectorised engine agrees with the plain scalar reference (tests/reference.py) on every KPI.

Randomised projects (every country, tenant, period frequency, indexation basis) and structures
(all four senior profiles, IO, wrap, mezzanine of every profile, flat and CPI_capped modes, zero and
non-zero ZCIS tenors) are evaluated in one vectorised batch and compared one by one, to 1e-9 relative,
under ruleset v1 and under v2 (numeric and "market" coupons, benchmark-curve and cap-rate overrides,
the ltv limit, the pricing check and the breakevens).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import sample

from phase1lib.engine import evaluate_points
from phase1lib.engine.cashflows import STRESS_NAMES
from phase1lib.project import derive, parse_project
from phase1lib.ruleset import load_ruleset

V1, V2 = load_ruleset("v1"), load_ruleset("v2")

CURRENCY = {"UK": "GBP", "EU": "EUR", "US": "USD", "JP": "JPY"}
NUMERIC = ("senior_amount", "senior_rate", "mezz_amount", "mezz_rate", "sidecar_gross", "sidecar_net",
           "dsra_amount", "day_one_value", "equity_required", "min_dscr", "avg_dscr", "llcr", "wal_years", "ltv",
           "advance_factor", "wacd", "total_interest", "equity_irr")
EXACT = ("senior_rating", "binding_constraint", "viable", "tier", "near_miss", "repo_eligible")
V2_NUMERIC = ("senior_coupon", "market_coupon", "breakeven_rent_cut", "breakeven_opex_rise")
V2_EXACT = ("breakeven_cpi", "breakeven_cpi_capped")


@st.composite
def projects(draw, priced: bool = False):
    country = draw(st.sampled_from(list(CURRENCY)))
    ppy = draw(st.sampled_from([1, 2, 4, 12]))
    lease = draw(st.integers(6, 30 if ppy < 12 else 15))
    data = {
        "title": "Hypothesis DC", "country": country, "currency": CURRENCY[country],
        "gross_it_load_mw": draw(st.floats(5, 200)), "pue": draw(st.floats(1.1, 1.6)), "lease_years": lease,
        "tenant_rating": draw(st.sampled_from(["AAA", "AA", "A", "BBB", "NR"])),
        "opex_pct": draw(st.floats(0.1, 0.35)), "capex_cost_per_mw": draw(st.floats(4e6, 9e6)),
        "indexation_basis": draw(st.sampled_from(["flat", "CPI_capped", "CPI_capped"])),
        "base_cpi": draw(st.floats(0.0, 0.05)), "cpi_floor": draw(st.floats(0.0, 0.02)),
        "cpi_cap": draw(st.floats(0.025, 0.05)), "zcis_rate": draw(st.floats(0.01, 0.04)),
        "residual_value_pct": draw(st.sampled_from([0.0, 0.0, 0.3])), "periods_per_year": ppy,
        "land_fees_total": draw(st.sampled_from([0.0, 5e6])),
    }
    if priced and draw(st.booleans()):  # section 11's project overrides
        data["cap_rate"] = draw(st.sampled_from([0.045, 0.06, 0.09]))
    if priced and draw(st.booleans()):
        tenors = sorted(draw(st.sets(st.sampled_from([0.5, 2, 5, 7, 10, 15, 25, 40]), min_size=1, max_size=5)))
        data["benchmark_curve"] = [[t, draw(st.sampled_from([-0.005, 0.01, 0.03, 0.05]))] for t in tenors]
    yield_ = draw(st.floats(0.07, 0.13))
    if draw(st.booleans()):
        data["gross_monthly_rent"] = data["capex_cost_per_mw"] * data["gross_it_load_mw"] * yield_ / 12
    else:
        net = data["gross_it_load_mw"] / data["pue"]
        data["rent_per_kwh_month"] = data["capex_cost_per_mw"] * data["gross_it_load_mw"] * yield_ / 12 / (
            net * 1000 * 730)
    return parse_project(data)


@st.composite
def structures(draw, project, priced: bool = False):
    lease, ppy = project.lease_years, project.periods_per_year
    tenor = draw(st.integers(3, lease))
    step = 12 // ppy
    coupons = [0.02, 0.035, 0.05, 0.065, *(["market", "market"] if priced else [])]
    st_ = {
        "senior_tenor": tenor, "senior_coupon": draw(st.sampled_from(coupons)),
        "senior_dscr": draw(st.sampled_from([1.05, 1.2, 1.3, 1.45, 1.6])),
        "senior_amort": draw(st.sampled_from(["sculpted", "annuity", "level", "bullet"])),
        "indexation_mode": draw(st.sampled_from(["flat", "CPI_capped"])),
        "zcis_tenor_years": draw(st.sampled_from(sorted({0, min(3, lease - 1), lease - 1}))),
        "io_months": draw(st.sampled_from([0, 0, step, 12, 24])), "wrap": draw(st.booleans()),
        "mezz_on": draw(st.booleans()), "sidecar_haircut_pct": draw(st.sampled_from([0.0, 0.15, 0.5])),
    }
    if st_["mezz_on"]:
        st_.update(mezz_coupon=draw(st.sampled_from([0.0, 0.08, 0.11])),
                   mezz_dscr=draw(st.sampled_from([1.0, 1.05, 1.15])),
                   mezz_tenor=draw(st.integers(2, lease)),
                   mezz_amort=draw(st.sampled_from(["sculpted", "annuity", "level"])))
    return st_


def close(a, b, scale, what):
    if a is None or b is None:
        assert a is None and b is None, (what, a, b)
        return
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale), (what, a, b)


def compare(project, point, got, ruleset=V1):
    ref = reference.evaluate(project, point, ruleset)["kpis"]
    money = derive(project).funding_need
    if ruleset.priced:
        for name in V2_NUMERIC:
            close(got[name], ref[name], 1.0, (name, point))
        for name in V2_EXACT:
            assert got[name] == ref[name], (name, got[name], ref[name], point)
    else:
        assert not set(V2_NUMERIC + V2_EXACT) & set(got), "v1 output keys must not change"
    for name in NUMERIC:
        scale = money if name in ("senior_amount", "mezz_amount", "sidecar_gross", "sidecar_net", "dsra_amount",
                                  "day_one_value", "equity_required", "total_interest") else 1.0
        close(got[name], ref[name], scale, (name, point))
    for name in EXACT:
        assert got[name] == ref[name], (name, got[name], ref[name], point)
    for s in STRESS_NAMES:
        close(got["stress"][s], ref["stress"][s], 1.0, (s, point))
        close((got["stress_total"] or {}).get(s), (ref["stress_total"] or {}).get(s), 1.0, (s, point))
    for gate in ("gate_a", "gate_b"):
        assert [f["check"] for f in got[gate]] == [f["check"] for f in ref[gate]], (gate, point)
        for g_, r_ in zip(got[gate], ref[gate], strict=True):
            if isinstance(g_["value"], float):
                close(g_["value"], r_["value"], money if g_["check"] == "senior_amount" else 1.0, g_)
            assert g_.get("hint") == r_.get("hint"), (g_, r_)
    assert [r.split(":")[0] for r in got["repo_reasons"]] == [r.split(":")[0] for r in ref["repo_reasons"]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_engine_matches_scalar_reference(data):
    project = data.draw(projects())
    points = data.draw(st.lists(structures(project), min_size=1, max_size=6))
    got = evaluate_points(project, points, seed=None)
    for point, row in zip(points, got, strict=True):
        compare(project, point, row["kpis"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_engine_matches_scalar_reference_under_v2(data):
    project = data.draw(projects(priced=True))
    points = data.draw(st.lists(structures(project, priced=True), min_size=1, max_size=6))
    got = evaluate_points(project, points, V2, seed=None)
    for point, row in zip(points, got, strict=True):
        compare(project, point, row["kpis"], V2)


@pytest.mark.parametrize("amort", ["sculpted", "annuity", "level", "bullet"])
@pytest.mark.parametrize("mezz", ["sculpted", "annuity", "level", None])
def test_every_profile_on_the_london_sample(amort, mezz):
    london = sample()
    point = {"senior_tenor": 18, "senior_coupon": 0.045, "senior_dscr": 1.3, "senior_amort": amort,
             "indexation_mode": "flat", "zcis_tenor_years": 7, "io_months": 12, "wrap": False,
             "mezz_on": mezz is not None, "sidecar_haircut_pct": 0.15}
    if mezz:
        point.update(mezz_coupon=0.09, mezz_dscr=1.1, mezz_tenor=18, mezz_amort=mezz)
    got = evaluate_points(london, [point], seed=424242)[0]["kpis"]
    compare(london, point, got)
    breach, p5 = reference.monte_carlo(london, point, 424242)
    close(got["mc_breach_probability"], breach, 1.0, "mc_breach")
    close(got["mc_p5_min_dscr"], p5, 1.0, "mc_p5")


def test_schedule_matches_reference():
    london = sample()
    from phase1lib.engine import schedule

    point = {"senior_tenor": 15, "senior_coupon": 0.05, "senior_dscr": 1.25, "senior_amort": "annuity",
             "indexation_mode": "CPI_capped", "zcis_tenor_years": 5, "io_months": 6, "wrap": True, "mezz_on": True,
             "mezz_coupon": 0.1, "mezz_dscr": 1.1, "mezz_tenor": 12, "mezz_amort": "level",
             "sidecar_haircut_pct": 0.15}
    rows = schedule(london, point)
    ref = reference.evaluate(london, point)["schedule"]
    scale = derive(london).funding_need
    for name in ("lender_cfads", "base_cfads", "sidecar", "senior_opening", "senior_interest", "senior_principal",
                 "senior_service", "mezz_opening", "mezz_interest", "mezz_principal", "mezz_service", "equity_flow"):
        got = np.array([r[name] for r in rows])
        np.testing.assert_allclose(got, np.array(ref[name]), rtol=1e-9, atol=1e-9 * scale, err_msg=name)

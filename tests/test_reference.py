"""Tests of the scalar reference (tests/reference.py) itself: METHODOLOGY section 10's worked checks
and invariants of evaluate() on the London sample. The engine is checked against the reference
elsewhere; here the oracle is checked against the text."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from reference import (
    SENIOR_PROFILES,
    build_schedule,
    equity_irr,
    evaluate,
    io_cover_limit,
    monte_carlo,
    pmt,
    size_annuity,
    size_level,
    size_sculpted,
)

from phase1lib.project import load_project
from phase1lib.ranges import parse_ranges

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REL = 1e-12

# Section 10: CFADS C, capacity C / k, r = 6 %, annual periods.
CFADS = [100.0, 110.0, 120.0, 130.0, 140.0]
K = 1.30
R = 0.06
CAPACITY = [c / K for c in CFADS]

SANITY = {"senior_tenor": 20, "senior_coupon": 0.04, "senior_dscr": 1.35, "senior_amort": "sculpted",
          "indexation_mode": "CPI_capped", "zcis_tenor_years": 10, "io_months": 0, "wrap": False,
          "mezz_on": False, "sidecar_haircut_pct": 0.15}


@pytest.fixture(scope="module")
def london():
    return load_project(EXAMPLES / "london_dc_alpha.json")


def structure(**changes):
    return {**SANITY, **changes}


def wal(principal, amount, ppy=1):
    return sum((p / ppy) * x for p, x in enumerate(principal, start=1)) / amount


def period_llcr(cfads, schedule, r):
    """PV at r of the remaining CFADS over the opening balance, per period."""
    out = []
    for p in range(1, len(cfads) + 1):
        pv = sum(cfads[q - 1] * (1 + r) ** (-(q - p + 1)) for q in range(p, len(cfads) + 1))
        out.append(pv / schedule["opening"][p - 1])
    return out


def assert_no_nan(value, path="result"):
    if isinstance(value, float):
        assert math.isfinite(value), path
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_no_nan(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_no_nan(item, f"{path}[{i}]")


# --- section 10 worked checks ------------------------------------------------------------------

def test_worked_sculpted():
    debt = size_sculpted(CAPACITY, R)
    assert debt == pytest.approx(385.0629734070328, rel=REL)
    sched = build_schedule("sculpted", debt, CAPACITY, R)
    expected_interest = [23.103778, 19.874620, 15.990175, 11.411124, 6.095791]
    for got, want in zip(sched["interest"], expected_interest, strict=True):
        assert got == pytest.approx(want, abs=5e-7)
    assert wal(sched["principal"], debt) == pytest.approx(3.3100857700743687, rel=REL)
    for c, s in zip(CFADS, sched["service"], strict=True):
        assert c / s == pytest.approx(K, rel=REL)
    for llcr in period_llcr(CFADS, sched, R):
        assert llcr == pytest.approx(K, rel=REL)
    assert abs(sched["closing"][-1]) <= 1e-12 * debt


def test_worked_annuity():
    debt = size_annuity(CAPACITY, R)
    assert debt == pytest.approx(324.02798350505515, rel=REL)
    sched = build_schedule("annuity", debt, CAPACITY, R)
    ratios = [c / s for c, s in zip(CFADS, sched["service"], strict=True)]
    assert min(ratios) == pytest.approx(1.30, rel=REL)
    assert sum(ratios) / len(ratios) == pytest.approx(1.56, rel=REL)
    llcr = sum(c * (1 + R) ** (-p) for p, c in enumerate(CFADS, start=1)) / debt
    assert llcr == pytest.approx(1.5448723286621109, rel=REL)
    assert sched["service"][0] == pytest.approx(pmt(debt, R, 5), rel=REL)
    assert abs(sched["closing"][-1]) <= 1e-12 * debt


def test_worked_level():
    debt = size_level(CAPACITY, R)
    assert debt == pytest.approx(295.85798816568047, rel=REL)
    sched = build_schedule("level", debt, CAPACITY, R)
    assert wal(sched["principal"], debt) == pytest.approx(3.0, rel=REL)
    assert abs(sched["closing"][-1]) <= 1e-12 * debt


def test_worked_pmt():
    assert pmt(200000, 0.075 / 12, 180) == pytest.approx(1854.0247200054619, rel=REL)
    assert pmt(120, 0.0, 12) == 10.0


def test_primitives_with_io_and_zero_rate():
    # IO periods pay interest only; the post-IO profile repays the whole amount.
    cap = [50.0, 60.0, *CAPACITY]
    debt = min(size_sculpted(cap, R, io=2), io_cover_limit(cap, R, io=2))
    sched = build_schedule("sculpted", debt, cap, R, io=2)
    assert sched["principal"][:2] == [0.0, 0.0]
    assert sched["service"][0] == pytest.approx(R * debt, rel=REL)
    assert abs(sched["closing"][-1]) <= 1e-12 * debt
    assert io_cover_limit(cap, R, 0) == math.inf
    assert io_cover_limit(cap, 0.0, 2) == math.inf
    assert size_annuity(CAPACITY, 0.0) == pytest.approx(5 * CAPACITY[0], rel=REL)
    assert size_sculpted(CAPACITY, 0.0) == pytest.approx(sum(CAPACITY), rel=REL)
    assert size_level(CAPACITY, 0.0) == pytest.approx(5 * CAPACITY[0], rel=REL)
    assert size_sculpted(CAPACITY, R, io=5) == 0.0


def test_equity_irr_solver():
    assert equity_irr(100.0, [110.0], 1) == pytest.approx(0.10, rel=REL)
    payment = pmt(100.0, 0.05, 10)
    assert equity_irr(100.0, [payment] * 10, 1) == pytest.approx(0.05, rel=1e-12)
    quarterly = equity_irr(100.0, [pmt(100.0, 0.02, 40)] * 40, 4)
    assert quarterly == pytest.approx(1.02**4 - 1, rel=1e-12)
    assert equity_irr(0.0, [1.0], 1) is None
    assert equity_irr(100.0, [200.0, -1.0], 1) is None
    assert equity_irr(100.0, [0.0, 0.0], 1) is None
    assert equity_irr(100.0, [0.5], 1) is None  # root -0.995 < -0.99
    assert equity_irr(1.0, [12.0], 1) is None  # root 11 > 10


# --- evaluate() on the London sample -----------------------------------------------------------

def test_london_sanity_structure_is_viable(london):
    result = evaluate(london, SANITY)
    k = result["kpis"]
    assert k["viable"] is True, (k["gate_a"], k["gate_b"])
    assert k["gate_a"] == [] and k["gate_b"] == []
    assert k["binding_constraint"] == "dscr"
    assert k["min_dscr"] == pytest.approx(1.35, rel=REL)
    assert k["llcr"] == pytest.approx(1.35, rel=REL)  # sculpted, no IO, dscr binding, CFADS > 0
    assert k["senior_rating"] == "AA"
    assert k["tier"] in ("Diamond", "Gold")
    assert set(k["stress"]) == {"cpi_0", "cpi_1_8", "cpi_2_5", "cpi_3_5", "cpi_spike_6", "rent_minus_10",
                                "opex_plus_10"}
    assert k["stress_total"] is None
    assert k["equity_irr"] is not None and k["equity_irr"] > 0
    n_periods = london.lease_years * london.periods_per_year
    assert all(len(v) == n_periods for v in result["schedule"].values())


def test_grid_point_is_accepted(london):
    grid = parse_ranges({"senior_tenor": 20, "senior_coupon": 0.04, "senior_dscr": 1.35,
                         "zcis_tenor_years": 10, "mezz_on": [False, True]}, london)
    points = list(grid.iter_points())
    assert evaluate(london, points[0])["kpis"] == evaluate(london, SANITY)["kpis"]
    mezz = evaluate(london, points[1])["kpis"]
    assert mezz["mezz_rate"] == london.mezz_coupon
    assert mezz["stress_total"] is not None and mezz["mezz_amount"] > 0


STRUCTURE_VARIANTS = [
    dict(senior_amort=amort, io_months=io, mezz_on=mezz, indexation_mode=mode)
    for amort, io, mezz, mode in itertools.product(
        SENIOR_PROFILES, (0, 12), (False, True), ("flat", "CPI_capped"))
]


@pytest.mark.parametrize("changes", STRUCTURE_VARIANTS)
def test_london_schedule_invariants(london, changes):
    st = structure(**changes)
    result = evaluate(london, st)
    k, sched = result["kpis"], result["schedule"]
    amount = k["senior_amount"]
    assert amount > 0
    ppy = london.periods_per_year
    n = st["senior_tenor"] * ppy
    r = k["senior_rate"] / ppy
    opening, principal = sched["senior_opening"], sched["senior_principal"]
    # the note amortises to zero at n
    assert opening[0] == amount
    assert abs(opening[n - 1] - principal[n - 1]) <= 1e-9 * amount
    assert sum(principal) == pytest.approx(amount, rel=1e-9)
    # total interest = r x sum of opening balances
    assert k["total_interest"] == pytest.approx(r * sum(opening[:n]), rel=REL)
    assert all(x == 0.0 for x in opening[n:])
    # mezz amortises too
    if k["mezz_amount"] > 0:
        m_open, m_prin = sched["mezz_opening"], sched["mezz_principal"]
        n_m = st["senior_tenor"] * ppy
        assert abs(m_open[n_m - 1] - m_prin[n_m - 1]) <= 1e-9 * k["mezz_amount"]
        assert k["stress_total"] is not None
    # KPIs consistent with the schedule
    s = sched["senior_service"]
    cf = sched["lender_cfads"]
    test_end = n if st["senior_amort"] != "bullet" else (london.lease_years - 2) * ppy
    ratios = [cf[p] / s[p] for p in range(test_end) if s[p] > 0]
    assert k["min_dscr"] == pytest.approx(min(ratios), rel=REL)
    assert k["avg_dscr"] == pytest.approx(sum(ratios) / len(ratios), rel=REL)
    assert all(x == 0.0 for x in s[test_end:])
    assert k["day_one_value"] == pytest.approx(
        amount + k["mezz_amount"] + k["sidecar_net"] - k["dsra_amount"], rel=REL)
    if st["senior_amort"] == "bullet":
        assert k["wal_years"] == st["senior_tenor"]
    else:
        assert k["wal_years"] == pytest.approx(wal(principal[:n], amount, ppy), rel=REL)
    assert_no_nan(result)
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("io_months", [0, 12])
def test_sculpted_uncapped_dscr_equals_target(london, io_months):
    st = structure(senior_dscr=1.45, io_months=io_months)
    result = evaluate(london, st)
    k, sched = result["kpis"], result["schedule"]
    assert k["binding_constraint"] == "dscr"
    ppy = london.periods_per_year
    io = io_months * ppy // 12
    n = st["senior_tenor"] * ppy
    for p in range(io + 1, n + 1):
        assert sched["lender_cfads"][p - 1] / sched["senior_service"][p - 1] == pytest.approx(1.45, rel=REL)


@pytest.mark.parametrize("amort", SENIOR_PROFILES)
def test_senior_amount_monotone(london, amort):
    by_dscr = [evaluate(london, structure(senior_amort=amort, senior_dscr=1.10 + 0.05 * i))["kpis"]
               ["senior_amount"] for i in range(11)]
    by_coupon = [evaluate(london, structure(senior_amort=amort, senior_coupon=0.02 + 0.005 * i))["kpis"]
                 ["senior_amount"] for i in range(13)]
    for seq in (by_dscr, by_coupon):
        for a, b in itertools.pairwise(seq):
            assert b <= a * (1 + REL)


EDGE_CASES = [
    dict(senior_tenor=5, io_months=60),  # io >= n: no senior debt
    dict(senior_tenor=30),  # tenor above the lease cap
    dict(senior_tenor=23, senior_amort="bullet", mezz_on=True),  # empty refinancing window
    dict(senior_tenor=15, senior_coupon=0.001, senior_dscr=1.1, wrap=True),  # negative all-in rate
    dict(senior_tenor=15, senior_coupon=0.017, senior_dscr=1.1, wrap=True, senior_amort="bullet",
         io_months=24),
    dict(senior_tenor=15, senior_coupon=0.017, senior_dscr=1.1, wrap=True, senior_amort="level"),  # R = 0
    dict(indexation_mode="flat", zcis_tenor_years=10, mezz_on=True, mezz_amort="annuity", mezz_coupon=0.0),
]


@pytest.mark.parametrize("changes", EDGE_CASES)
def test_edge_cases_have_no_nan(london, changes):
    result = evaluate(london, structure(**changes))
    assert_no_nan(result)
    json.dumps(result, allow_nan=False)
    k = result["kpis"]
    if k["senior_amount"] == 0:
        assert k["min_dscr"] is None and k["senior_rating"] is None
        assert all(v is None for v in k["stress"].values())
        assert {f["check"] for f in k["gate_a"]} >= {"senior_amount"}
        assert k["viable"] is False


def test_sidecar_only_in_flat_mode_with_hedge(london):
    flat = evaluate(london, structure(indexation_mode="flat", zcis_tenor_years=10))["kpis"]
    capped = evaluate(london, structure(indexation_mode="CPI_capped", zcis_tenor_years=10))["kpis"]
    assert flat["sidecar_gross"] > 0
    assert flat["sidecar_net"] == pytest.approx(0.85 * flat["sidecar_gross"], rel=REL)
    assert capped["sidecar_gross"] == 0.0


def test_wrap_rate(london):
    k = evaluate(london, structure(wrap=True))["kpis"]
    # underlying AA (1.35 on the UK ladder, AA cap): 0.04 - (90 - 70) / 10^4 + 60 / 10^4
    assert k["senior_rate"] == 0.044
    assert k["senior_rating"] == "AAA"


def test_monte_carlo_deterministic(london):
    first = monte_carlo(london, SANITY, 424242)
    assert first == monte_carlo(london, SANITY, 424242)
    breach, p5 = first
    assert 0.0 <= breach <= 1.0
    assert 0.5 < p5 < 1.35 + 1e-9

"""Invariants of the engine on randomised structures: schedules close, sculpted cover is flat, sizing is
monotone, nothing is NaN where the methodology does not say null, hints pass their check."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import sample

from phase1lib.engine import evaluate_points, run, schedule
from phase1lib.engine.cashflows import STRESS_NAMES
from phase1lib.engine.evaluate import context_for_grid, evaluate, table_from_codes
from phase1lib.engine.gates import CHECKS
from phase1lib.engine.hints import LEVERS
from phase1lib.presets import preset_ranges
from phase1lib.ranges import parse_ranges, permutation_id
from phase1lib.ruleset import load_ruleset

LONDON = sample()

structures = st.fixed_dictionaries({
    "senior_tenor": st.integers(5, 23),
    "senior_coupon": st.sampled_from([0.03, 0.045, 0.06]),
    "senior_dscr": st.sampled_from([1.15, 1.25, 1.35, 1.5]),
    "senior_amort": st.sampled_from(["sculpted", "annuity", "level", "bullet"]),
    "indexation_mode": st.sampled_from(["flat", "CPI_capped"]),
    "zcis_tenor_years": st.sampled_from([0, 5, 10]),
    "io_months": st.sampled_from([0, 3, 12]),
    "wrap": st.booleans(),
    "mezz_on": st.booleans(),
    "sidecar_haircut_pct": st.just(0.15),
})


def full(point):
    if point["mezz_on"]:
        point = dict(point, mezz_coupon=0.09, mezz_dscr=1.1, mezz_tenor=point["senior_tenor"], mezz_amort="sculpted")
    return point


@settings(max_examples=60, deadline=None)
@given(structures)
def test_schedule_closes_and_interest_is_rate_times_opening(point):
    point = full(point)
    kpis = evaluate_points(LONDON, [point], seed=None)[0]["kpis"]
    rows = schedule(LONDON, point)
    amount = kpis["senior_amount"]
    n = point["senior_tenor"] * LONDON.periods_per_year
    if amount > 0:
        assert abs(rows[n - 1]["senior_closing"]) <= 1e-9 * amount
        opening = sum(r["senior_opening"] for r in rows[:n])
        assert kpis["total_interest"] == pytest.approx(kpis["senior_rate"] / 4 * opening, rel=1e-12)
        assert sum(r["senior_principal"] for r in rows[:n]) == pytest.approx(amount, rel=1e-9)
    if kpis["mezz_amount"] > 0:
        n_m = point["mezz_tenor"] * 4
        assert abs(rows[n_m - 1]["mezz_opening"] - rows[n_m - 1]["mezz_principal"]) <= 1e-9 * kpis["mezz_amount"]


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 23), st.sampled_from([0.03, 0.05, 0.07]), st.sampled_from([1.2, 1.35, 1.6]),
       st.sampled_from([0, 5, 10]))
def test_uncapped_sculpted_cover_is_flat_and_llcr_equals_dscr(tenor, coupon, dscr, hedge):
    point = {"senior_tenor": tenor, "senior_coupon": coupon, "senior_dscr": dscr, "senior_amort": "sculpted",
             "indexation_mode": "CPI_capped", "zcis_tenor_years": hedge, "io_months": 0, "wrap": False,
             "mezz_on": False, "sidecar_haircut_pct": 0.15}
    kpis = evaluate_points(LONDON, [point], seed=None)[0]["kpis"]
    if kpis["binding_constraint"] != "dscr":
        return
    ratios = [r["dscr"] for r in schedule(LONDON, point) if r["dscr"] is not None]
    assert len(ratios) == tenor * 4
    np.testing.assert_allclose(ratios, dscr, rtol=1e-12)
    assert kpis["llcr"] == pytest.approx(dscr, rel=1e-12)
    assert kpis["min_dscr"] == pytest.approx(dscr, rel=1e-12) and kpis["avg_dscr"] == pytest.approx(dscr, rel=1e-12)


@pytest.mark.parametrize("amort", ["sculpted", "annuity", "level", "bullet"])
@pytest.mark.parametrize("io", [0, 12])
def test_senior_amount_never_rises_with_dscr_or_coupon(amort, io):
    """At a fixed all-in rate (unwrapped; a wrap's rate falls as its DSCR notch improves)."""
    ranges = {"senior_tenor": [15], "senior_coupon": {"min": 0.02, "max": 0.08, "step": 0.005},
              "senior_dscr": {"min": 1.0, "max": 1.8, "step": 0.05}, "senior_amort": [amort], "io_months": [io],
              "zcis_tenor_years": [0, 7]}
    grid = parse_ranges(ranges, LONDON)
    ctx = context_for_grid(LONDON, load_ruleset(), grid)
    table = table_from_codes(grid, grid.decode(np.arange(grid.cardinality)))
    out = evaluate(ctx, table, hints=False)
    shape = [len(grid.values[k]) for k in ("senior_coupon", "senior_dscr", "zcis_tenor_years")]
    senior = out["senior_amount"].reshape(shape)
    assert np.all(np.diff(senior, axis=0) <= 1e-9 * senior.max())  # coupon up -> never more debt
    assert np.all(np.diff(senior, axis=1) <= 1e-9 * senior.max())  # DSCR target up -> never more debt


NULLABLE = {"min_dscr", "avg_dscr", "llcr", "wal_years", "equity_irr", "mezz_rate", "wacd", "senior_rating",
            *(f"stress_{s}" for s in STRESS_NAMES), *(f"stress_total_{s}" for s in STRESS_NAMES),
            "wrap_underlying", "hint_value"}


def test_no_nan_outside_the_methodology_nulls():
    result = run(LONDON, preset_ranges("aggressive"))
    frame = result.frame
    for name in frame.columns:
        column = frame[name]
        if name not in NULLABLE and name not in ("mezz_coupon", "mezz_dscr", "mezz_tenor", "mezz_amort"):
            assert column.null_count() == 0, name
        if column.dtype.is_float():
            assert column.is_nan().sum() == 0, name
    no_debt = frame.filter(frame["senior_amount"] == 0)
    assert no_debt["min_dscr"].null_count() == len(no_debt)
    with_mezz = frame.filter(frame["mezz_amount"] > 0)
    assert with_mezz["stress_total_cpi_0"].null_count() == 0


def test_every_near_miss_hint_passes_its_check():
    grid_ranges = {"senior_tenor": [15, 20, 23, 24], "senior_coupon": [0.04, 0.055],
                   "senior_dscr": {"min": 1.2, "max": 1.5, "step": 0.05}, "senior_amort": ["sculpted", "annuity"],
                   "wrap": [False, True], "mezz_on": [False, True], "zcis_tenor_years": [0, 10]}
    result = run(LONDON, grid_ranges)
    near = result.frame.filter(result.frame["near_miss"])
    assert len(near) > 10
    points, checks = [], []
    for row in near.iter_rows(named=True):
        verb, key = LEVERS[row["hint_lever"]]
        assert row["hint_value"] is not None, row
        point = {k: row[k] for k in grid_ranges} | {"io_months": 0, "indexation_mode": "CPI_capped",
                                                     "sidecar_haircut_pct": 0.15}
        if row["mezz_on"]:
            point.update(mezz_coupon=row["mezz_coupon"], mezz_dscr=row["mezz_dscr"], mezz_tenor=row["mezz_tenor"],
                         mezz_amort=row["mezz_amort"])
        before = point[key]
        point[key] = int(row["hint_value"]) if key == "senior_tenor" else row["hint_value"]
        assert (point[key] < before) if verb in ("shorten", "lower") else (point[key] > before)
        points.append(point)
        checks.append(CHECKS[row["near_miss_check"]])
    for check, rendered in zip(checks, evaluate_points(LONDON, points, seed=None), strict=True):
        failed = {f["check"] for f in rendered["kpis"]["gate_a"] + rendered["kpis"]["gate_b"]}
        assert check not in failed, (check, rendered["structure"])


def test_hint_text_names_lever_and_value():
    from phase1lib.engine.evaluate import context_for_grid as ctx_for
    from phase1lib.engine.render import render_row
    from phase1lib.runs import frame_ids

    result = run(LONDON, preset_ranges("current_1920"))
    # a run's frame has no id column: its reader derives the ids from the grid (runs.frame_ids)
    frame = result.frame.with_columns(pl.Series("permutation_id", frame_ids(result)))
    bronze = frame.filter(frame["tier"] == "Bronze")
    assert len(bronze) == result.counts["Bronze"] > 0
    ctx = ctx_for(LONDON, load_ruleset(), result.grid)
    for row in bronze.head(5).iter_rows(named=True):
        rendered = render_row(ctx, row)
        assert rendered["permutation_id"] == permutation_id(rendered["structure"])  # section 3, from the point
        hint = rendered["kpis"]["hint"]
        verb, key, _, value = hint.split(" ")
        assert verb in ("raise", "lower", "shorten") and key in ("senior_dscr", "senior_tenor", "mezz_dscr")
        assert math.isfinite(float(value))


@pytest.mark.parametrize("name", ["frankfurt_dc_beta", "ashburn_dc_gamma"])
def test_every_v2_near_miss_hint_passes_its_check_and_keeps_the_coupon_priced(name):
    """Under v2 a senior_dscr hint re-prices a "market" point, and never moves an offered coupon below the
    market (D39); a coupon hint names the market coupon up to a whole bp."""
    from samples import sample

    from phase1lib.ruleset import load_ruleset

    v2 = load_ruleset("v2")
    project = sample(name)
    grid_ranges = {"senior_tenor": [10, 12, 15], "senior_coupon": ["market", 0.045, 0.05, 0.055, 0.07],
                   "senior_dscr": {"min": 1.15, "max": 1.5, "step": 0.05}, "senior_amort": ["sculpted", "annuity"],
                   "wrap": [False, True], "mezz_on": [False, True], "zcis_tenor_years": [0, 10]}
    result = run(project, grid_ranges, ruleset=v2)
    near = result.frame.filter(result.frame["near_miss"])
    assert len(near) > 10
    points, checks, levers = [], [], set()
    for row in near.iter_rows(named=True):
        if row["hint_value"] is None:  # "no single-lever fix" is said in the hint text
            continue
        _verb, key = LEVERS[row["hint_lever"]]
        levers.add(key)
        point = {k: row[k] for k in grid_ranges} | {"io_months": 0, "indexation_mode": "CPI_capped",
                                                     "sidecar_haircut_pct": 0.15}
        point["senior_coupon"] = row["senior_coupon"] if row["senior_coupon"] == "market" else float(
            row["senior_coupon"])
        if row["mezz_on"]:
            point.update(mezz_coupon=row["mezz_coupon"], mezz_dscr=row["mezz_dscr"], mezz_tenor=row["mezz_tenor"],
                         mezz_amort=row["mezz_amort"])
        point[key] = int(row["hint_value"]) if key == "senior_tenor" else row["hint_value"]
        points.append(point)
        checks.append(CHECKS[row["near_miss_check"]])
    assert {"senior_dscr", "senior_coupon"} <= levers
    for check, point, rendered in zip(checks, points, evaluate_points(project, points, v2, seed=None), strict=True):
        failed = {f["check"] for f in rendered["kpis"]["gate_a"] + rendered["kpis"]["gate_b"]}
        assert check not in failed, (check, rendered["structure"])
        if point["senior_coupon"] != "market":
            assert "pricing" not in failed, (check, rendered["structure"])

"""Equity IRR numerics (note D33): the Halley start's moments and the roots against plain scalar sums."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phase1lib.engine.irr import _PeriodNPV, _YearNPV, halley_start, irr_factor_periods, irr_factor_yearly


def _expand(yearly: np.ndarray, ppy: int, point: np.ndarray, point_year: np.ndarray, residual: float) -> np.ndarray:
    """Per-period flows (N x rows) of the yearly representation: each year's amount ppy times, plus points."""
    flows = np.repeat(yearly, ppy, axis=0)
    for j in range(yearly.shape[1]):
        flows[point_year[j] * ppy - 1, j] += point[j]
    flows[-1] += residual
    return flows


def _scalar_moments(column: np.ndarray) -> tuple[float, float, float]:
    m0 = m1 = m2 = 0.0
    for p, f in enumerate(column.tolist(), start=1):
        m0 += f
        m1 += p * f
        m2 += p * (p - 1) * f
    return m0, m1, m2


def _scalar_npv(column: np.ndarray, x: float) -> float:
    return sum(f * x**p for p, f in enumerate(column.tolist(), start=1))


@pytest.fixture
def case():
    rng = np.random.default_rng(7)
    years, ppy, rows = 12, 4, 40
    yearly = rng.uniform(0.5, 3.0, (years, rows))
    point = rng.uniform(0.0, 5.0, rows)
    point_year = rng.integers(1, years + 1, rows)
    residual = 4.0
    equity = rng.uniform(20.0, 80.0, rows)
    return yearly, ppy, point, point_year, residual, equity


def test_moments_are_the_weighted_sums_of_the_period_flows(case):
    yearly, ppy, point, point_year, residual, _ = case
    flows = _expand(yearly, ppy, point, point_year, residual)
    by_year = _YearNPV(yearly, ppy, point, point_year, residual).moments()
    by_period = _PeriodNPV(flows).moments()
    for j in range(flows.shape[1]):
        expected = _scalar_moments(flows[:, j])
        for got in (by_year, by_period):
            assert [m[j] for m in got] == pytest.approx(expected, rel=1e-12)


def test_halley_start_is_closer_to_the_root_than_one(case):
    yearly, ppy, point, point_year, residual, equity = case
    flows = _expand(yearly, ppy, point, point_year, residual)
    roots = irr_factor_periods(flows, equity)
    start = halley_start(_PeriodNPV(flows), equity)
    assert np.all(np.abs(start - roots) < np.abs(1.0 - roots))


def test_roots_solve_the_scalar_npv_on_both_paths(case):
    yearly, ppy, point, point_year, residual, equity = case
    flows = _expand(yearly, ppy, point, point_year, residual)
    x_year = irr_factor_yearly(yearly, point, point_year, residual, equity, ppy)
    x_period = irr_factor_periods(flows, equity)
    for j in range(flows.shape[1]):
        assert math.isclose(x_year[j], x_period[j], rel_tol=1e-12)
        npv = _scalar_npv(flows[:, j], float(x_year[j]))
        assert math.isclose(npv, equity[j], rel_tol=1e-11)

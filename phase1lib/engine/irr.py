"""Equity IRR for many flow vectors at once (METHODOLOGY section 7).

With equity_required > 0 and every later flow >= 0 (not all zero), NPV(x) = -E + sum_p f_p x^p in the
discount factor x = 1 / (1 + i) is increasing and convex on x > 0, so Newton's method converges to
the unique root without bracketing: from the right monotonically, from the left after one step. Each
row iterates from x = 1 until its own step is below 1e-9 x (quadratic convergence leaves an error far
below 1e-15 after such a step); finished rows drop out, so a row's result never depends on which
other rows share its chunk.
"""

from __future__ import annotations

import numpy as np

from .arrays import int_power

MAX_ITER = 100
STEP_TOL = 1e-9
X_MIN, X_MAX = 1.0 / 11.0, 100.0  # i in [-0.99, 10]


def _npv_and_slope(flows_t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sum_p f_p x^p and its derivative by Horner's rule; flows_t is N x rows (period-major)."""
    value = np.zeros_like(x)
    slope = np.zeros_like(x)
    for row in flows_t[::-1]:
        np.multiply(slope, x, out=slope)
        slope += value
        np.multiply(value, x, out=value)
        value += row
    # the loop evaluated q(x) = sum_p f_p x^(p-1): NPV part x q(x), slope q(x) + x q'(x)
    np.multiply(slope, x, out=slope)
    slope += value
    value *= x
    return value, slope


def irr_defined(flows_t: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """Rows with a unique IRR: equity > 0, no later flow below -1e-9 x equity (rounding), some flow > 0."""
    return (equity > 0) & (flows_t.min(axis=0) >= -1e-9 * equity) & (flows_t.max(axis=0) > 0)


def periodic_irr_factor(flows_t: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """Root x of -equity + sum_p f_p x^p per column of ``flows_t`` (N x rows); NaN where undefined."""
    x = np.full(flows_t.shape[1], np.nan)
    active = np.flatnonzero(irr_defined(flows_t, equity))
    flows = flows_t if len(active) == flows_t.shape[1] else flows_t[:, active]
    cols = np.arange(len(active))  # columns of `flows` still iterating
    guess = np.ones(len(active))
    eq = equity[active]
    for _ in range(MAX_ITER):
        if len(cols) == 0:
            break
        if len(cols) < flows.shape[1] // 2:  # compact: keep only the columns still iterating
            flows, active, cols = flows[:, cols], active[cols], np.arange(len(cols))
        sub = flows if len(cols) == flows.shape[1] else flows[:, cols]
        value, slope = _npv_and_slope(sub, guess)
        new = guess - (value - eq) / slope
        bad = ~np.isfinite(new) | (new <= 0)
        new = np.where(bad, guess * 0.5, new)  # guard: stay at x > 0
        done = (np.abs(new - guess) <= STEP_TOL * np.abs(new)) & ~bad
        x[active[cols[done]]] = new[done]
        keep = ~done
        cols, guess, eq = cols[keep], new[keep], eq[keep]
    x[active[cols]] = np.nan  # not converged: no reliable root
    return np.where((x >= X_MIN) & (x <= X_MAX), x, np.nan)


def annualised_irr(x: np.ndarray, ppy: int) -> np.ndarray:
    """(1 + i)^ppy - 1 with 1 + i = 1 / x."""
    return int_power(1.0 / x, ppy) - 1.0

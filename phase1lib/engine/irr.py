"""Equity IRR for many flow vectors at once (METHODOLOGY section 7).

With equity_required > 0 and no later flow below zero (beyond rounding), NPV(x) = -E + sum_p f_p x^p
in the discount factor x = 1 / (1 + i) is increasing and convex on x > 0, so Newton's method from
any x > 0 converges to the unique root without bracketing (monotonically from the right, from the left
after one step). It starts from one Halley step off x = 1, where NPV and its two derivatives are plain
weighted sums of the flows. Each row stops once its own step is below 1e-9 x, or once two successive
steps show quadratic convergence with an estimated error below 1e-14 x. Finished rows drop out, so a
row's result never depends on its chunk.

Most structures pay the same flow in every period of a lease year (cash flows are annual; sculpted,
annuity and bullet service follow them). For those rows NPV = G(x) Q(x^ppy) + point terms, with Q the
polynomial of yearly amounts and G(x) = x + ... + x^ppy, which is ppy times cheaper to evaluate. The
DSRA release and the residual value are point terms at year ends. Other rows (level amortisation, IO
ending mid-year) use the period polynomial.
"""

from __future__ import annotations

import numpy as np

from .arrays import int_power

MAX_ITER = 100
STEP_TOL = 1e-9
ERROR_TOL = 1e-14
NOISE = 1e-9  # a flow above -NOISE x equity is rounding of zero (note D25)
X_MIN, X_MAX = 1.0 / 11.0, 100.0  # i in [-0.99, 10]


def _horner(coef: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q(x) = sum_j coef[j] x^j and q'(x), coef is (terms x rows)."""
    value = np.zeros_like(x)
    slope = np.zeros_like(x)
    for row in coef[::-1]:
        np.multiply(slope, x, out=slope)
        slope += value
        np.multiply(value, x, out=value)
        value += row
    return value, slope


def _power(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """base^exponent for small non-negative integer exponents per row (binary exponentiation)."""
    result = np.ones_like(base)
    b = base.copy()
    e = exponent.copy()
    while np.any(e > 0):
        result = np.where(e & 1, result * b, result)
        b = b * b
        e >>= 1
    return result


class _PeriodNPV:
    """NPV and slope from the per-period polynomial (flows include point terms)."""

    def __init__(self, flows_t: np.ndarray):
        self.flows = flows_t

    def take(self, keep: np.ndarray) -> None:
        self.flows = self.flows[:, keep]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, dq = _horner(self.flows, x)  # sum_p f_p x^(p-1)
        return q * x, q + dq * x

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NPV and its first two derivatives at x = 1: sum f_p, sum p f_p, sum p (p - 1) f_p (in period order)."""
        return _moments(self.flows, np.arange(1, self.flows.shape[0] + 1, dtype=float))


class _YearNPV:
    """NPV and slope as G(x) Q(z) + a z^k + b z^Y with z = x^ppy (yearly-constant flows)."""

    def __init__(self, yearly: np.ndarray, ppy: int, point: np.ndarray, point_year: np.ndarray,
                 residual: float):
        self.yearly, self.ppy, self.point, self.point_year = yearly, ppy, point, point_year
        self.years = yearly.shape[0]
        self.residual = residual

    def take(self, keep: np.ndarray) -> None:
        self.yearly, self.point, self.point_year = self.yearly[:, keep], self.point[keep], self.point_year[keep]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ppy = self.ppy
        z = int_power(x, ppy)
        q, dq = _horner(self.yearly, z)
        g, dg = _horner(np.ones((ppy, *x.shape)), x)  # sum_{j<ppy} x^j and its slope
        g, dg = g * x, g + dg * x  # G(x) = x + ... + x^ppy
        dz = ppy * z / x
        value = g * q
        slope = dg * q + g * dq * dz
        zk = _power(z, self.point_year)
        value += self.point * zk
        slope += self.point * self.point_year * zk * (ppy / x)
        if self.residual:
            zy = int_power(z, self.years)
            value += self.residual * zy
            slope += self.residual * self.years * zy * (ppy / x)
        return value, slope

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NPV and its first two derivatives at x = 1, from per-year sums of the period weights p, p (p - 1)."""
        ppy = self.ppy
        first = np.arange(self.years)[:, None] * ppy + np.arange(1, ppy + 1)  # periods of each year
        m0, m1, m2 = _moments(self.yearly, first.astype(float), ppy)
        for amount, period in ((self.point, self.point_year * ppy), (self.residual, self.years * ppy)):
            m0 = m0 + amount
            m1 = m1 + amount * period
            m2 = m2 + amount * period * (period - 1.0)
        return m0, m1, m2


def _moments(coef: np.ndarray, periods: np.ndarray, repeat: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sum_j coef_j (repeat, P_j, P_j (P_j - 1)) in index order, with P_j the sum of the periods in row j of
    ``periods`` (one period per term, or the ``repeat`` periods of a year)."""
    w1 = periods.reshape(len(coef), -1).sum(axis=1)
    w2 = (periods * (periods - 1.0)).reshape(len(coef), -1).sum(axis=1)
    m0 = np.zeros(coef.shape[1:])
    m1 = np.zeros(coef.shape[1:])
    m2 = np.zeros(coef.shape[1:])
    for row, a, b in zip(coef, w1, w2, strict=True):
        m0 += row
        m1 += a * row
        m2 += b * row
    return m0 * repeat, m1, m2


def halley_start(npv, equity: np.ndarray) -> np.ndarray:
    """One Halley step from x = 1 (NPV and two derivatives at 1 are weighted sums, cheaper than a Newton
    evaluation); x = 1 where the step is not usable. Newton then needs two or three evaluations, not five."""
    m0, m1, m2 = npv.moments()
    f = m0 - equity
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = 1.0 - 2.0 * f * m1 / (2.0 * m1 * m1 - f * m2)
    return np.where(np.isfinite(x) & (x > X_MIN / 2) & (x < 2.0), x, 1.0)


def _newton(npv, equity: np.ndarray) -> np.ndarray:
    """Roots x of npv(x) = equity by per-row Newton from a Halley step off x = 1; NaN where not converged.

    A row stops when its step is below STEP_TOL x, or when convergence is visibly quadratic and the
    error left after the step, estimated as step^3 / previous step^2, is below ERROR_TOL x.
    """
    rows = len(equity)
    x = np.full(rows, np.nan)
    active = np.arange(rows)
    guess = halley_start(npv, equity)
    previous = np.full(rows, np.inf)
    eq = equity.copy()
    for _ in range(MAX_ITER):
        if len(active) == 0:
            break
        value, slope = npv(guess)
        step = (value - eq) / slope
        new = guess - step
        bad = ~np.isfinite(new) | (new <= 0)
        new = np.where(bad, guess * 0.5, new)  # guard: stay at x > 0
        size = np.abs(step)
        with np.errstate(over="ignore", invalid="ignore"):
            quadratic = np.isfinite(previous) & (size <= 1e-5 * new) & (size <= 0.1 * previous) & (
                size * size * size <= ERROR_TOL * new * previous * previous)
        done = ((size <= STEP_TOL * np.abs(new)) | quadratic) & ~bad
        x[active[done]] = new[done]
        keep = ~done
        if not keep.all():
            npv.take(keep)
            active, guess, eq, previous = active[keep], new[keep], eq[keep], size[keep]
        else:
            guess, previous = new, size
    return x


def _valid(lowest: np.ndarray, highest: np.ndarray, point: np.ndarray, residual: float,
           equity: np.ndarray) -> np.ndarray:
    """Rows with a unique IRR: equity > 0, no flow below -1e-9 x equity (rounding), some flow > 0."""
    return (equity > 0) & (lowest >= -NOISE * equity) & ((highest > 0) | (point > 0) | (residual > 0))


def irr_factor_periods(flows_t: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """Root x of -equity + sum_p f_p x^p per column of ``flows_t`` (N x rows, point terms included)."""
    x = np.full(flows_t.shape[1], np.nan)
    zero = np.zeros(flows_t.shape[1])
    rows = np.flatnonzero(_valid(flows_t.min(axis=0), flows_t.max(axis=0), zero, 0.0, equity))
    if len(rows):
        sub = flows_t if len(rows) == flows_t.shape[1] else flows_t[:, rows]
        x[rows] = _newton(_PeriodNPV(sub), equity[rows])
    return np.where((x >= X_MIN) & (x <= X_MAX), x, np.nan)


def irr_factor_yearly(yearly: np.ndarray, point: np.ndarray, point_year: np.ndarray, residual: float,
                      equity: np.ndarray, ppy: int) -> np.ndarray:
    """Root x for flows equal in every period of a lease year: ``yearly`` (years x rows) is the per-period
    amount of each year; ``point`` is paid at the end of year ``point_year``, ``residual`` at the end.

    With ppy > 1 every year has periods without the point terms, so they cannot lift a negative flow.
    """
    x = np.full(yearly.shape[1], np.nan)
    rows = np.flatnonzero(_valid(yearly.min(axis=0), yearly.max(axis=0), point, residual, equity))
    if len(rows):
        sub = yearly if len(rows) == yearly.shape[1] else yearly[:, rows]
        x[rows] = _newton(_YearNPV(sub, ppy, point[rows], point_year[rows], residual), equity[rows])
    return np.where((x >= X_MIN) & (x <= X_MAX), x, np.nan)


def annualised_irr(x: np.ndarray, ppy: int) -> np.ndarray:
    """(1 + i)^ppy - 1 with 1 + i = 1 / x."""
    return int_power(1.0 / x, ppy) - 1.0

"""The numba kernels of :mod:`phase1lib.engine.kernels` (imported only through it: this module imports numba).

Every expression below mirrors the numpy code it replaces operation for operation (same operands, same order,
IEEE semantics: ``error_model="numpy"``, no fastmath), which is what makes the two paths bit-identical.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .irr import ERROR_TOL, MAX_ITER, NOISE, STEP_TOL, X_MAX, X_MIN

SCULPTED, ANNUITY, LEVEL = 0, 1, 2
INF = math.inf
NAN = math.nan
JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": False}


@njit(**JIT)
def _minimum(a: float, b: float) -> float:
    """np.minimum on two floats (NaN propagates)."""
    if a != a or b != b:
        return NAN
    return a if a <= b else b


@njit(**JIT)
def _maximum(a: float, b: float) -> float:
    """np.maximum on two floats (NaN propagates)."""
    if a != a or b != b:
        return NAN
    return a if a >= b else b


@njit(**JIT)
def mezz_group(lender_pos, u, stress_cash, cls, case, senior, coupon, dscr, n_m, amort, headroom, ppy, width, span,
               amount_out, min_ratio_out, service_out, totals_out):
    """mezz.size_mezz (grid mode) and evaluate._mezz_group's combined stresses, one row at a time."""
    rows = cls.shape[0]
    scenarios = stress_cash.shape[1]
    cap = np.empty(width)
    ss = np.empty(width)
    vp = np.empty(width)
    acc = np.empty(width)
    lf = np.empty(width)
    inv = np.empty(width)
    for i in range(rows):
        c, k, s_amount = case[i], cls[i], senior[i]
        periods = n_m[i]
        rr = coupon[i] / ppy
        v = 1.0 / (1.0 + rr)
        m = float(max(periods, 1))
        code = amort[i]
        running = 0.0
        for p in range(width):
            vp[p] = v if p == 0 else vp[p - 1] * v
            cover = lender_pos[c, p] / dscr[i]
            ss[p] = s_amount * u[k, p]
            room = cover - ss[p]
            keep = room > 1e-9 * cover
            cap[p] = room if (keep and p < periods) else 0.0
            if code == SCULPTED:
                running = cap[p] * vp[p] if p == 0 else running + cap[p] * vp[p]
                acc[p] = running
        min_cap = INF
        if code == SCULPTED:
            capacity = acc[width - 1]
        elif code == ANNUITY:
            for p in range(min(periods, width)):
                if cap[p] < min_cap:
                    min_cap = cap[p]
            v_m = vp[max(periods - 1, 0)]
            factor = m if rr == 0 else (1.0 - v_m) / rr
            capacity = min_cap * factor
        else:
            capacity = INF
            for p in range(width):
                lf[p] = 1.0 / m + rr * ((m - float(p + 1)) + 1.0) / m
                if p < periods and lf[p] > 0:
                    ratio = cap[p] / lf[p] if lf[p] != 0 else INF
                    if ratio < capacity:
                        capacity = ratio
        if not periods > 0:
            capacity = 0.0
        amt = _maximum(_minimum(capacity, headroom[i]), 0.0)
        scale = amt / capacity if capacity != 0 else 0.0
        lowest = INF
        for p in range(width):
            live = p < periods
            if code == SCULPTED:
                svc = cap[p] * scale
                owed = capacity if p == 0 else (capacity - acc[p - 1]) / vp[p - 1]
                principal = cap[p] - owed * rr
                if live and principal < lowest:
                    lowest = principal
            elif code == ANNUITY:
                svc = min_cap * scale if live else 0.0
            else:
                svc = amt * lf[p] if live else 0.0
            service_out[i, p] = svc
        amount_out[i] = amt
        if code == SCULPTED:
            min_ratio_out[i] = lowest / capacity if amt > 0 else 0.0
        if amt > 0:
            last = 0
            for p in range(min(width, span[i])):
                combined = ss[p] + service_out[i, p]
                served = combined > 0
                inv[p] = 1.0 / combined if served else NAN
                if served:
                    last = p + 1
            for s in range(scenarios):
                best = INF
                found = False
                for p in range(last):
                    value = stress_cash[c, s, p] * inv[p]
                    if value < best:  # NaN (not served) never is
                        best = value
                        found = True
                totals_out[i, s] = best if found else NAN


@njit(**JIT)
def _horner(coef, x):
    """irr._horner for one row: q(x) = sum_j coef[j] x^j and q'(x)."""
    value = 0.0
    slope = 0.0
    for j in range(coef.shape[0] - 1, -1, -1):
        slope = slope * x
        slope = slope + value
        value = value * x
        value = value + coef[j]
    return value, slope


@njit(**JIT)
def _ones_horner(count, x):
    """irr._horner with ``count`` coefficients equal to 1."""
    value = 0.0
    slope = 0.0
    for _ in range(count):
        slope = slope * x
        slope = slope + value
        value = value * x
        value = value + 1.0
    return value, slope


@njit(**JIT)
def _int_power(base, k):
    out = 1.0
    for _ in range(k):
        out = out * base
    return out


@njit(**JIT)
def _bin_power(base, e):
    """irr._power for one row (binary exponentiation)."""
    result = 1.0
    b = base
    while e > 0:
        if e & 1:
            result = result * b
        b = b * b
        e >>= 1
    return result


@njit(**JIT)
def _year_npv(coef, ppy, point, point_year, residual, x):
    """irr._YearNPV.__call__ for one row."""
    z = _int_power(x, ppy)
    q, dq = _horner(coef, z)
    g0, dg0 = _ones_horner(ppy, x)
    g = g0 * x
    dg = g0 + dg0 * x
    dz = ppy * z / x
    value = g * q
    slope = dg * q + g * dq * dz
    zk = _bin_power(z, point_year)
    value += point * zk
    slope += point * point_year * zk * (ppy / x)
    if residual != 0:
        years = coef.shape[0]
        zy = _int_power(z, years)
        value += residual * zy
        slope += residual * years * zy * (ppy / x)
    return value, slope


@njit(**JIT)
def _halley(m0, m1, m2, equity):
    f = m0 - equity
    x = 1.0 - 2.0 * f * m1 / (2.0 * m1 * m1 - f * m2)
    if math.isfinite(x) and x > X_MIN / 2 and x < 2.0:
        return x
    return 1.0


@njit(**JIT)
def _step(value, slope, guess, eq, previous):
    """One Newton step of irr._newton: (new guess, |step|, done)."""
    step = (value - eq) / slope
    new = guess - step
    bad = not math.isfinite(new) or new <= 0
    if bad:
        new = guess * 0.5
    size = abs(step)
    quadratic = (math.isfinite(previous) and size <= 1e-5 * new and size <= 0.1 * previous
                 and size * size * size <= ERROR_TOL * new * previous * previous)
    done = (size <= STEP_TOL * abs(new) or quadratic) and not bad
    return new, size, done


@njit(**JIT)
def irr_yearly(yearly, point, point_year, residual, equity, ppy, x_out):
    """irr.irr_factor_yearly: yearly is rows x years (the transpose of the numpy path's matrix)."""
    rows, years = yearly.shape
    for j in range(rows):
        coef = yearly[j]
        lowest = INF
        highest = -INF
        for t in range(years):
            if coef[t] < lowest:
                lowest = coef[t]
            if coef[t] > highest:
                highest = coef[t]
        eq = equity[j]
        if not (eq > 0 and lowest >= -NOISE * eq and (highest > 0 or point[j] > 0 or residual > 0)):
            continue
        m0 = 0.0
        m1 = 0.0
        m2 = 0.0
        for t in range(years):
            w1 = 0.0
            w2 = 0.0
            for q in range(1, ppy + 1):
                period = float(t * ppy + q)
                w1 += period
                w2 += period * (period - 1.0)
            m0 += coef[t]
            m1 += w1 * coef[t]
            m2 += w2 * coef[t]
        m0 = m0 * ppy
        period_i = point_year[j] * ppy
        m0 = m0 + point[j]
        m1 = m1 + point[j] * period_i
        m2 = m2 + point[j] * period_i * (period_i - 1.0)
        period_i = years * ppy
        m0 = m0 + residual
        m1 = m1 + residual * period_i
        m2 = m2 + residual * period_i * (period_i - 1.0)
        guess = _halley(m0, m1, m2, eq)
        previous = INF
        for _ in range(MAX_ITER):
            value, slope = _year_npv(coef, ppy, point[j], point_year[j], residual, guess)
            new, size, done = _step(value, slope, guess, eq, previous)
            if done:
                if X_MIN <= new <= X_MAX:
                    x_out[j] = new
                break
            guess, previous = new, size


@njit(**JIT)
def irr_periods(flows, equity, x_out):
    """irr.irr_factor_periods: flows is rows x N (the transpose of the numpy path's matrix)."""
    rows, n = flows.shape
    for j in range(rows):
        coef = flows[j]
        lowest = INF
        highest = -INF
        for t in range(n):
            if coef[t] < lowest:
                lowest = coef[t]
            if coef[t] > highest:
                highest = coef[t]
        eq = equity[j]
        if not (eq > 0 and lowest >= -NOISE * eq and highest > 0):
            continue
        m0 = 0.0
        m1 = 0.0
        m2 = 0.0
        for t in range(n):
            period = float(t + 1)
            m0 += coef[t]
            m1 += period * coef[t]
            m2 += (period * (period - 1.0)) * coef[t]
        m0 = m0 * 1
        guess = _halley(m0, m1, m2, eq)
        previous = INF
        for _ in range(MAX_ITER):
            q, dq = _horner(coef, guess)
            value = q * guess
            slope = q + dq * guess
            new, size, done = _step(value, slope, guess, eq, previous)
            if done:
                if X_MIN <= new <= X_MAX:
                    x_out[j] = new
                break
            guess, previous = new, size


def compile_all() -> None:
    """Compile (or load from the cache) every kernel for the argument types of kernels.py's wrappers."""
    f, i = np.float64, np.int64
    one_f, one_i = np.ones(1, f), np.ones(1, i)
    mezz_group(np.ones((1, 2), f), np.ones((1, 2), f), np.ones((1, 7, 2), f), np.zeros(1, i), np.zeros(1, i), one_f,
               one_f * 0.05, one_f * 1.1, one_i, np.zeros(1, i), one_f, 1, 2, one_i * 2, np.zeros(1, f),
               np.zeros(1, f), np.zeros((1, 2), f), np.zeros((1, 7), f))
    irr_yearly(np.ones((1, 2), f), one_f, one_i, 0.0, one_f, 2, np.zeros(1, f))
    irr_periods(np.ones((1, 2), f), one_f, np.zeros(1, f))

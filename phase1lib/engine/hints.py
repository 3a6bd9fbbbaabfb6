"""Near-miss hints (METHODOLOGY section 8, note D28): one lever and the value that makes the check pass.

Most hints are exact in closed form: every cash-flow limit of the senior scales with 1/k, so raising
senior_dscr to k' gives senior debt min(G / k', caps) with G = k x the cash-flow limit. Where that
reasoning does not hold (a wrap whose rating notch, and so rate, changes with k; a mezzanine that
moves with the senior; WAL against tenor; combined stresses against mezz_dscr) the lever is searched
on its ladder by bisection, re-evaluating the structure with each candidate. Every hint value is one
that passes the failed check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..pricing import pricing_hint
from ..ruleset import TOL
from .gates import CHECKS

NONE, SHORTEN_TENOR, RAISE_DSCR, LOWER_DSCR, RAISE_MEZZ_DSCR, RAISE_COUPON = range(6)
LEVERS = {
    SHORTEN_TENOR: ("shorten", "senior_tenor"),
    RAISE_DSCR: ("raise", "senior_dscr"),
    LOWER_DSCR: ("lower", "senior_dscr"),
    RAISE_MEZZ_DSCR: ("raise", "mezz_dscr"),
    RAISE_COUPON: ("raise", "senior_coupon"),
}
STEP = 0.01
LADDER = 100  # candidates: +/- 0.01 .. 1.00
C = {name: i for i, name in enumerate(CHECKS)}
Evaluator = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def lever_for(check: np.ndarray) -> np.ndarray:
    """Lever code of each failed check index (-1 = none)."""
    out = np.full(len(check), NONE, dtype=np.int8)
    for name, i in C.items():
        if name in ("tenor", "wal"):
            code = SHORTEN_TENOR
        elif name == "advance_factor":
            code = LOWER_DSCR
        elif name in ("min_equity", "min_dscr") or (name.startswith("stress_") and "total" not in name):
            code = RAISE_DSCR
        elif name.startswith("stress_total_"):
            code = RAISE_MEZZ_DSCR
        elif name == "pricing":
            code = RAISE_COUPON
        else:
            continue
        out[check == i] = code
    return out


def hint_text(lever: int, value: float, check: str) -> str | None:
    """Readable hint, e.g. "raise senior_dscr to 1.35"."""
    if lever == NONE:
        return None
    verb, key = LEVERS[lever]
    if not np.isfinite(value):
        return f"no single-lever fix: {verb} {key} within its ladder does not pass {check}"
    shown = f"{int(value)}" if key == "senior_tenor" else f"{value:.4f}" if key == "senior_coupon" else f"{value:.2f}"
    return f"{verb} {key} to {shown}"


def _up(x: np.ndarray) -> np.ndarray:
    """Smallest multiple of 0.01 at or above x (rounded to 2 decimals)."""
    return np.round(np.ceil(np.round(x * 100, 6)) / 100, 2)


def _down(x: np.ndarray) -> np.ndarray:
    return np.round(np.floor(np.round(x * 100, 6)) / 100, 2)


def closed_form(k: Mapping[str, np.ndarray], table: Mapping[str, np.ndarray], consts: Mapping[str, float],
                rate_stable: Callable[[np.ndarray, np.ndarray], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lever, value, needs_search) for near-miss rows of ``k`` (all rows given are near misses).

    ``rate_stable(rows, new_k)`` tells whether a row's all-in rate is unchanged at senior_dscr new_k.
    """
    check = k["near_miss_check"].astype(np.int64)
    lever = lever_for(check)
    value = np.full(len(check), np.nan)
    search = np.zeros(len(check), dtype=bool)
    dscr = table["senior_dscr"]
    senior = k["senior_amount"]
    g = k["_capacity_k"]
    fn = consts["funding_need"]

    tenor_rows = check == C["tenor"]
    value[tenor_rows] = consts["tenor_cap"]
    pricing_rows = np.flatnonzero(check == C["pricing"])  # section 11.1: the market coupon up to a whole bp
    if len(pricing_rows):
        market, inverse = np.unique(k["_failed_threshold"][pricing_rows], return_inverse=True)
        value[pricing_rows] = np.array([pricing_hint(float(m)) for m in market])[inverse.ravel()]
    search |= check == C["wal"]
    search |= lever == RAISE_MEZZ_DSCR

    # checks of the form statistic / senior >= threshold: need senior <= statistic / threshold
    ratio_checks = np.isin(check, [C["min_dscr"], *(C[c] for c in CHECKS if c.startswith("stress_")
                                                    and "total" not in c)])
    stat = np.zeros(len(check))
    thresholds = k["_failed_threshold"]
    failed_value = k["_failed_value"]
    stat[ratio_checks] = failed_value[ratio_checks] * senior[ratio_checks]
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(ratio_checks, stat / thresholds, np.nan)
        equity_rows = check == C["min_equity"]
        w = k["_dsra_unit"]
        need = np.where(equity_rows, ((1 - consts["min_equity"]) * fn - k["sidecar_net"]) / (1 - w), need)
        raise_k = _up(g / need)
        lower_k = _down(g / (consts["af_min"] * fn))
    raising = (lever == RAISE_DSCR) & ~search
    ok_up = raising & (need > 0) & (raise_k > dscr) & (raise_k <= dscr + LADDER * STEP + 1e-9)
    lowering = lever == LOWER_DSCR
    # a lower DSCR target only lifts the senior to its caps: when they sit below af_min (v2's ltv limit can),
    # no value on the ladder passes and the search says so
    caps_allow = consts["senior_cap"] / fn >= consts["af_min"] - TOL
    ok_down = lowering & (lower_k < dscr) & (lower_k >= 1.0) & caps_allow
    candidate = np.where(raising, raise_k, np.where(lowering, lower_k, np.nan))
    exact = (ok_up | ok_down) & ~(equity_rows & (k["mezz_amount"] > 0))
    rows = np.flatnonzero(exact)
    if len(rows):
        exact[rows] = rate_stable(rows, candidate[rows])
    value = np.where(exact, candidate, value)
    search |= (raising | lowering) & ~exact
    return lever, value, search


def ladder_search(evaluate: Evaluator, table: Mapping[str, np.ndarray], lever: np.ndarray, check: np.ndarray,
                  consts: Mapping[str, float], also: np.ndarray | None = None) -> np.ndarray:
    """Lever value per row found by bisection on its ladder, re-evaluating with each candidate; NaN = none.

    Ladders: senior_dscr and mezz_dscr move in 0.01 steps up to 1.00 away (senior_dscr not below 1.00);
    senior_tenor moves down one year at a time to 1. ``also``: per row, a bitmask of further checks the value
    must pass (v2: ``pricing`` for an offered coupon).
    """
    rows = len(check)
    assert not np.any(lever == RAISE_COUPON), "the coupon hint is closed-form, never searched"
    extra = np.zeros(rows, dtype=np.int64) if also is None else also
    key = np.where(lever == SHORTEN_TENOR, 0, np.where(lever == RAISE_MEZZ_DSCR, 2, 1))
    base = np.where(key == 0, table["senior_tenor"].astype(float),
                    np.where(key == 2, table["mezz_dscr"], table["senior_dscr"]))
    direction = np.where((lever == SHORTEN_TENOR) | (lever == LOWER_DSCR), -1.0, 1.0)
    step = np.where(key == 0, 1.0, STEP)
    start = np.where(key == 0, base, np.where(direction > 0, _down(base), _up(base)))
    span = np.where(key == 0, base - 1, np.where(lever == LOWER_DSCR, np.round((start - 1.0) / STEP), LADDER))
    span = np.maximum(span, 0).astype(np.int64)

    def candidate(i: np.ndarray, sel: np.ndarray) -> np.ndarray:
        return np.round(start[sel] + direction[sel] * step[sel] * i, 2)

    # Moving up (a higher DSCR target) improves the rating, so the market coupon falls and an offered coupon only
    # gets better: the extra checks are searched with the failed one. Moving down can only make them worse:
    # the smallest move that passes the failed check is the only candidate, verified for them afterwards.
    searched = np.where(direction > 0, extra, 0)

    def passes(sel: np.ndarray, i: np.ndarray, bits: np.ndarray = searched) -> np.ndarray:
        variant = {name: col[sel].copy() for name, col in table.items()}
        values = candidate(i, sel)
        for code, name in ((0, "senior_tenor"), (1, "senior_dscr"), (2, "mezz_dscr")):
            here = key[sel] == code
            variant[name][here] = values[here].astype(variant[name].dtype)
        out = evaluate(variant)
        bit = np.left_shift(np.int64(1), check[sel].astype(np.int64)) | bits[sel]
        return (out["fail_mask"] & bit) == 0

    result = np.full(rows, np.nan)
    live = np.flatnonzero(span > 0)
    if len(live) == 0:
        return result
    hi = span[live].copy()
    ok = passes(live, hi)
    live, hi = live[ok], hi[ok]
    lo = np.zeros(len(live), dtype=np.int64)  # index 0 = current value, which fails
    while len(live) and np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        move = hi - lo > 1
        test = passes(live[move], mid[move])
        new_hi, new_lo = hi.copy(), lo.copy()
        new_hi[np.flatnonzero(move)[test]] = mid[move][test]
        new_lo[np.flatnonzero(move)[~test]] = mid[move][~test]
        hi, lo = new_hi, new_lo
    verify = (extra[live] != 0) & (direction[live] < 0)
    if np.any(verify):
        ok = passes(live[verify], hi[verify], extra)
        keep = np.ones(len(live), dtype=bool)
        keep[np.flatnonzero(verify)[~ok]] = False
        live, hi = live[keep], hi[keep]
    result[live] = candidate(hi, live)
    return result

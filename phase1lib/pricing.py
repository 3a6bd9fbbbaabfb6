"""Market pricing of the senior note (METHODOLOGY section 11.1): benchmark curve, market coupon, pricing hint.

Pure functions of a few scalars. The engine calls them once per distinct (tenor, underlying rating) of a
grid, so every permutation gets a correctly rounded coupon without a Python loop over permutations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

#: The string a range request or structure gives as senior_coupon to ask for the market coupon.
MARKET = "market"


def benchmark_rate(curve: Sequence[tuple[float, float]], tenor_years: float) -> float:
    """benchmark(T): the curve linearly interpolated at T years, flat beyond its first and last points."""
    first_t, first_r = curve[0]
    if tenor_years <= first_t:
        return float(first_r)
    for (t0, r0), (t1, r1) in itertools.pairwise(curve):
        if tenor_years <= t1:
            return float(r0 + (tenor_years - t0) / (t1 - t0) * (r1 - r0))
    return float(curve[-1][1])


def market_coupon(benchmark: float, spread_bps: float, tenor_years: float, bps_per_year: float,
                  above_years: float) -> float:
    """round(benchmark(T) + (spread(underlying) + bps_per_year x max(T - above_years, 0)) / 10^4, 10)."""
    return round(benchmark + (spread_bps + bps_per_year * max(tenor_years - above_years, 0.0)) / 1e4, 10)


def pricing_hint(market: float) -> float:
    """The coupon the `pricing` hint names: the market coupon up to a whole bp, robust to float noise
    (ceil(round(market_coupon x 10^4, 6)) / 10^4: 0.034999999999999996 hints 0.0350, never 0.0351)."""
    return math.ceil(round(market * 1e4, 6)) / 1e4


def pricing_hint_text(market: float) -> str:
    """The hint of a failed `pricing` check, e.g. "raise senior_coupon to 0.0600"."""
    return f"raise senior_coupon to {pricing_hint(market):.4f}"

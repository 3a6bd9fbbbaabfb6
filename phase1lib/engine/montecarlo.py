"""Monte Carlo CPI stress of ranked structures (METHODOLOGY section 9).

Every structure gets a fresh PCG64(seed) generator, so all of them see the same 1,000 CPI paths: the
paths are drawn once and each structure's minimum senior DSCR is taken over its senior test periods
with service, cash available = path CFADS - sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..ruleset import TOL
from .cashflows import monte_carlo_cash, monte_carlo_cpi
from .evaluate import Context, evaluate_detail

BATCH = 20  # structures per batch: rows x paths x periods stays small


def monte_carlo(ctx: Context, table: Mapping[str, np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mc_breach_probability, mc_p5_min_dscr) per structure of ``table``; NaN without senior debt."""
    rows = len(table["senior_tenor"])
    breach = np.full(rows, np.nan)
    p5 = np.full(rows, np.nan)
    if rows == 0:
        return breach, p5
    out, detail = evaluate_detail(ctx, table)
    mc = ctx.ruleset.monte_carlo
    cpi = monte_carlo_cpi(ctx.project, ctx.ruleset, seed)
    cash = {c: monte_carlo_cash(ctx.project, ctx.derived, cpi, *ctx.case_keys[c]) for c in np.unique(detail.case)}
    sen = detail.senior
    p = np.arange(1, ctx.n_periods + 1)
    service = out["senior_amount"][:, None] * sen.u[detail.cls]
    served = (p <= sen.test_periods[detail.cls][:, None]) & (service > 0)
    inv = np.divide(1.0, service, out=np.full(service.shape, np.nan), where=served)
    last = np.max(np.where(served, p, 0), axis=1, initial=0)  # no service after it: nothing to test
    for c in np.unique(detail.case):  # rows of one case share its paths: no copies of the path matrix
        members = np.flatnonzero(detail.case == c)
        for a in range(0, len(members), BATCH):
            sel = members[a:a + BATCH]
            width = int(last[sel].max(initial=0))
            if width == 0:  # no senior service in any of these rows: NaN, as initialised
                continue
            minima = np.fmin.reduce(cash[c][None, :, :width] * inv[sel, None, :width], axis=2)  # rows x paths
            has = out["senior_amount"][sel] > 0
            breach[sel] = np.where(has, (minima < mc["breach_dscr"] - TOL).sum(axis=1) / minima.shape[1], np.nan)
            p5[sel] = np.where(has, np.percentile(minima, mc["percentile"], axis=1), np.nan)
    return breach, p5

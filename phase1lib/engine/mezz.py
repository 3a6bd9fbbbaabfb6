"""Mezzanine on the combined lender-case test (METHODOLOGY section 6), per permutation.

The mezz capacity M_p = max(max(CFADS_p, 0) / mezz_dscr - senior service_p, 0) depends on each
permutation's senior amount, so this part works on (rows x N) matrices of the mezz rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..project import MEZZ_AMORTS
from .arrays import INF, masked_min, powers, safe_div

SCULPTED, ANNUITY, LEVEL = (MEZZ_AMORTS.index(a) for a in ("sculpted", "annuity", "level"))


@dataclass(frozen=True)
class MezzResult:
    """Per row: amount, service per period, lowest principal / amount; schedule matrices when asked."""

    amount: np.ndarray
    service: np.ndarray
    min_principal_ratio: np.ndarray
    opening: np.ndarray | None = None
    interest: np.ndarray | None = None
    principal: np.ndarray | None = None


def _level_factor(m: np.ndarray, r: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Level service per unit of debt at period p: 1/m + r (m - p + 1)/m."""
    return 1.0 / m[:, None] + r[:, None] * (m[:, None] - p + 1) / m[:, None]


def _schedule(amount: np.ndarray, service: np.ndarray, r: np.ndarray, live: np.ndarray, vp: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Opening balance, interest and principal by B_p = (B_0 - sum_{q<=p} service_q v^q) / v^p."""
    closing = np.where(live, (amount[:, None] - np.add.accumulate(service * vp, axis=1)) / vp, 0.0)
    opening = np.where(live, np.concatenate([amount[:, None], closing[:, :-1]], axis=1), 0.0)
    interest = r[:, None] * opening
    return opening, interest, np.where(live, service - interest, 0.0)


def size_mezz(lender_pos: np.ndarray, senior_service: np.ndarray, coupon: np.ndarray, dscr: np.ndarray,
              periods: np.ndarray, amort: np.ndarray, headroom: np.ndarray, ppy: int,
              full: bool = False) -> MezzResult:
    """Size mezz rows. lender_pos, senior_service: rows x W (W >= every n_m); headroom = (af_max + 0.1) FN - S.

    Only sculpted mezz can amortise negatively, so only its lowest principal is computed; the full
    schedule (balances, interest, principal) only when ``full``.
    """
    rows, n_periods = senior_service.shape
    p = np.arange(1, n_periods + 1)
    amount = np.zeros(rows)
    codes = np.unique(amort)
    single = len(codes) == 1  # the usual case: work on the inputs as they are, no row gathers
    service = None if single else np.zeros((rows, n_periods))
    min_ratio = np.zeros(rows)
    sched = [np.zeros((rows, n_periods)) for _ in range(3)] if full else None
    for code in codes:
        sel = slice(None) if single else np.flatnonzero(amort == code)
        all_live = bool(periods[sel].min() >= n_periods)  # usual: the mezz runs to the group's last period
        live = np.ones((1, n_periods), dtype=bool) if all_live else p <= periods[sel, None]
        cover = lender_pos[sel] / dscr[sel, None]
        cap = cover - senior_service[sel]
        keep = cap > 1e-9 * cover  # D18: rounding noise is no capacity
        cap = np.where(keep if all_live else live & keep, cap, 0.0)
        r = coupon[sel] / ppy
        rates, which = np.unique(r, return_inverse=True)  # few distinct coupons: discount factors once each
        vp_table = powers(1.0 / (1.0 + rates), n_periods)
        vp = vp_table if len(rates) == 1 else vp_table[which.ravel()]
        m = np.maximum(periods[sel], 1).astype(float)
        if code == SCULPTED:
            pv = np.multiply(cap, vp)
            np.add.accumulate(pv, axis=1, out=pv)
            capacity = pv[:, -1]
        elif code == ANNUITY:
            min_cap = masked_min(cap, live)
            v_m = np.take_along_axis(np.broadcast_to(vp, cap.shape), np.maximum(periods[sel] - 1, 0)[:, None],
                                     axis=1)[:, 0]
            capacity = min_cap * np.where(r == 0, m, safe_div(1.0 - v_m, r, 0.0))
        else:
            level_f = _level_factor(m, r, p)
            capacity = masked_min(safe_div(cap, level_f, INF), live & (level_f > 0))
        capacity = np.where(periods[sel] > 0, capacity, 0.0)
        amt = np.maximum(np.minimum(capacity, headroom[sel]), 0.0)
        scale = safe_div(amt, capacity, 0.0)
        if code == SCULPTED:
            svc = cap * scale[:, None]
            # principal_p / amount = (M_p - r (PV of M after p-1) (1 + r)^(p-1)) / capacity, scale-free
            owed = np.empty_like(pv)  # PV at p-1 of the service still due, per unit of capacity
            owed[:, 0] = capacity
            np.subtract(capacity[:, None], pv[:, :-1], out=owed[:, 1:])
            owed[:, 1:] /= vp[:, :-1]
            principal = np.multiply(owed, r[:, None], out=owed)  # in place: owed is not needed after this
            np.subtract(cap, principal, out=principal)
            with np.errstate(invalid="ignore", divide="ignore"):
                lowest = (principal if all_live else np.where(live, principal, INF)).min(axis=1) / capacity
            min_ratio[sel] = np.where(amt > 0, lowest, 0.0)
        elif code == ANNUITY:
            svc = np.where(live, (min_cap * scale)[:, None], 0.0)
        else:
            svc = np.where(live, amt[:, None] * level_f, 0.0)
        amount[sel] = amt
        if single:
            service = svc
        else:
            service[sel] = svc
        if sched is not None:
            grid_live = np.broadcast_to(live, cap.shape)
            for target, part in zip(sched, _schedule(amt, svc, r, grid_live, np.broadcast_to(vp, cap.shape)),
                                    strict=True):
                target[sel] = part
    assert service is not None
    if sched is None:
        return MezzResult(amount=amount, service=service, min_principal_ratio=min_ratio)
    return MezzResult(amount, service, min_ratio, *sched)

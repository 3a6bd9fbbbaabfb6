"""Senior sizing by reverse DSCR (METHODOLOGY section 5), factored by *profile class*.

Every limit that comes from the cash flows scales with 1/k (k = senior_dscr), and the service per unit
of debt does not depend on k. So the engine sizes once per class (case, amortisation, rate, IO, tenor),
with every quantity "per unit k" or "per unit of debt", and each permutation only divides by its k.

Per class (arrays of U classes, periods p = 1..N along the last axis):
    dk      k x dscr limit (D_post; D_ic for a bullet)        iok    k x io_cover
    tailk   k x refinancing tail (bullets; +inf otherwise)    u      service per unit of debt, s_p = S u_p
and per unit of debt the schedule, WAL, interest, lowest principal, DSRA, LLCR numerator and the
ratio statistics CFADS_p / u_p that give every DSCR as (statistic) / S.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..project import AMORTISATIONS
from .arrays import INF, masked_max, masked_min, powers, safe_div, seqsum

SCULPTED, ANNUITY, LEVEL, BULLET = (AMORTISATIONS.index(a) for a in ("sculpted", "annuity", "level", "bullet"))


@dataclass(frozen=True)
class CaseTable:
    """Per-case period arrays stacked over cases (C x N; stress C x 7 x N)."""

    lender: np.ndarray
    lender_pos: np.ndarray
    stress_cash: np.ndarray
    equity_base: np.ndarray
    sidecar: np.ndarray


@dataclass(frozen=True)
class SeniorClasses:
    """Class-level senior quantities; see the module docstring."""

    dk: np.ndarray
    iok: np.ndarray
    tailk: np.ndarray
    u: np.ndarray
    test_periods: np.ndarray
    opening: np.ndarray
    interest: np.ndarray
    principal: np.ndarray
    wal: np.ndarray
    interest_total: np.ndarray
    min_principal: np.ndarray
    dsra: np.ndarray
    llcr_num: np.ndarray
    q_min: np.ndarray
    q_sum: np.ndarray
    q_count: np.ndarray
    q_stress: np.ndarray
    year_constant: np.ndarray


def annuity_factor(r: np.ndarray, m: np.ndarray, v_m: np.ndarray) -> np.ndarray:
    """(1 - v^m) / r, or m when r = 0."""
    return np.where(r == 0, m, safe_div(1.0 - v_m, r, 0.0))


def _profile(code: int, cfp: np.ndarray, p: np.ndarray, io: np.ndarray, n: np.ndarray, rate: np.ndarray, ppy: int,
             refi_end: int, refi_spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """k x the cash-flow limit (D_post; D_ic for a bullet), post-IO service per unit of debt, and a bullet's
    k x refinancing tail, for classes of one amortisation profile (section 5)."""
    r = rate / ppy
    r_c, io_c, n_c = r[:, None], io[:, None], n[:, None]
    post = (p > io_c) & (p <= n_c)
    m = n - io
    if code == SCULPTED:
        disc = np.cumprod(np.where(p > io_c, (1.0 / (1.0 + r))[:, None], 1.0), axis=1)  # v^(p - io)
        dk = seqsum(np.where(post, cfp * disc, 0.0))
        return dk, np.where(post, safe_div(cfp, dk[:, None], 0.0), 0.0), None
    if code == ANNUITY:
        v_m = int_power_rows(1.0 / (1.0 + r), np.maximum(m, 0))
        factor = annuity_factor(r, np.maximum(m, 0).astype(float), v_m)
        lowest = masked_min(cfp, post)
        dk = np.where(m > 0, np.where(m > 0, lowest, 0.0) * factor, 0.0)
        return dk, np.where(post, safe_div(np.ones(len(r)), factor, 0.0)[:, None], 0.0), None
    if code == LEVEL:
        m_c = np.maximum(m, 1)[:, None]
        level_f = 1.0 / m_c + r_c * (m_c - (p - io_c) + 1) / m_c
        dk = masked_min(safe_div(cfp, level_f, INF), post & (level_f > 0))
        return dk, np.where(post, level_f, 0.0), None
    # bullet: interest only to n, then a sculpted refinancing at r_f over the window n+1 .. N - 2 ppy
    ratio_r = safe_div(cfp, np.broadcast_to(r_c, cfp.shape), INF)
    dk = np.where(r != 0, masked_min(ratio_r, post), INF)
    window = (p > n_c) & (p <= refi_end)
    rf = (rate + refi_spread) / ppy
    disc_f = np.cumprod(np.where(p > n_c, (1.0 / (1.0 + rf))[:, None], 1.0), axis=1)
    tail = seqsum(np.where(window, cfp * disc_f, 0.0))
    service = np.where(post, r_c, np.where(window, safe_div(cfp, tail[:, None], 0.0), 0.0))
    return dk, service, tail


def int_power_rows(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """base^exponent per row by sequential products (exponents are small period counts)."""
    out = np.ones_like(base)
    for k in range(int(exponent.max(initial=0))):
        out = np.where(k < exponent, out * base, out)
    return out


def size_classes(cases: CaseTable, case: np.ndarray, amort: np.ndarray, rate: np.ndarray, io: np.ndarray,
                 n: np.ndarray, ppy: int, dsra_window: int, refi_spread: float, refi_buffer: int) -> SeniorClasses:
    """Size U senior classes. ``rate`` is the annual all-in rate R; io, n in periods."""
    n_periods = cases.lender.shape[1]
    p = np.arange(1, n_periods + 1)
    r = rate / ppy
    v = 1.0 / (1.0 + r)
    io_c, n_c = io[:, None], n[:, None]
    cfp = cases.lender_pos[case]
    in_io = p <= io_c
    has_post = n - io > 0
    r_c = r[:, None]

    in_io_rows = np.flatnonzero((io > 0) & (r != 0))
    iok = np.full(len(r), INF)
    if len(in_io_rows):
        ratio_io = cfp[in_io_rows] / r_c[in_io_rows]
        iok[in_io_rows] = masked_min(ratio_io, in_io[in_io_rows])

    refi_end = n_periods - refi_buffer * ppy
    is_bullet = amort == BULLET
    dk = np.zeros(len(r))
    tailk = np.full(len(r), INF)
    u = np.zeros_like(cfp)
    codes = np.unique(amort)
    for code in codes:
        sel = slice(None) if len(codes) == 1 else np.flatnonzero(amort == code)
        dk[sel], u[sel], tail = _profile(int(code), cfp[sel], p, io[sel], n[sel], rate[sel], ppy, refi_end,
                                         refi_spread)
        if code == BULLET:
            tailk[sel] = tail
    dk = np.where(has_post, dk, 0.0)  # D12: no post-IO period, no debt
    u = np.where(in_io, r_c, u)  # IO periods pay interest on the full amount
    test = np.where(is_bullet, refi_end, n)
    in_test = p <= test[:, None]

    # unit note schedule (balloon excluded from u): B_p = (1 - sum_{q<=p} u_q v^q) / v^p
    note = p <= n_c
    rates, which = np.unique(v, return_inverse=True)  # few distinct rates: v^p once per rate
    vp = powers(rates, n_periods)[which.ravel()]
    u_note = np.where(note, u, 0.0)
    closing = (1.0 - np.add.accumulate(u_note * vp, axis=1)) / vp
    closing = np.where(is_bullet[:, None], np.where(p < n_c, 1.0, 0.0), closing)
    closing = np.where(note, closing, 0.0)
    opening = np.where(note, np.concatenate([np.ones((len(r), 1)), closing[:, :-1]], axis=1), 0.0)
    interest = r_c * opening
    principal = np.where(note, u_note - interest, 0.0)
    principal = np.where(is_bullet[:, None] & (p == n_c), principal + 1.0, principal)
    wal = seqsum(p / ppy * principal)
    interest_total = seqsum(interest)
    min_principal = np.min(np.where(note, principal, INF), axis=1)

    # DSRA: the largest sum of unit service over `dsra_window` consecutive test periods
    cs = np.add.accumulate(np.where(in_test, u, 0.0), axis=1)
    w = dsra_window
    lagged = np.concatenate([np.zeros((len(r), w)), cs[:, :-w]], axis=1) if w < n_periods else np.zeros_like(cs)
    full_window = (p >= w) & in_test
    dsra = masked_max(cs - lagged, full_window)
    total = np.take_along_axis(cs, np.maximum(test - 1, 0)[:, None], axis=1)[:, 0]
    dsra = np.where(test < w, total, dsra)

    lender = cases.lender[case]
    llcr_num = seqsum(np.where(in_test, lender * vp, 0.0))
    served = in_test & (u > 0)
    inv = np.divide(1.0, u, out=np.full(u.shape, np.nan), where=served)  # NaN where not served
    ratio = lender * inv
    q_min = np.fmin.reduce(ratio, axis=1)  # fmin skips NaN; all-NaN (no service) stays NaN
    q_sum = seqsum(np.where(served, ratio, 0.0))
    q_count = served.sum(axis=1)
    q_stress = np.fmin.reduce(cases.stress_cash[case] * inv[:, None, :], axis=2)  # classes x scenarios
    by_year = u.reshape(len(r), n_periods // ppy, ppy)
    year_constant = np.all(by_year == by_year[:, :, :1], axis=(1, 2))  # service equal within each lease year
    return SeniorClasses(dk=dk, iok=iok, tailk=tailk, u=u, test_periods=test, opening=opening, interest=interest,
                         principal=principal, wal=wal, interest_total=interest_total, min_principal=min_principal,
                         dsra=dsra, llcr_num=llcr_num, q_min=q_min, q_sum=q_sum, q_count=q_count, q_stress=q_stress,
                         year_constant=year_constant)

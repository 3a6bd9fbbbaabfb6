"""Senior sizing of the vectorised engine on METHODOLOGY section 10's worked checks (annual periods)."""

from __future__ import annotations

import numpy as np
import pytest

from phase1lib.engine.senior import ANNUITY, BULLET, LEVEL, SCULPTED, CaseTable, size_classes

C = np.array([100.0, 110.0, 120.0, 130.0, 140.0])
K, R = 1.30, 0.06
REL = 1e-12


def classes(amorts, rate=R, io=0, n=5, cfads=None):
    """Size one class per profile on the worked CFADS vector C (capacity C_p / k)."""
    lender = (C if cfads is None else cfads)[None, :]
    stress = np.repeat(lender[:, None, :], 7, axis=1)
    cases = CaseTable(lender=lender, lender_pos=np.maximum(lender, 0), stress_cash=stress, equity_base=lender,
                      sidecar=np.zeros_like(lender))
    u = len(amorts)
    return size_classes(cases, np.zeros(u, dtype=np.int64), np.array(amorts), np.full(u, rate),
                        np.full(u, io), np.full(u, n), ppy=1, dsra_window=1, refi_spread=0.02, refi_buffer=0)


def test_sculpted_worked_check():
    sen = classes([SCULPTED])
    debt = sen.dk[0] / K
    assert debt == pytest.approx(385.0629734070328, rel=REL)
    interest = debt * sen.interest[0]
    np.testing.assert_allclose(interest, [23.103778, 19.874620, 15.990175, 11.411124, 6.095791], rtol=2e-7)
    assert sen.wal[0] == pytest.approx(3.3100857700743687, rel=REL)
    service = debt * sen.u[0]
    np.testing.assert_allclose(C / service, K, rtol=REL)  # DSCR 1.30 every period
    assert sen.llcr_num[0] / debt == pytest.approx(K, rel=REL)


def test_annuity_worked_check():
    sen = classes([ANNUITY])
    debt = sen.dk[0] / K
    assert debt == pytest.approx(324.02798350505515, rel=REL)
    dscr = C / (debt * sen.u[0])
    assert dscr.min() == pytest.approx(1.30, rel=REL)
    assert dscr.mean() == pytest.approx(1.56, rel=REL)
    assert sen.q_min[0] / debt == pytest.approx(1.30, rel=REL)
    assert sen.q_sum[0] / sen.q_count[0] / debt == pytest.approx(1.56, rel=REL)
    assert sen.llcr_num[0] / debt == pytest.approx(1.5448723286621109, rel=REL)


def test_level_worked_check():
    sen = classes([LEVEL])
    assert sen.dk[0] / K == pytest.approx(295.85798816568047, rel=REL)
    assert sen.wal[0] == pytest.approx(3.0, rel=REL)


def test_pmt_from_the_annuity_profile():
    """numpy-financial's pmt docstring: 200,000 at 7.5 %/12 over 180 months pays 1,854.0247200054619."""
    months = 180
    cfads = np.full(months, 1.0)
    lender = cfads[None, :]
    cases = CaseTable(lender=lender, lender_pos=lender, stress_cash=np.repeat(lender[:, None, :], 7, axis=1),
                      equity_base=lender, sidecar=np.zeros_like(lender))
    sen = size_classes(cases, np.zeros(1, dtype=np.int64), np.array([ANNUITY]), np.array([0.075]),
                       np.zeros(1, dtype=np.int64), np.array([months]), ppy=12, dsra_window=1, refi_spread=0.02,
                       refi_buffer=0)
    assert 200_000 * sen.u[0, 0] == pytest.approx(1854.0247200054619, rel=REL)


def test_unit_schedules_close_and_interest_is_rate_times_balance():
    sen = classes([SCULPTED, ANNUITY, LEVEL, BULLET], n=4, io=1)
    closing = sen.opening - sen.principal
    np.testing.assert_allclose(closing[:, 3], 0.0, atol=1e-12)  # B_n = 0 within 1e-9 relative (unit debt)
    np.testing.assert_allclose(sen.interest.sum(axis=1), R * sen.opening.sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(sen.principal[:, 0], 0.0, atol=1e-15)  # the IO period repays nothing
    assert sen.wal[3] == pytest.approx(4.0)  # a bullet's WAL is its tenor


def test_io_covering_every_period_gives_no_debt():
    sen = classes([SCULPTED, ANNUITY, LEVEL, BULLET], io=5)
    assert np.all(sen.dk == 0)


def test_zero_rate_annuity_factor_is_m_and_interest_limits_unbounded():
    sen = classes([ANNUITY, BULLET], rate=0.0, io=1)
    assert sen.dk[0] == pytest.approx(C[1:].min() * 4, rel=REL)
    assert np.isinf(sen.iok).all() and np.isinf(sen.dk[1])

"""Cash flows per case (METHODOLOGY section 4): rent and cost indices, CFADS, the ZCIS sidecar.

A *case* is (indexation_mode, zcis_tenor_years H): the only structure keys that move cash flows.
Everything here is per period p = 1..N (array index p - 1) and shared by every permutation of a case.
Only IEEE-exact operations and sequential products are used, so results never depend on array layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..project import Derived, Project
from ..ruleset import Ruleset

STRESS_NAMES: tuple[str, ...] = ("cpi_0", "cpi_1_8", "cpi_2_5", "cpi_3_5", "cpi_spike_6", "rent_minus_10",
                                 "opex_plus_10")


def clamp(x: np.ndarray | float, floor: float, cap: float) -> np.ndarray:
    """clamp(x) = min(max(x, cpi_floor), cpi_cap)."""
    return np.minimum(np.maximum(x, floor), cap)


def year_of_period(project: Project) -> np.ndarray:
    """Lease year y(p) = ceil(p / ppy) for p = 1..N, as 0-based year indices."""
    return np.arange(project.n_periods) // project.periods_per_year


def index_from_growth(growth: np.ndarray) -> np.ndarray:
    """Index per lease year from growth at anniversaries 1..Y-1 (last axis): I_1 = 1, I_(y+1) = I_y (1 + g_y)."""
    ones = np.ones((*growth.shape[:-1], 1))
    return np.cumprod(np.concatenate([ones, 1.0 + growth], axis=-1), axis=-1)


def rent_growth(project: Project, cpi: np.ndarray, hedge_years: int, locked: float) -> np.ndarray:
    """Rent growth at anniversaries for realised CPI ``cpi`` (last axis = anniversaries 1..Y-1).

    Hedged anniversaries (y <= H) earn locked + clamp(x) - x, later ones clamp(x); a flat basis earns 0.
    """
    if project.indexation_basis == "flat":
        return np.zeros_like(cpi)
    clamped = clamp(cpi, project.cpi_floor, project.cpi_cap)
    years = np.arange(1, cpi.shape[-1] + 1)
    return np.where(years <= hedge_years, locked + clamped - cpi, clamped)


def lender_rent_growth(project: Project, mode: str, hedge_years: int, locked: float) -> np.ndarray:
    """Lender case: locked for y <= H and cpi_floor after (mode CPI_capped), 0 in mode flat or basis flat."""
    n = project.lease_years - 1
    if project.indexation_basis == "flat" or mode == "flat":
        return np.zeros(n)
    return np.where(np.arange(1, n + 1) <= hedge_years, locked, project.cpi_floor)


def cfads(project: Project, derived: Derived, rent_index: np.ndarray, cost_index: np.ndarray,
          rent_mult: float = 1.0, opex_mult: float = 1.0) -> np.ndarray:
    """CFADS per period from per-year indices (last axis = lease years)."""
    ppy = project.periods_per_year
    years = year_of_period(project)
    revenue = derived.gross_income_annual / ppy * rent_index[..., years] * rent_mult
    opex = derived.opex_annual / ppy * cost_index[..., years] * opex_mult
    return revenue - opex - derived.admin_annual / ppy


def sidecar(project: Project, derived: Derived, mode: str, hedge_years: int) -> np.ndarray:
    """Locked rent uplift sold at close (mode flat, H > 0, basis CPI_capped), else zeros."""
    n = project.n_periods
    if mode != "flat" or hedge_years <= 0 or project.indexation_basis != "CPI_capped":
        return np.zeros(n)
    locked = derived.locked_rate
    growth = np.full(project.lease_years - 1, locked)
    uplift = index_from_growth(growth) - 1.0  # (1 + locked)^(y - 1) - 1, by sequential products
    years = year_of_period(project)
    per_period = derived.gross_income_annual / project.periods_per_year * uplift[years]
    return np.where(years + 1 <= hedge_years + 1, per_period, 0.0)


def scenario_cpi(project: Project, ruleset: Ruleset, name: str) -> tuple[np.ndarray, float, float]:
    """(CPI per anniversary, rent_mult, opex_mult) of a stress scenario of the ruleset."""
    spec = ruleset.stress_scenarios[name]
    n = project.lease_years - 1
    if spec["kind"] == "cpi":
        return np.full(n, float(spec["cpi"])), 1.0, 1.0
    if spec["kind"] == "cpi_spike":
        years = np.arange(1, n + 1)
        return np.where(years <= int(spec["anniversaries"]), float(spec["cpi"]), project.base_cpi), 1.0, 1.0
    return np.full(n, project.base_cpi), float(spec["rent_mult"]), float(spec["opex_mult"])


@dataclass(frozen=True)
class CaseFlows:
    """Per-period flows of one case; stress_cash is scenario CFADS less the sidecar (7 x N)."""

    mode: str
    hedge_years: int
    lender: np.ndarray
    base: np.ndarray
    sidecar: np.ndarray
    stress_cash: np.ndarray
    lender_rent_index: np.ndarray
    base_rent_index: np.ndarray
    cost_index: np.ndarray

    @property
    def equity_base(self) -> np.ndarray:
        """Base-case cash to equity before debt service: base CFADS - sidecar."""
        return self.base - self.sidecar


def case_flows(project: Project, derived: Derived, ruleset: Ruleset, mode: str, hedge_years: int) -> CaseFlows:
    """Lender, base and stress flows of the case (mode, H)."""
    locked = derived.locked_rate
    years = year_of_period(project)
    base_cpi = np.full(project.lease_years - 1, project.base_cpi)
    cost_index = index_from_growth(base_cpi)
    lender_index = index_from_growth(lender_rent_growth(project, mode, hedge_years, locked))
    base_index = index_from_growth(rent_growth(project, base_cpi, hedge_years, locked))
    side = sidecar(project, derived, mode, hedge_years)
    stress = []
    for name in STRESS_NAMES:
        cpi, rent_mult, opex_mult = scenario_cpi(project, ruleset, name)
        rent_idx = index_from_growth(rent_growth(project, cpi, hedge_years, locked))
        stress.append(cfads(project, derived, rent_idx, index_from_growth(cpi), rent_mult, opex_mult) - side)
    return CaseFlows(
        mode=mode,
        hedge_years=hedge_years,
        lender=cfads(project, derived, lender_index, cost_index),
        base=cfads(project, derived, base_index, cost_index),
        sidecar=side,
        stress_cash=np.vstack(stress),
        lender_rent_index=lender_index[years],
        base_rent_index=base_index[years],
        cost_index=cost_index[years],
    )


def monte_carlo_cpi(project: Project, ruleset: Ruleset, seed: int) -> np.ndarray:
    """CPI paths (paths x lease_years) of section 9: an AR(1) around base_cpi driven by PCG64(seed)."""
    mc = ruleset.monte_carlo
    rng = np.random.Generator(np.random.PCG64(seed))
    eps = rng.standard_normal((int(mc["paths"]), project.lease_years))
    pi = np.empty_like(eps)
    prev = np.full(eps.shape[0], project.base_cpi)
    for y in range(project.lease_years):
        prev = project.base_cpi + mc["persistence"] * (prev - project.base_cpi) + mc["volatility"] * eps[:, y]
        pi[:, y] = prev
    return pi


def monte_carlo_cash(project: Project, derived: Derived, cpi_paths: np.ndarray, mode: str,
                     hedge_years: int) -> np.ndarray:
    """Cash available per path and period (paths x N): Monte Carlo CFADS less the case's sidecar."""
    anniversaries = cpi_paths[:, : project.lease_years - 1]
    rent_idx = index_from_growth(rent_growth(project, anniversaries, hedge_years, derived.locked_rate))
    cost_idx = index_from_growth(anniversaries)
    return cfads(project, derived, rent_idx, cost_idx) - sidecar(project, derived, mode, hedge_years)

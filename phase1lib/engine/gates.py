"""Gates A and B, tiers, near misses and repo eligibility (METHODOLOGY section 8), vectorised.

Each check is a column of a (rows x checks) table of value, threshold and pass/fail; a failure is
recorded as {check, value, threshold}. The table is recomputed from stored KPI columns for any rows,
so the grid stores only a bitmask of failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..pricing import pricing_hint_text
from ..ruleset import RATINGS, TOL, Ruleset, notch
from .cashflows import STRESS_NAMES

MIN, MAX, POSITIVE, NEG_AMORT, RATING = range(5)
GATE_A = ("tenor", "io_months", "all_in_rate", "senior_amount", "negative_amortisation", "advance_factor",
          "min_equity")
#: Gate B; ``pricing`` (section 11.1, v2 only) comes last so v1's failure bitmask keeps its bits.
GATE_B = ("min_dscr", *(f"stress_{s}" for s in STRESS_NAMES), *(f"stress_total_{s}" for s in STRESS_NAMES),
          "wal", "wrap_underlying", "pricing")
CHECKS: tuple[str, ...] = GATE_A + GATE_B
KIND = {
    "tenor": MAX, "io_months": MAX, "all_in_rate": POSITIVE, "senior_amount": POSITIVE,
    "negative_amortisation": NEG_AMORT, "advance_factor": MIN, "min_equity": MIN, "min_dscr": MIN, "wal": MAX,
    "wrap_underlying": RATING, "pricing": MIN, **{c: MIN for c in CHECKS if c.startswith("stress_")},
}
#: Checks that can be near misses (D27; pricing only when market_coupon > 0, section 11.1); the others never are.
NEAR_MISS_CHECKS = frozenset({"tenor", "advance_factor", "min_equity", "min_dscr", "wal", "pricing",
                              *(c for c in CHECKS if c.startswith("stress_"))})
TIERS = ("Diamond", "Gold", "Silver", "Bronze", "Not viable")
REPO_RULES = ("min_rating", "min_dscr", "max_ltv", "max_tenor", "min_dsra_months")
NEG_AMORT_TOL = 1e-9


@dataclass(frozen=True)
class CheckTable:
    """Values, thresholds and failures of every check for a set of rows (rows x len(CHECKS))."""

    value: np.ndarray
    threshold: np.ndarray
    failed: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Failures as a bitmask per row (bit i = CHECKS[i])."""
        packed = np.packbits(self.failed, axis=1, bitorder="little")  # rows x ceil(checks / 8) bytes
        padded = np.zeros((len(packed), 8), dtype=np.uint8)
        padded[:, : packed.shape[1]] = packed
        return padded.view("<u8")[:, 0].astype(np.int64)


def check_table(k: Mapping[str, np.ndarray], project_consts: Mapping[str, Any]) -> CheckTable:
    """Evaluate every check from KPI and structure columns ``k`` (arrays of equal length).

    ``project_consts``: tenor_cap, af_min, dscr_floor, wrap_dscr_relief, ppy, lease_years, wal_share,
    min_equity, stress_min, wrap_min_notch. The ``pricing`` check runs where ``k`` has market_coupon (v2) and
    the structure offers a number (``offered_coupon`` not NaN).
    """
    c = project_consts
    rows = len(k["senior_amount"])
    value = np.empty((rows, len(CHECKS)))
    threshold = np.empty((rows, len(CHECKS)))
    has_debt = k["senior_amount"] > 0
    n_years = np.minimum(k["senior_tenor"], c["lease_years"])
    cols: dict[str, tuple[np.ndarray, np.ndarray | float, np.ndarray | bool]] = {
        "tenor": (k["senior_tenor"], c["tenor_cap"], True),
        "io_months": (k["io_months"], (n_years * c["ppy"] - 1) * 12 / c["ppy"], True),
        "all_in_rate": (k["senior_rate"], 0.0, True),
        "senior_amount": (k["senior_amount"], 0.0, True),
        "negative_amortisation": (k["min_principal_ratio"], -NEG_AMORT_TOL, True),
        "advance_factor": (k["advance_factor"], c["af_min"], True),
        "min_equity": (k["equity_required"] / c["funding_need"], c["min_equity"], True),
        "min_dscr": (k["min_dscr"], c["dscr_floor"] - np.where(k["wrap"], c["wrap_dscr_relief"], 0.0), has_debt),
        "wal": (k["wal_years"], c["wal_share"] * c["tenor_cap"], has_debt),
        "wrap_underlying": (k["wrap_underlying_notch"], float(c["wrap_min_notch"]), k["wrap"]),
    }
    market = k.get("market_coupon")
    if market is not None:
        offered = k["offered_coupon"]
        cols["pricing"] = (offered, market, ~np.isnan(offered))
    else:
        cols["pricing"] = (np.full(rows, np.nan), np.nan, False)
    has_mezz = k["mezz_amount"] > 0
    for s in STRESS_NAMES:
        cols[f"stress_{s}"] = (k[f"stress_{s}"], c["stress_min"], has_debt)
        cols[f"stress_total_{s}"] = (k[f"stress_total_{s}"], c["stress_min"], has_mezz)
    failed = np.zeros((rows, len(CHECKS)), dtype=bool)
    with np.errstate(invalid="ignore"):
        for i, name in enumerate(CHECKS):
            v, t, a = cols[name]
            value[:, i] = v
            threshold[:, i] = t
            kind = KIND[name]
            if kind == MIN:
                bad = v < threshold[:, i] - TOL
            elif kind == MAX:
                bad = v > threshold[:, i] + TOL
            elif kind == POSITIVE:
                bad = ~(v > threshold[:, i])
            elif kind == NEG_AMORT:
                bad = v < threshold[:, i]
            else:
                bad = v > threshold[:, i]
            failed[:, i] = bad & a
    return CheckTable(value=value, threshold=threshold, failed=failed)


def near_miss(table: CheckTable, band: float) -> tuple[np.ndarray, np.ndarray]:
    """(near_miss, index of the single failed check or -1) per row (D27)."""
    n_failed = table.failed.sum(axis=1)
    which = np.where(n_failed == 1, np.argmax(table.failed, axis=1), -1)
    rows = np.arange(len(which))
    col = np.maximum(which, 0)
    value = table.value[rows, col]
    threshold = table.threshold[rows, col]
    kind = np.array([KIND[c] for c in CHECKS])[col]
    eligible = np.array([c in NEAR_MISS_CHECKS for c in CHECKS])[col]
    with np.errstate(invalid="ignore"):
        close = np.where(kind == MIN, value >= (1 - band) * threshold, value <= (1 + band) * threshold)
        close &= (col != CHECKS.index("pricing")) | (threshold > 0)
    return (which >= 0) & eligible & close, which


def tiers(viable: np.ndarray, rating_notch: np.ndarray, repo_ok: np.ndarray, is_near_miss: np.ndarray) -> np.ndarray:
    """Tier codes (index into TIERS): Diamond, Gold, Silver for viable rows, Bronze, Not viable."""
    return np.select(
        [viable & (rating_notch <= notch("AA")) & repo_ok, viable & (rating_notch <= notch("A")), viable,
         is_near_miss],
        [0, 1, 2, 3],
        4,
    )


def repo_failures(ruleset: Ruleset, country: str, dsra_months: int, rating_notch: np.ndarray,
                  min_dscr: np.ndarray, ltv: np.ndarray, tenor: np.ndarray, bullet: np.ndarray) -> np.ndarray:
    """Failed repo rules per row (rows x len(REPO_RULES)); a jurisdiction without rules fails them all."""
    rows = len(tenor)
    out = np.zeros((rows, len(REPO_RULES)), dtype=bool)
    for is_bullet in (False, True):
        rule = ruleset.repo_rule(country, is_bullet)
        sel = bullet == is_bullet
        if rule is None:
            out[sel] = True
            continue
        with np.errstate(invalid="ignore"):
            out[sel, 0] = ~(rating_notch[sel] <= notch(rule["min_rating"]))
            out[sel, 1] = ~(min_dscr[sel] >= rule["min_dscr"] - TOL)
            out[sel, 2] = ~(ltv[sel] <= rule["max_ltv"] + TOL)
            out[sel, 3] = ~(tenor[sel] <= rule["max_tenor"])
            out[sel, 4] = not dsra_months >= rule["min_dsra_months"]
    return out


def rating_name(code: float) -> str | None:
    return None if not np.isfinite(code) else RATINGS[int(code)]


def _fmt(check: str, value: float) -> Any:
    if check == "wrap_underlying":
        return rating_name(value)
    if check in ("tenor", "io_months"):
        return int(value)
    return float(value)


def render_failures(table: CheckTable, row: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Gate A and gate B failures of one row as lists of {check, value, threshold}."""
    gate_a: list[dict[str, Any]] = []
    gate_b: list[dict[str, Any]] = []
    for i, name in enumerate(CHECKS):
        if table.failed[row, i]:
            entry = {"check": name, "value": _fmt(name, table.value[row, i]),
                     "threshold": _fmt(name, table.threshold[row, i])}
            if name == "pricing":  # section 11.1: the fix is known whatever the gap (D38)
                entry["hint"] = pricing_hint_text(float(table.threshold[row, i]))
            (gate_a if name in GATE_A else gate_b).append(entry)
    return gate_a, gate_b


def render_repo_reasons(ruleset: Ruleset, country: str, bullet: bool, failed: np.ndarray, rating: str | None,
                        min_dscr: float | None, ltv: float, tenor: int, dsra_months: int) -> list[str]:
    """Reasons for every failed repo rule (D29)."""
    rule = ruleset.repo_rule(country, bullet)
    if rule is None:
        return [f"jurisdiction: {country} has no repo rules"]
    shown = {
        "min_rating": f"min_rating: {rating or 'none'} vs {rule['min_rating']}",
        "min_dscr": f"min_dscr: {'none' if min_dscr is None else f'{min_dscr:.4f}'} vs {rule['min_dscr']:.2f}",
        "max_ltv": f"max_ltv: {ltv:.4f} vs {rule['max_ltv']:.2f}",
        "max_tenor": f"max_tenor: {tenor} vs {rule['max_tenor']}",
        "min_dsra_months": f"min_dsra_months: {dsra_months} vs {rule['min_dsra_months']}",
    }
    return [shown[name] for name, bad in zip(REPO_RULES, failed, strict=True) if bad]

"""Render one evaluated permutation as the JSON the CLI, the API and the term sheet show.

Input is a row of the run's frame (readable values, None for null); output is
{"permutation_index", "permutation_id", "structure", "kpis"} with the methodology's KPI keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..jsonsafe import finite_or_none
from ..pricing import MARKET
from ..ranges import KEYS, MEZZ_KEYS
from ..ruleset import RATINGS
from .cashflows import STRESS_NAMES
from .evaluate import Context
from .gates import CHECKS, REPO_RULES, check_table, render_failures, render_repo_reasons
from .hints import hint_text

KPI_KEYS = ("senior_amount", "senior_rate", "senior_rating", "binding_constraint", "mezz_amount", "mezz_rate",
            "sidecar_gross", "sidecar_net", "dsra_amount", "day_one_value", "equity_required", "min_dscr",
            "avg_dscr", "llcr", "wal_years", "ltv", "advance_factor", "wacd", "total_interest", "equity_irr")


def structure_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The full structure of a row: every range key, mezz_* only when mezz is on. A v2 frame keeps
    senior_coupon as text ("market" or the number, section 11.1): numbers come back as numbers."""
    point = {k: row[k] for k in KEYS if row["mezz_on"] or k not in MEZZ_KEYS}
    coupon = point["senior_coupon"]
    if isinstance(coupon, str) and coupon != MARKET:
        point["senior_coupon"] = float(coupon)
    return point


def _arrays(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
    def f(name: str) -> np.ndarray:
        v = row.get(name)
        return np.array([np.nan if v is None else v], dtype=float)

    arrays = {name: f(name) for name in row if isinstance(row.get(name), int | float | type(None))}
    underlying = row.get("wrap_underlying")
    arrays["wrap_underlying_notch"] = np.array([np.nan if underlying is None else RATINGS.index(underlying)])
    arrays["wrap"] = np.array([bool(row["wrap"])])
    coupon = structure_of(row)["senior_coupon"]
    arrays["offered_coupon"] = np.array([np.nan if coupon == MARKET else float(coupon)])
    return arrays


def render_row(ctx: Context, row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON form of one row (see module docstring)."""
    kpis: dict[str, Any] = {}
    for name in KPI_KEYS:
        if name == "senior_rate" and "market_coupon" in row:  # v2: the coupon used and the market coupon
            kpis["senior_coupon"] = finite_or_none(row["senior_coupon_used"])
            kpis["market_coupon"] = finite_or_none(row["market_coupon"])
        value = row[name]
        kpis[name] = value if isinstance(value, str) or value is None else finite_or_none(value)
    kpis["stress"] = {s: finite_or_none(row[f"stress_{s}"]) for s in STRESS_NAMES}
    has_mezz = (row["mezz_amount"] or 0) > 0
    kpis["stress_total"] = {s: finite_or_none(row[f"stress_total_{s}"]) for s in STRESS_NAMES} if has_mezz else None
    table = check_table(_arrays(row), ctx.gate_constants())
    kpis["gate_a"], kpis["gate_b"] = render_failures(table, 0)
    kpis["viable"] = bool(row["viable"])
    kpis["tier"] = row["tier"]
    kpis["near_miss"] = bool(row["near_miss"])
    check = row["near_miss_check"]
    kpis["hint"] = hint_text(int(row["hint_lever"]), finite_or_none(row["hint_value"]) or math.nan,
                             CHECKS[check]) if row["near_miss"] else None
    kpis["repo_eligible"] = bool(row["repo_eligible"])
    failed = np.array([(int(row["repo_mask"]) >> i) & 1 for i in range(len(REPO_RULES))], dtype=bool)
    p, d = ctx.project, ctx.derived
    kpis["repo_reasons"] = [] if row["repo_eligible"] else render_repo_reasons(
        ctx.ruleset, p.country, row["senior_amort"] == "bullet", failed, row["senior_rating"],
        finite_or_none(row["min_dscr"]), float(row["ltv"]), int(row["senior_tenor"]), d.dsra_months)
    return {"permutation_index": int(row["permutation_index"]), "permutation_id": row["permutation_id"],
            "structure": structure_of(row), "kpis": kpis}

"""Helpers for the exploration notebooks: Top-N as a table, one-lever sensitivities and their plots.

They keep the notebooks to a few cells: the finance is the engine's (``evaluate_points``), the plots are
matplotlib figures built without pyplot, shown by the notebook like any other output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ..engine import RunResult, evaluate_points, parse_structure
from ..pricing import MARKET
from ..project import Project
from ..ruleset import load_ruleset
from ..samples import sample_path
from .format import TIER_COLOURS, axis_money

#: The levers of the sensitivity notebook and the values swept (around the current preset's grid).
LEVERS: dict[str, list[Any]] = {
    "senior_dscr": [1.20, 1.25, 1.30, 1.35, 1.40, 1.45, 1.50],
    "senior_coupon": [0.035, 0.04, 0.045, 0.05, 0.055, 0.06, 0.065],
    "senior_tenor": [10, 12, 15, 18, 20, 22, 23],
    "zcis_tenor_years": [0, 3, 5, 7, 10, 15, 20],
}
LEVER_LABELS = {"senior_dscr": "DSCR target (x)", "senior_coupon": "Senior coupon",
                "senior_tenor": "Senior tenor (years)", "zcis_tenor_years": "ZCIS tenor (years)"}
TOP_COLUMNS = ("rank", "tier", "day_one_value", "senior_amount", "senior_tenor", "senior_coupon", "senior_dscr",
               "senior_amort", "indexation_mode", "zcis_tenor_years", "min_dscr", "wal_years", "ltv", "wacd",
               "equity_irr", "senior_rating", "repo_eligible", "permutation_id")


def example_path(name: str = "london_dc_alpha") -> Path:
    """A shipped sample file (``london_dc_alpha``, ``structure_rank1``...; phase1lib.samples)."""
    return sample_path(name)


def top_frame(result: RunResult, columns: Sequence[str] = TOP_COLUMNS) -> pd.DataFrame:
    """The Top-N of a run as a pandas DataFrame: one row per rank, structure and KPI columns side by side."""
    rows = [{"rank": t["rank"], "permutation_id": t["permutation_id"], **t["structure"],
             **{k: v for k, v in t["kpis"].items() if not isinstance(v, dict | list)}} for t in result.top]
    frame = pd.DataFrame(rows)
    return frame[[c for c in columns if c in frame.columns]] if rows else frame


def compare_rulesets(project: Project, result: RunResult, ruleset: str = "v2", n: int = 5) -> pd.DataFrame:
    """The first ``n`` structures of a v1 run re-evaluated under a priced ruleset (METHODOLOGY section 11): as
    offered (their coupon against the market coupon) and at the market coupon, side by side."""
    rs = load_ruleset(ruleset)
    points = [t["structure"] for t in result.top[:n]]
    offered = evaluate_points(project, points, rs, seed=None)
    market = evaluate_points(project, [dict(p, senior_coupon=MARKET) for p in points], rs, seed=None)
    rows = []
    for t, o, m in zip(result.top[:n], offered, market, strict=True):
        s, k1, ko, km = t["structure"], t["kpis"], o["kpis"], m["kpis"]
        failed = [f["check"] for f in km["gate_a"] + km["gate_b"]]
        rows.append({"rank_v1": t["rank"], "senior_tenor": s["senior_tenor"], "senior_dscr": s["senior_dscr"],
                     "coupon_v1": s["senior_coupon"], "senior_v1": k1["senior_amount"],
                     "day_one_v1": k1["day_one_value"], "tier_v1": k1["tier"],
                     "market_coupon": km["market_coupon"], "tier_v2_as_offered": ko["tier"],
                     "pricing_v2_as_offered": "fails" if any(f["check"] == "pricing" for f in ko["gate_b"])
                     else "passes", "senior_v2_market": km["senior_amount"],
                     "day_one_v2_market": km["day_one_value"], "tier_v2_market": km["tier"],
                     "binding_v2_market": km["binding_constraint"], "fails_v2_market": ", ".join(failed) or "-"})
    return pd.DataFrame(rows)


def sensitivity(project: Project, base: Mapping[str, Any], key: str, values: Sequence[Any]) -> pd.DataFrame:
    """Day-one value, min DSCR and tier of ``base`` with ``key`` set to each of ``values`` (no Monte Carlo)."""
    point = parse_structure(dict(base), project)
    points = [dict(point, **{key: v}) for v in values]
    rendered = evaluate_points(project, points, seed=None)
    return pd.DataFrame({key: list(values),
                         "day_one_value": [r["kpis"]["day_one_value"] for r in rendered],
                         "min_dscr": [r["kpis"]["min_dscr"] for r in rendered],
                         "tier": [r["kpis"]["tier"] for r in rendered]})


def sensitivities(project: Project, base: Mapping[str, Any],
                  levers: Mapping[str, Sequence[Any]] | None = None) -> dict[str, pd.DataFrame]:
    """:func:`sensitivity` for every lever (values beyond the project's limits are left out)."""
    out = {}
    for key, values in (levers or LEVERS).items():
        if key == "zcis_tenor_years":
            values = [v for v in values if v <= project.lease_years - 1]
        out[key] = sensitivity(project, base, key, values)
    return out


def plot_sensitivities(frames: Mapping[str, pd.DataFrame], currency: str) -> Figure:
    """One panel per lever: day-one value (bars, coloured by tier) and min DSCR (line, right axis)."""
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, df) in zip(axes, frames.items(), strict=False):
        labels = [f"{v * 100:.1f}%" if key == "senior_coupon" else f"{v:g}" for v in df[key]]
        colours = [TIER_COLOURS.get(t, "#999") for t in df["tier"]]
        ax.bar(range(len(df)), df["day_one_value"].fillna(0), color=colours)
        ax.set_xticks(range(len(df)), labels, fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: axis_money(v, currency)))
        ax.set_title(f"Day-one value and min DSCR vs {LEVER_LABELS.get(key, key)}", fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
        right = ax.twinx()
        right.plot(range(len(df)), df["min_dscr"], color="#1f2933", marker="o", linewidth=1.2)
        right.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.2f}x"))
        right.tick_params(labelsize=8)
        ax.spines[["top"]].set_visible(False)
        right.spines[["top"]].set_visible(False)
    fig.legend([Patch(color=c) for c in TIER_COLOURS.values()], list(TIER_COLOURS), loc="outside lower center",
               ncols=len(TIER_COLOURS), fontsize=8, frameon=False, title="bars: day-one value by tier; "
               "line: min DSCR (right axis)", title_fontsize=8)
    return fig


def show(fig: Figure) -> Any:
    """A figure as an IPython PNG image (works in any kernel, with or without a matplotlib backend)."""
    from IPython.display import Image

    from .components import figure_png

    return Image(figure_png(fig))

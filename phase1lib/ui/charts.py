"""The dashboards' charts as matplotlib figures (Agg, no pyplot): rendered to PNG, nothing to load in the
browser. Each builder returns (figure, data) where ``data`` is what was plotted, for tests and captions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .format import TIER_COLOURS, TIER_ORDER, money, symbol

#: Scatter points drawn at most; larger runs are sampled (the Top-N is always drawn).
MAX_POINTS = 4000
_NAVY, _ORANGE, _GREY, _GREEN = "#1f4e79", "#e69500", "#8a949e", "#2e7d32"


def _figure(width: float = 5.6, height: float = 3.3) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#eef0f2", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def axis_money(value: float, currency: str) -> str:
    """A tick label: compact money without trailing decimals (£250m, £1.5bn, £0)."""
    text = money(value, currency, compact=True, dp=2)
    return re.sub(r"\.?0+(?=(bn|m|k)$)", "", text)


def money_axis(ax: Any, currency: str, axis: str = "y") -> None:
    """Tick labels in compact money of the currency (£250m)."""
    fmt = FuncFormatter(lambda v, _p: axis_money(v, currency))
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def sample_frame(frame: pl.DataFrame, max_points: int = MAX_POINTS, keep: Sequence[int] = (),
                 seed: int = 0) -> pl.DataFrame:
    """At most ``max_points`` rows: a seeded uniform sample, always keeping permutation indices ``keep``."""
    if frame.height <= max_points:
        return frame
    rng = np.random.Generator(np.random.PCG64(seed))
    chosen = np.sort(rng.choice(frame.height, max_points, replace=False))
    sample = frame[chosen]
    extra = frame.filter(pl.col("permutation_index").is_in(list(keep))
                         & ~pl.col("permutation_index").is_in(sample["permutation_index"].implode()))
    return pl.concat([sample, extra]) if extra.height else sample


def value_vs_dscr(frame: pl.DataFrame, top: Sequence[Mapping[str, Any]], currency: str,
                  selected: int | None = None, max_points: int = MAX_POINTS) -> tuple[Figure, dict[str, Any]]:
    """Day-one value against min DSCR of the evaluated structures, coloured by tier; the Top-N ringed."""
    data = frame.select("permutation_index", "day_one_value", "min_dscr", "tier").drop_nulls()
    top_idx = [int(t["permutation_index"]) for t in top]
    shown = sample_frame(data, max_points, top_idx)
    fig, ax = _figure()
    counts: dict[str, int] = {}
    for tier in reversed(TIER_ORDER):
        part = shown.filter(pl.col("tier") == tier)
        counts[tier] = part.height
        if part.height:
            faint = tier == "Not viable"
            ax.scatter(part["min_dscr"].to_numpy(), part["day_one_value"].to_numpy(), s=6 if faint else 12,
                       c=TIER_COLOURS[tier], alpha=0.35 if faint else 0.85, linewidths=0, label=tier,
                       zorder=1 if faint else 2)
    tops = shown.filter(pl.col("permutation_index").is_in(top_idx))
    if tops.height:
        ax.scatter(tops["min_dscr"].to_numpy(), tops["day_one_value"].to_numpy(), s=40, facecolors="none",
                   edgecolors=_NAVY, linewidths=0.9, label="Top-N", zorder=3)
    if selected is not None:
        sel = data.filter(pl.col("permutation_index") == selected)
        if sel.height:
            ax.scatter(sel["min_dscr"].to_numpy(), sel["day_one_value"].to_numpy(), s=110, marker="*",
                       c=_ORANGE, edgecolors="#333", linewidths=0.6, label="Selected", zorder=4)
    money_axis(ax, currency)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.2f}x"))
    ax.set_xlabel("Min senior DSCR", fontsize=9)
    ax.set_ylabel(f"Day-one value ({symbol(currency).strip() or currency})", fontsize=9)
    sampled = shown.height < data.height
    title = f"Day-one value vs min DSCR — {shown.height:,} of {data.height:,} structures"
    ax.set_title(title + (" (sampled)" if sampled else ""), fontsize=10, loc="left")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, markerscale=1.2)
    return fig, {"points": shown.height, "total": data.height, "sampled": sampled, "by_tier": counts}


def dscr_profile(schedule: Sequence[Mapping[str, Any]], target: float, floor: float | None = None
                 ) -> tuple[Figure, dict[str, Any]]:
    """Lender-case DSCR per period of the senior test periods, with the sizing target and the tenant floor."""
    rows = [r for r in schedule if r.get("dscr") is not None]
    fig, ax = _figure()
    t = [r["t_years"] for r in rows]
    d = [r["dscr"] for r in rows]
    ax.plot(t, d, color=_NAVY, linewidth=1.6, label="DSCR (lender case)")
    ax.axhline(target, color=_ORANGE, linestyle="--", linewidth=1, label=f"Sizing target {target:.2f}x")
    if floor is not None:
        ax.axhline(floor, color="#b42318", linestyle=":", linewidth=1, label=f"Tenant floor {floor:.2f}x")
    ax.axhline(1.0, color=_GREY, linewidth=0.8)
    top = max([*d, target, floor or 0.0, 1.0])
    ax.set_ylim(0.9, top + max(0.1, 0.08 * (top - 0.9)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.2f}x"))
    if schedule:  # same time axis as the debt balance chart: closing to the end of the schedule
        ax.set_xlim(0.0, max(r["t_years"] for r in schedule))
    ax.set_xlabel("Years from closing", fontsize=9)
    ax.set_ylabel("DSCR", fontsize=9)
    ax.set_title("DSCR profile of the selected structure", fontsize=10, loc="left")
    ax.legend(fontsize=7, frameon=False, loc="best")
    return fig, {"periods": len(rows), "min": min(d) if d else None, "max": max(d) if d else None}


def debt_balance(schedule: Sequence[Mapping[str, Any]], currency: str) -> tuple[Figure, dict[str, Any]]:
    """Closing balances of the senior and mezzanine notes per period (stacked)."""
    fig, ax = _figure()
    t = np.array([0.0] + [r["t_years"] for r in schedule])
    senior = np.array([schedule[0]["senior_opening"] if schedule else 0.0]
                      + [r["senior_closing"] for r in schedule])
    mezz = np.array([schedule[0]["mezz_opening"] if schedule else 0.0]
                    + [r["mezz_opening"] - r["mezz_principal"] for r in schedule])
    ax.fill_between(t, 0, senior, color=_NAVY, alpha=0.85, step="post", label="Senior", linewidth=0)
    if mezz.any():
        ax.fill_between(t, senior, senior + mezz, color=_ORANGE, alpha=0.85, step="post", label="Mezzanine",
                        linewidth=0)
    money_axis(ax, currency)
    ax.set_xlabel("Years from closing", fontsize=9)
    ax.set_ylabel("Outstanding", fontsize=9)
    ax.set_title("Debt balance", fontsize=10, loc="left")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0.0, float(t[-1]) if t.size else 1.0)
    ax.legend(fontsize=7, frameon=False)
    return fig, {"senior_start": float(senior[0]) if senior.size else 0.0, "mezz_start": float(mezz[0])}


def capital_stack(kpis: Mapping[str, Any], uses: Mapping[str, float], currency: str
                  ) -> tuple[Figure, dict[str, Any]]:
    """Sources and uses at closing: senior, mezzanine, sidecar (net) and equity fund capex, fees and the DSRA."""
    sources = [("Senior", kpis.get("senior_amount") or 0.0, _NAVY),
               ("Mezzanine", kpis.get("mezz_amount") or 0.0, _ORANGE),
               ("Sidecar (net)", kpis.get("sidecar_net") or 0.0, "#7b5ea7"),
               ("Equity", kpis.get("equity_required") or 0.0, _GREEN)]
    spend = [("Project capex", uses.get("project_capex", 0.0), "#52606d"),
             ("Upfront fees", uses.get("upfront_fees", 0.0), "#9aa5b1"),
             ("DSRA funded", kpis.get("dsra_amount") or 0.0, "#b42318")]
    fig, ax = _figure()
    for x, parts in ((0, sources), (1, spend)):
        bottom = 0.0
        for label, value, colour in parts:
            if value <= 0:
                continue
            ax.bar(x, value, bottom=bottom, color=colour, width=0.55, edgecolor="white", linewidth=0.8,
                   label=f"{label}  {money(value, currency, compact=True)}")
            if value >= 0.04 * max(sum(v for _l, v, _c in sources), 1.0):
                ax.text(x, bottom + value / 2, f"{label}\n{money(value, currency, compact=True)}", ha="center",
                        va="center", fontsize=7.5, color="white")
            bottom += value
    ax.set_xticks([0, 1], ["Sources", "Uses"], fontsize=9)
    ax.set_xlim(-0.5, 2.9)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], fontsize=7.5, frameon=False, loc="center right")
    money_axis(ax, currency)
    ax.set_title("Capital stack at closing", fontsize=10, loc="left")
    data = {label: float(value) for label, value, _c in sources + spend}
    return fig, data

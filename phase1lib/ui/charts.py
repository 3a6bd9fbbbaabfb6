"""The dashboards' interactive charts, as bqplot widgets (d3 in the browser, JavaScript shipped in the bqplot
wheel and served by this server: nothing loaded from outside).

- :class:`ValueScatter`: day-one value against min senior DSCR of every evaluated structure, by tier, the Top-N
  ringed and the selected one marked; hover shows a structure's terms and KPIs, a click selects it, drag pans
  and the wheel zooms. A run of 250,000 structures is **decimated** (:func:`decimate`): one point per cell of a
  grid over the visible window, the best tier of the cell, redone for the new window on every zoom or pan, so
  the browser never draws more than :data:`MAX_CELLS` SVG points however large the run (up to
  :data:`DRAW_ALL` structures in the window are all drawn).
- :class:`ScheduleCharts`: the selected structure's DSCR profile and debt balance on one shared time axis (one
  x scale for both figures: zooming or panning one moves the other).
- :class:`CapitalStack`: sources and uses at closing, stacked bars.
- :class:`ProfileOverlay`: several structures' DSCR profiles on one axis (Compare).

Each keeps what it plots in ``data`` (for tests and captions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import polars as pl

from .format import TIER_COLOURS, TIER_ORDER, money, symbol

#: Grid of the scatter's decimation (columns x rows over the visible window): at most one point per cell.
GRID_COLS, GRID_ROWS = 150, 90
MAX_CELLS = GRID_COLS * GRID_ROWS
#: Up to this many structures in the window are all drawn; more are decimated.
DRAW_ALL = 4000
_NAVY, _ORANGE, _GREY, _RED, _GREEN = "#1f4e79", "#e69500", "#8a949e", "#b42318", "#2e7d32"
#: Drawing order of the tiers, bottom to top: the viable tiers over the rest, Diamond and Gold over the rings.
_LAYERS = ("Not viable", "Bronze", "Silver")
_OVER_RINGS = ("Gold", "Diamond")
SERIES_COLOURS = ("#1f4e79", "#e69500", "#2e7d32", "#7b5ea7")


def _margin(left: int = 64) -> dict[str, int]:
    return {"top": 36, "bottom": 46, "left": left, "right": 16}


def legend_html(items: Sequence[tuple[str, str, str]]) -> str:
    """A legend outside the plot (bqplot draws its own over the data): (label, colour, shape) per item, shape
    one of "dot", "ring", "line", "dash", "box"."""
    from .format import esc

    parts = []
    for label, colour, shape in items:
        style = {"dot": f"background:{colour};border-radius:50%",
                 "ring": f"border:2px solid {colour};border-radius:50%;width:8px;height:8px",
                 "line": f"background:{colour};height:3px;width:16px", "dash": f"border-top:2px dashed {colour};"
                 "height:0;width:16px", "box": f"background:{colour}"}[shape]
        parts.append(f'<span class="p1-legend-item"><span class="p1-swatch" style="{style}"></span>'
                     f"{esc(label)}</span>")
    return f'<div class="p1-legend">{"".join(parts)}</div>'


def decimate(x: np.ndarray, y: np.ndarray, rank: np.ndarray, x_range: tuple[float, float],
             y_range: tuple[float, float], cols: int = GRID_COLS, rows: int = GRID_ROWS) -> np.ndarray:
    """Indices of at most ``cols x rows`` points that show the cloud in the window: the points inside it are
    binned into a cols x rows grid and each occupied cell keeps one point, the lowest ``rank`` (best tier),
    then the highest ``y``. Vectorised: a lexsort and a unique over the cells."""
    x0, x1 = x_range
    y0, y1 = y_range
    inside = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & np.isfinite(x) & np.isfinite(y))
    if len(inside) == 0:
        return inside
    wx, wy = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
    cx = np.minimum(((x[inside] - x0) / wx * cols).astype(np.int64), cols - 1)
    cy = np.minimum(((y[inside] - y0) / wy * rows).astype(np.int64), rows - 1)
    cell = cx * rows + cy
    order = np.lexsort((-y[inside], rank[inside], cell))
    _, first = np.unique(cell[order], return_index=True)
    return inside[order[first]]


def millions_tick_format(span: float) -> str:
    """The d3 tick format of an axis in millions spanning ``span``: enough decimals that the ticks differ (an
    empty chart's 0-1 axis reads 0.00 … 1.00, not 0 0 0 1 1 1)."""
    return ",.2f" if span < 5 else ",.1f" if span < 50 else ",.0f"


def _extent(values: np.ndarray, pad: float = 0.04) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo or max(abs(hi), 1.0) * 0.1
    return lo - pad * span, hi + pad * span


class ValueScatter(widgets.VBox):
    """Day-one value (y, in millions of the currency) against min senior DSCR (x) of a run's structures."""

    def __init__(self, width: str = "760px", height: str = "420px"):
        self.xs, self.ys = bq.LinearScale(), bq.LinearScale()
        self.tip = widgets.HTML(layout=widgets.Layout(max_width="340px"))
        self.tip.add_class("p1-tooltip")
        self.marks: dict[str, bq.Scatter] = {}
        for tier in TIER_ORDER:
            faint = tier == "Not viable"
            self.marks[tier] = bq.Scatter(
                x=[], y=[], scales={"x": self.xs, "y": self.ys}, colors=[TIER_COLOURS[tier]], stroke="white",
                stroke_width=0.5 if not faint else 0.0, default_size=14 if faint else 30,
                opacities=[0.45 if faint else 0.9], labels=[tier],
                tooltip=self.tip, interactions={"hover": "tooltip", "click": "select"})
        self.rings = bq.Scatter(x=[], y=[], scales={"x": self.xs, "y": self.ys}, fill=False, stroke=_NAVY,
                                colors=[_NAVY], stroke_width=1.4, default_size=150, labels=["Top-N"],
                                tooltip=self.tip,
                                interactions={"hover": "tooltip", "click": "select"})
        self.star = bq.Scatter(x=[], y=[], scales={"x": self.xs, "y": self.ys}, marker="diamond", colors=[_ORANGE],
                               stroke="#333", stroke_width=0.8, default_size=170, labels=["Selected"])
        order = [self.marks[t] for t in _LAYERS] + [self.rings] + [self.marks[t] for t in _OVER_RINGS] + [self.star]
        self.x_axis = bq.Axis(scale=self.xs, label="Min senior DSCR", tick_format=".2f", grid_lines="solid",
                              grid_color="#eef0f2")
        self.y_axis = bq.Axis(scale=self.ys, side="left", label="Day-one value", tick_format=",.0f",
                              label_offset="52px", grid_lines="solid", grid_color="#eef0f2")
        self.panzoom = bq.interacts.PanZoom(scales={"x": [self.xs], "y": [self.ys]})
        # bqplot puts an interaction's overlay above the marks: while panning and zooming, points take no hover or
        # click. So two modes: "Select" (hover, click) and "Pan & zoom" (drag, wheel); the window stays.
        self.figure = bq.Figure(marks=order, axes=[self.x_axis, self.y_axis], interaction=None,
                                fig_margin=_margin(72), title="Day-one value vs min DSCR", animation_duration=0,
                                display_toolbar=False, layout=widgets.Layout(width=width, height=height))
        self.mode = widgets.ToggleButtons(options=["Select", "Pan & zoom"], value="Select",
                                          tooltips=["hover a point for its terms, click it to open it",
                                                    "drag to pan, wheel to zoom"],
                                          style={"button_width": "96px"})
        self.mode.observe(self._on_mode, names="value")
        self.legend = widgets.HTML(legend_html(
            [(t, TIER_COLOURS[t], "dot") for t in TIER_ORDER]
            + [("Top-N", _NAVY, "ring"), ("Selected", _ORANGE, "box")]))
        self.caption = widgets.HTML()
        self.reset_button = widgets.Button(description="Reset zoom", icon="expand",
                                           layout=widgets.Layout(width="120px", height="26px"))
        self.reset_button.on_click(lambda _b: self.reset_view())
        super().__init__([self.legend, self.figure, widgets.HBox([self.mode, self.reset_button, self.caption],
                                                                 layout=widgets.Layout(align_items="center",
                                                                                       grid_gap="8px"))])
        self.add_class("p1-chart")
        self.data: dict[str, Any] = {}
        self.on_pick: Callable[[int], None] | None = None
        self.describe: Callable[[int], str] | None = None
        self._index = np.zeros(0, dtype=np.int64)
        self._order = self._sorted = np.zeros(0, dtype=np.int64)  # argsort of _index and _index in that order
        self._x = self._y = np.zeros(0)
        self._rank = np.zeros(0, dtype=np.int64)
        self._top: np.ndarray = np.zeros(0, dtype=np.int64)
        self._selected: int | None = None
        self._shown: dict[str, np.ndarray] = {}
        self._home: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 1.0), (0.0, 1.0))
        self._drawing = False
        self._drawn_window: tuple[tuple[float, float], tuple[float, float]] | None = None
        for mark in [*self.marks.values(), self.rings]:
            mark.on_hover(self._on_hover)
            mark.on_element_click(self._on_click)
        for scale in (self.xs, self.ys):
            scale.observe(self._on_window, names=["min", "max"])

    # ---- data ------------------------------------------------------------------------------------------------
    def show(self, frame: pl.DataFrame, top: Sequence[Mapping[str, Any]], currency: str,
             selected: int | None = None) -> None:
        """Plot a run's frame (permutation_index, day_one_value, min_dscr, tier); ``top`` are its Top-N rows."""
        data = frame.select("permutation_index", "day_one_value", "min_dscr", "tier").drop_nulls()
        self._index = data["permutation_index"].to_numpy().astype(np.int64)
        self._order = np.argsort(self._index)  # once per run: every redraw and selection looks indices up
        self._sorted = self._index[self._order]
        self._x = data["min_dscr"].to_numpy().astype(float)
        self._y = data["day_one_value"].to_numpy().astype(float) / 1e6
        tiers = data["tier"].cast(pl.String).to_list()
        lookup = {t: i for i, t in enumerate(TIER_ORDER)}
        self._rank = np.array([lookup.get(t, len(TIER_ORDER)) for t in tiers], dtype=np.int64)
        self._top = np.array([int(t["permutation_index"]) for t in top], dtype=np.int64)
        self._selected = selected
        self.y_axis.label = f"Day-one value ({symbol(currency).strip() or currency}m)"
        self._home = (_extent(self._x), _extent(self._y))
        (x0, x1), (y0, y1) = self._home
        self.x_axis.tick_format = ".3f" if x1 - x0 < 0.05 else ".2f"  # a narrow run: ticks that differ
        self.y_axis.tick_format = millions_tick_format(y1 - y0)
        self.data = {"total": len(self._index), "currency": currency}
        self.reset_view()

    def clear(self) -> None:
        self.show(pl.DataFrame({"permutation_index": [], "day_one_value": [], "min_dscr": [], "tier": []},
                               schema={"permutation_index": pl.Int64, "day_one_value": pl.Float64,
                                       "min_dscr": pl.Float64, "tier": pl.String}), [], "")
        self.caption.value = ""

    def select(self, permutation_index: int | None) -> None:
        """Mark ``permutation_index`` as the selected structure."""
        self._selected = permutation_index
        pos = self._positions([permutation_index]) if permutation_index is not None else np.zeros(0, np.int64)
        self.star.x, self.star.y = self._x[pos], self._y[pos]

    def reset_view(self) -> None:
        """Back to the whole run."""
        self._drawing = True
        try:
            (self.xs.min, self.xs.max), (self.ys.min, self.ys.max) = self._home
        finally:
            self._drawing = False
        self.redraw()

    # ---- drawing ---------------------------------------------------------------------------------------------
    def window(self) -> tuple[tuple[float, float], tuple[float, float]]:
        (hx0, hx1), (hy0, hy1) = self._home
        x0 = self.xs.min if self.xs.min is not None else hx0
        x1 = self.xs.max if self.xs.max is not None else hx1
        y0 = self.ys.min if self.ys.min is not None else hy0
        y1 = self.ys.max if self.ys.max is not None else hy1
        return (float(min(x0, x1)), float(max(x0, x1))), (float(min(y0, y1)), float(max(y0, y1)))

    def redraw(self) -> None:
        """Decimate the visible window again and draw it (the Top-N and the selected one always)."""
        xr, yr = self._drawn_window = self.window()
        inside_mask = ((self._x >= xr[0]) & (self._x <= xr[1]) & (self._y >= yr[0]) & (self._y <= yr[1]))
        inside = int(np.count_nonzero(inside_mask))
        keep = np.flatnonzero(inside_mask) if inside <= DRAW_ALL else decimate(self._x, self._y, self._rank, xr, yr)
        top_pos = self._positions(self._top)
        shown = np.union1d(keep, top_pos)
        counts = {}
        with self.figure.hold_sync():
            for i, tier in enumerate(TIER_ORDER):
                part = shown[self._rank[shown] == i]
                self._shown[tier] = part
                counts[tier] = len(part)
                self.marks[tier].x, self.marks[tier].y = self._x[part], self._y[part]
            self._shown["Top-N"] = top_pos
            self.rings.x, self.rings.y = self._x[top_pos], self._y[top_pos]
            self.select(self._selected)
        self.data.update(points=len(shown), inside=inside, by_tier=counts, decimated=len(keep) < inside,
                         window={"x": xr, "y": yr})
        total = self.data.get("total", 0)
        note = (f" · one point per cell of a {GRID_COLS}×{GRID_ROWS} grid, best tier first; zoom in for more"
                if len(keep) < inside else "")
        drawn = ",".join(f"{v:.6g}" for v in (*xr, *yr))  # the window drawn (a zoom may leave the counts alike)
        self.caption.value = (f'<span class="p1-muted" data-window="{drawn}">{len(keep):,} of the {inside:,} '
                              f"structures in view drawn ({total:,} in the run){note}</span>") if total else ""

    def _positions(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions in the arrays of the given permutation indices (those present)."""
        wanted = np.asarray(list(indices), dtype=np.int64)
        if not len(wanted) or not len(self._index):
            return np.zeros(0, dtype=np.int64)
        found = np.clip(np.searchsorted(self._sorted, wanted), 0, len(self._order) - 1)
        ok = self._sorted[found] == wanted
        return self._order[found[ok]]

    def _on_mode(self, change: dict[str, Any]) -> None:
        self.figure.interaction = self.panzoom if change["new"] == "Pan & zoom" else None

    def _on_window(self, _change: dict[str, Any]) -> None:
        """A zoom or pan moves the scale bounds (one message per scale): redraw when the window really moved."""
        if not self._drawing and len(self._index) and self.window() != self._drawn_window:
            self.redraw()

    # ---- events ----------------------------------------------------------------------------------------------
    def _point(self, mark: bq.Scatter, event: Mapping[str, Any]) -> int | None:
        """The permutation index of the point an event names (its position in the mark's arrays)."""
        i = (event.get("data") or {}).get("index")
        name = next((n for n, m in [*self.marks.items(), ("Top-N", self.rings)] if m is mark), None)
        part = self._shown.get(name or "")
        if i is None or part is None or not 0 <= int(i) < len(part):
            return None
        return int(self._index[part[int(i)]])

    def _on_hover(self, mark: bq.Scatter, event: Mapping[str, Any]) -> None:
        index = self._point(mark, event)
        if index is not None and self.describe is not None:
            self.tip.value = self.describe(index)

    def _on_click(self, mark: bq.Scatter, event: Mapping[str, Any]) -> None:
        index = self._point(mark, event)
        if index is not None and self.on_pick is not None:
            self.on_pick(index)

    def click_point(self, permutation_index: int) -> None:
        """Click the point of ``permutation_index`` as the browser would (tests)."""
        for name, mark in [("Top-N", self.rings), *self.marks.items()]:
            part = self._shown.get(name, np.zeros(0, dtype=np.int64))
            hits = np.flatnonzero(self._index[part] == permutation_index)
            if len(hits):
                mark._handle_custom_msgs(None, {"event": "element_click", "data": {"index": int(hits[0])}})
                return
        raise KeyError(f"structure {permutation_index} is not drawn in the current window")

    def hover_point(self, permutation_index: int) -> str:
        """Hover the point of ``permutation_index`` (tests); returns the tooltip's HTML."""
        for name, mark in [("Top-N", self.rings), *self.marks.items()]:
            part = self._shown.get(name, np.zeros(0, dtype=np.int64))
            hits = np.flatnonzero(self._index[part] == permutation_index)
            if len(hits):
                mark._handle_custom_msgs(None, {"event": "hover", "data": {"index": int(hits[0])}})
                return self.tip.value
        raise KeyError(f"structure {permutation_index} is not drawn in the current window")


class ScheduleCharts(widgets.HBox):
    """DSCR profile and debt balance of one structure, on one time axis (shared x scale, pan and zoom in x)."""

    def __init__(self, width: str = "600px", height: str = "320px"):
        self.t_scale = bq.LinearScale(min=0.0)
        self.dscr_scale, self.debt_scale = bq.LinearScale(), bq.LinearScale(min=0.0)
        sc = {"x": self.t_scale, "y": self.dscr_scale}
        self.dscr_line = bq.Lines(x=[], y=[], scales=sc, colors=[_NAVY], stroke_width=2)
        self.target_line = bq.Lines(x=[], y=[], scales=sc, colors=[_ORANGE], line_style="dashed")
        self.floor_line = bq.Lines(x=[], y=[], scales=sc, colors=[_RED], line_style="dotted")
        self.one_line = bq.Lines(x=[], y=[], scales=sc, colors=[_GREY], stroke_width=1)
        self.dscr_fig = bq.Figure(
            marks=[self.one_line, self.floor_line, self.target_line, self.dscr_line],
            axes=[bq.Axis(scale=self.t_scale, label="Years from closing", tick_format=".0f"),
                  bq.Axis(scale=self.dscr_scale, side="left", tick_format=".2f", label="DSCR",
                          label_offset="44px")],
            title="DSCR profile", fig_margin=_margin(60), animation_duration=0,
            interaction=bq.interacts.PanZoom(scales={"x": [self.t_scale]}),
            layout=widgets.Layout(width=width, height=height))
        bc = {"x": self.t_scale, "y": self.debt_scale}
        self.balance = bq.Lines(x=[], y=[], scales=bc, colors=[_NAVY, _ORANGE], fill="bottom",
                                fill_opacities=[0.85, 0.85], stroke_width=1)
        self.debt_axis = bq.Axis(scale=self.debt_scale, side="left", tick_format=",.0f",
                                 label="Outstanding", label_offset="52px")
        self.balance_fig = bq.Figure(
            marks=[self.balance], axes=[bq.Axis(scale=self.t_scale, label="Years from closing", tick_format=".0f"),
                                        self.debt_axis],
            title="Debt balance", fig_margin=_margin(72), animation_duration=0,
            interaction=bq.interacts.PanZoom(scales={"x": [self.t_scale]}),
            layout=widgets.Layout(width=width, height=height))
        self.dscr_legend, self.balance_legend = widgets.HTML(), widgets.HTML()
        super().__init__([widgets.VBox([self.dscr_legend, self.dscr_fig]),
                          widgets.VBox([self.balance_legend, self.balance_fig])])
        self.add_class("p1-chart")
        self.data: dict[str, Any] = {}

    def show(self, schedule: Sequence[Mapping[str, Any]], target: float, floor: float | None, currency: str) -> None:
        rows = [r for r in schedule if r.get("dscr") is not None]
        end = max((float(r["t_years"]) for r in schedule), default=1.0)
        t = np.array([r["t_years"] for r in rows], dtype=float)
        d = np.array([r["dscr"] for r in rows], dtype=float)
        span = np.array([0.0, end])
        with self.dscr_fig.hold_sync(), self.balance_fig.hold_sync():
            self.t_scale.min, self.t_scale.max = 0.0, end
            self.dscr_line.x, self.dscr_line.y = t, d
            self.target_line.x, self.target_line.y = span, np.array([target, target])
            legend = [("DSCR (lender case)", _NAVY, "line"), (f"Sizing target {target:.2f}x", _ORANGE, "dash")]
            if floor is not None:
                self.floor_line.x, self.floor_line.y = span, np.array([floor, floor])
                legend.append((f"Tenant floor {floor:.2f}x", _RED, "dash"))
            else:
                self.floor_line.x, self.floor_line.y = [], []
            self.one_line.x, self.one_line.y = span, np.array([1.0, 1.0])
            top = float(max([*d.tolist(), target, floor or 0.0, 1.0]))
            self.dscr_scale.min, self.dscr_scale.max = 0.9, top + max(0.1, 0.08 * (top - 0.9))
            tb = np.array([0.0] + [r["t_years"] for r in schedule], dtype=float)
            senior = np.array([schedule[0]["senior_opening"] if schedule else 0.0]
                              + [r["senior_closing"] for r in schedule], dtype=float) / 1e6
            mezz = np.array([schedule[0]["mezz_opening"] if schedule else 0.0]
                            + [r["mezz_opening"] - r["mezz_principal"] for r in schedule], dtype=float) / 1e6
            self.balance.x = tb
            self.balance.y = np.vstack([senior, senior + mezz]) if mezz.any() else np.vstack([senior])
            # its own range every time (clear() leaves 0-1 for an empty chart, which would clip every balance)
            self.debt_scale.min, self.debt_scale.max = 0.0, 1.04 * max(float((senior + mezz).max(initial=0.0)), 1e-6)
            self.debt_axis.tick_format = millions_tick_format(self.debt_scale.max)
            self.dscr_legend.value = legend_html(legend)
            self.balance_legend.value = legend_html([("Senior", _NAVY, "box")] + (
                [("Mezzanine (on top)", _ORANGE, "box")] if mezz.any() else []))
            self.debt_axis.label = f"Outstanding ({symbol(currency).strip() or currency}m)"
        self.data = {"periods": len(rows), "min": float(d.min()) if len(d) else None,
                     "max": float(d.max()) if len(d) else None, "end_years": end,
                     "senior_start": float(senior[0] * 1e6) if len(senior) else 0.0,
                     "mezz_start": float(mezz[0] * 1e6) if len(mezz) else 0.0}

    def clear(self) -> None:
        for line in (self.dscr_line, self.target_line, self.floor_line, self.one_line, self.balance):
            line.x, line.y = [], []
        self.t_scale.min, self.t_scale.max = 0.0, 25.0  # empty but readable axes
        self.dscr_scale.min, self.dscr_scale.max = 0.9, 2.0
        self.debt_scale.min, self.debt_scale.max = 0.0, 1.0
        self.debt_axis.tick_format = millions_tick_format(1.0)
        self.dscr_legend.value = self.balance_legend.value = ""
        self.data = {}


class CapitalStack(widgets.VBox):
    """Sources (senior, mezzanine, sidecar, equity) and uses (capex, fees, DSRA) at closing, stacked."""

    PARTS = (("Senior", _NAVY), ("Mezzanine", _ORANGE), ("Sidecar (net)", "#7b5ea7"), ("Equity", _GREEN),
             ("Project capex", "#52606d"), ("Upfront fees", "#9aa5b1"), ("DSRA funded", _RED))

    def __init__(self, width: str = "420px", height: str = "420px"):
        self.xs, self.ys = bq.OrdinalScale(), bq.LinearScale(min=0.0)
        self.tip = widgets.HTML()
        self.bars = bq.Bars(x=["Sources", "Uses"], y=np.zeros((len(self.PARTS), 2)),
                            scales={"x": self.xs, "y": self.ys}, type="stacked",
                            colors=[c for _n, c in self.PARTS], labels=[n for n, _c in self.PARTS],
                            padding=0.35, stroke="white", tooltip=self.tip,
                            interactions={"hover": "tooltip"})
        self.y_axis = bq.Axis(scale=self.ys, side="left", tick_format=",.0f", label_offset="52px")
        self.figure = bq.Figure(marks=[self.bars], axes=[bq.Axis(scale=self.xs), self.y_axis],
                                title="Capital stack at closing", fig_margin=_margin(72), animation_duration=0,
                                layout=widgets.Layout(width=width, height=height))
        self.legend = widgets.HTML(layout=widgets.Layout(width=width))
        super().__init__([self.legend, self.figure])
        self.add_class("p1-chart")
        self.data: dict[str, float] = {}
        self._currency = ""
        self.bars.on_hover(self._on_hover)

    def show(self, kpis: Mapping[str, Any], uses: Mapping[str, float], currency: str) -> None:
        values = {"Senior": kpis.get("senior_amount") or 0.0, "Mezzanine": kpis.get("mezz_amount") or 0.0,
                  "Sidecar (net)": kpis.get("sidecar_net") or 0.0, "Equity": kpis.get("equity_required") or 0.0,
                  "Project capex": uses.get("project_capex", 0.0), "Upfront fees": uses.get("upfront_fees", 0.0),
                  "DSRA funded": kpis.get("dsra_amount") or 0.0}
        sources = {"Senior", "Mezzanine", "Sidecar (net)", "Equity"}
        y = np.array([[values[n] / 1e6 if n in sources else 0.0, 0.0 if n in sources else values[n] / 1e6]
                      for n, _c in self.PARTS])
        self.bars.y = y
        self.ys.max = 1.04 * max(float(y[:, 0].sum()), float(y[:, 1].sum()), 1e-6)
        self.y_axis.tick_format = millions_tick_format(self.ys.max)
        self.y_axis.label = f"{symbol(currency).strip() or currency}m"
        self._currency = currency
        self.legend.value = legend_html([(f"{n} {money(values[n], currency, compact=True)}", c, "box")
                                         for n, c in self.PARTS if values[n] > 0])
        self.data = {n: float(v) for n, v in values.items()}

    def _on_hover(self, _mark: Any, event: Mapping[str, Any]) -> None:
        from .format import esc

        data = event.get("data") or {}
        i = data.get("sub_index", data.get("index"))
        if i is None:
            return
        names = [n for n, _c in self.PARTS]
        j = int(i)
        if 0 <= j < len(names):
            name = names[j]
            self.tip.value = f"<b>{esc(name)}</b> {money(self.data.get(name), self._currency)}"

    def clear(self) -> None:
        self.bars.y = np.zeros((len(self.PARTS), 2))
        self.ys.max = 1.0
        self.y_axis.tick_format = millions_tick_format(1.0)
        self.legend.value = ""
        self.data = {}


class ProfileOverlay(widgets.VBox):
    """DSCR profiles of up to four structures on one time axis (Compare)."""

    def __init__(self, width: str = "760px", height: str = "340px"):
        self.xs, self.ys = bq.LinearScale(min=0.0), bq.LinearScale()
        self.lines = bq.Lines(x=[], y=[], scales={"x": self.xs, "y": self.ys}, colors=list(SERIES_COLOURS),
                              stroke_width=2)
        self.one = bq.Lines(x=[], y=[], scales={"x": self.xs, "y": self.ys}, colors=[_GREY], stroke_width=1)
        self.figure = bq.Figure(
            marks=[self.one, self.lines],
            axes=[bq.Axis(scale=self.xs, label="Years from closing", tick_format=".0f"),
                  bq.Axis(scale=self.ys, side="left", tick_format=".2f", label="DSCR", label_offset="44px")],
            title="DSCR profiles", fig_margin=_margin(60), animation_duration=0,
            interaction=bq.interacts.PanZoom(scales={"x": [self.xs]}),
            layout=widgets.Layout(width=width, height=height))
        self.legend = widgets.HTML()
        super().__init__([self.legend, self.figure])
        self.add_class("p1-chart")
        self.data: dict[str, Any] = {}

    def show(self, series: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> None:
        """``series``: (label, schedule) per structure."""
        xs, ys, labels = [], [], []
        end = 1.0
        for label, schedule in series:
            rows = [r for r in schedule if r.get("dscr") is not None]
            xs.append(np.array([r["t_years"] for r in rows], dtype=float))
            ys.append(np.array([r["dscr"] for r in rows], dtype=float))
            labels.append(label)
            end = max(end, max((float(r["t_years"]) for r in schedule), default=1.0))
        n = max((len(x) for x in xs), default=0)

        def pad(a: np.ndarray) -> np.ndarray:  # bqplot wants equal lengths: NaN ends a shorter line
            return np.concatenate([a, np.full(n - len(a), np.nan)])

        with self.figure.hold_sync():
            self.xs.min, self.xs.max = 0.0, end
            self.lines.x = np.vstack([pad(x) for x in xs]) if xs else []
            self.lines.y = np.vstack([pad(y) for y in ys]) if ys else []
            self.legend.value = legend_html([(label, SERIES_COLOURS[i % len(SERIES_COLOURS)], "line")
                                             for i, label in enumerate(labels)])
            self.one.x, self.one.y = np.array([0.0, end]), np.array([1.0, 1.0])
            finite = np.concatenate(ys) if ys else np.zeros(0)
            finite = finite[np.isfinite(finite)]
            top = float(finite.max()) if len(finite) else 2.0
            self.ys.min, self.ys.max = 0.9, top + max(0.1, 0.08 * (top - 0.9))
        self.data = {"series": labels, "periods": [len(x) for x in xs]}

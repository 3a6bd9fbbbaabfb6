"""Securitisation dashboard: the sortable Top-N with tier badges and, when it is short, the best near misses
beside it (each hint one click from a rerun); the interactive charts (day-one value against min DSCR of every
structure by tier, the capital stack, the selected structure's DSCR profile and debt balance on one time axis);
the selected structure's detail (KPIs, gates, hints, repo, stress grid, Monte Carlo, breakevens);
**Download term sheet** through the widget connection; and **Compare**, two to four structures side by side.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import numpy as np
import polars as pl

from .. import service
from ..engine import RunCancelled, RunResult, schedule
from ..engine.render import structure_of
from ..engine.structure import evaluate_points
from ..errors import Phase1Error
from ..project import Project, derive, parse_project
from . import charts, compare, nearmiss
from .background import BackgroundTask, on_kernel_loop
from .components import BadRecords, DownloadLink, Notice, SortableTable, heading, kv_table, page
from .context import AppContext
from .format import TIER_ORDER, esc, money, seconds, tier_badge
from .run import run_label, stored_runs, tier_counts_html
from .structure_view import (
    breakeven_rows,
    gates_html,
    kpi_rows,
    lending_rows,
    monte_carlo_rows,
    near_miss_card,
    stress_html,
    terms_rows,
    tooltip_html,
    top_columns,
)


class RunCache(OrderedDict):
    """The runs a page keeps open (the one shown, Compare's picks): the least recently used dropped past
    ``size``, so that a long session does not hold every 250,000-row frame it ever opened."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class SecuritisationDashboard:
    """The Securitisation page; ``widget`` is what Voila displays."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.result: RunResult | None = None
        self.project: Project | None = None
        self.selected: dict[str, Any] | None = None
        self.schedule: list[dict[str, Any]] = []
        self.near_misses: list[dict[str, Any]] = []
        self.applied: dict[str, Any] | None = None
        self.compare_entries: list[compare.Entry] = []
        self._index = np.zeros(0, dtype=np.int64)
        self._runs_cache = RunCache(compare.MAX_PICKS + 2)
        self.notice = Notice()
        self.run_picker = widgets.Dropdown(description="Run", layout=widgets.Layout(width="900px"))
        self.bad_runs = BadRecords()
        self.run_picker.observe(lambda ch: self.open_run(ch["new"]) if ch["new"] else None, names="value")
        self.header = widgets.HTML()
        self.table = SortableTable([], on_open=self.open_structure, open_label=lambda r: f"#{r['rank']}")
        # near misses beside a short Top-N
        self.near_title = widgets.HTML()
        self.near_box = widgets.VBox(layout=widgets.Layout(width="480px", margin="0 0 0 16px", display="none"))
        self.near_box.add_class("p1-near")
        self.hint_notice = Notice()
        self.rerun_task = BackgroundTask("Rerun with this change", self.rerun, width="210px")
        self.rerun_task.progress.layout.width = "240px"
        self.rerun_box = widgets.HBox([self.rerun_task.run_button, self.rerun_task.cancel_button,
                                       self.rerun_task.progress, self.rerun_task.progress_text],
                                      layout=widgets.Layout(align_items="center", grid_gap="10px", display="none"))
        # charts
        self.scatter = charts.ValueScatter()
        self.scatter.describe = self._describe
        self.scatter.on_pick = self.open_index
        self.stack = charts.CapitalStack()
        self.schedule_charts = charts.ScheduleCharts()
        # the selected structure
        self.detail_title = widgets.HTML()
        self.terms, self.kpis, self.gates = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.stress, self.monte_carlo = widgets.HTML(), widgets.HTML()
        self.lending, self.breakevens = widgets.HTML(), widgets.HTML()
        self.breakeven_box = widgets.VBox([heading("Breakevens (min DSCR 1.00x)", 3), self.breakevens],
                                          layout=widgets.Layout(display="none"))
        self.lending_box = widgets.VBox([heading("Pricing and lending value", 3), self.lending],
                                        layout=widgets.Layout(display="none"))
        self.download_button = widgets.Button(description="Download term sheet", icon="download",
                                              button_style="primary", disabled=True,
                                              layout=widgets.Layout(width="200px"))
        self.download_button.on_click(lambda _b: self.download())
        self.compare_button = widgets.Button(description="Add to compare", icon="columns", disabled=True,
                                             layout=widgets.Layout(width="160px"))
        self.compare_button.on_click(lambda _b: self.add_selected_to_compare())
        self.download_link = DownloadLink()
        self.download_notice = Notice()
        # compare
        self.compare_notice = Notice()
        self.compare_picks = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.compare_table = widgets.HTML()
        self.overlay = charts.ProfileOverlay()
        # a bqplot figure is never hidden with display: none (it would lay itself out at a negative size): the
        # overlay joins the row once there is something to overlay
        self.compare_row = widgets.HBox([self.compare_table], layout=widgets.Layout(
            flex_flow="row wrap", align_items="flex-start", grid_gap="16px"))
        self.other_run = widgets.Dropdown(description="Earlier run", layout=widgets.Layout(width="720px"))
        self.other_structure = widgets.Dropdown(description="Structure", layout=widgets.Layout(width="420px"))
        self.other_run.observe(lambda ch: self._fill_other_structures(ch["new"]), names="value")
        self.other_add = widgets.Button(description="Add", icon="plus", layout=widgets.Layout(width="90px"))
        self.other_add.on_click(lambda _b: self.add_other_to_compare())
        self.compare_clear = widgets.Button(description="Clear", icon="times", layout=widgets.Layout(width="90px"))
        self.compare_clear.on_click(lambda _b: self.set_compare([]))
        self.widget = self._layout()
        self.refresh_runs()
        self._restore_compare()

    def _layout(self) -> widgets.Widget:
        detail = widgets.HBox([
            widgets.VBox([heading("Terms", 3), self.terms, heading("Monte Carlo (1,000 CPI paths)", 3),
                          self.monte_carlo, self.breakeven_box], layout=widgets.Layout(width="300px")),
            widgets.VBox([heading("KPIs", 3), self.kpis, self.lending_box], layout=widgets.Layout(width="360px")),
            widgets.VBox([heading("Gates and repo", 3), self.gates], layout=widgets.Layout(width="520px")),
            widgets.VBox([heading("Stress grid", 3), self.stress], layout=widgets.Layout(width="360px"))],
            layout=widgets.Layout(flex_flow="row wrap"))
        actions = widgets.HBox([self.download_button, self.compare_button, self.download_link],
                               layout=widgets.Layout(align_items="center", grid_gap="12px"))
        self.near_box.children = [self.near_title]
        top = widgets.HBox([widgets.VBox([heading("Top-N"), self.table]), self.near_box],
                           layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        add_other = widgets.HBox([self.other_run, self.other_structure, self.other_add, self.compare_clear],
                                 layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        compare_box = widgets.VBox([heading("Compare"), self.compare_notice, self.compare_picks, add_other,
                                    self.compare_row])
        return page("Securitisation", self.ctx.user, self.run_picker, self.bad_runs, self.header, self.notice,
                    self.hint_notice, self.rerun_box, top,
                    widgets.HBox([self.scatter, self.stack], layout=widgets.Layout(flex_flow="row wrap")),
                    self.detail_title, actions, self.download_notice, self.schedule_charts, detail, compare_box)

    # ---- runs ------------------------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Fill the run picker and open the workspace's current run (else the newest)."""
        metas = stored_runs(self.ctx, self.notice, self.bad_runs)
        if metas is None:
            return
        options = [(run_label(m) + f" · {m.get('ruleset', '?')}", m["run_id"]) for m in metas]
        self.run_picker.options = options
        self.other_run.options = [("—", ""), *options]
        if not metas:
            self.notice.info("No runs yet: start one in Run.")
            return
        wanted = self.ctx.workspace.get().get("last_run_id")
        ids = [m["run_id"] for m in metas]
        target = wanted if wanted in ids else ids[0]
        if self.run_picker.value == target and self.result is not None and self.result.run_id == target:
            return
        self.run_picker.value = target

    def open_run(self, run_id: str) -> RunResult | None:
        """Show a stored run: header, Top-N table, near misses, scatter; then its workspace rank (or rank 1)."""
        try:
            result = service.open_run(self.ctx.store, run_id, self.ctx.home)
            project = parse_project(result.meta["project"])
        except Phase1Error as error:
            self.notice.failure(f"open run {run_id}", error)
            return None
        self.result, self.project = result, project
        self._runs_cache[run_id] = result
        self._index = (result.frame["permutation_index"].to_numpy().astype(np.int64) if result.frame.height
                       else np.zeros(0, dtype=np.int64))
        m = result.meta
        self.notice.clear()
        self.header.value = (f'<div class="p1-muted"><b>{esc(project.title)}</b> · {m["evaluated"]:,} evaluated of '
                             f'{m["cardinality"]:,} · seed {m["seed"]} · ruleset {esc(m["ruleset"]["version"])}'
                             f"</div><div>{tier_counts_html(m['counts'])}</div>")
        self.table.set_columns(top_columns(project.currency))
        self.table.set_rows(result.top)
        ws = self.ctx.workspace.get()
        if ws.get("last_run_id") != run_id:
            self.ctx.workspace.update(last_run_id=run_id, rank=None)
            ws = {}
        self._show_near_misses()
        self._show_applied(ws.get("applied_hint"))
        if result.frame.height:
            self.scatter.show(result.frame, result.top, project.currency)
        else:
            self.scatter.clear()
        if not result.top:
            message = "No viable structure in this run"
            message += (": the best near misses are beside the Top-N, each with its hint." if self.near_misses
                        else ": widen the ranges in Permutations.")
            self._clear_detail(message)
            return result
        rank = ws.get("rank") if isinstance(ws.get("rank"), int) and 1 <= ws["rank"] <= len(result.top) else 1
        self.open_structure(result.top[rank - 1])
        return result

    def _clear_detail(self, message: str) -> None:
        self.selected = None
        for w in (self.terms, self.kpis, self.gates, self.stress, self.monte_carlo, self.lending, self.breakevens):
            w.value = ""
        self.schedule_charts.clear()
        self.stack.clear()
        self.scatter.select(None)
        self.detail_title.value = f'<div class="p1-muted">{esc(message)}</div>'
        self.download_button.disabled = self.compare_button.disabled = True
        self.download_link.clear()

    # ---- near misses -----------------------------------------------------------------------------------------
    def _show_near_misses(self) -> None:
        """The best near misses beside the Top-N when it is short of what the run asked."""
        assert self.result is not None and self.project is not None
        self.near_misses = []
        if nearmiss.wants_near_misses(self.result) and self.result.frame.height:
            self.near_misses = nearmiss.render_near_misses(self.result, self.project, self._ruleset())
        if not self.near_misses:
            self.near_box.layout.display = "none"
            self.near_box.children = [self.near_title]
            return
        asked, got = int(self.result.meta.get("topn") or 0), len(self.result.top)
        self.near_title.value = (f'<div class="p1-h2">Near misses</div><div class="p1-muted">{got} viable of the '
                                 f"Top-{asked} asked: the best {len(self.near_misses)} near misses (one check "
                                 "failed, within the band), each with the lever that fixes it.</div>")
        cards: list[widgets.Widget] = [self.near_title]
        for row in self.near_misses:
            card = widgets.HTML(near_miss_card(row, self.project.currency))
            apply = widgets.Button(description="Apply hint", icon="magic", button_style="warning",
                                   disabled=row.get("hint") is None, layout=widgets.Layout(width="120px"))
            apply.on_click(lambda _b, row=row, run=self.result: self.apply_hint(row, run))
            show = widgets.Button(description="Open", layout=widgets.Layout(width="70px"))
            show.on_click(lambda _b, row=row: self.open_structure(row))
            add = widgets.Button(description="Compare", icon="columns", layout=widgets.Layout(width="110px"))
            add.on_click(lambda _b, row=row: self.add_to_compare(row))
            box = widgets.VBox([card, widgets.HBox([apply, show, add])])
            box.add_class("p1-card")
            cards.append(box)
        self.near_box.children = cards
        self.near_box.layout.display = "flex"

    def apply_hint(self, near: int | Mapping[str, Any], run: RunResult | None = None) -> nearmiss.Outcome | None:
        """Load a near miss's hinted change (the row, or its position in :attr:`near_misses`) into Permutations
        (or the project) and show what it gives. ``run``: the run the row was shown for (a card's button); a
        card of a run no longer shown applies nothing."""
        assert self.result is not None and self.project is not None
        if run is not None and run is not self.result:
            self.hint_notice.warn("That near miss belongs to a run no longer shown: apply one of the cards now shown.")
            return None
        row = self.near_misses[near] if isinstance(near, int) else near
        hint: nearmiss.Hint | None = row.get("hint")
        if hint is None:
            self.hint_notice.warn("This near miss has no single-lever hint to apply.")
            return None
        meta = self.result.meta
        outcome = nearmiss.hint_outcome(self.project, row["structure"], hint, self._ruleset(), meta.get("seed"))
        ranges = nearmiss.hinted_ranges(meta, hint) if hint.target == "ranges" else dict(meta.get("ranges") or {})
        applied = {"from_run": self.result.run_id, "structure": row["structure"], "hint": hint.to_dict(),
                   "permutation_id": row["permutation_id"]}
        self.ctx.workspace.update(project=nearmiss.hinted_project(meta, hint), ranges=ranges, preset=None,
                                  ruleset=meta["ruleset"]["version"], sample=meta.get("sample"),
                                  applied_hint=applied)
        self.applied = applied
        where = "Permutations" if hint.target == "ranges" else "the project"
        self.hint_notice.markup("ok" if outcome.viable else "warn",
                                f"Applied to {esc(where)}: {esc(hint.text())} (the other keys as in this run; "
                                f"Permutations shows the ranges). {outcome.html(hint)}")
        self.rerun_box.layout.display = "flex"
        return outcome

    def _show_applied(self, applied: Mapping[str, Any] | None) -> None:
        """After a rerun: what the applied hint gave in this run (ranked, or the check it trips next)."""
        self.rerun_box.layout.display = "none"
        if not applied or self.result is None or self.project is None or applied.get("from_run") == self.result.run_id:
            if not applied:
                self.hint_notice.clear()
            else:
                self.rerun_box.layout.display = "flex"
            return
        hint = nearmiss.Hint.from_dict(applied["hint"])
        point = nearmiss.hinted_structure(applied["structure"], hint)
        ranked = nearmiss.find_in_top(self.result.top, point)
        counts = self.result.meta["counts"]
        viable = sum(counts.get(t, 0) for t in TIER_ORDER[:3])
        if ranked is not None:
            k = ranked["kpis"]
            self.hint_notice.ok(f"After {hint.text()}: {viable:,} viable structure(s); the hinted structure is rank "
                                f"{ranked['rank']} ({k['tier']}, day-one value "
                                f"{money(k['day_one_value'], self.project.currency)}).")
            return
        outcome = nearmiss.hint_outcome(self.project, applied["structure"], hint, self._ruleset(),
                                        self.result.meta.get("seed"))
        self.hint_notice.markup("ok" if viable else "warn", f"After {esc(hint.text())}: {viable:,} viable "
                                f"structure(s) in this run. {outcome.html(hint)}")

    def rerun(self) -> bool:
        """Run the workspace's project and ranges (the applied hint) now, then open the new run here."""
        if self.rerun_task.running:
            return False
        ws = self.ctx.workspace.get()
        try:
            project = parse_project(ws.get("project"))
        except Phase1Error as error:
            self.hint_notice.failure("rerun", error)
            return False
        meta = self.result.meta if self.result is not None else {}
        self.rerun_task.launch(self._rerun_work, project, ws.get("ranges") or {}, meta.get("seed"),
                               int(meta.get("topn") or 20), ws.get("sample"), ws.get("ruleset"), name="phase1-ui-rerun")
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a rerun ends (tests); True when none is running."""
        return self.rerun_task.wait(timeout)

    def _rerun_work(self, project: Project, ranges: dict[str, Any], seed: int | None, topn: int,
                    sample: int | None, ruleset: str | None) -> None:
        started = time.perf_counter()
        try:
            result = service.execute_run(self.ctx.store, project, ranges, seed=seed, topn=topn, sample=sample,
                                         progress=self.rerun_task.on_progress, cancel=self.rerun_task.cancel_event,
                                         home=self.ctx.home, ruleset=ruleset, actor=self.ctx.user)
        except RunCancelled:
            self.rerun_task.stopped("warning")
            self.hint_notice.warn(f"Rerun cancelled after {seconds(time.perf_counter() - started)}; nothing was saved.")
        except Exception as error:  # shown to the analyst; the thread must not die silently
            self.rerun_task.stopped("danger")
            self.hint_notice.failure("rerun", error)
        else:
            self.rerun_task.finished(f'<span class="p1-muted">Run {esc(result.run_id)} finished in '
                                     f"{seconds(time.perf_counter() - started)}</span>")
            self.ctx.workspace.update(last_run_id=result.run_id, rank=1 if result.top else None)
            on_kernel_loop(self.refresh_runs)  # the page's state changes where its clicks and hovers are handled

    # ---- one structure ---------------------------------------------------------------------------------------
    def open_rank(self, rank: int) -> None:
        """Open the structure of ``rank`` (1-based), as a click on its row does."""
        assert self.result is not None
        self.open_structure(self.result.top_row(rank))

    def open_index(self, permutation_index: int) -> dict[str, Any] | None:
        """Open any structure of the run by its permutation index (a click in the scatter)."""
        assert self.result is not None and self.project is not None
        row = next((r for r in [*self.result.top, *self.near_misses]
                    if int(r["permutation_index"]) == permutation_index), None)
        if row is None:
            frame_row = self._frame_row(permutation_index)
            if frame_row is None:
                return None
            point = structure_of(frame_row)
            rendered = evaluate_points(self.project, [point], self._ruleset(), self.result.meta.get("seed"))[0]
            row = {"rank": None, "permutation_index": permutation_index, "permutation_id": rendered["permutation_id"],
                   "structure": point, "kpis": rendered["kpis"]}
        self.open_structure(row)
        return row

    def _frame_row(self, permutation_index: int) -> dict[str, Any] | None:
        assert self.result is not None
        pos = int(np.searchsorted(self._index, permutation_index))
        if pos < len(self._index) and self._index[pos] == permutation_index:
            return self.result.frame.row(pos, named=True)
        hits = self.result.frame.filter(pl.col("permutation_index") == permutation_index)
        return hits.row(0, named=True) if hits.height else None

    def _describe(self, permutation_index: int) -> str:
        """Hover text of a scatter point: the structure's terms and key KPIs."""
        assert self.project is not None
        row = self._frame_row(permutation_index)
        if row is None:
            return ""
        structure = structure_of(row)
        if "permutation_id" not in row or row.get("permutation_id") is None:
            from ..engine.structure import permutation_id

            row = dict(row, permutation_id=permutation_id(structure))
        return tooltip_html({"structure": structure, "kpis": row, "permutation_id": row["permutation_id"]},
                            self.project.currency)

    def open_structure(self, row: dict[str, Any]) -> None:
        """Show one structure: its detail, schedule charts and capital stack (ranked or not)."""
        assert self.result is not None and self.project is not None
        self.selected = row
        self.table.select(row if row.get("rank") else None)
        self.download_link.clear()
        self.download_notice.clear()
        self.download_button.disabled = not row.get("rank")
        self.compare_button.disabled = False
        ccy = self.project.currency
        k = row["kpis"]
        where = f"Rank {row['rank']}" if row.get("rank") else ("Near miss" if k.get("near_miss") else "Not ranked")
        self.detail_title.value = (f'<div class="p1-h2">{where} · {tier_badge(k["tier"])} · '
                                   f'<code>{esc(row["permutation_id"])}</code> · day-one value '
                                   f'{money(k["day_one_value"], ccy)}</div>')
        self.terms.value = kv_table(terms_rows(row["structure"], k))
        self.kpis.value = kv_table(kpi_rows(k, ccy))
        priced = "breakeven_rent_cut" in k
        lending = lending_rows(self.project, self._ruleset(), k) if priced else []
        self.lending.value = kv_table(lending) if lending else ""
        self.breakevens.value = kv_table(breakeven_rows(k)) if priced else ""
        self.lending_box.layout.display = "flex" if lending else "none"
        self.breakeven_box.layout.display = "flex" if priced else "none"
        self.gates.value = gates_html(k)
        self.stress.value = stress_html(k)
        self.monte_carlo.value = kv_table(monte_carlo_rows(k))
        if row.get("rank"):
            self.ctx.workspace.update(rank=row["rank"])
        self._draw_structure(row)
        self.scatter.select(int(row["permutation_index"]))

    def _ruleset(self) -> Any:
        assert self.result is not None
        return service.run_ruleset(self.ctx.store, self.result.meta)

    def _draw_structure(self, row: Mapping[str, Any]) -> None:
        assert self.result is not None and self.project is not None
        ruleset = self._ruleset()
        closing = dt.date.fromisoformat(self.result.meta["closing_date"])
        self.schedule = schedule(self.project, row["structure"], ruleset, closing)
        d = derive(self.project, ruleset)
        floor = d.dscr_floor - (self.project.wrap_dscr_relief if row["structure"]["wrap"] else 0.0)
        ccy = self.project.currency
        self.schedule_charts.show(self.schedule, row["structure"]["senior_dscr"], floor, ccy)
        self.stack.show(row["kpis"], {"project_capex": d.project_capex, "upfront_fees": d.upfront_fees}, ccy)

    # ---- compare ---------------------------------------------------------------------------------------------
    def picks(self) -> list[compare.Pick]:
        return [compare.Pick.from_dict(p) for p in self.ctx.workspace.get().get("compare") or []]

    def add_to_compare(self, row: Mapping[str, Any], run_id: str | None = None) -> bool:
        """Add a structure of this run (or of ``run_id``) to the comparison (at most four)."""
        assert self.result is not None
        pick = compare.Pick(run_id or self.result.run_id, int(row["permutation_index"]))
        picks = self.picks()
        if pick in picks:
            self.compare_notice.info("Already in the comparison.")
            return False
        if len(picks) >= compare.MAX_PICKS:
            self.compare_notice.warn(f"At most {compare.MAX_PICKS} structures: remove one first.")
            return False
        self.set_compare([*picks, pick])
        return True

    def add_selected_to_compare(self) -> bool:
        if self.selected is None:
            self.compare_notice.error("Open a structure first.")
            return False
        return self.add_to_compare(self.selected)

    def _fill_other_structures(self, run_id: str | None) -> None:
        if not run_id:
            self.other_structure.options = []
            return
        try:
            result = self._runs_cache.get(run_id) or service.open_run(self.ctx.store, run_id, self.ctx.home)
        except Phase1Error as error:
            self.compare_notice.failure(f"open run {run_id}", error)
            return
        self._runs_cache[run_id] = result
        ccy = result.meta["project"].get("currency", "")
        options = [(f"#{r['rank']} · {r['kpis']['tier']} · {money(r['kpis']['day_one_value'], ccy, compact=True)}",
                    int(r["permutation_index"])) for r in result.top]
        if not options and result.frame.height:  # nothing viable: its near misses
            options = [(f"near miss · {money(r['day_one_value'], ccy, compact=True)}", int(r["permutation_index"]))
                       for r in nearmiss.near_miss_frame(result).to_dicts()]
        self.other_structure.options = options

    def add_other_to_compare(self) -> bool:
        run_id, index = self.other_run.value, self.other_structure.value
        if not run_id or index is None:
            self.compare_notice.error("Pick an earlier run and one of its structures.")
            return False
        return self.add_to_compare({"permutation_index": index}, run_id=run_id)

    def set_compare(self, picks: list[compare.Pick]) -> None:
        """Save the picks in the workspace and redraw the comparison."""
        self.ctx.workspace.update(compare=[p.to_dict() for p in picks] or None)
        self._draw_compare(picks)

    def _restore_compare(self) -> None:
        self._draw_compare(self.picks())

    def _draw_compare(self, picks: list[compare.Pick]) -> None:
        entries, problems = [], []
        for pick in picks:
            try:
                entries.append(compare.resolve(self.ctx.store, self.ctx.home, pick, self._runs_cache))
            except Exception as error:  # a pick saved from an older run never stops the page from building
                problems.append(f"{pick.run_id} #{pick.permutation_index}: {error}")
        self.compare_entries = entries
        chips: list[widgets.Widget] = []
        for i, entry in enumerate(entries):
            remove = widgets.Button(description=f"✕ {entry.label(i)}", tooltip="remove from the comparison",
                                    layout=widgets.Layout(width="auto", margin="0 6px 4px 0"))
            remove.on_click(lambda _b, pick=entry.pick: self.set_compare([p for p in self.picks() if p != pick]))
            remove.add_class("p1-chip")
            chips.append(remove)
        self.compare_picks.children = chips
        self.compare_table.value = compare.compare_html(entries)
        if len(entries) >= 2:
            self.overlay.show([(e.label(i), e.schedule) for i, e in enumerate(entries)])
            self.compare_row.children = [self.compare_table, self.overlay]
        else:
            self.compare_row.children = [self.compare_table]
        if problems:
            self.compare_notice.warn("Some picks cannot be shown:", problems)
        elif len(entries) == 1:
            self.compare_notice.info("One structure picked: add another to compare.")
        else:
            self.compare_notice.clear()

    # ---- term sheet ------------------------------------------------------------------------------------------
    def download(self) -> bytes | None:
        """Build the selected structure's term sheet and hand it to the browser as a download link."""
        if self.result is None or self.selected is None or not self.selected.get("rank"):
            self.download_notice.error("Open a ranked structure first (term sheets are for the Top-N).")
            return None
        rank = self.selected["rank"]
        try:
            content, filename, mime = service.export_term_sheet(self.ctx.store, self.result.run_id, rank, "xlsx",
                                                                home=self.ctx.home)
        except Phase1Error as error:
            self.download_notice.failure("build the term sheet", error)
            return None
        self.download_link.offer(content, filename, mime, f"Save {filename}")
        self.download_notice.ok(f"Term sheet of rank {rank} ready: click the link to save it.")
        return content

def securitisation_dashboard(ctx: AppContext | None = None) -> widgets.Widget:
    """The Securitisation page for Voila (``ctx`` defaults to the served context)."""
    return SecuritisationDashboard(ctx or AppContext.from_env(warm=SecuritisationDashboard)).widget

"""Run dashboard: seed and Top-N, a run in a background thread with a progress bar fed by the engine's chunk
progress, cancel, the summary (counts by tier, elapsed time, run_id) and the earlier runs to reopen.

The engine runs through ``service.execute_run`` (flags, canary ruleset, persistence, metrics), on a thread
so the page stays responsive; widget updates from that thread go to the browser as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from .. import service
from ..engine import RunCancelled, RunResult
from ..engine.runner import DEFAULT_SEED, DEFAULT_TOPN, default_workers
from ..errors import Phase1Error
from ..project import Project, validate_project
from ..ranges import parse_ranges
from .background import BackgroundTask
from .components import BadRecords, Notice, heading, kv_table, page
from .context import AppContext
from .format import TIER_ORDER, esc, number, seconds, tier_badge, timestamp
from .permutations import pinned_ruleset
from .portfolio import PortfolioSection


def tier_counts_html(counts: Mapping[str, int]) -> str:
    """Counts by tier as badges: 'Diamond 3  Gold 9 ...'."""
    return " ".join(f'{tier_badge(t)} <b>{number(counts.get(t, 0))}</b>&nbsp;' for t in TIER_ORDER)


def run_label(meta: Mapping[str, Any]) -> str:
    """One line per stored run for the reopen list."""
    counts = meta.get("counts") or {}
    viable = sum(counts.get(t, 0) for t in ("Diamond", "Gold", "Silver"))
    return (f"{timestamp(meta.get('created_at'))} · {meta.get('title', '?')} · {meta.get('evaluated', 0):,} "
            f"evaluated · {viable:,} viable · {meta.get('run_id')}")


def stored_runs(ctx: AppContext, notice: Notice, bad_runs: BadRecords) -> list[dict[str, Any]] | None:
    """The stored runs a run picker lists, newest first (the service's one catalogue); the ones that cannot be
    shown named in ``bad_runs``; None (with the reason in ``notice``) when the catalogue cannot be read."""
    try:
        metas, bad = service.run_catalogue(ctx.store, ctx.home, limit=200)
    except Phase1Error as error:
        notice.failure("list the stored runs", error)
        return None
    bad_runs.show(bad)
    return metas


class RunDashboard:
    """The Run page; ``widget`` is what Voila displays."""

    def __init__(self, ctx: AppContext, workers: int | None = None):
        self.ctx = ctx
        self.workers = workers or default_workers()
        self.seed = widgets.IntText(value=DEFAULT_SEED, description="Seed", layout=widgets.Layout(width="200px"))
        self.topn = widgets.BoundedIntText(value=DEFAULT_TOPN, min=1, max=1000, description="Top-N",
                                           layout=widgets.Layout(width="160px"))
        self.task = BackgroundTask("Run", self.start)
        self.run_button, self.cancel_button = self.task.run_button, self.task.cancel_button
        self.progress, self.progress_text = self.task.progress, self.task.progress_text
        self.inputs = widgets.HTML()
        self.notice = Notice()
        self.summary = widgets.HTML()
        self.runs = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="820px"))
        self.bad_runs = BadRecords()
        self.reopen_button = widgets.Button(description="Reopen", icon="folder-open",
                                            layout=widgets.Layout(width="110px"))
        self.reopen_button.on_click(lambda _b: self.reopen(self.runs.value))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh",
                                             layout=widgets.Layout(width="110px"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.portfolio = PortfolioSection(ctx, workers=self.workers)  # its own section (phase1lib.ui.portfolio)
        self.widget = self._layout()
        self.show_inputs()
        self.refresh_runs()

    def _layout(self) -> widgets.Widget:
        controls = widgets.HBox([self.seed, self.topn, self.run_button, self.cancel_button],
                                layout=widgets.Layout(align_items="center", grid_gap="8px"))
        bar = widgets.HBox([self.progress, self.progress_text], layout=widgets.Layout(align_items="center"))
        earlier = widgets.VBox([heading("Earlier runs"), self.runs, self.bad_runs,
                                widgets.HBox([self.reopen_button, self.refresh_button])])
        return page("Run", self.ctx.user, self.inputs, controls, bar, self.notice, heading("Summary"),
                    self.summary, earlier, self.portfolio.widget)

    # ---- inputs from the workspace ------------------------------------------------------------------------
    def plan(self) -> tuple[Project | None, dict[str, Any] | None, int | None, list[str]]:
        """(project, ranges, sample, problems) from the workspace."""
        ws = self.ctx.workspace.get()
        problems: list[str] = []
        project, errors = validate_project(ws["project"]) if ws.get("project") else (None, [])
        if project is None:
            problems.append("choose and validate a project in Projects" if not errors else
                            "the saved project is no longer valid: fix it in Projects")
        ranges = ws.get("ranges") if isinstance(ws.get("ranges"), dict) else None
        if ranges is None:
            problems.append("choose ranges or a preset in Permutations")
        sample = ws.get("sample") or None
        return project, ranges, sample, problems

    def show_inputs(self) -> None:
        """What a click on Run will evaluate."""
        project, ranges, sample, problems = self.plan()
        ws = self.ctx.workspace.get()
        rows = [("Project", esc(project.title) if project else "–")]
        if ranges is not None:
            try:
                pinned = pinned_ruleset(self.ctx)
                card = parse_ranges(ranges, project, service.ruleset_named(self.ctx.store, pinned)).cardinality
                what = f"preset {ws['preset']}" if ws.get("preset") else "custom ranges"
                rows.append(("Ranges", f"{esc(what)} · {card:,} permutations"))
                rows.append(("Ruleset", esc(pinned or "as the canary decides")))
                if sample:
                    rows.append(("Sample", f"{sample:,} drawn at random"))
            except Phase1Error as error:
                problems.append(f"the saved ranges are invalid ({error}): fix them in Permutations")
        self.inputs.value = kv_table(rows, numeric=False)
        self.run_button.disabled = bool(problems) or self.running
        if problems:
            self.notice.info("Before running: " + "; ".join(problems) + ".")

    # ---- running ---------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.task.running

    def start(self) -> bool:
        """Start the run on a background thread; False (with a message) when it cannot start."""
        if self.running:
            return False
        self.show_inputs()
        project, ranges, sample, problems = self.plan()
        if problems or project is None or ranges is None:
            self.notice.error("Cannot run yet: " + "; ".join(problems) + ".")
            return False
        self.result, self.error = None, None
        self.notice.info(f"Running {project.title}…")
        self.summary.value = ""
        self.task.launch(self._work, project, ranges, int(self.seed.value), int(self.topn.value), sample,
                         name="phase1-ui-run")
        return True

    def cancel(self) -> None:
        """Ask the engine to stop at the next chunk."""
        self.task.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run ends (tests, notebooks); True when it has ended."""
        return self.task.wait(timeout)

    def _work(self, project: Project, ranges: dict[str, Any], seed: int, topn: int, sample: int | None) -> None:
        started = time.perf_counter()
        try:
            result = service.execute_run(self.ctx.store, project, ranges, seed=seed, topn=topn, sample=sample,
                                         workers=self.workers, progress=self.task.on_progress,
                                         cancel=self.task.cancel_event,
                                         home=self.ctx.home, ruleset=pinned_ruleset(self.ctx), actor=self.ctx.user)
        except RunCancelled:
            self.task.stopped("warning")
            self.notice.warn(f"Run cancelled after {seconds(time.perf_counter() - started)}; nothing was saved.")
        except Exception as error:  # shown to the analyst; the thread must not die silently
            self.error = error
            self.task.stopped("danger")
            self.notice.failure("run", error)
        else:
            self.result = result
            n = result.meta["evaluated"]
            self.task.finished(f"{n:,} / {n:,} permutations (100%)")
            self.ctx.workspace.update(last_run_id=result.run_id, rank=1 if result.top else None)
            self.show_summary(result)
            self.notice.ok(f"Run {result.run_id} finished: open Securitisation for the Top-{len(result.top)}.")
            self.refresh_runs()

    # ---- results ---------------------------------------------------------------------------------------------
    def show_summary(self, result: RunResult) -> None:
        """Counts by tier, elapsed time, run_id, seed and ruleset of a run."""
        m = result.meta
        rows = [("Run", f"<code>{esc(result.run_id)}</code>"), ("Project", esc(m["project"]["title"])),
                ("Evaluated", f"{m['evaluated']:,} of {m['cardinality']:,} permutations"),
                ("By tier", tier_counts_html(m["counts"])), ("Top-N", f"{len(result.top)} ranked"),
                ("Elapsed", seconds(m["timings"]["engine_s"])), ("Seed", str(m["seed"])),
                ("Ruleset", esc(m["ruleset"]["version"])), ("Created", timestamp(m["created_at"]))]
        link = '<a href="Securitisation.ipynb">Open the Top-N in Securitisation →</a>'
        table = kv_table(rows, "p1-kv p1-summary", numeric=False)
        self.summary.value = f'{table}<div style="margin-top:4px">{link}</div>'

    def refresh(self) -> None:
        """Re-read the workspace (another dashboard may have changed it) and the stored runs."""
        self.show_inputs()
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """List the stored runs, newest first; name the ones that cannot be shown."""
        metas = stored_runs(self.ctx, self.notice, self.bad_runs)
        if metas is None:
            return
        self.runs.options = [(run_label(m), m["run_id"]) for m in metas]
        if metas and self.runs.value is None:
            self.runs.value = metas[0]["run_id"]

    def reopen(self, run_id: str | None) -> RunResult | None:
        """Show an earlier run and make it the workspace's current run (for Securitisation)."""
        if not run_id:
            self.notice.error("Pick a run in the list first.")
            return None
        try:
            result = service.open_run(self.ctx.store, run_id, self.ctx.home, frame=False)
        except Phase1Error as error:
            self.notice.failure(f"reopen run {run_id}", error)
            return None
        self.result = result
        self.ctx.workspace.update(last_run_id=run_id, rank=1 if result.top else None)
        self.show_summary(result)
        self.notice.ok(f"Reopened run {run_id}: Securitisation now shows it.")
        return result


def run_dashboard(ctx: AppContext | None = None) -> widgets.Widget:
    """The Run page for Voila (``ctx`` defaults to the served context)."""
    return RunDashboard(ctx or AppContext.from_env(warm=RunDashboard)).widget


"""The Portfolio section of the Run dashboard: pick projects (the samples and the workspace's), a preset, seed and
Top-N; run them all in a background thread through ``service.execute_portfolio`` (on the Dask cluster when the
server's PHASE1_DASK_SCHEDULER names one); progress across projects, the summary table and each run to open.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from .. import service
from ..defaults import DEFAULT_SEED, DEFAULT_TOPN
from ..engine import RunCancelled
from ..portfolio import Portfolio, PortfolioResult, parse_portfolio, scheduler_address
from ..presets import preset_names, preset_ruleset
from ..project import validate_project
from ..samples import project_samples
from .background import BackgroundTask
from .components import Notice, grid_table, heading
from .context import AppContext
from .format import esc, money, number, tier_badge
from .permutations import pinned_ruleset, ruleset_options

WORKSPACE = "workspace"


def project_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, key) of the projects to pick: the workspace's validated project, then the sample files."""
    choices = []
    ws = ctx.workspace.get()
    if ws.get("project"):
        project, errors = validate_project(ws["project"])
        if project is not None and not errors:
            choices.append((f"{project.title} (workspace)", WORKSPACE))
    choices.extend((title, str(path)) for title, path in project_samples().items())
    return choices


def offered_presets(ctx: AppContext) -> list[str]:
    """The presets a dashboard offers: those written for any ruleset, and those written for a ruleset the
    dashboards offer now (a v2 preset only while the canary rolls v2 out, D45)."""
    offered = {version for _label, version in ruleset_options(ctx) if version}
    return [name for name in preset_names() if preset_ruleset(name) in (None, *offered)]


def summary_table(result: PortfolioResult) -> str:
    """One row per project: title, tiers, financeable, best day-one value and equity, run_id; then totals."""
    rows = []
    for line in result.summary["projects"]:
        best = line["best"] or {}
        tiers = " ".join(f"{tier_badge(t)} {number(n)}" for t, n in line["counts"].items() if n)
        rows.append([esc(line["title"]), tiers, "yes" if line["financeable"] else "no",
                     money(best.get("day_one_value"), line["currency"], compact=True),
                     money(best.get("equity_required"), line["currency"], compact=True),
                     f"<code>{esc(line['run_id'])}</code>"])
    for currency, t in result.summary["totals"]["financeable_by_currency"].items():
        rows.append([f"<b>Total {esc(currency)}</b> ({t['projects']} financeable)", "", "",
                     f"<b>{money(t['day_one_value'], currency, compact=True)}</b>",
                     f"<b>{money(t['equity_required'], currency, compact=True)}</b>", ""])
    return grid_table(["Project", "By tier", "Financeable", "Best day-one value", "Equity required", "Run"], rows,
                      left=(0, 1, 5))


class PortfolioSection:
    """The section widget (``widget``), embedded in the Run page."""

    def __init__(self, ctx: AppContext, workers: int = 1):
        self.ctx = ctx
        self.workers = workers
        self.projects = widgets.SelectMultiple(options=[], rows=6, description="Projects",
                                               layout=widgets.Layout(width="520px"))
        self.preset = widgets.Dropdown(options=offered_presets(ctx), value="current_1920", description="Preset",
                                       layout=widgets.Layout(width="300px"))
        self.seed = widgets.IntText(value=DEFAULT_SEED, description="Seed", layout=widgets.Layout(width="200px"))
        self.topn = widgets.BoundedIntText(value=DEFAULT_TOPN, min=1, max=1000, description="Top-N",
                                           layout=widgets.Layout(width="160px"))
        self.task = BackgroundTask("Run portfolio", self.start, width="150px")
        self.run_button, self.cancel_button = self.task.run_button, self.task.cancel_button
        self.progress, self.progress_text = self.task.progress, self.task.progress_text
        self.where = widgets.HTML()
        self.notice = Notice()
        self.summary = widgets.HTML()
        self.runs = widgets.Dropdown(options=[], description="Run", layout=widgets.Layout(width="520px"))
        self.open_button = widgets.Button(description="Open", icon="folder-open", disabled=True,
                                          layout=widgets.Layout(width="110px"))
        self.open_button.on_click(lambda _b: self.open_run(self.runs.value))
        self.link = widgets.HTML()
        self.result: PortfolioResult | None = None
        self.error: BaseException | None = None
        self.widget = widgets.VBox([
            heading("Portfolio"), self.projects,
            widgets.HBox([self.preset, self.seed, self.topn, self.run_button, self.cancel_button],
                         layout=widgets.Layout(align_items="center", grid_gap="8px")),
            widgets.HBox([self.progress, self.progress_text], layout=widgets.Layout(align_items="center")),
            self.where, self.notice, self.summary,
            widgets.HBox([self.runs, self.open_button], layout=widgets.Layout(align_items="center")), self.link])
        self.refresh()

    def refresh(self) -> None:
        """Re-read the projects to offer and where the chunks will run."""
        self.projects.options = project_choices(self.ctx)
        try:
            address = scheduler_address()
        except Exception as error:  # a bad PHASE1_DASK_SCHEDULER is shown, not raised
            self.where.value = f'<span class="p1-muted">Scheduler: {esc(error)}</span>'
            return
        self.where.value = (f'<span class="p1-muted">Runs on the Dask cluster at {esc(address)}</span>' if address
                            else '<span class="p1-muted">Runs on this machine (no PHASE1_DASK_SCHEDULER)</span>')

    def portfolio(self) -> Portfolio:
        """The portfolio of the chosen projects and options (InputError naming each problem)."""
        entries: list[Any] = []
        for key in self.projects.value:
            entries.append({"project": self.ctx.workspace.get()["project"]} if key == WORKSPACE else key)
        defaults = {"preset": self.preset.value, "seed": int(self.seed.value), "topn": int(self.topn.value),
                    "ruleset": pinned_ruleset(self.ctx)}  # in the dashboards the canary decides (D44)
        return parse_portfolio({"defaults": {k: v for k, v in defaults.items() if v is not None},
                                "projects": entries}, base="/", source="dashboard", strict=False)

    @property
    def running(self) -> bool:
        return self.task.running

    def start(self) -> bool:
        """Start the portfolio on a background thread; False (with a message) when it cannot start."""
        if self.running:
            return False
        if not self.projects.value:
            self.notice.error("Pick one or more projects first.")
            return False
        try:
            portfolio = self.portfolio()
        except Exception as error:  # shown to the analyst
            self.notice.failure("build the portfolio", error)
            return False
        self.result, self.error = None, None
        self.summary.value, self.link.value = "", ""
        self.notice.info(f"Running {len(self.projects.value)} projects…")
        self.task.launch(self._work, portfolio, name="phase1-ui-portfolio")
        return True

    def cancel(self) -> None:
        self.task.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current portfolio ends (tests, notebooks); True when it has ended."""
        return self.task.wait(timeout)

    def _work(self, portfolio: Portfolio) -> None:
        try:
            result = service.execute_portfolio(self.ctx.store, portfolio, workers=self.workers,
                                               progress=self.task.on_progress, cancel=self.task.cancel_event,
                                               home=self.ctx.home,
                                               actor=self.ctx.user)
        except RunCancelled:
            self.task.stopped("warning")
            self.notice.warn("Portfolio cancelled; the runs finished before it are stored.")
        except Exception as error:  # shown to the analyst; the thread must not die silently
            self.error = error
            self.task.stopped("danger")
            self.notice.failure("run the portfolio", error)
        else:
            self.show(result)

    def show(self, result: PortfolioResult) -> None:
        """The summary table and the runs to open."""
        self.result = result
        totals = result.summary["totals"]
        self.task.finished(f"{totals['evaluated']:,} permutations (100%)")
        self.summary.value = summary_table(result)
        self.runs.options = [(f"{r.meta['project']['title']} · {r.run_id}", r.run_id) for r in result.runs]
        self.open_button.disabled = not result.runs
        self.notice.ok(f"Portfolio {result.portfolio_id}: {totals['financeable']} of {totals['projects']} projects "
                       "financeable.")

    def open_run(self, run_id: str | None) -> None:
        """Make a run of the portfolio the workspace's current run and link to Securitisation."""
        if not run_id or self.result is None:
            return
        run = next(r for r in self.result.runs if r.run_id == run_id)
        self.ctx.workspace.update(last_run_id=run_id, rank=1 if run.top else None)
        self.link.value = (f'Run <code>{esc(run_id)}</code> is the current run: '
                           '<a href="Securitisation.ipynb">open its Top-N in Securitisation →</a>')


def portfolio_section(ctx: AppContext | None = None) -> widgets.Widget:
    """The Portfolio section for a notebook or the Run page (``ctx`` defaults to the served context)."""
    return PortfolioSection(ctx or AppContext.from_env()).widget

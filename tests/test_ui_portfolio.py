"""The Portfolio section of the Run dashboard: projects to pick, a background portfolio with progress, the summary
table (numbers from the runs), each run opened for Securitisation, errors shown."""

from __future__ import annotations

from pathlib import Path

from samples import sample
from ui_helpers import make_context

from phase1lib.ui import RunDashboard
from phase1lib.ui.components import plain_text as text
from phase1lib.ui.format import money
from phase1lib.ui.portfolio import WORKSPACE, PortfolioSection


def test_the_run_page_embeds_the_portfolio_section(tmp_path: Path) -> None:
    dash = RunDashboard(make_context(tmp_path), workers=1)
    assert dash.portfolio.widget in dash.widget.children
    labels = [label for label, _ in dash.portfolio.projects.options]
    assert {"London DC Alpha", "Frankfurt DC Beta", "Ashburn DC Gamma"} <= set(labels)
    assert "this machine" in text(dash.portfolio.where.value)


def test_a_portfolio_runs_and_shows_its_summary(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.workspace.update(project=sample("ashburn_dc_gamma").to_dict())
    section = PortfolioSection(ctx)
    assert not section.start() and "Pick one or more projects" in section.notice.text
    keys = dict((label, key) for label, key in section.projects.options)
    assert keys["Ashburn DC Gamma (workspace)"] == WORKSPACE
    section.projects.value = (keys["London DC Alpha"], WORKSPACE)
    section.topn.value = 5
    assert section.start()
    assert section.wait(120) and section.error is None, section.notice.text
    result = section.result
    assert result is not None and section.progress.value == 1.0 and section.progress.bar_style == "success"
    shown = text(section.summary.value)
    for run, line in zip(result.runs, result.summary["projects"], strict=True):
        assert run.run_id in shown and line["title"] in shown
        assert money(run.top[0]["kpis"]["day_one_value"], line["currency"], compact=True) in shown
        assert len(run.top) == 5
    assert "Total GBP" in shown and "Total USD" in shown
    section.open_run(result.runs[1].run_id)
    assert ctx.workspace.get()["last_run_id"] == result.runs[1].run_id
    assert "Securitisation" in section.link.value


def test_bad_inputs_are_shown_not_raised(tmp_path: Path, monkeypatch) -> None:
    ctx = make_context(tmp_path)
    section = PortfolioSection(ctx)
    section.projects.value = (section.projects.options[0][1],)
    monkeypatch.setenv("PHASE1_MAX_PORTFOLIO_PERMUTATIONS", "100")
    assert section.start() and section.wait(60)
    assert section.notice.kind == "error" and "1,920" in section.notice.text and "100" in section.notice.text
    monkeypatch.setenv("PHASE1_DASK_SCHEDULER", "nowhere")
    section.refresh()
    assert "tcp://HOST:PORT" in text(section.where.value)

"""The analyst's whole flow through the dashboards, driven by plain pytest (no browser): validate the London
sample, pick current_1920, run to 100 %, read the Top-N with tiers, open rank 1, download its term sheet
through the widget connection, and as admin move the canary and roll it back."""

from __future__ import annotations

import io
from pathlib import Path

from ui_helpers import ADMIN, candidate_ruleset, make_context

from phase1lib import ops
from phase1lib.ui import (
    OpsMonitorDashboard,
    PermutationsDashboard,
    ProjectsDashboard,
    RunDashboard,
    SecuritisationDashboard,
)
from phase1lib.ui.format import TIER_ORDER


def test_whole_analyst_flow(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)

    # Projects: the London sample, one click; valid; derived preview; handed over.
    projects = ProjectsDashboard(ctx)
    projects.load_sample("London DC Alpha")
    assert projects.project is not None and projects.errors == {}
    assert "Funding need" in projects.preview.value and "£415,240,250" in projects.preview.value
    projects.use_button.click()
    assert projects.notice.kind == "ok"
    assert ctx.workspace.get()["project"]["title"] == "London DC Alpha"

    # Permutations: preset current_1920 -> 1,920 permutations within the guardrail.
    perms = PermutationsDashboard(ctx)
    assert perms.project is not None and perms.project.title == "London DC Alpha"
    perms.choose_preset("current_1920")
    assert perms.grid is not None and perms.grid.cardinality == 1920
    assert "1,920" in perms.cardinality.value and perms.guardrail.kind == "ok"
    perms.use_button.click()
    assert ctx.workspace.get()["preset"] == "current_1920"

    # Run: the progress bar reaches 100 % and the summary shows the tiers and the run_id.
    run = RunDashboard(ctx, workers=1)
    seen: list[float] = []
    run.progress.observe(lambda ch: seen.append(ch["new"]), names="value")
    assert not run.run_button.disabled
    run.run_button.click()
    assert run.wait(120)
    assert run.result is not None, run.notice.text
    assert run.progress.value == 1.0 and run.progress.bar_style == "success"
    assert "(100%)" in run.progress_text.value and seen == sorted(seen) and seen[-1] == 1.0
    assert run.result.run_id in run.summary.value and "Diamond" in run.summary.value
    assert run.result.run_id in [value for _label, value in run.runs.options]
    assert ctx.workspace.get()["last_run_id"] == run.result.run_id

    # Securitisation: Top-N with tier badges, sorted by a header click, rank 1 opened.
    sec = SecuritisationDashboard(ctx)
    assert sec.result is not None and sec.result.run_id == run.result.run_id
    rows = sec.table.rows
    assert len(rows) == len(run.result.top) > 0
    assert all(r["kpis"]["tier"] in TIER_ORDER[:3] for r in rows)
    assert sec.table.cell_text(0, "tier") in TIER_ORDER
    assert "p1-tier-" in sec.table.cell_html(0, "tier")
    assert sec.table.cell_text(0, "day_one_value").startswith("£")
    assert sec.table.cell_text(0, "min_dscr").endswith("x") and sec.table.cell_text(0, "wacd").endswith("%")
    sec.table.header[[c.key for c in sec.table.columns].index("min_dscr")].click()
    dscrs = [r["kpis"]["min_dscr"] for r in sec.table.rows]
    assert dscrs == sorted(dscrs)
    sec.open_rank(1)
    assert sec.selected is not None and sec.selected["rank"] == 1
    assert "Rank 1" in sec.detail_title.value
    # interactive charts (bqplot): every structure drawn (1,920 is below the decimation threshold), rank 1 marked
    data = sec.scatter.data
    assert data["total"] == 1920 and data["points"] == 1920 and not data["decimated"]
    assert len(sec.scatter.rings.x) == len(run.result.top) and len(sec.scatter.star.x) == 1
    assert sec.schedule_charts.data["periods"] > 0 and len(sec.schedule_charts.dscr_line.x) > 0
    assert sec.stack.data["Senior"] == sec.selected["kpis"]["senior_amount"]
    assert "Gate A (feasibility): passed" in sec.gates.value and "Senior min DSCR" in sec.stress.value
    assert "Breach probability" in sec.monte_carlo.value

    # Download term sheet: bytes through the widget (a data URL), read back with openpyxl.
    sec.download_button.click()
    assert sec.download_notice.kind == "ok", sec.download_notice.text
    content, filename, mime = sec.download_link.payload()
    assert filename == f"phase1-{run.result.run_id}-rank1.xlsx" and mime.endswith("spreadsheetml.sheet")
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(content))
    assert book.sheetnames
    assert not list(tmp_path.glob("**/*.xlsx")), "the term sheet must not be written to disk"

    # Ops Monitor: the admin moves the canary and rolls it back; the audit trail names them.
    ops.register_candidate(ctx.store, candidate_ruleset(), ADMIN)
    monitor = OpsMonitorDashboard(ctx)
    assert monitor.problem is None and "GO" in monitor.decision.value
    monitor.canary_slider.value = 10
    monitor.canary_reason.value = "first slice"
    monitor.canary_button.click()
    assert monitor.notice.kind == "ok", monitor.notice.text
    assert ops.get_canary(ctx.store)["percentage"] == 10 and ops.get_canary(ctx.store)["state"] == "EXPANDING"
    monitor.rollback_reason.value = "error rate up"
    monitor.rollback_button.click()
    assert monitor.notice.kind == "ok", monitor.notice.text
    canary = ops.get_canary(ctx.store)
    assert canary["state"] == "ROLLED_BACK" and canary["percentage"] == 0 and canary["updated_by"] == ADMIN
    assert "canary.rollback" in monitor.audit.value and ADMIN in monitor.audit.value
    assert run.result.run_id in monitor.runs.value

"""Ruleset v2 in the dashboards: a market-coupon preset chooses v2 in Permutations, Run runs under it (and the
choice is audited), Securitisation shows the coupon used against the market, the lending value and the
breakevens of the selected structure."""

from __future__ import annotations

from pathlib import Path

from samples import sample
from ui_helpers import ADMIN, make_context

from phase1lib import ops
from phase1lib.project import derive
from phase1lib.ruleset import load_ruleset
from phase1lib.ui import PermutationsDashboard, ProjectsDashboard, RunDashboard, SecuritisationDashboard
from phase1lib.ui.format import money, pct


def test_v2_preset_run_and_securitisation(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ops.register_candidate(ctx.store, ops.shipped_candidate("v2"), ADMIN)  # the dashboards offer a live candidate
    ops.update_canary(ctx.store, 10, "first slice", ADMIN)
    projects = ProjectsDashboard(ctx)
    projects.load_sample("Frankfurt DC Beta")
    assert "Lending value (v2)" in projects.preview.value
    projects.use_button.click()

    perms = PermutationsDashboard(ctx)
    perms.choose_preset("market_1920")
    assert perms.ruleset.value == "v2" and perms.grid is not None and perms.grid.cardinality == 1920
    assert "market" in perms.editors["senior_coupon"].message.value
    perms.use_button.click()
    assert ctx.workspace.get()["ruleset"] == "v2"

    run = RunDashboard(ctx, workers=1)
    run.run_button.click()
    assert run.wait(120) and run.result is not None, run.notice.text
    assert run.result.meta["ruleset"]["version"] == "v2"
    audit = ctx.store.list_audit(5)
    assert audit[0]["action"] == "run.ruleset" and audit[0]["actor"] == ADMIN and audit[0]["new"] == "v2"

    sec = SecuritisationDashboard(ctx)
    sec.open_rank(1)
    k = sec.selected["kpis"]
    assert sec.table.cell_text(0, "senior_coupon") == f"{pct(k['senior_coupon'])} mkt"
    project = sec.project
    d = derive(project, load_ruleset("v2"))
    assert money(d.lending_value, project.currency) in sec.lending.value
    assert sec.breakeven_box.layout.display == "flex"
    assert pct(k["breakeven_rent_cut"], 1) in sec.breakevens.value and pct(k["breakeven_cpi"]) in sec.breakevens.value
    assert f"market: {pct(k['senior_coupon'])}" in sec.terms.value


def test_a_rollback_takes_the_candidate_out_of_every_dashboard(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ops.register_candidate(ctx.store, ops.shipped_candidate("v2"), ADMIN)
    ops.update_canary(ctx.store, 25, "slice", ADMIN)
    ctx.workspace.update(project=sample("slough_dc_delta").to_dict())
    perms = PermutationsDashboard(ctx)
    assert "v2" in [v for _label, v in perms.ruleset.options]
    perms.ruleset.value = "v2"
    perms.choose_preset("current_1920")
    perms.use_button.click()
    assert ctx.workspace.get()["ruleset"] == "v2"
    ops.rollback(ctx.store, 0, "emergency", ADMIN)
    assert [v for _label, v in PermutationsDashboard(ctx).ruleset.options] == ["", "v1"]
    run = RunDashboard(ctx, workers=1)
    assert "as the canary decides" in run.inputs.value  # the pinned v2 no longer applies
    run.run_button.click()
    assert run.wait(120) and run.result is not None and run.result.meta["ruleset"]["version"] == "v1"

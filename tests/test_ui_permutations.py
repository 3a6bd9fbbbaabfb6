"""Permutations dashboard: presets, per-key editors, live cardinality, the guardrail warning, the sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from samples import sample
from ui_helpers import make_context

from phase1lib import ops
from phase1lib.presets import preset_names, preset_ranges, preset_ruleset
from phase1lib.ranges import KEYS, parse_ranges
from phase1lib.ruleset import load_ruleset
from phase1lib.ui import PermutationsDashboard
from phase1lib.ui.components import plain_text as text
from phase1lib.ui.permutations import parse_token, values_summary


@pytest.fixture
def dash(tmp_path: Path) -> PermutationsDashboard:
    ctx = make_context(tmp_path)
    ctx.workspace.update(project=sample().to_dict())
    return PermutationsDashboard(ctx)


def test_an_editor_for_every_range_key(dash: PermutationsDashboard) -> None:
    assert list(dash.editors) == list(KEYS)
    assert dash.editors["senior_tenor"].list_text.placeholder == "required"
    assert "project's 9.00%" in dash.editors["mezz_coupon"].default_text
    assert "3 keys to fix" in text(dash.cardinality.value)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_fills_the_editors_with_the_same_grid(dash: PermutationsDashboard, name: str) -> None:
    written_for = preset_ruleset(name)
    if written_for:  # a v2 preset: the dashboards offer v2 only while the canary rolls it out
        ops.register_candidate(dash.ctx.store, ops.shipped_candidate(written_for), "alice.admin")
        ops.update_canary(dash.ctx.store, 10, "slice", "alice.admin")
        dash = PermutationsDashboard(dash.ctx)
    dash.choose_preset(name)
    expected = parse_ranges(preset_ranges(name), dash.project, load_ruleset(written_for) if written_for else None)
    assert dash.grid is not None and dash.grid.to_dict() == expected.to_dict()
    assert dash.ruleset.value == (written_for or "")  # a v2 preset chooses v2
    assert f"{expected.cardinality:,}" in text(dash.cardinality.value)
    assert dash.preset_text.value


def test_current_1920_is_within_the_guardrail_and_saved_as_the_preset(dash: PermutationsDashboard) -> None:
    dash.choose_preset("current_1920")
    assert dash.guardrail.kind == "ok" and "4 × 10 × 6 × 2 × 4" in text(dash.cardinality.value)
    assert "10 values: 4.00% … 6.25%" in text(dash.editors["senior_coupon"].message.value)
    assert dash.use()
    ws = dash.ctx.workspace.get()
    assert ws["preset"] == "current_1920" and "sample" not in ws
    dash.editors["senior_tenor"].list_text.value = "10, 12"
    assert dash.use() and "preset" not in dash.ctx.workspace.get()


def test_errors_are_named_beside_their_key(dash: PermutationsDashboard) -> None:
    dash.choose_preset("current_1920")
    dash.editors["zcis_tenor_years"].list_text.value = "3, 40"
    assert "0 .. lease_years - 1 = 24" in text(dash.editors["zcis_tenor_years"].message.value)
    assert dash.grid is None and "1 key to fix" in text(dash.cardinality.value)
    assert not dash.use() and dash.notice.kind == "error"
    coupon = dash.editors["senior_coupon"]
    coupon.bounds[2].value = ""
    assert "fill in min, max and step" in text(coupon.message.value)
    coupon.bounds[2].value = "-0.01"
    assert "step must be > 0" in text(coupon.message.value)


def test_guardrail_warning_and_the_sample_option(dash: PermutationsDashboard) -> None:
    dash.choose_preset("maximum_250k")
    dash.editors["senior_coupon"].bounds[2].value = "0.0005"
    assert dash.grid is not None and dash.grid.cardinality > 250_000
    assert dash.guardrail.kind == "warn" and "exceed the guardrail of 250,000" in dash.guardrail.text
    assert not dash.use() and "guardrail" in dash.notice.text
    dash.sample_on.value = True
    dash.sample_size.value = 5000
    assert dash.guardrail.kind == "info" and "5,000" in dash.guardrail.text
    assert dash.use() and dash.ctx.workspace.get()["sample"] == 5000


def test_list_and_range_modes_and_choices_keep_their_order(dash: PermutationsDashboard) -> None:
    dash.fill({"senior_tenor": 20, "senior_coupon_pct": [0.05], "min_dscr_senior": {"min": 1.3, "max": 1.4,
                                                                                      "step": 0.05},
               "senior_amort": ["level", "sculpted"], "wrap": [True, False]})
    assert dash.editors["senior_dscr"].mode.value == "range"
    assert dash.request()["senior_amort"] == ["level", "sculpted"]
    assert dash.grid is not None and dash.grid.values["senior_amort"] == ("level", "sculpted")
    assert dash.grid.values["wrap"] == (True, False) and dash.grid.cardinality == 12
    dash.editors["senior_coupon"].list_text.value = "4%, 4.5%"
    assert dash.grid is not None and dash.grid.values["senior_coupon"] == (0.04, 0.045)
    assert parse_token("4%", "senior_tenor") == "4%" and parse_token("10", "senior_tenor") == 10
    assert values_summary("senior_dscr", (1.2, 1.25)) == "2 values: 1.20x, 1.25x"


def test_without_a_project_ranges_are_still_checked(tmp_path: Path) -> None:
    dash = PermutationsDashboard(make_context(tmp_path))
    assert dash.project is None
    dash.choose_preset("current_1920")
    assert dash.grid is not None and dash.grid.cardinality == 1920


def test_an_edited_preset_is_custom_and_choosing_it_again_resets(dash: PermutationsDashboard) -> None:
    dash.choose_preset("current_1920")
    assert dash.grid is not None and dash.grid.cardinality == 1920
    dash.editors["senior_tenor"].list_text.value = "10, 12"
    assert dash.preset.value == "" and "Edited from preset current_1920" in dash.preset_text.value
    assert dash.grid.cardinality != 1920
    dash.choose_preset("current_1920")  # the same preset again: its ranges come back
    assert dash.preset.value == "current_1920" and dash.grid.cardinality == 1920
    assert dash.use() and dash.ctx.workspace.get()["preset"] == "current_1920"
    dash.clear()
    assert dash.preset.value == "" and dash.grid is None and dash.request() == {}

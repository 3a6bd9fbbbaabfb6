"""Securitisation (issue 15): near misses beside a short Top-N with their failed check, value, threshold and
hint; "apply" loads the hint into Permutations and one click reruns; the scatter's hover, click and decimation;
Compare across runs and rulesets; every text escaped. Values are checked against the scalar reference."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import reference
from samples import sample
from server_fixtures import GUIDE_RANGES
from ui_helpers import make_context

from phase1lib import service
from phase1lib.presets import preset_ranges
from phase1lib.ruleset import load_ruleset
from phase1lib.ui import PermutationsDashboard, SecuritisationDashboard, charts, nearmiss
from phase1lib.ui.compare import differing_rows
from phase1lib.ui.components import plain_text
from phase1lib.ui.format import TIER_ORDER, pct, ratio

HOSTILE = "<img src=x onerror=alert(1)> =HYPERLINK(\"http://x\")"


def _dashboard(tmp_path: Path, project, ranges, **kwargs) -> SecuritisationDashboard:
    ctx = make_context(tmp_path)
    result = service.execute_run(ctx.store, project, ranges, home=tmp_path, **kwargs)
    ctx.workspace.update(last_run_id=result.run_id)
    return SecuritisationDashboard(ctx)


def _failures(project, structure, ruleset=None) -> list[dict]:
    k = reference.evaluate(project, structure, ruleset)["kpis"]
    return k["gate_a"] + k["gate_b"]


# ---- near misses on London, the operations guide's own ranges ----------------------------------------------


@pytest.fixture
def london(tmp_path: Path) -> SecuritisationDashboard:
    """A fresh page per test (a test that applies a hint and reruns changes its workspace and run)."""
    home = tmp_path / "london"
    home.mkdir()
    return _dashboard(home, sample("london_dc_alpha"), GUIDE_RANGES)


def test_a_run_without_viable_structures_shows_its_best_near_misses(london: SecuritisationDashboard) -> None:
    result = london.result
    assert result is not None and result.top == [] and result.meta["counts"]["Bronze"] == 5
    assert len(london.near_misses) == 5 and london.near_box.layout.display == "flex"
    values = [r["kpis"]["day_one_value"] for r in london.near_misses]
    assert values == sorted(values, reverse=True)  # the best first
    texts = [plain_text(c.children[0].value) for c in london.near_box.children[1:]]
    for row, text in zip(london.near_misses, texts, strict=True):
        assert row["kpis"]["tier"] == "Bronze"
        failed = _failures(london.project, row["structure"])
        assert len(failed) == 1  # a near miss fails exactly one check
        f = failed[0]
        shown = nearmiss.check_value_text(f["check"], f["value"]), nearmiss.check_value_text(f["check"], f["threshold"])
        assert f"Fails {f['check']} {shown[0]} vs {shown[1]}" in text, text
        frame_row = result.frame.filter(pl.col("permutation_index") == row["permutation_index"]).row(0, named=True)
        hint = nearmiss.hint_of(frame_row, row["structure"])
        assert hint is not None and f"Hint: {hint.text()}" in text
    assert "No viable structure in this run: the best near misses" in london.detail_title.value


def test_london_hints_say_plainly_which_check_the_change_trips_next(london: SecuritisationDashboard,
                                                                    tmp_path: Path) -> None:
    project = london.project
    i = next(i for i, r in enumerate(london.near_misses) if r["hint"].verb == "lower")  # advance factor
    row = london.near_misses[i]
    hint = row["hint"]
    assert hint.key == "senior_dscr" and hint.check == "advance_factor"
    outcome = london.apply_hint(i)
    assert outcome is not None and not outcome.viable
    # what the hinted structure trips next, by the scalar reference
    changed = {**row["structure"], "senior_dscr": hint.new}
    failed = _failures(project, changed)
    assert [f["check"] for f in failed] == ["min_dscr"]
    value, threshold = ratio(failed[0]["value"]), ratio(failed[0]["threshold"])
    text = london.hint_notice.text
    assert f"passes advance_factor but trips min_dscr {value} vs {threshold} next" in text, text
    assert "no value of senior_dscr alone passes both checks" in text  # its own hint raises it back
    # the hinted change is in Permutations: the run's ranges with the new value, the rest as they were
    ws = london.ctx.workspace.get()
    assert "preset" not in ws  # custom ranges now
    assert ws["ranges"]["senior_dscr"] == sorted({1.25, 1.3, 1.35, 1.4, 1.45, hint.new})
    assert ws["ranges"]["senior_tenor"] == GUIDE_RANGES["senior_tenor"]
    perms = PermutationsDashboard(london.ctx)
    assert perms.grid is not None and hint.new in perms.grid.values["senior_dscr"]
    assert perms.grid.cardinality == 4 * 9 * 6 and perms.preset.value == ""
    # one click reruns: 216 structures, still nothing viable, and the page says why
    assert london.rerun() and london.wait(120)
    assert london.result.meta["evaluated"] == 216 and london.result.top == []
    after = london.hint_notice.text
    assert after.startswith(f"After {hint.text()}: 0 viable structure(s) in this run.")
    assert f"trips min_dscr {value} vs {threshold} next" in after


def test_a_hint_that_fixes_the_structure_reruns_into_a_viable_one(tmp_path: Path) -> None:
    project = sample("frankfurt_dc_beta")
    sec = _dashboard(tmp_path, project, {"senior_tenor": [15], "senior_coupon": [0.05], "senior_dscr": [1.35]})
    assert sec.result.top == [] and len(sec.near_misses) == 1
    hint = sec.near_misses[0]["hint"]
    outcome = sec.apply_hint(0)
    assert outcome.viable and "viable" in sec.hint_notice.text
    changed = {**sec.near_misses[0]["structure"], hint.key: hint.new}
    ref = reference.evaluate(project, changed)["kpis"]
    assert ref["viable"] and ref["tier"] in TIER_ORDER[:3]
    assert sec.rerun() and sec.wait(120)
    assert len(sec.result.top) == 1 and sec.result.top[0]["structure"][hint.key] == hint.new
    assert sec.result.top[0]["kpis"]["tier"] == ref["tier"]
    assert f"the hinted structure is rank 1 ({ref['tier']}" in sec.hint_notice.text
    assert sec.selected is not None and sec.selected["rank"] == 1


# ---- the scatter --------------------------------------------------------------------------------------------


def test_clicking_a_point_selects_that_structure_and_hover_shows_its_terms(tmp_path: Path) -> None:
    sec = _dashboard(tmp_path, sample("london_dc_alpha"), preset_ranges("current_1920"))
    result = sec.result
    top = result.top[-1]
    sec.scatter.click_point(top["permutation_index"])
    assert sec.selected["rank"] == top["rank"] and f"Rank {top['rank']}" in sec.detail_title.value
    assert list(sec.scatter.star.x) == [top["kpis"]["min_dscr"]]
    other = result.frame.filter(~pl.col("permutation_index").is_in([t["permutation_index"] for t in result.top]))
    row = other.row(0, named=True)
    sec.scatter.click_point(row["permutation_index"])
    assert sec.selected["rank"] is None and sec.selected["permutation_index"] == row["permutation_index"]
    assert "Not ranked" in sec.detail_title.value or "Near miss" in sec.detail_title.value
    assert sec.download_button.disabled and not sec.compare_button.disabled
    tip = plain_text(sec.scatter.hover_point(row["permutation_index"]))
    assert f"{row['senior_tenor']} yrs · {pct(row['senior_coupon'])} · DSCR target {ratio(row['senior_dscr'])}" in tip
    assert f"Min DSCR {ratio(row['min_dscr'])}" in tip and row["tier"] in tip


def test_gold_and_diamond_points_are_drawn_over_the_top_n_rings(london: SecuritisationDashboard) -> None:
    marks = list(london.scatter.figure.marks)
    rings = marks.index(london.scatter.rings)
    for tier in ("Gold", "Diamond"):
        assert marks.index(london.scatter.marks[tier]) > rings
    for tier in ("Silver", "Bronze", "Not viable"):
        assert marks.index(london.scatter.marks[tier]) < rings


def test_decimation_keeps_one_point_per_cell_the_best_tier_first() -> None:
    rng = np.random.Generator(np.random.PCG64(7))
    n = 250_000
    x, y = rng.normal(1.35, 0.1, n), rng.normal(200, 30, n)
    rank = rng.integers(0, 5, n)
    xr, yr = (float(x.min()), float(x.max())), (float(y.min()), float(y.max()))
    keep = charts.decimate(x, y, rank, xr, yr, cols=40, rows=30)
    assert len(keep) <= 40 * 30
    # independently: for every occupied cell, the kept point has the best rank, then the highest y
    cx = np.minimum(((x - xr[0]) / (xr[1] - xr[0]) * 40).astype(int), 39)
    cy = np.minimum(((y - yr[0]) / (yr[1] - yr[0]) * 30).astype(int), 29)
    cells = {}
    for i in range(n):
        key = (cx[i], cy[i])
        best = cells.get(key)
        if best is None or (rank[i], -y[i]) < (rank[best], -y[best]):
            cells[key] = i
    assert sorted(int(k) for k in keep) == sorted(cells.values())
    big = charts.decimate(x, y, rank, xr, yr)
    assert len(big) <= charts.MAX_CELLS
    zoomed = charts.decimate(x, y, rank, (1.3, 1.4), (190.0, 210.0))
    assert np.all((x[zoomed] >= 1.3) & (x[zoomed] <= 1.4) & (y[zoomed] >= 190) & (y[zoomed] <= 210))


# ---- compare -------------------------------------------------------------------------------------------------


def test_compare_the_same_project_under_v1_and_v2(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    project = sample("frankfurt_dc_beta")
    v1 = service.execute_run(ctx.store, project, GUIDE_RANGES, home=tmp_path, ruleset="v1")
    v2 = service.execute_run(ctx.store, project, {k: v for k, v in GUIDE_RANGES.items() if k != "senior_coupon"},
                             home=tmp_path, ruleset="v2")
    assert v1.top and v2.top
    ctx.workspace.update(last_run_id=v1.run_id)
    sec = SecuritisationDashboard(ctx)
    sec.open_rank(1)
    assert sec.add_selected_to_compare()
    assert "add another" in sec.compare_notice.text
    sec.other_run.value = v2.run_id
    sec.other_structure.value = v2.top[0]["permutation_index"]
    assert sec.add_other_to_compare()
    assert [e.ruleset for e in sec.compare_entries] == ["v1", "v2"]
    html = sec.compare_table.value
    assert "Pricing and breakevens (v2)" in html and "– (v1)" in html
    k2 = v2.top[0]["kpis"]
    assert pct(k2["breakeven_rent_cut"], 1) in html and pct(k2["market_coupon"], 3) in html
    differ = differing_rows(sec.compare_entries)
    assert "Ruleset" in differ and "Project" not in differ
    assert html.count('class="p1-diff"') == len(differ)
    assert sec.overlay in sec.compare_row.children and len(sec.overlay.data["series"]) == 2
    # the picks survive a reload, at most four, and a chip removes one
    again = SecuritisationDashboard(ctx)
    assert [e.pick for e in again.compare_entries] == [e.pick for e in sec.compare_entries]
    for rank in (2, 3):
        sec.open_rank(rank)
        assert sec.add_selected_to_compare()
    sec.open_rank(4)
    assert not sec.add_selected_to_compare() and "At most 4" in sec.compare_notice.text
    sec.compare_picks.children[0].click()
    assert len(sec.compare_entries) == 3


# ---- text is data ------------------------------------------------------------------------------------------


def test_a_hostile_title_shows_as_typed_everywhere(tmp_path: Path) -> None:
    data = json.loads((Path(__file__).resolve().parent.parent / "examples" / "london_dc_alpha.json").read_text())
    data["title"] = HOSTILE
    from phase1lib.project import parse_project

    project = parse_project(copy.deepcopy(data))
    sec = _dashboard(tmp_path, project, GUIDE_RANGES)
    sec.add_to_compare(sec.near_misses[0])
    sec.add_to_compare(sec.near_misses[1])
    htmls = [sec.header.value, sec.compare_table.value, sec.hint_notice.value,
             *(c.children[0].value for c in sec.near_box.children[1:])]
    sec.apply_hint(0)
    htmls.append(sec.hint_notice.value)
    for html in htmls:  # HTML widgets: escaped
        assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in sec.header.value
    # text widgets (a dropdown's options, a button's label) are shown as text by the browser: as typed
    assert HOSTILE in sec.run_picker.options[0][0] and HOSTILE in sec.compare_picks.children[0].description
    assert HOSTILE in plain_text(sec.header.value) and HOSTILE in plain_text(sec.compare_table.value)


def test_ruleset_v2_near_misses_render(tmp_path: Path) -> None:
    project = sample("london_dc_alpha")  # London on market_1920 under v2: no viable structure, 3 near misses
    sec = _dashboard(tmp_path, project, preset_ranges("market_1920"), ruleset="v2")
    assert sec.result.meta["ruleset"]["version"] == "v2" and sec.result.top == []
    assert len(sec.near_misses) == sec.result.meta["counts"]["Bronze"] > 0
    for row in sec.near_misses:
        failed = _failures(project, row["structure"], load_ruleset("v2"))
        assert [f["check"] for f in failed] == [f["check"] for f in nearmiss.failed_checks(row["kpis"])]


def test_a_card_of_a_run_no_longer_shown_applies_nothing(london: SecuritisationDashboard) -> None:
    row, shown = london.near_misses[0], london.result
    stale = dataclasses.replace(shown, run_id="0" * 16)  # the run a card was drawn for, since replaced
    assert london.apply_hint(row, stale) is None and "no longer shown" in london.hint_notice.text
    assert london.ctx.workspace.get().get("applied_hint") is None
    assert london.apply_hint(row, shown) is not None  # the card of the run shown applies


def test_the_run_cache_keeps_the_most_recently_used_runs_only() -> None:
    from phase1lib.ui.securitisation import RunCache

    cache = RunCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # a is now the most recent
    cache["c"] = 3
    assert list(cache) == ["a", "c"] and cache.get("b") is None


def test_the_debt_balance_axis_fits_the_structure_after_an_empty_chart(london: SecuritisationDashboard) -> None:
    charts_ = london.schedule_charts
    assert (charts_.debt_scale.min, charts_.debt_scale.max) == (0.0, 1.0)  # no viable structure: empty charts
    row = london.near_misses[0]
    london.open_structure(row)
    senior_m = row["kpis"]["senior_amount"] / 1e6  # the balance starts at the senior amount (GBP m)
    assert charts_.debt_scale.min == 0.0 and senior_m <= charts_.debt_scale.max <= 1.05 * senior_m
    assert float(np.max(charts_.balance.y)) == pytest.approx(senior_m, rel=1e-12)


def test_empty_and_filled_money_axes_have_ticks_that_differ(london: SecuritisationDashboard) -> None:
    """An empty chart's 0-1 axis in millions (no viable structure) must not read 0 0 0 1 1 1; a GBP 250m one
    keeps whole millions. d3's ',.Nf' formats as Python's format() does."""
    axes = {"debt balance": london.schedule_charts.debt_axis, "capital stack": london.stack.y_axis}
    for name, axis in axes.items():
        labels = [format(t / 10, axis.tick_format) for t in range(11)]
        assert len(set(labels)) == 11, (name, labels)
    london.open_structure(london.near_misses[0])  # senior about GBP 250m
    for name, axis in axes.items():
        assert axis.tick_format == ",.0f", name

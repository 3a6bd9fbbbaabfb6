"""Run dashboard: background run with chunk progress, cancel, errors shown, earlier runs reopened; and the
Securitisation page's behaviour on reopened, empty and large runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from samples import sample
from ui_helpers import ADMIN, make_context

from phase1lib import ops, service
from phase1lib.presets import preset_ranges
from phase1lib.ui import RunDashboard, SecuritisationDashboard, charts
from phase1lib.ui.components import plain_text as text
from phase1lib.ui.format import TIER_ORDER


def ready(tmp_path: Path, preset: str = "current_1920", **extra) -> RunDashboard:
    ctx = make_context(tmp_path)
    ctx.workspace.update(project=sample().to_dict(), ranges=preset_ranges(preset), preset=preset, **extra)
    return RunDashboard(ctx, workers=1)


def test_run_needs_a_project_and_ranges(tmp_path: Path) -> None:
    dash = RunDashboard(make_context(tmp_path))
    assert dash.run_button.disabled
    assert "choose and validate a project" in dash.notice.text and "Permutations" in dash.notice.text
    assert not dash.start() and dash.notice.kind == "error"


def test_inputs_show_what_will_run_and_the_seed_default(tmp_path: Path) -> None:
    dash = ready(tmp_path, sample=500)
    assert dash.seed.value == 424242 and dash.topn.value == 20
    assert "preset current_1920 · 1,920 permutations" in text(dash.inputs.value)
    assert "500 drawn at random" in text(dash.inputs.value)


def test_progress_is_fed_by_the_engine_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("phase1lib.engine.runner.CHUNK_ELEMENTS", 20_000)  # the 1,024-row minimum chunk
    monkeypatch.setattr("phase1lib.ui.background.PROGRESS_EVERY_S", 0.0)
    dash = ready(tmp_path, "phase2_10k")
    texts: list[str] = []
    dash.progress_text.observe(lambda ch: texts.append(text(ch["new"])), names="value")
    assert dash.start()
    assert dash.wait(120) and dash.result is not None
    counts = [t for t in texts if "permutations (" in t]
    assert len(counts) == 10 and counts[0].startswith("1,024 / 9,568") and counts[-1].endswith("(100%)")
    assert dash.result.meta["evaluated"] == 9568


def test_cancel_stops_the_run_and_saves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("phase1lib.engine.runner.CHUNK_ELEMENTS", 20_000)
    dash = ready(tmp_path, "phase2_10k")
    first_chunk = threading.Event()
    original = dash.task.on_progress

    def progress(done: int, total: int) -> None:
        original(done, total)
        if not first_chunk.is_set():
            first_chunk.set()
            dash.cancel()  # as the analyst's click would, while the engine is mid-run

    dash.task.on_progress = progress  # type: ignore[method-assign]
    assert dash.start()
    assert first_chunk.wait(60)
    assert dash.wait(120)
    assert dash.result is None and dash.progress.bar_style == "warning"
    assert "cancelled" in dash.notice.text and not dash.run_button.disabled and dash.cancel_button.disabled
    assert dash.runs.options == () and "last_run_id" not in dash.ctx.workspace.get()


def test_engine_refusals_are_shown_not_raised(tmp_path: Path) -> None:
    dash = ready(tmp_path)
    flags = ops.get_flags(dash.ctx.store)
    ops.update_flags(dash.ctx.store, flags["version"], {"phase1_core": False}, ADMIN)
    assert dash.start() and dash.wait(60)
    assert dash.result is None and dash.progress.bar_style == "danger"
    assert "Phase-1 disabled" in dash.notice.text


def test_earlier_runs_are_listed_and_reopened(tmp_path: Path) -> None:
    dash = ready(tmp_path)
    first = service.execute_run(dash.ctx.store, sample(), preset_ranges("current_1920"), seed=1, home=tmp_path)
    dash.start()
    dash.wait(60)
    assert dash.result is not None and len(dash.runs.options) == 2
    assert "London DC Alpha" in dash.runs.options[0][0]
    reopened = dash.reopen(first.run_id)
    assert reopened is not None and reopened.run_id == first.run_id
    assert first.run_id in dash.summary.value and dash.ctx.workspace.get()["last_run_id"] == first.run_id
    assert dash.reopen(None) is None and dash.notice.kind == "error"
    sec = SecuritisationDashboard(dash.ctx)
    assert sec.result is not None and sec.result.run_id == first.run_id


def test_securitisation_without_runs_or_viable_structures(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    sec = SecuritisationDashboard(ctx)
    assert sec.result is None and "No runs yet" in sec.notice.text
    ranges = {"senior_tenor": [10], "senior_coupon": [0.09], "senior_dscr": [1.0]}
    result = service.execute_run(ctx.store, sample(), ranges, home=tmp_path)
    assert result.top == []
    sec.refresh_runs()
    assert sec.result is not None and sec.table.rows == [] and "No viable structure" in sec.detail_title.value
    assert sec.download_button.disabled and sec.download() is None


def test_large_runs_are_decimated_in_the_scatter(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    result = service.execute_run(ctx.store, sample(), preset_ranges("phase2_10k"), home=tmp_path)
    sec = SecuritisationDashboard(ctx)
    data = sec.scatter.data
    assert data["decimated"] and data["total"] == 9568 and data["points"] <= charts.MAX_CELLS + len(result.top)
    drawn = {int(i) for tier in TIER_ORDER for i in sec.scatter._index[sec.scatter._shown[tier]]}
    assert {int(t["permutation_index"]) for t in result.top} <= drawn  # the Top-N always drawn
    # every tier present in the run is still visible after decimation
    present = set(result.frame["tier"].cast(str).unique().to_list())
    assert {t for t, n in data["by_tier"].items() if n} == present


def test_selected_rank_is_remembered_between_pages(tmp_path: Path) -> None:
    dash = ready(tmp_path)
    dash.start()
    dash.wait(60)
    sec = SecuritisationDashboard(dash.ctx)
    sec.table.sort_by("day_one_value", descending=False)
    sec.table.open_row(0)
    rank = sec.selected["rank"]
    assert rank == len(dash.result.top) and dash.ctx.workspace.get()["rank"] == rank
    again = SecuritisationDashboard(dash.ctx)
    assert again.selected is not None and again.selected["rank"] == rank

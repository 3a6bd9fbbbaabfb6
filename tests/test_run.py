"""Runs: ranking, determinism across chunking and workers, sampling, persistence and the London acceptance."""

from __future__ import annotations

import json
import os

import numpy as np
import polars as pl
import pytest
from samples import sample

from phase1lib.engine import run
from phase1lib.engine.runner import rank_rows
from phase1lib.errors import GuardrailError, NotFoundError
from phase1lib.presets import preset_ranges
from phase1lib.runs import has_run, list_runs, load_run, runs_dir, save_run

LONDON = sample()


@pytest.fixture(scope="module")
def current():
    return run(LONDON, preset_ranges("current_1920"))


def test_london_current_1920_rank_one(current):
    """REGRESSION SNAPSHOT, labelled as one: the rank-1 structure London's reference sweep gave when the engine was
    checked against the scalar reference (tests/test_engine_reference.py); the ranking rule itself is tested
    independently below (test_top_n_is_the_ranking_rule_applied_to_the_frame)."""
    assert current.meta["cardinality"] == current.meta["evaluated"] == 1920 == len(current.frame)
    top = current.top[0]
    assert top["structure"] == {"senior_tenor": 20, "senior_coupon": 0.04, "senior_dscr": 1.35,
                                "senior_amort": "sculpted", "indexation_mode": "CPI_capped", "zcis_tenor_years": 10,
                                "io_months": 0, "wrap": False, "mezz_on": False, "sidecar_haircut_pct": 0.15}
    values = [t["kpis"]["day_one_value"] for t in current.top]
    assert values == sorted(values, reverse=True)
    assert all(t["kpis"]["viable"] for t in current.top)
    viable = current.counts["Diamond"] + current.counts["Gold"] + current.counts["Silver"]
    assert [t["rank"] for t in current.top] == list(range(1, min(20, viable) + 1))  # fewer viable, fewer rows
    assert sum(current.counts.values()) == 1920


def test_top_n_is_the_ranking_rule_applied_to_the_frame(current):
    """Independent ranking of the stored frame with polars reproduces the Top-20 (methodology section 9)."""
    ranked = (current.frame.filter(pl.col("viable"))
              .with_columns(pl.col("day_one_value").round(2).alias("k1"), pl.col("wacd").round(10).alias("k2"),
                            pl.col("min_dscr").round(9).alias("k3"))
              .sort(["k1", "k2", "k3", "permutation_index"], descending=[True, False, True, False]).head(20))
    assert ranked["permutation_index"].to_list() == [t["permutation_index"] for t in current.top]


def test_tie_breaks():
    kpis = {"viable": np.array([True, True, True, True, False]), "senior_amount": np.ones(5),
            "day_one_value": np.array([10.004, 10.0, 10.0, 10.0, 99.0]), "wacd": np.array([0.05, 0.05, 0.04, 0.05, 0]),
            "min_dscr": np.array([1.3, 1.3, 1.3, 1.4, 2.0])}
    order = rank_rows(kpis, np.array([7, 3, 9, 8, 1]), 10)
    assert order.tolist() == [2, 3, 1, 0]  # wacd asc, then min_dscr desc, then index asc; 10.004 ties 10.00


def test_identical_whatever_the_chunking_and_workers(tmp_path):
    ranges = preset_ranges("aggressive")
    results = [run(LONDON, ranges, chunk_size=size, workers=workers)
               for size, workers in ((1000, 1), (50_000, 1), (1000, 2), (777, 2))]
    paths = []
    for i, result in enumerate(results):
        path = tmp_path / f"r{i}.parquet"
        result.frame.write_parquet(path)
        paths.append(path)
    first = pl.read_parquet(paths[0])
    for path, result in zip(paths[1:], results[1:], strict=True):
        assert pl.read_parquet(path).equals(first, null_equal=True)
        assert result.top == results[0].top
        assert result.run_id == results[0].run_id


def test_sample_is_seeded_and_sorted():
    a = run(LONDON, preset_ranges("phase3_50k"), sample=500, seed=7)
    b = run(LONDON, preset_ranges("phase3_50k"), sample=500, seed=7)
    c = run(LONDON, preset_ranges("phase3_50k"), sample=500, seed=8)
    idx = a.frame["permutation_index"].to_numpy()
    assert len(idx) == 500 and np.all(np.diff(idx) > 0)
    assert a.frame.equals(b.frame, null_equal=True) and not a.frame.equals(c.frame, null_equal=True)
    rng = np.random.Generator(np.random.PCG64(7))
    assert np.array_equal(idx, np.sort(rng.choice(38_272, 500, replace=False)))
    assert a.run_id != c.run_id


def test_guardrail(monkeypatch):
    monkeypatch.setenv("PHASE1_MAX_PERMUTATIONS", "1000")
    with pytest.raises(GuardrailError, match="1,920 permutations exceed the guardrail of 1,000"):
        run(LONDON, preset_ranges("current_1920"))
    assert run(LONDON, preset_ranges("current_1920"), sample=100).meta["evaluated"] == 100


def test_progress_reports_each_chunk():
    seen = []
    run(LONDON, preset_ranges("current_1920"), chunk_size=500, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(500, 1920), (1000, 1920), (1500, 1920), (1920, 1920)]


def test_persisted_run_round_trips(tmp_path, current):
    save_run(current, tmp_path)
    assert has_run(current.run_id, tmp_path)
    loaded = load_run(current.run_id, tmp_path)
    assert loaded.frame.equals(current.frame, null_equal=True)
    assert loaded.top == json.loads(json.dumps(current.top)) and loaded.meta["run_id"] == current.run_id
    assert list_runs(tmp_path)[0]["run_id"] == current.run_id
    assert sorted(p.name for p in (runs_dir(tmp_path) / current.run_id).iterdir()) == [
        "meta.json", "permutations.parquet", "top.json"]
    with pytest.raises(NotFoundError):
        load_run("0" * 16, tmp_path)


def test_a_crash_mid_write_leaves_no_half_run(tmp_path, current, monkeypatch):
    import phase1lib.runs as runs

    def boom(path, data):
        raise OSError("disk full")

    monkeypatch.setattr(runs, "_write", boom)
    with pytest.raises(OSError):
        save_run(current, tmp_path)
    assert not has_run(current.run_id, tmp_path)
    assert [p.name for p in runs_dir(tmp_path).iterdir()] == []  # the temporary folder is gone too
    stale = runs_dir(tmp_path) / ".tmp-deadbeef"
    stale.mkdir()
    os.utime(stale, (0, 0))
    monkeypatch.undo()
    save_run(current, tmp_path)  # sweeps stale temporaries of dead writers
    assert not stale.exists() and has_run(current.run_id, tmp_path)


def test_run_id_depends_on_inputs_not_on_spelling(current):
    spelled = preset_ranges("current_1920")
    spelled["tenor_years"] = spelled.pop("senior_tenor")
    assert run(LONDON, spelled).run_id == current.run_id  # an alias is the same request
    again = run(LONDON, dict(preset_ranges("current_1920"), senior_amort="sculpted"))
    assert again.run_id == current.run_id  # defaults written out are the same grid
    assert run(LONDON, preset_ranges("current_1920"), seed=1).run_id != current.run_id


@pytest.mark.parametrize("preset", ["current_1920", "value_max_bbb"])
def test_top_rows_in_plain_python_equal_the_frame_rows(preset):
    """frame_rows (the Top-N path) gives every row exactly as the stored frame holds it, ids included."""
    from phase1lib.engine.evaluate import context_for_grid
    from phase1lib.engine.runner import evaluate_grid, frame_rows, make_frame
    from phase1lib.ranges import parse_ranges, permutation_ids
    from phase1lib.ruleset import load_ruleset

    grid = parse_ranges(preset_ranges(preset), LONDON)
    ctx = context_for_grid(LONDON, load_ruleset(), grid)
    structure, kpis = evaluate_grid(ctx, grid, None, grid.cardinality, chunk_size=None)
    rows = np.arange(0, grid.cardinality, 7)  # mezz on and off, viable and not, NaN KPIs
    sub_s = {k: v[rows] for k, v in structure.items()}
    sub_k = {k: v[rows] for k, v in kpis.items()}
    ids = permutation_ids(grid, grid.decode(sub_s["permutation_index"]))  # the frame derives them on read
    expected = [{**row, "permutation_id": pid}
                for row, pid in zip(make_frame(sub_s, sub_k).iter_rows(named=True), ids, strict=True)]
    got = frame_rows(sub_s, sub_k)
    assert len(got) == len(expected) == len(rows)
    nulls = sum(v is None for row in got for v in row.values())
    assert nulls > 0  # the comparison covers null handling
    for a, b in zip(got, expected, strict=True):
        assert a == b
        assert [type(v) for v in a.values()] == [type(b[k]) for k in a]

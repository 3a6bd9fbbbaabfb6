"""The compiled C kernels (phase1lib.engine.kernels) give bit for bit what the numpy path gives: every output
column of random structure tables under v1 and v2, and whole runs whatever the chunking and worker count.
And they are used only when their cache is warm (no run pays the compile), or when forced."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import sample
from test_engine_reference import projects, structures

from phase1lib.engine import kernels, run
from phase1lib.engine.evaluate import evaluate, make_context, table_from_points
from phase1lib.presets import preset_ranges
from phase1lib.ruleset import load_ruleset

V1, V2 = load_ruleset("v1"), load_ruleset("v2")


@pytest.fixture(scope="module", autouse=True)
def compiled():
    kernels.warmup()


def same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "f":
            assert np.array_equal(x.view(np.int64), y.view(np.int64)) or (
                np.array_equal(np.isnan(x), np.isnan(y)) and np.array_equal(x[~np.isnan(x)].view(np.int64),
                                                                            y[~np.isnan(y)].view(np.int64))), name
        else:
            assert np.array_equal(x, y), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), priced=st.booleans())
def test_kernels_equal_the_numpy_path_bit_for_bit(data, priced):
    project = data.draw(projects(priced=priced))
    points = data.draw(st.lists(structures(project, priced=priced), min_size=1, max_size=12))
    ruleset = V2 if priced else V1
    ctx = make_context(project, ruleset, {p["indexation_mode"] for p in points},
                       {int(p["zcis_tenor_years"]) for p in points})
    table = table_from_points(points)
    ctx.kernels = False
    plain = evaluate(ctx, table)
    ctx.kernels = True
    compiled = evaluate(ctx, table)
    same(plain, compiled)


@pytest.mark.parametrize(("name", "preset", "ruleset"), [("london_dc_alpha", "aggressive", V1),
                                                          ("frankfurt_dc_beta", "value_max_bbb", V1),
                                                          ("ashburn_dc_gamma", "market_1920", V2)])
def test_whole_runs_are_identical_whatever_the_path_chunking_and_workers(monkeypatch, name, preset, ruleset):
    project = sample(name)
    results = []
    for mode, chunk, workers in (("numpy", None, 1), ("c", None, 1), ("c", 777, 2), ("numpy", 1000, 2)):
        monkeypatch.setenv("PHASE1_KERNELS", mode)
        results.append(run(project, preset_ranges(preset), ruleset=ruleset, chunk_size=chunk, workers=workers))
    first = results[0]
    for other in results[1:]:
        assert other.run_id == first.run_id and other.top == first.top
        assert other.frame.equals(first.frame, null_equal=True)


def test_kernels_are_used_only_when_warm_or_forced(monkeypatch, tmp_path):
    monkeypatch.setenv("PHASE1_KERNELS", "numpy")
    assert not kernels.use_for(10**6)
    monkeypatch.setenv("PHASE1_KERNELS", "c")
    assert kernels.use_for(10)  # forced: even small grids
    monkeypatch.setenv("PHASE1_KERNELS", "auto")
    assert kernels.ready()  # the fixture compiled them
    assert kernels.use_for(kernels.MIN_ROWS) and not kernels.use_for(kernels.MIN_ROWS - 1)
    monkeypatch.setattr(kernels, "library_path", lambda: tmp_path / "missing.so")
    assert not kernels.ready() and not kernels.use_for(10**6)  # not built yet: the numpy path, no compile


def test_a_missing_compiler_is_a_clear_error_and_the_numpy_path_stays(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "library_path", lambda: tmp_path / "kernels.so")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="cannot run the C compiler"):
        kernels.build()
    assert not kernels.ready() and not (tmp_path / "kernels.so").exists()

"""The server's engine processes (server/engine_pool.py): a run in an engine process equals the same run in
this process bit for bit (v1 and v2, numpy and compiled paths), progress and cancel cross the process
boundary, the engine's own errors come back as themselves, and a process killed mid-run is replaced."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from samples import sample

from phase1lib import service
from phase1lib.engine.runner import RunCancelled
from phase1lib.errors import InputError
from phase1lib.presets import preset_ranges, preset_ruleset
from phase1lib.ruleset import load_ruleset
from phase1lib.runs import has_run, load_run
from phase1lib.server.engine_pool import EnginePool, EngineProcessError


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnginePool]:
    engines = EnginePool(2, tmp_path_factory.mktemp("pool-home"))
    engines.wait_ready()
    yield engines
    engines.close()


def planned(preset: str, seed: int = 7) -> dict:
    version = preset_ruleset(preset) or "v1"
    return dict(seed=seed, topn=20, sample=None, workers=1, ruleset=load_ruleset(version),
                gates=True, chunked=True)


@pytest.mark.parametrize(("project", "preset"), [("london_dc_alpha", "current_1920"),
                                                  ("london_dc_alpha", "phase2_10k"),
                                                  ("frankfurt_dc_beta", "market_1920")])
def test_a_run_in_an_engine_process_equals_the_run_here(pool, tmp_path, project, preset):
    kwargs = planned(preset)
    there = pool.compute(sample(project), preset_ranges(preset), progress=None, cancel=None, **kwargs)
    here = service.compute_run(sample(project), preset_ranges(preset), progress=None, cancel=None,
                               home=tmp_path, **kwargs)
    assert there.run_id == here.run_id
    assert there.frame.equals(here.frame, null_equal=True)
    assert there.top == here.top
    assert has_run(there.run_id, pool.home)  # saved by the engine process, atomically, under the pool's home
    assert load_run(there.run_id, pool.home).frame.equals(here.frame, null_equal=True)


def test_progress_crosses_the_process_boundary(pool):
    seen: list[tuple[int, int]] = []
    result = pool.compute(sample(), preset_ranges("phase3_50k"), progress=lambda d, t: seen.append((d, t)),
                          cancel=None, **planned("phase3_50k", seed=11))
    total = result.meta["evaluated"]
    assert seen and seen[-1] == (total, total)
    assert all(t == total and 0 < d <= t for d, t in seen) and seen == sorted(seen)


def test_cancel_mid_run_stops_the_engine_and_the_process_serves_the_next_run(pool):
    cancel = threading.Event()
    with pytest.raises(RunCancelled):
        pool.compute(sample(), preset_ranges("maximum_250k"), progress=lambda d, t: cancel.set(), cancel=cancel,
                     **planned("maximum_250k", seed=12))
    again = pool.compute(sample(), preset_ranges("current_1920"), progress=None, cancel=None,
                         **planned("current_1920", seed=12))
    assert again.meta["evaluated"] == 1920


def test_a_cancelled_run_that_never_started_does_not_take_a_process(pool):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RunCancelled):
        pool.compute(sample(), preset_ranges("current_1920"), progress=None, cancel=cancel,
                     **planned("current_1920", seed=13))


def test_the_engines_own_errors_come_back_as_themselves(pool):
    kwargs = planned("current_1920") | {"topn": 0}
    with pytest.raises(InputError) as caught:
        pool.compute(sample(), preset_ranges("current_1920"), progress=None, cancel=None, **kwargs)
    assert "topn" in str(caught.value)


def test_a_process_killed_mid_run_fails_that_run_and_is_replaced(tmp_path: Path):
    engines = EnginePool(1, tmp_path)
    try:
        engines.wait_ready()
        victim = engines._idle.queue[0].process.pid

        def kill(done: int, total: int) -> None:
            os.kill(victim, signal.SIGKILL)

        with pytest.raises(EngineProcessError, match="stopped"):
            engines.compute(sample(), preset_ranges("maximum_250k"), progress=kill, cancel=None,
                            **planned("maximum_250k", seed=14))
        assert not any(tmp_path.rglob("*.parquet"))  # no run, whole or half
        result = engines.compute(sample(), preset_ranges("current_1920"), progress=None, cancel=None,
                                 **planned("current_1920", seed=14))
        assert result.meta["evaluated"] == 1920 and engines._idle.queue[0].process.pid != victim
    finally:
        engines.close()
    with pytest.raises(RunCancelled):
        engines.compute(sample(), preset_ranges("current_1920"), progress=None, cancel=None,
                        **planned("current_1920"))

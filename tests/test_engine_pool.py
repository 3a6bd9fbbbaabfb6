"""The server's engine processes (server/engine_pool.py): a run in an engine process equals the same run in
this process bit for bit (v1 and v2, numpy and compiled paths), progress and cancel cross the process
boundary, the engine's own errors come back as themselves, and a process killed mid-run is replaced."""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from samples import sample

from phase1lib import service
from phase1lib.engine.runner import GridJob, RunCancelled, plan_grid
from phase1lib.errors import ConflictError, FieldError, GuardrailError, InputError, LockedError
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


def job(preset: str, seed: int = 7, project: str = "london_dc_alpha", topn: int = 20) -> GridJob:
    return plan_grid(sample(project), preset_ranges(preset), seed=seed, topn=topn,
                     ruleset=load_ruleset(preset_ruleset(preset) or "v1"))


OPTIONS = {"workers": 1, "chunked": True}


@pytest.mark.parametrize(("project", "preset"), [("london_dc_alpha", "current_1920"),
                                                  ("london_dc_alpha", "phase2_10k"),
                                                  ("frankfurt_dc_beta", "market_1920")])
def test_a_run_in_an_engine_process_equals_the_run_here(pool, tmp_path, project, preset):
    there = pool.compute(job(preset, project=project), progress=None, cancel=None, **OPTIONS)
    here = service.compute_run(job(preset, project=project), progress=None, cancel=None, home=tmp_path, **OPTIONS)
    assert there.run_id == here.run_id
    assert there.frame.equals(here.frame, null_equal=True)
    assert there.top == here.top
    assert has_run(there.run_id, pool.home)  # saved by the engine process, atomically, under the pool's home
    assert load_run(there.run_id, pool.home).frame.equals(here.frame, null_equal=True)


def test_progress_crosses_the_process_boundary(pool):
    seen: list[tuple[int, int]] = []
    result = pool.compute(job("phase3_50k", seed=11), progress=lambda d, t: seen.append((d, t)),
                          cancel=None, **OPTIONS)
    total = result.meta["evaluated"]
    assert seen and seen[-1] == (total, total)
    assert all(t == total and 0 < d <= t for d, t in seen) and seen == sorted(seen)


def test_cancel_mid_run_stops_the_engine_and_the_process_serves_the_next_run(pool):
    cancel = threading.Event()
    with pytest.raises(RunCancelled):  # raised in the engine process, arrives as itself
        pool.compute(job("maximum_250k", seed=12), progress=lambda d, t: cancel.set(), cancel=cancel, **OPTIONS)
    again = pool.compute(job("current_1920", seed=12), progress=None, cancel=None, **OPTIONS)
    assert again.meta["evaluated"] == 1920


def test_a_cancelled_run_that_never_started_does_not_take_a_process(pool):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RunCancelled):
        pool.compute(job("current_1920", seed=13), progress=None, cancel=cancel, **OPTIONS)


@pytest.mark.parametrize("error", [
    InputError([FieldError("senior_tenor", "must be 5..30 (got 40)")], "ranges"), GuardrailError(300_000, 250_000),
    LockedError(120.0), ConflictError("run is running", state="running"), RunCancelled("cancelled by the user")])
def test_library_errors_travel_between_processes_as_themselves(error):
    """An engine process (or a Dask worker) sends its Phase1Error back pickled: the same kind, message and
    fields arrive, whatever the subclass's constructor."""
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error) and clone.to_dict() == error.to_dict()
    assert clone.__dict__ == error.__dict__ and clone.args == error.args


def test_a_process_killed_mid_run_fails_that_run_and_is_replaced(tmp_path: Path):
    engines = EnginePool(1, tmp_path)
    try:
        engines.wait_ready()
        victim = engines._idle.queue[0].process.pid

        def kill(done: int, total: int) -> None:
            os.kill(victim, signal.SIGKILL)

        with pytest.raises(EngineProcessError, match="stopped"):
            engines.compute(job("maximum_250k", seed=14), progress=kill, cancel=None, **OPTIONS)
        assert not any(tmp_path.rglob("*.parquet"))  # no run, whole or half
        result = engines.compute(job("current_1920", seed=14), progress=None, cancel=None, **OPTIONS)
        assert result.meta["evaluated"] == 1920 and engines._idle.queue[0].process.pid != victim
    finally:
        engines.close()
    with pytest.raises(RunCancelled):
        engines.compute(job("current_1920"), progress=None, cancel=None, **OPTIONS)

"""Portfolio runs on a real Dask cluster on loopback: a distributed.LocalCluster with two process workers, and for
the command line a real ``dask scheduler`` + ``dask worker``. Every run_id, tier count, Top-20 and Parquet file
equals the single run of the project, whatever the chunking or the worker count, also when a worker process is
killed mid-run. Each test has a timeout, and the processes started here are ended here (checked)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from distributed import Client, LocalCluster
from server_fixtures import free_port

from phase1lib import service
from phase1lib.cli import main
from phase1lib.portfolio import ClusterError, cluster, parse_portfolio
from phase1lib.runs import runs_dir
from phase1lib.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PROJECTS = [EXAMPLES / "london_dc_alpha.json", EXAMPLES / "frankfurt_dc_beta.json", EXAMPLES / "ashburn_dc_gamma.json",
            ROOT / "tests" / "data" / "portfolio_osaka.json"]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(120)  # a hung cluster fails the test, never hangs CI


def _children() -> set[int]:
    """Child processes of this test process, but multiprocessing's resource tracker (it lives as long as we do)."""
    return {p.pid for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(_cmdline(p))}


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _listening(address: str) -> bool:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def _gone(pids: set[int], within_s: float = 15.0) -> set[int]:
    """Those of ``pids`` still alive after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
        time.sleep(0.1)
    return alive


#: No dashboard; the scheduler's own HTTP routes (health, metrics) on a free loopback port, not the fixed 8787.
NO_DASHBOARD = {"dashboard_address": None, "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}}


def _cluster(n_workers: int = 2) -> LocalCluster:
    return LocalCluster(n_workers=n_workers, processes=True, threads_per_worker=1, host="127.0.0.1", **NO_DASHBOARD)


@pytest.fixture(scope="module")
def local_cluster():
    before = _children()
    with _cluster() as c:
        yield c
        address = c.scheduler_address
    assert not _gone(_children() - before), "the LocalCluster left processes behind"
    assert not _listening(address), "the scheduler's port is still open"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASE1_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PHASE1_DASK_TASK_TIMEOUT", "60")
    monkeypatch.setenv("PHASE1_DASK_CONNECT_TIMEOUT", "10")
    for name in ("PHASE1_MAX_PERMUTATIONS", "PHASE1_MAX_PORTFOLIO_PERMUTATIONS", "PHASE1_DASK_SCHEDULER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "phase1.db")
    yield s
    s.close()


def stored_bytes(home: Path, run_id: str) -> tuple[bytes, bytes]:
    folder = runs_dir(home) / run_id
    return (folder / "permutations.parquet").read_bytes(), (folder / "top.json").read_bytes()


def singles(tmp_path: Path, portfolio) -> tuple[Path, list]:
    """service.execute_run of every project of the portfolio, in a home of its own."""
    home = tmp_path / "single"
    s = SQLiteStore(tmp_path / "single.db")
    try:
        return home, [service.execute_run(s, e.project, e.ranges, seed=e.seed, topn=e.topn, sample=e.sample,
                                          ruleset=e.ruleset, preset=e.preset, home=home) for e in portfolio.projects]
    finally:
        s.close()


def test_four_projects_through_a_two_worker_cluster_equal_their_single_runs(local_cluster, store, tmp_path):
    """The acceptance: 4 projects x current_1920 on 2 process workers; run_id, tier counts, Top-20 and the
    stored Parquet and top.json bytes equal the single run of each project."""
    pf = parse_portfolio({"defaults": {"preset": "current_1920", "seed": 424242},
                          "projects": [str(p) for p in PROJECTS]}, base=ROOT)
    home = tmp_path / "home"
    result = service.execute_portfolio(store, pf, scheduler=local_cluster.scheduler_address, home=home)
    assert result.scheduler == local_cluster.scheduler_address
    single_home, ones = singles(tmp_path, pf)
    for run, one in zip(result.runs, ones, strict=True):
        assert (run.run_id, run.counts, run.top) == (one.run_id, one.counts, one.top)
        viable = sum(run.counts[t] for t in ("Diamond", "Gold", "Silver"))
        assert len(run.top) == min(20, viable) and viable > 0  # the Top-20 (London has 12 viable)
        assert stored_bytes(home, run.run_id) == stored_bytes(single_home, one.run_id)


def test_identical_whatever_the_task_size_v2_and_samples(local_cluster, store, tmp_path, monkeypatch):
    """Many small tasks (64 rows) or few: the same runs as the local threads; a v2 project and a sample too."""
    pf = parse_portfolio({"projects": [{"project": str(PROJECTS[1]), "preset": "market_1920"},
                                       {"project": str(PROJECTS[2]), "preset": "phase3_50k", "sample": 2500,
                                        "seed": 99, "topn": 10}]}, base=ROOT)
    local = service.execute_portfolio(store, pf, home=tmp_path / "local", workers=2)
    monkeypatch.setattr(cluster, "MIN_TASK_ROWS", 64)
    monkeypatch.setattr(cluster, "TASKS_PER_THREAD", 16)
    assert [len(w.bounds(cluster.task_rows(w, 2))) for w in (p.job for p in service.plan_portfolio(store, pf))] \
        == [30, 32]
    small = service.execute_portfolio(store, pf, scheduler=local_cluster.scheduler_address, home=tmp_path / "dask")
    for a, b in zip(local.runs, small.runs, strict=True):
        assert (a.run_id, a.counts, a.top) == (b.run_id, b.counts, b.top)
        assert stored_bytes(tmp_path / "local", a.run_id) == stored_bytes(tmp_path / "dask", b.run_id)
    assert small.portfolio_id == local.portfolio_id


def test_a_worker_killed_mid_run_is_retried_and_the_portfolio_completes(store, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "MIN_TASK_ROWS", 64)
    monkeypatch.setattr(cluster, "TASKS_PER_THREAD", 16)  # 30 tasks per project: the kill lands mid-run
    pf = parse_portfolio({"defaults": {"preset": "current_1920", "seed": 424242},
                          "projects": [str(PROJECTS[0]), str(PROJECTS[3]), str(PROJECTS[2])]}, base=ROOT)
    before = _children()
    with _cluster() as c, Client(c, set_as_default=False) as probe:
        pids = probe.run(os.getpid)
        victim = sorted(pids.values())[0]
        killed: list[int] = []

        def progress(done: int, total: int) -> None:
            if not killed and done < total:
                os.kill(victim, signal.SIGKILL)  # the worker process dies with its tasks and held chunks
                killed.append(done)

        result = service.execute_portfolio(store, pf, scheduler=c.scheduler_address, home=tmp_path / "home",
                                           progress=progress)
        assert killed and killed[0] < 3 * 1920
        probe.wait_for_workers(2, timeout=30)  # the nanny started a new worker process
        assert victim not in probe.run(os.getpid).values()
    assert not _gone(_children() - before)
    single_home, ones = singles(tmp_path, pf)
    for run, one in zip(result.runs, ones, strict=True):
        assert (run.run_id, run.counts, run.top) == (one.run_id, one.counts, one.top)
        assert stored_bytes(tmp_path / "home", run.run_id) == stored_bytes(single_home, one.run_id)


def test_a_scheduler_without_workers_is_an_error_naming_it(store, tmp_path, monkeypatch):
    monkeypatch.setenv("PHASE1_DASK_CONNECT_TIMEOUT", "1")
    pf = parse_portfolio({"defaults": {"preset": "current_1920"}, "projects": [str(PROJECTS[0])]}, base=ROOT)
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", **NO_DASHBOARD) as empty, \
            pytest.raises(ClusterError) as info:
        service.execute_portfolio(store, pf, scheduler=empty.scheduler_address, home=tmp_path / "home")
    assert empty.scheduler_address in str(info.value) and "no workers" in str(info.value)
    assert not runs_dir(tmp_path / "home").exists() and not store.list_audit(10)


def _wait_workers(address: str, n: int, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise AssertionError("a dask process exited: " + " ".join(str(p.args) for p in procs))
        try:
            with Client(address, timeout=2, set_as_default=False) as c:
                c.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))
                return
        except (OSError, TimeoutError):
            time.sleep(0.2)
    raise AssertionError(f"no {n} workers at {address}")


def _stop(procs: list[subprocess.Popen]) -> None:
    """End the process groups started by the test (each ``dask`` command and its nanny children)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def test_cli_on_a_dask_scheduler_and_worker_equals_phase1_run(tmp_path, monkeypatch, capsys):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PHASE1_HOME=str(tmp_path / "home"))
    common = {"cwd": tmp_path, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
              "start_new_session": True}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard", "--dashboard-address", f"127.0.0.1:{free_port()}"], **common)]
    try:
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--host", "127.0.0.1", "--no-dashboard"], **common))
        _wait_workers(address, 2, procs)
        args = [str(BIN / "phase1"), "portfolio", "--projects", *map(str, PROJECTS), "--preset", "current_1920",
                "--scheduler", address]
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
        answer = json.loads(done.stdout)
        assert address in done.stderr and "Traceback" not in done.stderr
        procs_alive = [p.poll() is None for p in procs]
    finally:
        _stop(procs)
    assert not _listening(address)
    assert procs_alive == [True, True]
    assert all(p.returncode is not None for p in procs)
    assert len(answer["runs"]) == 4 and set(answer) == {"portfolio_id", "title", "runs", "summary"}
    monkeypatch.setenv("PHASE1_HOME", str(tmp_path / "single"))  # phase1 run computes afresh, in its own home
    for path, run in zip(PROJECTS, answer["runs"], strict=True):
        assert main(["run", "--project", str(path), "--preset", "current_1920"]) == 0
        single = json.loads(capsys.readouterr().out)
        assert (single["run_id"], single["counts"], single["top"]) == (run["run_id"], run["counts"], run["top"])
        assert stored_bytes(tmp_path / "home", run["run_id"]) == stored_bytes(tmp_path / "single", run["run_id"])

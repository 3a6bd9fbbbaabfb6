"""Portfolio benchmark (not a test): 8 projects x phase3_50k through ``service.execute_portfolio`` on this machine's
threads and on a 2-worker Dask LocalCluster (process workers, one thread each), the ratio measured in the same run;
the Dask per-task overhead (no-op tasks), the worker seconds per row and the client's serial share; and from them
an estimate for a 16-node cluster. Writes its section into docs/performance.md between markers.

    .venv/bin/python benchmarks/portfolio.py              # 3 repeats (about a minute)
    .venv/bin/python benchmarks/portfolio.py --repeats 1  # quicker
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Python puts this script's folder first on sys.path, where benchmarks/http.py would shadow the standard library's
# http package (distributed imports http.client): take it off before anything imports it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]


def _engine_benchmark():
    """benchmarks/engine.py as a module (its machine() and spread()), loaded from its file."""
    spec = importlib.util.spec_from_file_location("phase1_engine_benchmark", ROOT / "benchmarks" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ENGINE = _engine_benchmark()
machine, spread = _ENGINE.machine, _ENGINE.spread

DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- portfolio-benchmark:start -->", "<!-- portfolio-benchmark:end -->"
PRESET = "phase3_50k"
NODES, WORKERS_PER_NODE = 16, 2  # the estimate: 16 machines like this one, one worker process per core


def projects() -> list[dict]:
    """Eight projects: the four samples, the test project, and three variants (rent and size changed)."""
    files = [ROOT / "examples" / f"{n}.json" for n in ("london_dc_alpha", "frankfurt_dc_beta", "ashburn_dc_gamma",
                                                       "slough_dc_delta")] + [ROOT / "tests" / "data" /
                                                                              "portfolio_osaka.json"]
    data = [json.loads(f.read_text()) for f in files]
    variants = []
    for base, scale in zip(data[:3], (0.9, 1.1, 1.05), strict=True):
        v = dict(base, title=f"{base['title']} II", gross_it_load_mw=round(base["gross_it_load_mw"] * scale, 3))
        variants.append(v)
    return [{"project": d} for d in data + variants]


def portfolio(seed: int):
    from phase1lib.portfolio import parse_portfolio

    return parse_portfolio({"defaults": {"preset": PRESET, "seed": seed}, "projects": projects()})


class ClientTimer:
    """Seconds the client spends in stage 3 (assemble, finish) and storing runs: the serial share."""

    def __init__(self) -> None:
        from phase1lib import service
        from phase1lib.portfolio import cluster

        self.seconds = 0.0
        for module, name in ((cluster, "assemble"), (cluster, "finish"), (cluster, "build_context"),
                             (service, "store_run")):
            setattr(module, name, self._timed(getattr(module, name)))

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return wrapper


def once(store_dir: Path, seed: int, scheduler: str | None) -> float:
    from phase1lib import service
    from phase1lib.store import SQLiteStore

    store = SQLiteStore(store_dir / f"s{seed}-{bool(scheduler)}.db")
    try:
        started = time.perf_counter()
        result = service.execute_portfolio(store, portfolio(seed), scheduler=scheduler, workers=2,
                                           home=store_dir / f"h{seed}-{bool(scheduler)}")
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    assert not any(result.reused)
    return elapsed


def noop(i: int) -> int:
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="print only; do not edit docs/performance.md")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    from phase1lib import service
    from phase1lib.portfolio import cluster
    from phase1lib.store import SQLiteStore

    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    timer = ClientTimer()
    tmp = Path(tempfile.mkdtemp(prefix="phase1-portfolio-bench-"))
    store = SQLiteStore(tmp / "plan.db")
    plans = service.plan_portfolio(store, portfolio(1))
    store.close()
    rows = sum(p.count for p in plans)
    started = time.perf_counter()
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, host="127.0.0.1") as lc, \
            Client(lc, set_as_default=False) as client:
        startup = time.perf_counter() - started
        address = lc.scheduler_address
        once(tmp, 7, None)  # warm-up: imports, first calls, the workers' imports
        once(tmp, 8, address)
        local, dask, client_share = [], [], []
        for r in range(args.repeats):  # a new seed each repeat: new run_ids, contexts built afresh everywhere
            local.append(once(tmp, 100 + r, None))
            timer.seconds = 0.0
            client.get_task_stream(start=time.time())  # reset the stream's window
            t0 = time.time()
            dask.append(once(tmp, 200 + r, address))
            client_share.append(timer.seconds)
        stream = client.get_task_stream(start=t0)
        chunk_tasks = [t for t in stream if str(t["key"]).startswith("phase1-chunk-")]
        compute_s = sum(s["stop"] - s["start"] for t in chunk_tasks for s in t["startstops"]
                        if s["action"] == "compute")
        n_noop = 1000
        t = time.perf_counter()
        client.gather(client.map(noop, range(n_noop), pure=False))
        per_task = (time.perf_counter() - t) / n_noop
        tasks_here = sum(len(p.job.bounds(cluster.task_rows(p.job, 2))) for p in plans)
    from phase1lib.engine.runner import evaluate_job_chunk

    bytes_per_row = len(pickle.dumps(evaluate_job_chunk(plans[0].job, (0, 4096)), protocol=5)) / 4096
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    row_s = compute_s / max(1, rows)  # worker seconds per row, from the last repeat's compute times
    workers16 = NODES * WORKERS_PER_NODE
    tasks16 = sum(len(p.job.bounds(cluster.task_rows(p.job, workers16))) for p in plans)
    client_s = statistics.median(client_share)
    estimate = rows * row_s / workers16 + tasks16 * per_task + client_s
    ratios = [a / b for a, b in zip(local, dask, strict=True)]
    result = {"projects": len(plans), "rows": rows, "local_s": local, "dask_s": dask, "ratio": ratios,
              "cluster_startup_s": startup, "per_task_s": per_task, "row_s": row_s, "client_s": client_share,
              "tasks_here": tasks_here, "tasks16": tasks16, "estimate16_s": estimate, "uptime_before": uptime_before,
              "uptime_after": uptime_after, "kernels": os.environ.get("PHASE1_KERNELS", "auto"),
              "bytes_per_row": bytes_per_row}
    print(json.dumps(result, indent=1))
    block = render(result, machine(), args.repeats)
    print(block)
    if not args.no_doc:
        write_doc(block)


def render(r: dict, info: dict[str, str], repeats: int) -> str:
    med_local, med_dask = statistics.median(r["local_s"]), statistics.median(r["dask_s"])
    lines = [
        START, "",
        f"`benchmarks/portfolio.py`: {r['projects']} projects x {PRESET} ({r['rows']:,} permutations in all: the "
        "four samples, the test project and three variants), each repeat with a new seed (new run_ids: every "
        "run computed and stored afresh, contexts rebuilt), through `service.execute_portfolio`. Machine: "
        f"{info['cpu']}, {info['cores']} cores, shared with other agents: load `{r['uptime_before']}` before, "
        f"`{r['uptime_after']}` after. min / median / max of {repeats} repeats.", "",
        "| path | seconds | permutations / s (median) |", "|---|---:|---:|",
        f"| local: 2 threads, projects one after the other | {spread(r['local_s'])} | {r['rows'] / med_local:,.0f} |",
        f"| Dask LocalCluster: 2 process workers x 1 thread, {r['tasks_here']} tasks | {spread(r['dask_s'])} | "
        f"{r['rows'] / med_dask:,.0f} |", "",
        f"Ratio local / Dask in the same run: {spread(r['ratio'], 2)} (above 1: Dask faster). Cluster start-up "
        f"(not in the figures): {r['cluster_startup_s']:.2f} s. On one 2-core machine the cluster cannot win: "
        "its two workers have the same two cores as the local threads, and add what a cluster costs (each "
        "worker process builds every run's context, the chunks' columns are pickled back, smaller chunks); it is "
        "there to show the path works and to measure its costs, which the estimate below scales.", "",
        f"Per-task overhead (1,000 no-op tasks through the scheduler): {r['per_task_s'] * 1e3:.2f} ms per task. "
        f"Worker compute: {r['row_s'] * 1e6:.2f} µs per permutation (Dask's task stream, compute only). The "
        f"client's serial share (assemble, rank, Monte Carlo, frame, Parquet, index: stage 3 of each run): "
        f"{spread(r['client_s'], 2)} s.", "",
        f"**Estimate, not a measurement**, for a {NODES}-node cluster of machines like this one "
        f"({NODES * WORKERS_PER_NODE} workers): permutations x per-permutation cost / workers + tasks x per-task "
        f"overhead + the client's serial share = {r['rows']:,} x {r['row_s'] * 1e6:.2f} µs / "
        f"{NODES * WORKERS_PER_NODE} + {r['tasks16']} x {r['per_task_s'] * 1e3:.2f} ms + "
        f"{statistics.median(r['client_s']):.2f} s = **{r['estimate16_s']:.2f} s** (against {med_local:.2f} s "
        "locally). The client's serial share then dominates: stage 3 runs in the workbench process, one run "
        "after another as their chunks arrive; the transfer of the chunks' columns "
        f"({r['bytes_per_row']:,.0f} bytes per permutation, {r['rows'] * r['bytes_per_row'] / 1e6:,.0f} MB for this "
        "portfolio) over a real network is not in it.", "",
        END,
    ]
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text()
    if START not in text:
        text = text.rstrip("\n") + "\n\n## Portfolio (Dask)\n\n" + START + "\n" + END + "\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail)


if __name__ == "__main__":
    main()

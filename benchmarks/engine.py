"""Engine benchmark (not a test): wall time, permutations per second and peak RSS of runs of the London
sample at quarterly periods, the whole `phase1 run` command, and the plain per-permutation loop
(tests/reference.py) for comparison. Writes the table into docs/performance.md between markers.

    .venv/bin/python benchmarks/engine.py            # full table (about two minutes)
    .venv/bin/python benchmarks/engine.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (sample, preset) rows; the market_* presets run under ruleset v2 (their own), the others under v1.
CASES = (("london_dc_alpha", "current_1920"), ("london_dc_alpha", "phase2_10k"), ("london_dc_alpha", "phase3_50k"),
         ("london_dc_alpha", "maximum_250k"), ("london_dc_alpha", "market_1920"), ("london_dc_alpha", "market_max"),
         ("frankfurt_dc_beta", "market_max"))
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- engine-benchmark:start -->", "<!-- engine-benchmark:end -->"

CHILD = """
import json, resource, sys, time
from phase1lib.engine import run
from phase1lib.presets import preset_ranges, preset_ruleset
from phase1lib.project import load_project
from phase1lib.ruleset import load_ruleset
project = load_project(sys.argv[1])
ruleset = load_ruleset(preset_ruleset(sys.argv[2]) or "v1")
run(project, preset_ranges("current_1920"))  # warm-up: imports, first calls
engine, total = [], []
for _ in range(int(sys.argv[4])):
    result = run(project, preset_ranges(sys.argv[2]), workers=int(sys.argv[3]), ruleset=ruleset)
    engine.append(result.meta["timings"]["engine_s"])
    total.append(result.meta["timings"]["total_s"])
print(json.dumps({"engine_s": engine, "with_frame_s": total, "evaluated": result.meta["evaluated"],
                  "ruleset": ruleset.version, "top": len(result.top),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import polars

    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "numpy": numpy.__version__, "polars": polars.__version__, "os": platform.platform()}


def engine_run(sample: str, preset: str, workers: int, repeats: int) -> dict:
    """Engine times of ``repeats`` runs in a fresh process (after a warm-up run), and its peak RSS."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "examples" / f"{sample}.json"), preset,
                          str(workers), str(repeats)], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


def cli_run(sample: str, preset: str, workers: int) -> float:
    """Wall time of the whole `phase1 run` command (fresh PHASE1_HOME: nothing cached; Parquet written)."""
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, PHASE1_HOME=home)
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "phase1"), "run", "--project",
                        str(ROOT / "examples" / f"{sample}.json"), "--preset", preset, "--workers", str(workers)],
                       capture_output=True, check=True, env=env, cwd=ROOT)
        return time.perf_counter() - started


def spread(values: list[float], digits: int = 3) -> str:
    """min / median / max of repeated measurements."""
    v = sorted(values)
    return f"{v[0]:.{digits}f} / {statistics.median(v):.{digits}f} / {v[-1]:.{digits}f}"


def loop_per_permutation(count: int) -> tuple[float, float]:
    """Seconds per permutation of the plain scalar loop (tests/reference.py) and of the engine, same points."""
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np
    import reference

    from phase1lib.engine import run
    from phase1lib.presets import preset_ranges
    from phase1lib.project import load_project
    from phase1lib.ranges import parse_ranges

    project = load_project(ROOT / "examples" / "london_dc_alpha.json")
    grid = parse_ranges(preset_ranges("maximum_250k"), project)
    picks = np.linspace(0, grid.cardinality - 1, count).astype(int)
    started = time.perf_counter()
    for i in picks:
        reference.evaluate(project, grid.point(int(i)))
    loop = (time.perf_counter() - started) / count
    run(project, preset_ranges("current_1920"))
    engine = run(project, preset_ranges("maximum_250k")).meta["timings"]["engine_s"] / grid.cardinality
    return loop, engine


def render(rows: list[dict], loop: tuple[float, float], info: dict[str, str], repeats: int) -> str:
    lines = [START, "", f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, numpy "
             f"{info['numpy']}, polars {info['polars']}; {info['os']}. Each figure is min / median / max of "
             f"{repeats} repeats (engine: in one process after a warm-up run; `phase1 run`: a fresh process each).", "",
             "| sample | preset | ruleset | permutations | workers | engine s | permutations / s (median) "
             "| engine + frame s | `phase1 run` s | peak RSS MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        median = statistics.median(r["engine_s"])
        lines.append(f"| {r['sample'].split('_')[0]} | {r['preset']} | {r['ruleset']} | {r['evaluated']:,} | "
                     f"{r['workers']} | {spread(r['engine_s'])} | {r['evaluated'] / median:,.0f} | "
                     f"{spread(r['with_frame_s'])} | {spread(r['cli_s'], 2)} | {r['peak_rss_mb']:.0f} |")
    per_loop, per_engine = loop
    lines += ["", f"Plain per-permutation loop (tests/reference.py, the same methodology in readable Python): "
              f"{per_loop * 1e3:.2f} ms per permutation; the vectorised engine: {per_engine * 1e6:.2f} µs per "
              f"permutation (maximum_250k, 1 worker) — {per_loop / per_engine:,.0f}x.", "", END]
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n\n## Engine\n\n" + START + "\n" + END + "\n"
    if START not in text:
        text += "\n## Engine\n\n" + START + "\n" + END + "\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat per measurement")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not edit docs/performance.md")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    rows = []
    for sample, preset in CASES:
        for workers in (1, 2):
            r = engine_run(sample, preset, workers, repeats)
            r.update(sample=sample, preset=preset, workers=workers,
                     cli_s=[cli_run(sample, preset, workers) for _ in range(repeats)])
            rows.append(r)
            print(json.dumps(r), flush=True)
    loop = loop_per_permutation(50 if args.quick else 200)
    block = render(rows, loop, machine(), repeats)
    print(block)
    if not args.no_doc:
        write_doc(block)


if __name__ == "__main__":
    main()

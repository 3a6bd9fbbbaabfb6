"""Engine benchmark (not a test): engine time, the whole `phase1 run` command and its peak RSS, the quick commands,
the cost per period (monthly against quarterly) and the plain per-permutation loop (tests/reference.py) for the
ratio, every figure min / median / max over repeats, measured in this run on this machine. Writes its tables into
docs/performance.md between markers.

    .venv/bin/python benchmarks/engine.py                 # full tables (a few minutes on 2 cores)
    .venv/bin/python benchmarks/engine.py --quick         # one repeat, smaller loop sample
    .venv/bin/python benchmarks/engine.py --root ../old --json before.json --no-doc   # another checkout (v1 cases)

``--root`` measures another checkout of the workbench with this interpreter (its folder first on PYTHONPATH), so a
before/after pair is taken in one session; cases that checkout cannot run (v2, newer presets) are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "performance.md"
START, END = "<!-- engine-benchmark:start -->", "<!-- engine-benchmark:end -->"
#: Issue 17's grid: 4 tenors x 18 coupons x 31 DSCR targets x 4 profiles x 2 modes x 3 ZCIS x wrap x mezz.
GRID_V1, GRID_V2 = HERE / "grids" / "london_214k.json", HERE / "grids" / "london_214k_market.json"
#: (label, sample, ranges: preset name or grid file, ruleset or None for the preset's own / v1, workers).
CASES = (
    ("issue 17 grid", "london_dc_alpha", GRID_V1, None, 1),
    ("issue 17 grid", "london_dc_alpha", GRID_V1, None, 2),
    ("issue 17 grid, market coupons", "london_dc_alpha", GRID_V2, "v2", 1),
    ("issue 17 grid, market coupons", "london_dc_alpha", GRID_V2, "v2", 2),
    ("preset", "london_dc_alpha", "current_1920", None, 1),
    ("preset", "london_dc_alpha", "phase2_10k", None, 1),
    ("preset", "london_dc_alpha", "phase3_50k", None, 1),
    ("preset", "london_dc_alpha", "maximum_250k", None, 1),
    ("preset", "london_dc_alpha", "maximum_250k", None, 2),
    ("preset", "london_dc_alpha", "market_1920", "v2", 1),
    ("preset", "frankfurt_dc_beta", "market_max", "v2", 1),
    ("preset", "frankfurt_dc_beta", "market_max", "v2", 2),
)
#: Quick commands timed whole (a fresh process each): the CLI's start-up plus a little work.
COMMANDS = (("phase1 validate", ["validate", "{project}"]), ("phase1 presets", ["presets"]),
            ("phase1 cardinality", ["cardinality", "--project", "{project}", "--preset", "current_1920"]),
            ("phase1 run --preset current_1920", ["run", "--project", "{project}", "--preset", "current_1920"]))

CHILD = """
import json, resource, sys, time
from phase1lib.engine import run
project_path, ranges_path, version, workers, repeats = sys.argv[1:6]
from phase1lib.project import load_project
project = load_project(project_path)
ranges = json.load(open(ranges_path))
kw = {}
if version != "-":
    from phase1lib.ruleset import load_ruleset
    kw["ruleset"] = load_ruleset(version)
run(project, {"senior_tenor": 10, "senior_coupon": 0.05, "senior_dscr": 1.3}, **kw)  # warm-up: imports, first calls
engine, total = [], []
for _ in range(int(repeats)):
    result = run(project, ranges, workers=int(workers), **kw)
    engine.append(result.meta["timings"]["engine_s"])
    total.append(result.meta["timings"]["total_s"])
print(json.dumps({"engine_s": engine, "with_frame_s": total, "evaluated": result.meta["evaluated"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
CLI = "import sys; from phase1lib.cli import main; sys.exit(main())"


class Checkout:
    """The workbench checkout measured: its folder first on the path of every child process."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PHASE1_")}
        self.env["PYTHONPATH"] = str(self.root)

    def sample(self, name: str) -> Path:
        return self.root / "examples" / f"{name}.json"

    def ranges_file(self, ranges: str | Path, folder: Path) -> Path:
        """A grid file as it is; a preset written out by this checkout (its own definition of the preset)."""
        if isinstance(ranges, Path):
            return ranges
        target = folder / f"{ranges}.json"
        code = (f"import json; from phase1lib.presets import preset_ranges; "
                f"json.dump(preset_ranges({ranges!r}), open({str(target)!r}, 'w'))")
        subprocess.run([sys.executable, "-c", code], check=True, env=self.env, cwd=self.root, capture_output=True)
        return target

    def engine(self, project: Path, ranges: Path, version: str | None, workers: int, repeats: int) -> dict:
        out = subprocess.run([sys.executable, "-c", CHILD, str(project), str(ranges), version or "-", str(workers),
                              str(repeats)], capture_output=True, text=True, check=True, env=self.env, cwd=self.root)
        return json.loads(out.stdout)

    def command(self, args: list[str], home: Path) -> tuple[float, float]:
        """(wall seconds, peak RSS MB) of one CLI command in a fresh process."""
        env = dict(self.env, PHASE1_HOME=str(home))
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CLI, *args], env=env, cwd=self.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, args, stderr=proc.stderr.read() if proc.stderr
                                                else None)
        return wall, usage.ru_maxrss / 1024


def spread(values: list[float], digits: int = 3) -> str:
    """min / median / max of repeated measurements."""
    v = sorted(values)
    return f"{v[0]:.{digits}f} / {statistics.median(v):.{digits}f} / {v[-1]:.{digits}f}"


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    import numpy
    import polars

    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(), "numpy": numpy.__version__,
            "polars": polars.__version__, "os": platform.platform(), "load": " ".join(
                f"{x:.1f}" for x in os.getloadavg())}


def measure_cases(co: Checkout, repeats: int, tmp: Path) -> list[dict]:
    rows = []
    for label, sample, ranges, version, workers in CASES:
        try:
            path = co.ranges_file(ranges, tmp)
            r = co.engine(co.sample(sample), path, version, workers, repeats)
            args = ["run", "--project", str(co.sample(sample)), "--ranges", str(path), "--workers", str(workers)]
            args += ["--ruleset", version] if version else []
            whole = [co.command(args, tmp / f"home-{len(rows)}-{i}") for i in range(repeats)]
        except subprocess.CalledProcessError as error:
            print(f"skipped {label} {ranges}: {str(error.stderr)[-300:]}", file=sys.stderr)
            continue
        r.update(label=label, sample=sample, ranges=ranges.stem if isinstance(ranges, Path) else ranges,
                 ruleset=version or "v1", workers=workers, cli_s=[w for w, _ in whole],
                 cli_rss_mb=max(m for _, m in whole))
        rows.append(r)
        print(json.dumps(r), flush=True)
    return rows


def measure_commands(co: Checkout, repeats: int, tmp: Path) -> list[dict]:
    rows = []
    for label, template in COMMANDS:
        args = [a.replace("{project}", str(co.sample("london_dc_alpha"))) for a in template]
        try:
            times = [co.command(args, tmp / f"cmd-{len(rows)}-{i}")[0] for i in range(repeats)]
        except subprocess.CalledProcessError as error:
            print(f"skipped {label}: {str(error.stderr)[-300:]}", file=sys.stderr)
            continue
        rows.append({"command": label, "s": times})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_periods(co: Checkout, repeats: int, tmp: Path) -> dict:
    """The same 50k grid on the London sample at 4 and at 12 periods a year (3x the periods)."""
    data = json.loads(co.sample("london_dc_alpha").read_text())
    out = {}
    for ppy in (4, 12):
        project = tmp / f"london_{ppy}.json"
        project.write_text(json.dumps({**data, "periods_per_year": ppy}))
        r = co.engine(project, co.ranges_file("phase3_50k", tmp), None, 1, repeats)
        out[ppy] = r
        print(json.dumps({"periods_per_year": ppy, **r}), flush=True)
    return out


def loop_per_permutation(co: Checkout, count: int) -> dict:
    """Seconds per permutation of the plain scalar loop (tests/reference.py) and of the engine, same points."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(co.root / 'tests')!r})
import numpy as np, reference
from phase1lib.engine import run
from phase1lib.presets import preset_ranges
from phase1lib.project import load_project
from phase1lib.ranges import parse_ranges
project = load_project({str(co.sample('london_dc_alpha'))!r})
grid = parse_ranges(preset_ranges("maximum_250k"), project)
picks = np.linspace(0, grid.cardinality - 1, {count}).astype(int)
started = time.perf_counter()
for i in picks:
    reference.evaluate(project, grid.point(int(i)))
loop = (time.perf_counter() - started) / {count}
run(project, preset_ranges("current_1920"))
engine = [run(project, preset_ranges("maximum_250k")).meta["timings"]["engine_s"] / grid.cardinality for _ in range(3)]
print(json.dumps({{"loop_s": loop, "engine_s": engine}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=co.env,
                         cwd=co.root)
    return json.loads(out.stdout)


def render(result: dict, repeats: int) -> str:
    info = result["machine"]
    lines = [START, "", f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, numpy "
             f"{info['numpy']}, polars {info['polars']}; {info['os']}; load average at the start {info['load']}. "
             f"Each figure is min / median / max of {repeats} repeats (engine: in one process after a warm-up run; "
             "`phase1 run` and the other commands: a fresh process each, nothing cached).", "",
             "| case | sample | ranges | ruleset | permutations | workers | engine s | permutations / s (median) "
             "| engine + frame s | `phase1 run` s | peak RSS MB (`phase1 run`) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["cases"]:
        median = statistics.median(r["engine_s"])
        lines.append(f"| {r['label']} | {r['sample'].split('_')[0]} | {r['ranges']} | {r['ruleset']} | "
                     f"{r['evaluated']:,} | {r['workers']} | {spread(r['engine_s'])} | "
                     f"{r['evaluated'] / median:,.0f} | "
                     f"{spread(r['with_frame_s'])} | {spread(r['cli_s'], 2)} | {r['cli_rss_mb']:.0f} |")
    lines += ["", "| command (London sample) | seconds |", "|---|---:|"]
    lines += [f"| `{c['command']}` | {spread(c['s'], 2)} |" for c in result["commands"]]
    periods = result["periods"]
    if periods:
        q, m = (statistics.median(periods[k]["engine_s"]) for k in ("4", "12"))
        lines += ["", "Cost per period (phase3_50k, London, 1 worker): quarterly "
                  f"{spread(periods['4']['engine_s'])} s, "
                  f"monthly {spread(periods['12']['engine_s'])} s: monthly / quarterly = **{m / q:.2f}x** for 3x the "
                  "periods (linear: about 3x)."]
    loop = result["loop"]
    per_engine = statistics.median(loop["engine_s"])
    lines += ["", f"Plain per-permutation loop (tests/reference.py, the same methodology in readable Python): "
              f"{loop['loop_s'] * 1e3:.2f} ms per permutation; the vectorised engine: "
              f"{spread([e * 1e6 for e in loop['engine_s']], 2)} µs per permutation (maximum_250k, 1 worker): "
              f"**{loop['loop_s'] / per_engine:,.0f}x** (median), measured in the same run.", "", END]
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
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout to measure (default: this one)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not edit docs/performance.md")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    co = Checkout(args.root)
    with tempfile.TemporaryDirectory(prefix="phase1-bench-") as folder:
        tmp = Path(folder)
        result = {"root": str(co.root), "machine": machine(), "cases": measure_cases(co, repeats, tmp),
                  "commands": measure_commands(co, max(repeats, 5), tmp),
                  "periods": {str(k): v for k, v in measure_periods(co, repeats, tmp).items()},
                  "loop": loop_per_permutation(co, 50 if args.quick else 200)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    block = render(result, repeats)
    print(block)
    if not args.no_doc and co.root == HERE.parent.resolve():
        write_doc(block)


if __name__ == "__main__":
    main()

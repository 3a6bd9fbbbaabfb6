"""Where an engine run's time goes (not a test): pyinstrument over one run of issue 17's 214,272-permutation London
grid, after a warm-up run, in a fresh process. Prints the call tree below ``run`` (calls of 2 % of the run or more)
and the functions with the most own time, as shares of the run; docs/performance.md quotes them ("Where the time goes").

    .venv/bin/python benchmarks/profile_engine.py                 # v1 grid, 1 worker
    .venv/bin/python benchmarks/profile_engine.py --ruleset v2    # the same grid with "market" coupons
    .venv/bin/python benchmarks/profile_engine.py --root ../old   # another checkout (its folder first on the path)

Needs pyinstrument (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys
from collections import defaultdict
from pyinstrument import Profiler
from phase1lib.engine import run
from phase1lib.project import load_project
project = load_project(sys.argv[1])
ranges = json.load(open(sys.argv[2]))
kw = {}
if sys.argv[3] != "v1":
    from phase1lib.ruleset import load_ruleset
    kw["ruleset"] = load_ruleset(sys.argv[3])
run(project, ranges, **kw)  # warm-up: imports, first calls, allocator
profiler = Profiler(interval=0.0005)
profiler.start()
result = run(project, ranges, **kw)
profiler.stop()
root = profiler.last_session.root_frame()

def walk(frame):
    yield frame
    for child in frame.children:
        yield from walk(child)

top = next(f for f in walk(root) if f.function == "run" and "runner" in (f.file_path or ""))
total = top.time

def named(frame):
    # a frame's function and file; pyinstrument's [self] frames stand for their parent's own time
    f = frame.parent if frame.function == "[self]" and frame.parent is not None else frame
    return f"{f.function} ({(f.file_path_short or 'built-in').replace(chr(92), '/')})"

tree = []
def prune(frames, depth):
    # the call tree below run, calls of one function from one caller merged, down to depth 9, calls of >= 2 %
    merged = defaultdict(list)
    for frame in frames:
        for child in frame.children:
            if child.function != "[self]":
                merged[named(child)].append(child)
    for name, group in sorted(merged.items(), key=lambda kv: -sum(c.time for c in kv[1])):
        seconds = sum(c.time for c in group)
        if seconds >= 0.02 * total:
            tree.append([depth, name, seconds])
            if depth < 9:
                prune(group, depth + 1)
prune([top], 0)
own = defaultdict(float)
for frame in walk(top):
    own[named(frame)] += frame.time - sum(c.time for c in frame.children)
print(json.dumps({"total_s": total, "engine_s": result.meta["timings"]["engine_s"],
                  "evaluated": result.meta["evaluated"],
                  "tree": tree, "own": sorted(own.items(), key=lambda kv: -kv[1])[:15]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout to profile")
    parser.add_argument("--ruleset", default="v1", choices=("v1", "v2"))
    parser.add_argument("--json", type=Path, help="also write the raw profile here")
    args = parser.parse_args()
    root = args.root.resolve()
    grid = HERE / "grids" / ("london_214k.json" if args.ruleset == "v1" else "london_214k_market.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHASE1_")}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", CHILD, str(root / "examples" / "london_dc_alpha.json"), str(grid),
                          args.ruleset], capture_output=True, text=True, env=env, cwd=root)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    profile = json.loads(out.stdout)
    if args.json:
        args.json.write_text(json.dumps(profile, indent=1))
    total = profile["total_s"]
    print(f"{root}: {profile['evaluated']:,} permutations, ruleset {args.ruleset}; run {total:.3f} s under the "
          f"profiler (engine {profile['engine_s']:.3f} s)\n\ncall tree below run (calls of 2 % or more)" + " " * 30
          + "s   share")
    for depth, name, seconds in profile["tree"]:
        print(f"{'  ' * depth + name:80s} {seconds:6.3f} {seconds / total:6.1%}")
    print("\nown time (function, file)" + " " * 56 + "s   share")
    for name, seconds in profile["own"]:
        print(f"{name[:80]:80s} {seconds:6.3f} {seconds / total:6.1%}")


if __name__ == "__main__":
    main()

"""The Securitisation scatter's decimation (phase1lib.ui.charts.decimate) on 250,000 structures: min / median /
max seconds over repeats, and how many points it keeps (docs/performance.md)."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from phase1lib.ui import charts


def main(repeats: int = 15, n: int = 250_000) -> dict[str, float]:
    rng = np.random.Generator(np.random.PCG64(7))
    x, y, rank = rng.normal(1.35, 0.1, n), rng.normal(200, 30, n), rng.integers(0, 5, n)
    window = (float(x.min()), float(x.max())), (float(y.min()), float(y.max()))
    times, kept = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        kept = len(charts.decimate(x, y, rank, *window))
        times.append(time.perf_counter() - started)
    times.sort()
    return {"points": n, "kept": kept, "min_s": times[0], "median_s": times[len(times) // 2], "max_s": times[-1]}


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
    print()

"""Compiled kernels (numba) for the engine's hottest per-row loops: mezzanine sizing with the combined stresses,
and the equity IRR's Newton iterations.

Each kernel performs exactly the IEEE operations of the numpy code it replaces (``mezz.size_mezz`` with
``evaluate._mezz_group``; ``irr._newton`` with its NPV polynomials), in the same order, without fastmath, so
results are bit-identical whichever path runs (tests/test_kernels.py). What they save is numpy's passes over
(rows x periods) temporaries: a kernel reads each period array once per row and releases the GIL, so chunks
run in parallel on the worker threads.

numba is imported lazily, and kernels are used only once their compiled code is cached (``ready()``):
``phase1 warmup`` (run by ``./workbench`` at set-up) compiles them, so no user's run pays the compile; until
then, and for grids too small to repay numba's import, the numpy path runs. ``PHASE1_KERNELS=numpy`` forces
the numpy path (``=numba`` forces the kernels, compiling if needed).
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

#: Rows of a run from which the kernels repay numba's import (~0.3 s); smaller grids take the numpy path.
MIN_ROWS = 20_000
_SOURCE = Path(__file__).with_name("_kernels_src.py")


def _cache_dir() -> Path:
    """Where numba caches the compiled kernels: beside the source when writable, else the user's cache."""
    local = Path(__file__).parent / "__pycache__"
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local / "numba"
    except OSError:
        pass
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phase1" / "numba"


def _marker() -> Path:
    digest = hashlib.sha256(_SOURCE.read_bytes()).hexdigest()[:16]
    return _cache_dir() / f"phase1-kernels-{digest}.ready"


def mode() -> str:
    """PHASE1_KERNELS: "auto" (default), "numpy" or "numba"."""
    value = (os.environ.get("PHASE1_KERNELS") or "auto").strip().lower()
    return value if value in ("auto", "numpy", "numba") else "auto"


def ready() -> bool:
    """True when the kernels' compiled code is cached (or forced with PHASE1_KERNELS=numba)."""
    m = mode()
    if m == "numpy":
        return False
    if m == "numba":
        return True
    try:
        return _marker().is_file()
    except OSError:
        return False


def use_for(rows: int) -> bool:
    """Whether a run of ``rows`` permutations takes the compiled kernels."""
    return ready() and (rows >= MIN_ROWS or mode() == "numba")


@cache
def module() -> ModuleType:
    """The compiled kernels (imports numba; compiles what is not cached yet)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(_cache_dir()))
    from . import _kernels_src

    return _kernels_src


def warmup() -> Path:
    """Compile every kernel for the argument types the engine passes and mark the cache ready."""
    k = module()
    k.compile_all()
    marker = _marker()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("compiled\n")
    return marker


def mezz_group(lender_pos: np.ndarray, u: np.ndarray, stress_cash: np.ndarray, cls: np.ndarray, case: np.ndarray,
               senior: np.ndarray, coupon: np.ndarray, dscr: np.ndarray, n_m: np.ndarray, amort: np.ndarray,
               headroom: np.ndarray, ppy: int, width: int, span: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(amount, service rows x width, lowest principal / amount, combined stress minima rows x scenarios)."""
    rows = len(cls)
    amount = np.zeros(rows)
    min_ratio = np.zeros(rows)
    service = np.zeros((rows, width))
    totals = np.full((rows, stress_cash.shape[1]), np.nan)
    module().mezz_group(np.ascontiguousarray(lender_pos), np.ascontiguousarray(u), np.ascontiguousarray(stress_cash),
                        cls.astype(np.int64), case.astype(np.int64), senior.astype(np.float64),
                        coupon.astype(np.float64), dscr.astype(np.float64), n_m.astype(np.int64),
                        amort.astype(np.int64), headroom.astype(np.float64), int(ppy), int(width),
                        span.astype(np.int64), amount, min_ratio, service, totals)
    return amount, service, min_ratio, totals


def irr_yearly(yearly: np.ndarray, point: np.ndarray, point_year: np.ndarray, residual: float, equity: np.ndarray,
               ppy: int) -> np.ndarray:
    """``irr.irr_factor_yearly`` compiled: the discount factor x per column of ``yearly`` (years x rows)."""
    x = np.full(yearly.shape[1], np.nan)
    module().irr_yearly(np.ascontiguousarray(yearly.T), point.astype(np.float64), point_year.astype(np.int64),
                        float(residual), equity.astype(np.float64), int(ppy), x)
    return x


def irr_periods(flows_t: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """``irr.irr_factor_periods`` compiled: the discount factor x per column of ``flows_t`` (N x rows)."""
    x = np.full(flows_t.shape[1], np.nan)
    module().irr_periods(np.ascontiguousarray(flows_t.T), equity.astype(np.float64), x)
    return x

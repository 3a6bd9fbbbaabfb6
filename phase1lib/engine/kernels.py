"""Compiled kernels for the engine's hottest per-row loops: mezzanine sizing with the combined stresses, and the
equity IRR's Newton iterations (``kernels.c``, loaded with ctypes).

Each kernel performs exactly the IEEE operations of the numpy code it replaces (``mezz.size_mezz`` with
``evaluate._mezz_group``; ``irr._newton`` with its NPV polynomials), in the same order, compiled without
value-changing optimisations, so results are bit-identical whichever path runs (tests/test_kernels.py). What
they save is numpy's passes over (rows x periods) temporaries; ctypes releases the GIL during each call, so
chunks run in parallel on the worker threads.

Why C and not numba: both were built and measured on this machine (docs/performance.md): numba's kernels
were as fast, but importing numba and loading its cached code cost 0.6-0.9 s in every new process, more than
they save in a whole `phase1 run`; the C library loads in about a millisecond. It is compiled once, by the
system C compiler, at set-up (``phase1 warmup``, run by ``./workbench``), never during a user's run: until it
is built (or where no compiler exists) the numpy path runs. ``PHASE1_KERNELS=numpy`` forces the numpy path,
``=c`` the kernels whatever the grid size.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from .. import settings

#: Rows of a run from which the kernels are used (below, numpy's passes are cheap and both give the same).
MIN_ROWS = 2_000
SOURCE = Path(__file__).with_name("kernels.c")
#: No fused multiply-add, no reassociation: the kernels must round exactly as numpy does.
CFLAGS = ("-O2", "-fno-fast-math", "-ffp-contract=off", "-fPIC", "-shared", "-std=c11")


def mode() -> str:
    """PHASE1_KERNELS: "auto" (default), "numpy" or "c" (phase1lib.settings)."""
    return settings.get().kernels


def _cache_dir() -> Path:
    """Where the compiled library lives: beside the source when writable, else the user's cache."""
    local = Path(__file__).parent / "__pycache__"
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    return settings.get().cache_dir


def library_path() -> Path:
    """The compiled library for this source (its sha256 in the name: a changed kernel is rebuilt)."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    return _cache_dir() / f"phase1_kernels-{digest}.so"


def ready() -> bool:
    """True when the compiled library exists (it is built at set-up) and the numpy path is not forced."""
    if mode() == "numpy":
        return False
    try:
        return library_path().is_file()
    except OSError:
        return False


def use_for(rows: int) -> bool:
    """Whether a run of ``rows`` permutations takes the compiled kernels."""
    return ready() and (rows >= MIN_ROWS or mode() == "c")


def build() -> Path:
    """Compile kernels.c with the system C compiler (CC, else cc or gcc), atomically; returns the library."""
    target = library_path()
    if target.is_file():
        return target
    compiler = settings.get().c_compiler or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise RuntimeError("no C compiler (cc or gcc) found: the engine keeps its numpy path")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        try:
            done = subprocess.run([compiler, *CFLAGS, "-o", str(out), str(SOURCE), "-lm"], capture_output=True,
                                  text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"cannot run the C compiler {compiler!r}: {error}") from None
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[:500]}")
        os.replace(out, target)
    return target


def warmup() -> Path:
    """Build the library if needed and load it (``phase1 warmup``)."""
    path = build()
    library.cache_clear()
    library()
    return path


_F = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_I = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_N = ctypes.c_int64
_SIGNATURES = {
    "mezz_group": [_F, _F, _F, _N, _N, _I, _I, _F, _F, _F, _I, _I, _F, _N, _N, _I, _N, _F, _F, _F, _F, _F],
    "irr_yearly": [_F, _N, _N, _F, _I, ctypes.c_double, _F, _N, _F],
    "irr_periods": [_F, _N, _N, _F, _F],
}


@cache
def library() -> ctypes.CDLL:
    """The loaded kernels (building them if the library is missing, e.g. with PHASE1_KERNELS=c)."""
    lib = ctypes.CDLL(str(build()))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    return lib


def _f(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _i(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def mezz_group(lender_pos: np.ndarray, u: np.ndarray, stress_cash: np.ndarray, cls: np.ndarray, case: np.ndarray,
               senior: np.ndarray, coupon: np.ndarray, dscr: np.ndarray, n_m: np.ndarray, amort: np.ndarray,
               headroom: np.ndarray, ppy: int, width: int, span: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(amount, service rows x width, lowest principal / amount, combined stress minima rows x scenarios)."""
    rows, scenarios, n_periods = len(cls), stress_cash.shape[1], lender_pos.shape[1]
    assert u.shape[1] == n_periods == stress_cash.shape[2] and width <= n_periods
    amount, min_ratio = np.zeros(rows), np.zeros(rows)
    service = np.zeros((rows, width))
    totals = np.full((rows, scenarios), np.nan)
    library().mezz_group(_f(lender_pos), _f(u), _f(stress_cash), n_periods, scenarios, _i(cls), _i(case), _f(senior),
                         _f(coupon), _f(dscr), _i(n_m), _i(amort), _f(headroom), int(ppy), int(width), _i(span),
                         rows, amount, min_ratio, service, totals, np.empty(6 * max(width, 1)))
    return amount, service, min_ratio, totals


def irr_yearly(yearly: np.ndarray, point: np.ndarray, point_year: np.ndarray, residual: float, equity: np.ndarray,
               ppy: int) -> np.ndarray:
    """``irr.irr_factor_yearly`` compiled: the discount factor x per column of ``yearly`` (years x rows)."""
    years, rows = yearly.shape
    x = np.full(rows, np.nan)
    library().irr_yearly(_f(yearly.T), rows, years, _f(point), _i(point_year), float(residual), _f(equity), int(ppy),
                         x)
    return x


def irr_periods(flows_t: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """``irr.irr_factor_periods`` compiled: the discount factor x per column of ``flows_t`` (N x rows)."""
    n, rows = flows_t.shape
    x = np.full(rows, np.nan)
    library().irr_periods(_f(flows_t.T), rows, n, _f(equity), x)
    return x

"""Array helpers with layout-independent results.

The engine promises identical results whatever the chunk size or worker count, so reductions over
periods are sequential (``np.add.accumulate``) rather than numpy's pairwise ``sum``, whose rounding
depends on how the array is laid out. Min and max are exact in any order.
"""

from __future__ import annotations

import numpy as np

INF = np.inf


def seqsum(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum along ``axis`` in index order (deterministic rounding)."""
    if a.shape[axis] == 0:
        return np.zeros(np.delete(a.shape, axis))
    return np.take(np.add.accumulate(a, axis=axis), -1, axis=axis)


def safe_div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """num / den where den != 0, else ``fill`` (no warnings)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    out = np.full(num.shape, fill, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def masked_min(values: np.ndarray, mask: np.ndarray, axis: int = -1) -> np.ndarray:
    """Minimum of ``values`` where ``mask`` along ``axis``; +inf where the mask is empty."""
    return np.min(np.where(mask, values, INF), axis=axis)


def masked_max(values: np.ndarray, mask: np.ndarray, axis: int = -1) -> np.ndarray:
    """Maximum of ``values`` where ``mask`` along ``axis``; -inf where the mask is empty."""
    return np.max(np.where(mask, values, -INF), axis=axis)


def powers(base: np.ndarray, n: int) -> np.ndarray:
    """base^p for p = 1..n along a new last axis, by sequential products (no pow)."""
    b = np.asarray(base, dtype=float)
    return np.cumprod(np.broadcast_to(b[..., None], (*b.shape, n)), axis=-1)


def int_power(base: np.ndarray, k: int) -> np.ndarray:
    """base^k for a small non-negative integer k by repeated multiplication."""
    out = np.ones_like(np.asarray(base, dtype=float))
    for _ in range(k):
        out = out * base
    return out

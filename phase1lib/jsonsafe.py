"""JSON-safe numbers: METHODOLOGY section 7 says a ratio with a zero denominator, or any other non-finite value, is
null in JSON, never NaN or Infinity."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None for None, NaN and infinities (and for anything that is not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None

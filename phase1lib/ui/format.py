"""Display formats shared by every dashboard: money in the project currency, %, 0.00x, tier badges.

Numbers stay at full precision in the library; these helpers only decide how a figure reads on screen.
A missing or non-finite value always shows as an en dash, never as ``nan`` or ``None``.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from ..engine.gates import TIERS
from ..jsonsafe import finite_or_none
from ..project import CURRENCY_SYMBOLS
from ..text import safe_display

DASH = "–"
TIER_ORDER = TIERS
TIER_COLOURS = {"Diamond": "#2b7bb9", "Gold": "#c9a227", "Silver": "#8a949e", "Bronze": "#b06b3b",
                "Not viable": "#c7c7c7"}


def symbol(currency: str | None) -> str:
    """The currency's symbol (£, €, $, ¥), or its code followed by a space."""
    if not currency:
        return ""
    return CURRENCY_SYMBOLS.get(currency, f"{currency} ")


def money(value: Any, currency: str | None, compact: bool = False, dp: int | None = None) -> str:
    """Money in the project currency: ``£254,116,771`` or, compact, ``£254.1m`` / ``£1.25bn`` (``dp`` decimals)."""
    x = finite_or_none(value)
    if x is None:
        return DASH
    sign = "−" if x < 0 else ""
    x = abs(x)
    sym = symbol(currency)
    if compact:
        for size, suffix, places in ((1e9, "bn", 2), (1e6, "m", 1), (1e3, "k", 1)):
            if x >= size:
                return f"{sign}{sym}{x / size:,.{places if dp is None else dp}f}{suffix}"
    return f"{sign}{sym}{x:,.0f}"


def pct(value: Any, dp: int = 2) -> str:
    """A decimal rate or share as a percentage: 0.0425 -> ``4.25%``."""
    x = finite_or_none(value)
    return DASH if x is None else f"{x * 100:.{dp}f}%"


def ratio(value: Any, dp: int = 2) -> str:
    """A cover ratio: 1.35 -> ``1.35x``."""
    x = finite_or_none(value)
    return DASH if x is None else f"{x:.{dp}f}x"


def years(value: Any, dp: int = 1) -> str:
    """A duration in years: 12.08 -> ``12.1 yrs``; whole numbers without decimals."""
    x = finite_or_none(value)
    if x is None:
        return DASH
    return f"{x:.0f} yrs" if float(x).is_integer() else f"{x:.{dp}f} yrs"


def number(value: Any, dp: int = 0) -> str:
    """A plain number with thousands separators."""
    x = finite_or_none(value)
    return DASH if x is None else f"{x:,.{dp}f}"


def bps(value: Any) -> str:
    """Basis points: 15 -> ``15 bps``."""
    x = finite_or_none(value)
    return DASH if x is None else f"{x:g} bps"


def seconds(value: Any) -> str:
    """A duration: ``0.26 s``, ``3.4 s``, ``2 min 05 s``."""
    x = finite_or_none(value)
    if x is None:
        return DASH
    if x < 10:
        return f"{x:.2f} s"
    if x < 120:
        return f"{x:.1f} s"
    return f"{int(x // 60)} min {int(x % 60):02d} s"


def megabytes(value: Any) -> str:
    """Bytes as MB: ``512.3 MB``."""
    x = finite_or_none(value)
    return DASH if x is None else f"{x / 1e6:,.1f} MB"


def timestamp(value: Any) -> str:
    """An epoch-seconds time or an ISO string as ``2026-05-01 12:00 UTC``."""
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return safe_display(value)
    else:
        x = finite_or_none(value)
        if x is None:
            return DASH
        when = dt.datetime.fromtimestamp(x, dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def esc(text: Any) -> str:
    """HTML-escape any value for widget HTML; characters no page can carry (a lone surrogate) shown escaped."""
    return html.escape(safe_display(text), quote=True)


def tier_slug(tier: str) -> str:
    return tier.lower().replace(" ", "-")


def tier_badge(tier: str | None) -> str:
    """HTML badge of a tier (CSS classes ``p1-tier p1-tier-<slug>`` from the shared style)."""
    if not tier:
        return DASH
    return f'<span class="p1-tier p1-tier-{tier_slug(tier)}">{esc(tier)}</span>'


def field_value(value: Any, unit: str, currency: str | None) -> str:
    """A project field formatted by its unit (the echo beside a form field)."""
    if value is None or value == "":
        return ""
    if unit in ("rate",) or unit.startswith("share"):
        return pct(value)
    if unit.startswith("currency"):
        tail = unit.removeprefix("currency")
        return money(value, currency) + (f" {tail.strip()}" if tail.strip() else "")
    if unit == "ratio":
        return ratio(value)
    if unit.startswith("bps"):
        return bps(value)
    if unit == "MW":
        return f"{number(value, 1)} MW"
    return ""


def axis_money(value: float, currency: str) -> str:
    """A tick label: compact money without trailing decimals (£250m, £1.5bn, £0)."""
    text = money(value, currency, compact=True, dp=2)
    return re.sub(r"\.?0+(?=(bn|m|k)$)", "", text)

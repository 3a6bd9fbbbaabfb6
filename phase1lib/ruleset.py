"""Rulesets: the methodology's tables (tenants, rating ladders, spreads, repo rules, stresses) as data.

A ruleset is a JSON file under ``phase1lib/rulesets/``; its identity is its version plus a content
hash, so a run records exactly which tables it applied. v1 is the stable ruleset of METHODOLOGY.md; v2
(section 11) adds the pricing tables: benchmark curves, a term premium, cap rates, LTV limits and the
breakeven grid. A ruleset with a ``benchmark_curves`` table is *priced* (v2-shaped).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

RULESET_DIR = Path(__file__).parent / "rulesets"
STABLE_VERSION = "v1"
#: Rating grades best first; an index into this tuple is a rating's "notch" (0 = AAA).
RATINGS: tuple[str, ...] = ("AAA", "AA", "A", "BBB", "BB", "B")
#: A grade or a minimum is reached when value >= threshold - TOL (METHODOLOGY sections 5 and 8).
TOL = 1e-9
#: Bounds of a benchmark curve (METHODOLOGY section 11, project field benchmark_curve).
CURVE_POINTS = (1, 20)
CURVE_TENORS = (0.25, 50.0)
CURVE_RATES = (-0.02, 0.20)


def notch(rating: str) -> int:
    """Position of a rating on the ladder, 0 = AAA; larger is worse."""
    return RATINGS.index(rating)


@dataclass(frozen=True)
class Ruleset:
    """The tables of one ruleset version, with the content hash of the file they came from."""

    version: str
    sha256: str
    data: dict[str, Any] = field(repr=False, compare=False)

    @property
    def tenants(self) -> dict[str, dict[str, Any]]:
        return self.data["tenants"]

    def tenant(self, rating: str) -> dict[str, Any]:
        """Tenant row: dscr_floor, dsra_months, af_min, af_max, rating_cap."""
        return self.data["tenants"][rating]

    def ladder(self, country: str) -> dict[str, float]:
        """Minimum DSCR per grade AAA..BB for a jurisdiction; below BB is B."""
        return self.data["rating_ladder"][country]

    def ladder_thresholds(self, country: str) -> tuple[float, ...]:
        """Ladder thresholds in notch order AAA..BB (B has none)."""
        ladder = self.ladder(country)
        return tuple(float(ladder[r]) for r in RATINGS[:-1])

    def spread_bps(self, rating: str) -> float:
        return float(self.data["spread_bps"][rating])

    def spreads(self) -> tuple[float, ...]:
        """Spread in bps per notch AAA..B."""
        return tuple(self.spread_bps(r) for r in RATINGS)

    def repo_rule(self, country: str, bullet: bool) -> dict[str, Any] | None:
        """Repo rule for a jurisdiction and class, or None where the jurisdiction has none (JP)."""
        rules = self.data["repo_rules"].get(country)
        if rules is None:
            return None
        return rules["bullet" if bullet else "amortising"]

    @property
    def stress_scenarios(self) -> dict[str, dict[str, Any]]:
        return self.data["stress_scenarios"]

    @property
    def gates(self) -> dict[str, Any]:
        return self.data["gates"]

    @property
    def monte_carlo(self) -> dict[str, Any]:
        return self.data["monte_carlo"]

    def rating_from_dscr(self, country: str, dscr: float) -> str:
        """Best grade whose ladder minimum the DSCR reaches (within TOL); below BB is B."""
        for rating, threshold in zip(RATINGS[:-1], self.ladder_thresholds(country), strict=True):
            if dscr >= threshold - TOL:
                return rating
        return RATINGS[-1]

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "description": self.data.get("description", ""),
                "priced": self.priced}

    # -- ruleset v2 (METHODOLOGY section 11) ---------------------------------------------------------------
    @property
    def priced(self) -> bool:
        """True for a v2-shaped ruleset: market coupons, lending value and the LTV limit, breakevens."""
        return "benchmark_curves" in self.data

    def benchmark_curve(self, currency: str) -> tuple[tuple[float, float], ...]:
        """(tenor_years, rate) points of the currency's benchmark curve, tenors increasing."""
        return tuple((float(t), float(r)) for t, r in self.data["benchmark_curves"][currency]["points"])

    @property
    def term_premium(self) -> tuple[float, float]:
        """(bps_per_year, above_years) of the senior term premium."""
        tp = self.data["term_premium"]
        return float(tp["bps_per_year"]), float(tp["above_years"])

    def cap_rate(self, country: str) -> float:
        return float(self.data["cap_rates"][country])

    def max_ltv(self, tenant_rating: str) -> float:
        return float(self.data["max_ltv"][tenant_rating])

    @property
    def breakevens(self) -> dict[str, Any]:
        """The breakeven rules: the DSCR level (1.00x), the CPI grid step in bps and its last point."""
        return self.data["breakevens"]


def curve_errors(points: Any) -> list[str]:
    """Why ``points`` is not a valid benchmark curve ([] when it is): 1..20 [tenor_years, rate] pairs,
    tenors strictly increasing within 0.25..50 years, rates within -0.02..0.20."""
    lo, hi = CURVE_POINTS
    if not isinstance(points, list | tuple) or not lo <= len(points) <= hi:
        count = f"{len(points)} points" if isinstance(points, list | tuple) else json.dumps(points)[:40]
        return [f"must be a list of {lo}..{hi} [tenor_years, rate] points (got {count})"]
    errors: list[str] = []
    previous = None
    for i, point in enumerate(points):
        where = f"point {i + 1}"
        if (not isinstance(point, list | tuple) or len(point) != 2
                or not all(_finite_number(x) for x in point)):
            errors.append(f"{where}: must be [tenor_years, rate], two finite numbers (got {json.dumps(point)[:40]})")
            previous = None
            continue
        tenor, rate = float(point[0]), float(point[1])
        if not CURVE_TENORS[0] <= tenor <= CURVE_TENORS[1]:
            errors.append(f"{where}: tenor must be {CURVE_TENORS[0]:g} .. {CURVE_TENORS[1]:g} years (got {tenor:g})")
        if previous is not None and not tenor > previous:
            errors.append(f"{where}: tenors must be strictly increasing (got {tenor:g} after {previous:g})")
        if not CURVE_RATES[0] <= rate <= CURVE_RATES[1]:
            errors.append(f"{where}: rate must be {CURVE_RATES[0]:g} .. {CURVE_RATES[1]:g} (got {rate:g})")
        previous = tenor
    return errors


def _finite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def available_versions() -> list[str]:
    """Ruleset versions shipped with the library, sorted."""
    return sorted(p.stem for p in RULESET_DIR.glob("*.json"))


def ruleset_from_bytes(raw: bytes) -> Ruleset:
    """Parse a ruleset file's bytes; the hash is of the exact bytes."""
    data = json.loads(raw)
    return Ruleset(version=str(data["version"]), sha256=hashlib.sha256(raw).hexdigest(), data=data)


@lru_cache(maxsize=16)
def load_ruleset(version: str = STABLE_VERSION) -> Ruleset:
    """Load a shipped ruleset by version (``v1`` by default); InputError naming ``ruleset`` if unknown."""
    path = RULESET_DIR / f"{version}.json"
    if not isinstance(version, str) or version not in available_versions() or not path.is_file():
        from .errors import FieldError, InputError

        raise InputError([FieldError("ruleset", f"unknown ruleset {version!r}; shipped: "
                                                f"{', '.join(available_versions())}")], "ruleset")
    return ruleset_from_bytes(path.read_bytes())

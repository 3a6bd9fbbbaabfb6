"""Rulesets: the methodology's tables (tenants, rating ladders, spreads, repo rules, stresses) as data.

A ruleset is a JSON file under ``phase1lib/rulesets/``; its identity is its version plus a content
hash, so a run records exactly which tables it applied. v1 is the stable ruleset of METHODOLOGY.md.
"""

from __future__ import annotations

import hashlib
import json
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
        return {"version": self.version, "sha256": self.sha256, "description": self.data.get("description", "")}


def available_versions() -> list[str]:
    """Ruleset versions shipped with the library, sorted."""
    return sorted(p.stem for p in RULESET_DIR.glob("*.json"))


def ruleset_from_bytes(raw: bytes) -> Ruleset:
    """Parse a ruleset file's bytes; the hash is of the exact bytes."""
    data = json.loads(raw)
    return Ruleset(version=str(data["version"]), sha256=hashlib.sha256(raw).hexdigest(), data=data)


@lru_cache(maxsize=16)
def load_ruleset(version: str = STABLE_VERSION) -> Ruleset:
    """Load a shipped ruleset by version (``v1`` by default)."""
    path = RULESET_DIR / f"{version}.json"
    if not path.is_file():
        raise KeyError(f"unknown ruleset {version!r}; known: {', '.join(available_versions())}")
    return ruleset_from_bytes(path.read_bytes())

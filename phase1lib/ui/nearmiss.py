"""Near misses you can act on: the best Bronze structures of a run, each with its failed check, value, threshold
and hint, and what "apply" does with the hint.

A hint names one lever and the value that passes the failed check (METHODOLOGY section 8, D28). Applying it
adds that value to the lever's range key in the workspace (Permutations shows it; the other keys stay as the
run had them), or changes the project field when the lever is one; the next run then evaluates the hinted
structure with its neighbours. Before anything runs, :func:`hint_outcome` evaluates the hinted structure itself
and says plainly whether it is viable, or which check it trips next (and whether that check's own hint pulls
the lever back, so that no value of this lever alone can pass both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..engine import RunResult
from ..engine.gates import CHECKS
from ..engine.hints import LEVERS, NONE
from ..engine.render import structure_of
from ..engine.structure import evaluate_points
from ..pricing import MARKET
from ..project import Project
from ..ranges import ALIASES, KEYS
from ..ruleset import Ruleset
from .format import esc, pct, ratio, years

#: Near misses shown beside a short Top-N.
MAX_NEAR_MISSES = 5
#: Project fields a hint may name (none of today's levers is one; the apply path handles them if one appears).
PROJECT_FIELDS = frozenset(Project.__dataclass_fields__)


@dataclass(frozen=True)
class Hint:
    """One lever change: ``key`` from ``old`` to ``new``, found for the failed ``check``."""

    key: str
    old: Any
    new: float
    verb: str
    check: str

    @property
    def target(self) -> str:
        """Where applying it goes: "ranges" (Permutations) or "project"."""
        return "ranges" if self.key in KEYS else "project"

    def text(self) -> str:
        return f"{self.verb} {self.key} from {lever_text(self.key, self.old)} to {lever_text(self.key, self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "old": self.old, "new": self.new, "verb": self.verb, "check": self.check}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hint:
        return cls(str(data["key"]), data.get("old"), float(data["new"]), str(data.get("verb", "set")),
                   str(data.get("check", "")))


def lever_text(key: str, value: Any) -> str:
    """A lever value as the analyst reads it: 20 yrs, 1.35x, 4.25%."""
    if value is None:
        return "–"
    if value == MARKET:
        return "market"
    if key in ("senior_tenor", "mezz_tenor", "zcis_tenor_years"):
        return years(value)
    if key in ("senior_dscr", "mezz_dscr"):
        return ratio(value)
    if key in ("senior_coupon", "mezz_coupon", "sidecar_haircut_pct"):
        return pct(value)
    return esc(value)


def check_value_text(check: str, value: Any) -> str:
    """A failed check's value or threshold in its unit (ratios as 1.30x, shares as %, years, money)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if not isinstance(value, int | float):
        return esc(value)
    if check in ("advance_factor", "min_equity", "all_in_rate", "pricing"):
        return pct(value)
    if check in ("tenor", "wal"):
        return years(value, 2)
    if check == "senior_amount":
        return f"{value:,.0f}"
    return ratio(value)


def near_miss_frame(result: RunResult, n: int = MAX_NEAR_MISSES) -> pl.DataFrame:
    """The best ``n`` near misses of a run (highest day-one value first) from its frame."""
    frame = result.frame
    if not frame.height or "near_miss" not in frame.columns:
        return frame.head(0)
    return frame.filter(pl.col("near_miss")).sort(["day_one_value", "permutation_index"],
                                                  descending=[True, False], nulls_last=True).head(n)


def wants_near_misses(result: RunResult) -> bool:
    """Near misses are shown when the run ranked fewer viable structures than its Top-N asks."""
    return len(result.top) < int(result.meta.get("topn") or 0)


def render_near_misses(result: RunResult, project: Project, ruleset: Ruleset, n: int = MAX_NEAR_MISSES
                       ) -> list[dict[str, Any]]:
    """The best near misses as Top-N-like rows ({"rank": None, "permutation_index", "permutation_id",
    "structure", "kpis", "hint"}), re-evaluated with the run's seed for their failures, hint and Monte Carlo."""
    rows = near_miss_frame(result, n).to_dicts()
    if not rows:
        return []
    points = [structure_of(r) for r in rows]
    rendered = evaluate_points(project, points, ruleset, result.meta.get("seed"))
    out = []
    for row, point, r in zip(rows, points, rendered, strict=True):
        out.append({"rank": None, "permutation_index": int(row["permutation_index"]),
                    "permutation_id": r["permutation_id"], "structure": point, "kpis": r["kpis"],
                    "hint": hint_of(row, point)})
    return out


def hint_of(row: Mapping[str, Any], point: Mapping[str, Any]) -> Hint | None:
    """The lever change a frame row's hint names, or None (no single-lever fix)."""
    lever = row.get("hint_lever")
    value = row.get("hint_value")
    if lever is None or int(lever) == NONE or value is None or not math.isfinite(float(value)):
        return None
    verb, key = LEVERS[int(lever)]
    check = CHECKS[int(row["near_miss_check"])] if row.get("near_miss_check") is not None else ""
    new = int(value) if key in ("senior_tenor", "mezz_tenor") else float(value)
    return Hint(key=key, old=point.get(key), new=new, verb=verb, check=check)


def failed_checks(kpis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every failed check of a rendered structure (gate A then gate B)."""
    return [*(kpis.get("gate_a") or []), *(kpis.get("gate_b") or [])]


def failure_text(failure: Mapping[str, Any]) -> str:
    """'min_dscr 1.30x vs 1.35x' (escaped HTML)."""
    check = str(failure.get("check", ""))
    return (f"<b>{esc(check)}</b> {check_value_text(check, failure.get('value'))} vs "
            f"{check_value_text(check, failure.get('threshold'))}")


# ---- applying a hint ------------------------------------------------------------------------------------------


def hinted_structure(point: Mapping[str, Any], hint: Hint) -> dict[str, Any]:
    """The structure with the hinted lever value."""
    return {**point, hint.key: hint.new} if hint.target == "ranges" else dict(point)


def hinted_ranges(meta: Mapping[str, Any], hint: Hint) -> dict[str, Any]:
    """The run's range request with the hinted value added to the lever's key (as an explicit list of the run's
    values of that key plus the new one, in order)."""
    request = {k: v for k, v in (meta.get("ranges") or {}).items() if ALIASES.get(k, k) != hint.key}
    values = list((meta.get("grid") or {}).get(hint.key) or [])
    numbers = sorted({v for v in values if isinstance(v, int | float) and not isinstance(v, bool)} | {hint.new})
    texts = [v for v in values if isinstance(v, str)]
    request[hint.key] = [*numbers, *texts]
    return request


def hinted_project(meta: Mapping[str, Any], hint: Hint) -> dict[str, Any]:
    """The run's project, with the hinted field when the lever is a project field."""
    project = dict(meta.get("project") or {})
    if hint.target == "project":
        project[hint.key] = hint.new
    return project


@dataclass(frozen=True)
class Outcome:
    """What the hinted structure gives: viable (tier), or the checks it trips next."""

    viable: bool
    tier: str
    kpis: dict[str, Any]
    failures: tuple[dict[str, Any], ...]
    next_hint: str | None
    pulls_back: bool

    def html(self, hint: Hint) -> str:
        change = esc(hint.text())
        if self.viable:
            return (f'<span class="p1-msg-ok">✓</span> With {change}: <b>viable</b> '
                    f'({esc(self.tier)}). Rerun to see it ranked with its neighbours.')
        trips = "; ".join(failure_text(f) for f in self.failures) or "no check named"
        passed = "passes" if not any(f.get("check") == hint.check for f in self.failures) else "still fails"
        text = (f'<span class="p1-msg-error">✗</span> With {change} the structure {passed} '
                f"<b>{esc(hint.check)}</b> but trips {trips} next ({esc(self.tier)}).")
        if self.next_hint:
            text += f" Its hint: {esc(self.next_hint)}."
        if self.pulls_back:
            text += (f" That pulls {esc(hint.key)} back the other way: no value of {esc(hint.key)} alone passes "
                     "both checks; widen another key (a lower coupon, a longer tenor, mezzanine or wrap) instead.")
        return text


def hint_outcome(project: Project, point: Mapping[str, Any], hint: Hint, ruleset: Ruleset,
                 seed: int | None = None) -> Outcome:
    """Evaluate the hinted structure: viable, or what it trips next (and whether its own hint reverses ours)."""
    from dataclasses import replace

    changed_project = replace(project, **{hint.key: hint.new}) if hint.target == "project" else project
    rendered = evaluate_points(changed_project, [hinted_structure(point, hint)], ruleset, seed)[0]
    k = rendered["kpis"]
    failures = tuple(failed_checks(k))
    next_hint = k.get("hint")
    opposite = {"raise": "lower", "lower": "raise"}
    words = (next_hint or "").split(" ")
    pulls_back = len(words) > 1 and words[1] == hint.key and words[0] == opposite.get(hint.verb)
    return Outcome(viable=bool(k.get("viable")), tier=str(k.get("tier")), kpis=dict(k), failures=failures,
                   next_hint=next_hint, pulls_back=pulls_back)


def find_in_top(top: Sequence[Mapping[str, Any]], point: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Top-N row of a structure (same terms), if it is ranked."""
    for row in top:
        s = row["structure"]
        if all(s.get(k) == v for k, v in point.items() if k in s):
            return row
    return None

"""Range specs, the permutation grid and the guardrail (METHODOLOGY section 3).

A range request maps keys (or their aliases) to a list, a scalar, or ``{"min", "max", "step"}``.
:func:`parse_ranges` validates it into a :class:`Grid`: per key, the tuple of values in order.
The grid is never materialised: cardinality is a product of sizes, and :meth:`Grid.decode`
turns permutation indices into per-key value indices with integer arithmetic (vectorised).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import settings
from .errors import FieldError, GuardrailError, InputError, ValueLimitError
from .pricing import MARKET
from .project import AMORTISATIONS, MEZZ_AMORTS, Project, coerce_integer, coerce_number
from .ruleset import Ruleset

if TYPE_CHECKING:  # numpy and polars are imported where grids are decoded or hashed, not to parse a request
    import numpy as np
    import polars as pl

SENIOR_AMORTS = AMORTISATIONS
INDEXATION_MODES = ("flat", "CPI_capped")


@dataclass(frozen=True)
class KeySpec:
    """One range key: its kind, aliases and default (a literal, the project's field, or required)."""

    name: str
    kind: str  # "int", "float", "enum", "bool"
    aliases: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()
    default: Any = None  # None = required; ("project", field) = the project's value; else literal
    mezz: bool = False


# Grid order: first key outermost, last key fastest (METHODOLOGY section 3).
KEY_SPECS: tuple[KeySpec, ...] = (
    KeySpec("senior_tenor", "int", ("senior_tenor_years", "tenor_years")),
    KeySpec("senior_coupon", "float", ("senior_coupon_pct",)),
    KeySpec("senior_dscr", "float", ("min_dscr_senior",)),
    KeySpec("senior_amort", "enum", choices=SENIOR_AMORTS, default="sculpted"),
    KeySpec("indexation_mode", "enum", choices=INDEXATION_MODES, default="CPI_capped"),
    KeySpec("zcis_tenor_years", "int", ("zcis_tenor",), default=0),
    KeySpec("io_months", "int", ("senior_io_months",), default=0),
    KeySpec("wrap", "bool", default=False),
    KeySpec("mezz_on", "bool", default=False),
    KeySpec("mezz_coupon", "float", default=("project", "mezz_coupon"), mezz=True),
    KeySpec("mezz_dscr", "float", default=("project", "mezz_dscr"), mezz=True),
    KeySpec("mezz_tenor", "int", default=("project", "mezz_tenor"), mezz=True),
    KeySpec("mezz_amort", "enum", choices=MEZZ_AMORTS, default=("project", "mezz_amort"), mezz=True),
    KeySpec("sidecar_haircut_pct", "float", ("haircut_pct",), default=("project", "sidecar_haircut_pct")),
)
KEYS: tuple[str, ...] = tuple(s.name for s in KEY_SPECS)
SPEC_BY_KEY = {s.name: s for s in KEY_SPECS}
ALIASES: dict[str, str] = {a: s.name for s in KEY_SPECS for a in (s.name, *s.aliases)}
OUTER_KEYS = KEYS[: KEYS.index("mezz_on")]
MEZZ_KEYS = tuple(s.name for s in KEY_SPECS if s.mezz)
#: Project defaults used when no project is given (METHODOLOGY section 1 defaults).
_FALLBACK_DEFAULTS = {"mezz_coupon": 0.09, "mezz_dscr": 1.10, "mezz_tenor": None, "mezz_amort": "sculpted",
                      "sidecar_haircut_pct": 0.15}


def max_permutations() -> int:
    """The guardrail: PHASE1_MAX_PERMUTATIONS if set (a positive integer), else 250,000 (phase1lib.settings)."""
    return settings.max_permutations()


#: Largest grid that can be sampled: its point indices must fit numpy's int64 (METHODOLOGY section 3 draws
#: them with Generator.choice); far beyond any guardrail.
MAX_SAMPLED_CARDINALITY = 2**62


def step_count(lo: float, hi: float, step: float) -> float:
    """How many values {min, max, step} gives, by arithmetic alone: floor((hi - lo) / step + 1e-9) + 1
    (METHODOLOGY section 3); inf when the quotient overflows (a step of 1e-320)."""
    quotient = (hi - lo) / step + 1e-9
    return math.floor(quotient) + 1 if math.isfinite(quotient) else math.inf


def expand_step(lo: float, hi: float, step: float) -> list[float]:
    """Values lo + i * step for i = 0 .. floor((hi - lo) / step + 1e-9), each rounded to 10 decimals.

    Index-based, so nothing accumulates: 0.04..0.0625 step 0.0025 is exactly 10 values. Count first
    (:func:`step_count`): this builds the list.
    """
    return [round(lo + i * step, 10) for i in range(int(step_count(lo, hi, step)))]


def value_count(spec: KeySpec, raw: Any) -> float | None:
    """How many values a key's spec gives, without building them (a list's length, 1 for a scalar,
    :func:`step_count` for {min, max, step}); None when the spec is malformed (parsing then names why)."""
    if isinstance(raw, Mapping):
        if spec.kind in ("enum", "bool") or set(raw) != {"min", "max", "step"}:
            return None
        lo, hi, step = (coerce_number(raw[k]) for k in ("min", "max", "step"))
        if lo is None or hi is None or step is None or step <= 0 or lo > hi:
            return None
        return step_count(lo, hi, step)
    return len(raw) if isinstance(raw, list) else 1


def _count_text(count: float) -> str:
    return f"{count:,} values" if math.isfinite(count) else "too many values to count"


def check_value_counts(request: Mapping[str, Any], limit: int | None = None) -> dict[str, float]:
    """Count every key's values arithmetically and refuse at once (ValueLimitError, 413) the keys with more
    than the guardrail allows, naming each key and both numbers; returns {canonical key: count}."""
    limit = max_permutations() if limit is None else limit
    counts: dict[str, float] = {}
    over: list[FieldError] = []
    for raw_key, raw in request.items():
        key = ALIASES.get(raw_key) if isinstance(raw_key, str) else None
        if key is None or key in counts:
            continue  # unknown or repeated keys: parse_ranges names them
        count = value_count(SPEC_BY_KEY[key], raw)
        if count is None:
            continue
        counts[key] = count
        if count > limit:
            how = "{min, max, step} gives" if isinstance(raw, Mapping) else "the list has"
            over.append(FieldError(str(raw_key), f"{how} {_count_text(count)}, more than the "
                                                 f"{limit:,} one key may hold (the guardrail)"))
    if over:
        raise ValueLimitError(over, limit)
    return counts


def count_cardinality(request: Any, limit: int | None = None) -> int | None:
    """The grid's cardinality from the value counts alone (nothing expanded), or None when the request is
    malformed (parse_ranges then names every problem). Refuses over-limit keys like check_value_counts."""
    if not isinstance(request, Mapping):
        return None
    counts = check_value_counts(request, limit)
    given = {ALIASES.get(k) for k in request if isinstance(k, str)}
    sizes: dict[str, int] = {}
    for spec in KEY_SPECS:
        if spec.name in counts:
            sizes[spec.name] = int(counts[spec.name])
        elif spec.name in given:
            return None  # given but malformed
        else:
            sizes[spec.name] = 1  # its default (one value), or required and missing (parse_ranges says so)
    mezz_on = request.get("mezz_on", [False])
    mezz_on = mezz_on if isinstance(mezz_on, list) else [mezz_on]
    if not all(isinstance(v, bool) for v in mezz_on):
        return None
    mezz_size = math.prod(sizes[k] for k in MEZZ_KEYS)
    blocks = sum((mezz_size if on else 1) * sizes["sidecar_haircut_pct"] for on in mezz_on)
    return math.prod(sizes[k] for k in OUTER_KEYS) * blocks


def precheck_guardrail(request: Any, sample: int | None = None, limit: int | None = None) -> None:
    """Before a run builds anything: over-limit keys (ValueLimitError), and a grid over the guardrail without a
    sample (GuardrailError), both from arithmetic counts. A malformed request passes on to parse_ranges."""
    limit = max_permutations() if limit is None else limit
    cardinality = count_cardinality(request, limit)
    if cardinality is not None and sample is None and cardinality > limit:
        raise GuardrailError(cardinality, limit)


def _domain_error(spec: KeySpec, value: Any, project: Project | None, priced: bool = False) -> str | None:
    """Why ``value`` is outside the key's domain, or None (METHODOLOGY section 3 table; section 11.1 for
    "market", which only a priced ruleset such as v2 takes)."""
    name = spec.name
    if value == MARKET:
        if name != "senior_coupon":
            return f'"market" is a senior_coupon value only: the {name} is an input, it is not priced'
        return None if priced else ('"market" needs a priced ruleset (v2: market coupons); ruleset v1 takes '
                                    "numbers only (choose the ruleset with --ruleset v2 or the request's ruleset)")
    if spec.kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false (got {json.dumps(value)})"
    if spec.kind == "enum":
        if isinstance(value, str) and value in spec.choices:
            return None
        return f"must be one of {', '.join(spec.choices)} (got {json.dumps(value)})"
    if name == "senior_tenor" and value < 1:
        return f"must be an integer number of years >= 1 (got {value})"
    if name == "senior_coupon" and not 0 < value < 1:
        return f"must be a rate > 0 and < 1, as a decimal: 0.055 = 5.5 % (got {value:g})"
    if name in ("senior_dscr", "mezz_dscr") and value < 1.0:
        return f"must be a ratio >= 1.0 (got {value:g})"
    if name == "mezz_coupon" and not 0 <= value < 1:
        return f"must be a rate >= 0 and < 1, as a decimal (got {value:g})"
    if name == "sidecar_haircut_pct" and not 0 <= value <= 1:
        return f"must be between 0 and 1 (got {value:g})"
    if name == "zcis_tenor_years":
        top = f"lease_years - 1 = {project.lease_years - 1}" if project else "lease_years - 1"
        if value < 0 or (project and value > project.lease_years - 1):
            return f"must be an integer 0 .. {top}; 0 = no hedge (got {value})"
    if name == "io_months":
        if value < 0:
            return f"must be an integer >= 0 (got {value})"
        if project and value % (12 // project.periods_per_year):
            return (f"must be a multiple of {12 // project.periods_per_year} months "
                    f"(12 / periods_per_year {project.periods_per_year}) (got {value})")
    if name == "mezz_tenor" and (value < 1 or (project and value > project.lease_years)):
        top = f" and <= lease_years {project.lease_years}" if project else ""
        return f"must be an integer >= 1{top} (got {value})"
    return None


def _normalise(spec: KeySpec, raw: Any) -> tuple[Any, str | None]:
    """Type-normalise one value: integers for integer keys (10.0 is 10), floats for float keys."""
    if spec.kind == "int":
        value = coerce_integer(raw)
        return (value, None) if value is not None else (None, f"takes integers (got {json.dumps(raw)})")
    if spec.kind == "float":
        if raw == MARKET:  # checked against the key and the ruleset by _domain_error
            return MARKET, None
        value = coerce_number(raw)
        return (value, None) if value is not None else (None, f"takes numbers (got {json.dumps(raw)})")
    return raw, None


def _expand_value(spec: KeySpec, raw: Any) -> tuple[list[Any], str | None]:
    """Expand one key's spec (list, scalar or min/max/step) into its values, or an error message."""
    if isinstance(raw, Mapping):
        if spec.kind in ("enum", "bool"):
            return [], "takes a list or a single value, not {min, max, step}"
        unknown = sorted(set(raw) - {"min", "max", "step"})
        missing = [k for k in ("min", "max", "step") if k not in raw]
        if unknown or missing:
            return [], ("{min, max, step} needs exactly the keys min, max, step"
                        + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
                        + (f"; missing: {', '.join(missing)}" if missing else ""))
        lo, hi, step = (coerce_number(raw[k]) for k in ("min", "max", "step"))
        if lo is None or hi is None or step is None:
            return [], "min, max and step must be finite numbers"
        if step <= 0:
            return [], f"step must be > 0 (got {step:g})"
        if lo > hi:
            return [], f"min must be <= max (got min {lo:g} > max {hi:g})"
        if step_count(lo, hi, step) > 10_000_000:  # parse_ranges refuses over-limit keys before: a backstop
            return [], f"{{min, max, step}} gives more than 10,000,000 values (min {lo:g}, max {hi:g}, step {step:g})"
        items: list[Any] = expand_step(lo, hi, step)
    elif isinstance(raw, list):
        if not raw:
            return [], "must not be an empty list"
        items = list(raw)
    else:
        items = [raw]
    values: list[Any] = []
    for item in items:
        value, message = _normalise(spec, item)
        if message:
            return [], message
        values.append(value)
    if isinstance(raw, Mapping):  # increasing by construction: equal only once rounded to 10 decimals
        if len(set(values)) != len(values):
            return [], f"step {step:g} is finer than the values' 10 decimals: values repeat"
    elif len({json.dumps(v) for v in values}) != len(values):
        return [], f"values must be distinct (got {json.dumps(values)})"
    return values, None


def _default_values(spec: KeySpec, project: Project | None) -> list[Any]:
    if isinstance(spec.default, tuple):
        attr = spec.default[1]
        return [getattr(project, attr) if project is not None else _FALLBACK_DEFAULTS[attr]]
    return [spec.default]


@dataclass(frozen=True)
class Grid:
    """The validated permutation grid: per key, its values in enumeration order.

    ``mezz_tenor`` may hold None, meaning "the senior tenor of the point" (the project default).
    """

    values: dict[str, tuple[Any, ...]]
    request: dict[str, Any] = field(default_factory=dict, compare=False)

    # -- sizes -------------------------------------------------------------------------------------
    @property
    def outer_sizes(self) -> tuple[int, ...]:
        return tuple(len(self.values[k]) for k in OUTER_KEYS)

    @property
    def mezz_size(self) -> int:
        """Points of the mezz sub-grid under mezz_on = true (product of the mezz_* sizes)."""
        return math.prod(len(self.values[k]) for k in MEZZ_KEYS)

    @property
    def block_sizes(self) -> tuple[int, ...]:
        """Points below each mezz_on value: mezz sub-grid (true) or 1 (false), times the haircuts."""
        h = len(self.values["sidecar_haircut_pct"])
        return tuple((self.mezz_size if on else 1) * h for on in self.values["mezz_on"])

    @property
    def cardinality(self) -> int:
        """Number of grid points, without materialising them."""
        return math.prod(self.outer_sizes) * sum(self.block_sizes)

    # -- points ------------------------------------------------------------------------------------
    def decode(self, indices: Any) -> dict[str, np.ndarray]:
        """Per-key value indices (int64) of the points at ``indices``; mezz_* are -1 where mezz is off."""
        import numpy as np

        idx = np.asarray(indices, dtype=np.int64)
        block = np.array(self.block_sizes, dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(block)[:-1]))
        q, rem = np.divmod(idx, np.int64(block.sum()))
        out: dict[str, np.ndarray] = {}
        for key in reversed(OUTER_KEYS):
            q, out[key] = np.divmod(q, np.int64(len(self.values[key])))
        on_idx = np.searchsorted(starts, rem, side="right") - 1
        out["mezz_on"] = on_idx
        off = rem - starts[on_idx]
        h = np.int64(len(self.values["sidecar_haircut_pct"]))
        mezz_part, out["sidecar_haircut_pct"] = np.divmod(off, h)
        mezz_flags = np.array(self.values["mezz_on"], dtype=bool)[on_idx]
        for key in reversed(MEZZ_KEYS):
            mezz_part, sub = np.divmod(mezz_part, np.int64(len(self.values[key])))
            out[key] = np.where(mezz_flags, sub, -1)
        return {k: out[k] for k in KEYS}

    def point(self, index: int) -> dict[str, Any]:
        """The full structure at ``index``: every key with its value, mezz_* omitted when mezz is off."""
        if not 0 <= index < self.cardinality:
            raise IndexError(f"permutation_index {index} outside 0 .. {self.cardinality - 1}")
        codes = self.decode([index])
        return self.point_from_codes({k: int(v[0]) for k, v in codes.items()})

    def point_from_codes(self, codes: Mapping[str, int]) -> dict[str, Any]:
        point: dict[str, Any] = {}
        for key in KEYS:
            code = codes[key]
            if code < 0:
                continue
            value = self.values[key][code]
            if key == "mezz_tenor" and value is None:
                value = point["senior_tenor"]
            point[key] = value
        return point

    def points(self, indices: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        return [self.point(int(i)) for i in indices]

    def iter_points(self):
        """Every point in grid order (for small grids and tests)."""
        for i in range(self.cardinality):
            yield self.point(i)

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in self.values.items()}


def permutation_id(point: Mapping[str, Any]) -> str:
    """First 12 hex digits of sha256 of the point's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(dict(point), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _fragment_column(key: str, values: Sequence[Any], codes: np.ndarray) -> pl.Series:
    """'"key":value' JSON fragments of each row's value; null where the key is omitted (code -1)."""
    import numpy as np
    import polars as pl

    frags = pl.Series([f'"{key}":{json.dumps(v)}' for v in values] + [None], dtype=pl.String)
    return frags.gather(np.where(codes < 0, len(values), codes))


def permutation_ids(grid: Grid, codes: Mapping[str, np.ndarray]) -> list[str]:
    """permutation_id of many decoded points (see :func:`permutation_id_series`)."""
    return permutation_id_series(grid, codes).to_list()


def permutation_id_series(grid: Grid, codes: Mapping[str, np.ndarray]) -> pl.Series:
    """permutation_id of many decoded points: the canonical JSON assembled column-wise and hashed in polars
    (sha256 by the polars-hash plugin, in Rust threads, without the GIL: the same digest as hashlib)."""
    import numpy as np
    import polars as pl
    import polars_hash  # noqa: F401 - registers the .chash namespace

    columns = []
    for key in sorted(KEYS):
        values, key_codes = list(grid.values[key]), codes[key]
        if key == "mezz_tenor" and None in values:  # the project default: each point's senior tenor
            tenors = list(grid.values["senior_tenor"])
            is_none = np.array([v is None for v in values] + [False])[key_codes]
            values = values + tenors
            key_codes = np.where(is_none, len(grid.values[key]) + codes["senior_tenor"], key_codes)
        columns.append(_fragment_column(key, values, key_codes).alias(key))
    if not columns or len(columns[0]) == 0:
        return pl.Series("permutation_id", [], dtype=pl.String)
    text = pl.concat_str([pl.lit("{"), pl.concat_str(pl.all(), separator=",", ignore_nulls=True), pl.lit("}")])
    return pl.DataFrame(columns).select(text.chash.sha2_256().str.slice(0, 12).alias("permutation_id")).to_series()


def parse_ranges(request: Any, project: Project | None = None, ruleset: Ruleset | None = None) -> Grid:
    """Validate a range request into a :class:`Grid`; every bad key is reported, by name.

    Domain checks that depend on the project (ZCIS tenor below the lease, IO months a multiple of
    the period, mezz tenor within the lease) apply when a project is given. Under a priced ruleset (v2)
    senior_coupon may be "market" and defaults to ["market"] (section 11.1); without a ruleset, v1's rules.
    """
    priced = ruleset is not None and ruleset.priced
    if not isinstance(request, Mapping):
        raise InputError([FieldError("ranges", "must be a JSON object of range keys")], "ranges")
    check_value_counts(request)  # counted arithmetically: an over-limit key is refused before anything is built
    errors: list[FieldError] = []
    given: dict[str, tuple[str, Any]] = {}
    for raw_key, raw in request.items():
        key = ALIASES.get(raw_key)
        if key is None:
            errors.append(FieldError(str(raw_key), f"unknown range key; known keys: {', '.join(KEYS)} "
                                                   f"(aliases: {', '.join(a for a in ALIASES if a not in KEYS)})"))
            continue
        if key in given:
            errors.append(FieldError(str(raw_key), f"given twice: as {given[key][0]} and as {raw_key}"))
            continue
        given[key] = (str(raw_key), raw)
    values: dict[str, tuple[Any, ...]] = {}
    for spec in KEY_SPECS:
        if spec.name not in given:
            if spec.name == "senior_coupon" and priced:
                values[spec.name] = (MARKET,)
                continue
            if spec.default is None:
                errors.append(FieldError(spec.name, "is required"))
                continue
            values[spec.name] = tuple(_default_values(spec, project))
            continue
        label, raw = given[spec.name]
        expanded, message = _expand_value(spec, raw)
        if message is None:
            for value in expanded:
                message = _domain_error(spec, value, project, priced)
                if message:
                    break
        if message:
            errors.append(FieldError(label, message))
            continue
        values[spec.name] = tuple(expanded)
    if errors:
        raise InputError(errors, "ranges")
    return Grid(values=values, request=dict(request))


def check_guardrail(cardinality: int, sample: int | None = None, limit: int | None = None) -> int:
    """Raise GuardrailError when the grid is too large and no valid sample is asked for; returns the limit."""
    limit = max_permutations() if limit is None else limit
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise InputError([FieldError("sample", f"must be a positive integer (got {sample!r})")], "request")
        if sample > limit:
            raise GuardrailError(sample, limit)
        if cardinality > MAX_SAMPLED_CARDINALITY:
            raise InputError([FieldError("sample", f"the grid's {cardinality:,} permutations are too many to sample "
                                                   f"from (at most {MAX_SAMPLED_CARDINALITY:,}); narrow the ranges")],
                             "request")
        if sample > cardinality:
            raise InputError([FieldError("sample", f"must be at most the cardinality {cardinality:,} "
                                                   f"(got {sample:,})")], "request")
        return limit
    if cardinality > limit:
        raise GuardrailError(cardinality, limit)
    return limit


def sample_indices(cardinality: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct grid indices drawn with PCG64(seed), sorted ascending (METHODOLOGY section 3)."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(seed))
    return np.sort(rng.choice(cardinality, size, replace=False)).astype(np.int64)


def cardinality_summary(grid: Grid, limit: int | None = None) -> dict[str, Any]:
    """The CLI / API answer: cardinality, per-key values, guardrail verdict and limit."""
    limit = max_permutations() if limit is None else limit
    return {
        "cardinality": grid.cardinality,
        "values": grid.to_dict(),
        "exceeds_guardrail": grid.cardinality > limit,
        "max_permutations": limit,
    }

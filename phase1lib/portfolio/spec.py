"""The portfolio file format and its validation: every problem named by project and field, nothing run before all
are valid (docs/portfolio.md describes the format).

A portfolio is JSON::

    {"title": "Q4 pipeline",                               optional, one line of text
     "defaults": {"preset": "current_1920", "seed": 424242, "topn": 20},   optional, shared by every project
     "projects": ["london_dc_alpha.json",                  a project file (relative to the portfolio file)
                  {"project": "frankfurt_dc_beta.json", "preset": "market_1920"},
                  {"project": {...inline project...}, "ranges": {...}, "ruleset": "v2", "seed": 7, "topn": 5}]}

Per project (or in ``defaults``): ``ranges`` (an object of range keys) or ``preset`` (a name), ``ruleset``,
``seed``, ``topn``, ``sample``; a project's own value wins over the default. A preset written for v2 names its
ruleset unless one is given, as with ``phase1 run --preset`` (D45). Over the REST API projects are inline objects
only (the server reads no file a client names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from ..defaults import DEFAULT_TOPN, MAX_SEED
from ..errors import FieldError, GuardrailError, InputError, Phase1Error, unknown_fields
from ..presets import preset_names, preset_ranges
from ..project import Project, read_json_file, validate_project
from ..settings import DEFAULT_MAX_PORTFOLIO_PERMUTATIONS  # noqa: F401 - the default, written once
from ..text import text_problem

#: Most projects one portfolio may hold (a fund's pipeline is tens of projects).
MAX_PROJECTS = 500
OPTION_FIELDS = ("ranges", "preset", "ruleset", "seed", "topn", "sample")
PROJECT_FIELDS = ("project", *OPTION_FIELDS)
TOP_FIELDS = ("title", "defaults", "projects")


@dataclass(frozen=True)
class PortfolioProject:
    """One project of a portfolio with its request resolved (defaults applied, preset expanded)."""

    project: Project
    ranges: dict[str, Any]
    preset: str | None = None
    ruleset: str | None = None
    seed: int | None = None
    topn: int = DEFAULT_TOPN
    sample: int | None = None
    source: str = "inline"  # the project file's path, or "inline"
    index: int = 0  # position in the portfolio's "projects" (errors name it: projects[index])

    @property
    def title(self) -> str:
        return self.project.title


@dataclass(frozen=True)
class Portfolio:
    """A list of projects, each with its ranges or preset, ruleset, seed and Top-N."""

    projects: tuple[PortfolioProject, ...]
    title: str | None = None
    source: str = field(default="inline", compare=False)
    #: Problems found while reading (``parse_portfolio(strict=False)``); the service refuses to run while any.
    errors: tuple[FieldError, ...] = ()

    def __len__(self) -> int:
        return len(self.projects)


def max_portfolio_permutations() -> int:
    """The total guardrail: PHASE1_MAX_PORTFOLIO_PERMUTATIONS if set (a positive integer), else 5,000,000."""
    return settings.get().max_portfolio_permutations


class PortfolioGuardrailError(GuardrailError):
    """A portfolio over a guardrail (HTTP 413): projects over their own (named each), or the total over
    PHASE1_MAX_PORTFOLIO_PERMUTATIONS (both numbers named)."""

    def __init__(self, errors: list[FieldError], cardinality: int | None, limit: int):
        self.errors = list(errors)
        self.cardinality = cardinality
        self.limit = limit
        detail = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        Phase1Error.__init__(self, f"portfolio over the guardrail: {detail}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": str(self), "errors": [e.to_dict() for e in self.errors],
                "cardinality": self.cardinality, "max_permutations": self.limit}


def total_guardrail_error(total: int, limit: int) -> PortfolioGuardrailError:
    return PortfolioGuardrailError(
        [FieldError("projects", f"the portfolio's {total:,} permutations exceed the portfolio guardrail of "
                                f"{limit:,} (PHASE1_MAX_PORTFOLIO_PERMUTATIONS); split the portfolio or ask "
                                "for samples")], total, limit)


def _whole(value: Any, name: str, lo: int, hi: int, errors: list[FieldError]) -> int | None:
    """An integer field (10.0 is 10), or None with an error naming it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        errors.append(FieldError(name, f"must be a whole number from {lo:,} to {hi:,} (got {value!r})"))
        return None
    return value


def _options(raw: Mapping[str, Any], where: str, errors: list[FieldError]) -> dict[str, Any]:
    """The checked option fields of a project entry or of ``defaults`` (ranges, preset, ruleset, seed, ...)."""
    out: dict[str, Any] = {}
    if raw.get("ranges") is not None and raw.get("preset") is not None:
        errors.append(FieldError(f"{where}.preset", "give either ranges or preset, not both"))
    if raw.get("ranges") is not None:
        if isinstance(raw["ranges"], Mapping):
            out["ranges"] = dict(raw["ranges"])
        else:
            errors.append(FieldError(f"{where}.ranges", "must be a JSON object of range keys"))
    if raw.get("preset") is not None:
        name = raw["preset"]
        if isinstance(name, str) and name in preset_names():
            out["preset"] = name
        else:
            errors.append(FieldError(f"{where}.preset", f"unknown preset {name!r}; known presets: "
                                                        f"{', '.join(preset_names())}"))
    if raw.get("ruleset") is not None:
        if isinstance(raw["ruleset"], str) and raw["ruleset"]:
            out["ruleset"] = raw["ruleset"]
        else:
            errors.append(FieldError(f"{where}.ruleset", f"must be a ruleset version such as \"v2\" "
                                                         f"(got {raw['ruleset']!r})"))
    for name, lo, hi in (("seed", 0, MAX_SEED), ("topn", 1, 1000), ("sample", 1, 10**9)):
        if raw.get(name) is not None:
            value = _whole(raw[name], f"{where}.{name}", lo, hi, errors)
            if value is not None:
                out[name] = value
    return out


def _load_project(raw: Any, where: str, base: Path | None, errors: list[FieldError]) -> tuple[Project | None, str]:
    """The entry's project: an inline object, or (when ``base`` is given: files allowed) a file path."""
    if isinstance(raw, str):
        if base is None:
            errors.append(FieldError(where, "must be a project object (file paths are read by the command line "
                                            "only)"))
            return None, raw
        path = Path(raw) if Path(raw).is_absolute() else base / raw
        try:
            data = read_json_file(path, where)
        except InputError as error:
            errors.extend(error.errors)
            return None, str(path)
        source = str(path)
    elif isinstance(raw, Mapping):
        data, source = raw, "inline"
    else:
        errors.append(FieldError(where, "required: a project object or the path of a project JSON file"))
        return None, "inline"
    project, problems = validate_project(data)
    errors.extend(FieldError(f"{where}.{e.field}", e.message) for e in problems)
    return project, source


def parse_portfolio(data: Any, base: Path | str | None = None, source: str = "inline",
                    strict: bool = True) -> Portfolio:
    """A validated :class:`Portfolio` from its JSON, or one InputError naming every problem of every project
    (``projects[2].project.pue``, ``projects[0].preset`` ...). ``base``: the folder project file paths are
    relative to; None refuses paths.

    Range keys are checked by the service once the ruleset is known (``projects[2].ranges.senior_tenor``). With
    ``strict`` False the problems are kept in ``Portfolio.errors`` beside the valid projects, so that the service
    names them together with the planning problems of the others, all at once (nothing runs while any is left).
    """
    base = Path(base) if base is not None else None
    errors: list[FieldError] = []
    if not isinstance(data, Mapping):
        raise InputError([FieldError("portfolio", "must be a JSON object with \"projects\"")], "portfolio")
    errors.extend(unknown_fields(data, TOP_FIELDS))
    title = data.get("title")
    if title is not None and (problem := text_problem(title, max_len=200)) is not None:
        errors.append(FieldError("title", problem))
    defaults_raw = data.get("defaults") or {}
    defaults: dict[str, Any] = {}
    if not isinstance(defaults_raw, Mapping):
        errors.append(FieldError("defaults", "must be an object of shared options: " + ", ".join(OPTION_FIELDS)))
    else:
        errors.extend(unknown_fields(defaults_raw, OPTION_FIELDS, "defaults"))
        defaults = _options(defaults_raw, "defaults", errors)
    entries = data.get("projects")
    if not isinstance(entries, list) or not entries:
        errors.append(FieldError("projects", "required: a non-empty list of projects"))
        entries = []
    elif len(entries) > MAX_PROJECTS:
        errors.append(FieldError("projects", f"at most {MAX_PROJECTS:,} projects (got {len(entries):,})"))
        entries = []
    projects: list[PortfolioProject] = []
    for i, entry in enumerate(entries):
        where = f"projects[{i}]"
        count = len(errors)
        raw = {"project": entry} if isinstance(entry, str) else entry
        if not isinstance(raw, Mapping):
            errors.append(FieldError(where, "must be a project file path or an object with \"project\""))
            continue
        errors.extend(unknown_fields(raw, PROJECT_FIELDS, where))
        project, path = _load_project(raw.get("project"), f"{where}.project", base, errors)
        own = _options(raw, where, errors)
        if "ranges" in own or "preset" in own:  # a project's own grid replaces the default one
            merged = {k: v for k, v in defaults.items() if k not in ("ranges", "preset")} | own
        else:
            merged = defaults | own
        given = [r for r in (raw, defaults_raw if isinstance(defaults_raw, Mapping) else {})
                 if r.get("ranges") is not None or r.get("preset") is not None]
        if not given:  # a grid given but invalid is named where it is given
            errors.append(FieldError(f"{where}.ranges", "required: ranges or preset, in the project or in "
                                                        "defaults"))
        if len(errors) > count or project is None or ("ranges" not in merged and "preset" not in merged):
            continue
        preset = merged.get("preset")
        ranges = preset_ranges(preset) if preset else merged["ranges"]
        ruleset = merged.get("ruleset")  # else the preset's (D45, planned as a preset's) or the canary's
        projects.append(PortfolioProject(project=project, ranges=ranges, preset=preset, ruleset=ruleset,
                                         seed=merged.get("seed"), topn=merged.get("topn", DEFAULT_TOPN),
                                         sample=merged.get("sample"), source=path, index=i))
    if errors and strict:
        raise InputError(errors, "portfolio")
    return Portfolio(projects=tuple(projects), title=title, source=source, errors=tuple(errors))


def load_portfolio(path: str | Path, strict: bool = True) -> Portfolio:
    """Read and validate a portfolio file; project paths in it are relative to its folder."""
    p = Path(path)
    return parse_portfolio(read_json_file(p, "portfolio"), base=p.resolve().parent, source=str(p), strict=strict)


def portfolio_request(projects: Sequence[str], *, ranges: Mapping[str, Any] | None = None,
                      preset: str | None = None, ruleset: str | None = None, seed: int | None = None,
                      topn: int | None = None, sample: int | None = None) -> dict[str, Any]:
    """The portfolio JSON of ``phase1 portfolio --projects A.json B.json ...`` with shared options."""
    defaults = {"ranges": ranges, "preset": preset, "ruleset": ruleset, "seed": seed, "topn": topn, "sample": sample}
    return {"defaults": {k: v for k, v in defaults.items() if v is not None}, "projects": list(projects)}


def field_of(index: int, name: str) -> str:
    """Where a planning error belongs in the portfolio: an option of projects[i], or a range key of its ranges
    (``projects[2].ranges.senior_tenor``)."""
    where = f"projects[{index}]"
    if name in ("seed", "topn", "sample", "ruleset", "preset", "ranges"):
        return f"{where}.{name}"
    return f"{where}.ranges.{name}"

"""Operations: feature flags, candidate rulesets and the canary, metrics, ``status/full`` and ``health``.

Everything lives in the :class:`~phase1lib.store.Store`, so every server process and the CLI see the
same flags, canary and metrics. Every change is an audit entry (actor, time, request id, old and new).
Percentiles are numpy.percentile's default (linear interpolation between closest ranks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import ENGINE_VERSION, __version__, settings
from .defaults import DEFAULT_SEED
from .errors import ConfigError, ConflictError, DisabledError, FieldError, InputError, NotFoundError
from .ruleset import (
    RATINGS,
    RULESET_DIR,
    STABLE_VERSION,
    Ruleset,
    available_versions,
    curve_errors,
    load_ruleset,
    ruleset_from_bytes,
)
from .store import KEEP, NS_META, NS_RULESETS, STREAM_AUDIT, STREAM_CANARY, Store, Write, audit_entry
from .text import safe_display, text_problem

# ---- feature flags --------------------------------------------------------------------------------------

#: name -> (default, what it changes).
FLAGS: dict[str, tuple[bool, str]] = {
    "phase1_core": (True, "Off: every business action answers \"Phase-1 disabled\" (HTTP 503)."),
    "deterministic_seed": (True, "On: a run without a seed uses 424242. Off: it draws one and records it."),
    "perm_chunking": (True, "On: the grid is evaluated in chunks. Off: one chunk, for diagnosis."),
    "reverse_dscr_engine": (True, "The single-structure (reverse DSCR) calculator. Off: it is refused."),
    "gates_ab": (True, "On: failed gates remove structures from the Top-N. Off: gates are only reported."),
    "docs_exports": (True, "On: term-sheet exports. Off: export is refused with a clear message."),
}
FLAG_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DISABLED = {
    "phase1_core": "Phase-1 disabled",
    "reverse_dscr_engine": "the reverse DSCR calculator is disabled (flag reverse_dscr_engine is off)",
    "docs_exports": "term-sheet export is disabled (flag docs_exports is off)",
}
_FLAGS_KEY, _CANARY_KEY = "flags", "canary"


def _effective(doc: Mapping[str, Any] | None, name: str) -> bool:
    overrides = (doc or {}).get("flags", {})
    return bool(overrides.get(name, FLAGS[name][0]))


def get_flags(store: Store) -> dict[str, Any]:
    """{"version", "flags": {name: bool}, "descriptions", "defaults", "updated_at", "updated_by"}."""
    doc = store.read(NS_META, _FLAGS_KEY) or {}
    return {"version": int(doc.get("version", 0)),
            "flags": {name: _effective(doc, name) for name in FLAGS},
            "descriptions": {name: text for name, (_, text) in FLAGS.items()},
            "defaults": {name: default for name, (default, _) in FLAGS.items()},
            "updated_at": doc.get("updated_at"), "updated_by": doc.get("updated_by")}


def flag(store: Store, name: str) -> bool:
    """One flag's value; InputError for a name that is not a flag."""
    if name not in FLAGS:
        raise InputError([FieldError(str(name), f"unknown flag; known: {', '.join(FLAGS)}")], "flag")
    return _effective(store.read(NS_META, _FLAGS_KEY), name)


def require_flag(store: Store, name: str) -> None:
    """Raise DisabledError (HTTP 503) with the flag's message when ``name`` is off."""
    if not flag(store, name):
        raise DisabledError(_DISABLED.get(name, f"disabled by the {name} flag"))


def resolve_seed(store: Store, seed: int | None) -> int:
    """The seed a run uses: its own, else 424242 with ``deterministic_seed`` on, else a fresh draw."""
    if seed is not None:
        return int(seed)
    return DEFAULT_SEED if flag(store, "deterministic_seed") else secrets.randbelow(2**31 - 1) + 1


def _check_flag_update(version: Any, changes: Any, prefix: str = "changes.") -> list[FieldError]:
    errors = []
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        errors.append(FieldError("version", f"must be a non-negative integer, the version you read "
                                            f"(got {version!r})"))
    if not isinstance(changes, Mapping) or not changes:
        errors.append(FieldError(prefix.rstrip(".") or "body", "must be a non-empty object of flag name -> true/false"))
        return errors
    for name, value in changes.items():
        if not isinstance(name, str) or not FLAG_NAME_RE.fullmatch(name):
            errors.append(FieldError(f"{prefix}{safe_display(name)[:64]}",
                                     "malformed flag name: lower-case letters, digits and _ only"))
        elif name not in FLAGS:
            errors.append(FieldError(f"{prefix}{name}", f"unknown flag; known: {', '.join(FLAGS)}"))
        elif not isinstance(value, bool):
            shown = safe_display(repr(value))[:80]
            errors.append(FieldError(f"{prefix}{name}", f"must be true or false (got {shown})"))
    return errors


def update_flags(store: Store, version: int | None, changes: Mapping[str, bool], actor: str,
                 request_id: str | None = None, field_prefix: str = "changes.") -> dict[str, Any]:
    """Apply {name: bool} changes; returns get_flags(). The version goes up by one per accepted update; each
    changed flag is one audit entry.

    ``version``: the version read, for optimistic concurrency (a stale one is a ConflictError, 409); None
    applies the changes to whatever is current (last writer wins: the operations guide's body).
    """
    errors = _check_flag_update(version, changes, field_prefix)
    if errors:
        raise InputError(errors, "flag update")
    now = store.now()

    def fn(doc: dict[str, Any] | None) -> Write:
        doc = doc or {"version": 0, "flags": {}}
        if version is not None and doc["version"] != version:
            raise ConflictError(f"flags are at version {doc['version']}, not {version}: read them again and "
                                f"retry", current_version=doc["version"])
        new_version = doc["version"] + 1
        appends = [(STREAM_AUDIT, audit_entry("flags.update", actor, request_id, now, target=name,
                                              old=_effective(doc, name), new=value, version=new_version,
                                              expected_version=version))
                   for name, value in changes.items()]
        doc["flags"].update(changes)
        doc.update(version=new_version, updated_at=now, updated_by=actor)
        return Write(doc=doc, appends=appends)

    store.transact(NS_META, _FLAGS_KEY, fn)
    return get_flags(store)


# ---- rulesets and canary --------------------------------------------------------------------------------

RULESET_VERSION_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_FREE_TEXT = {"version", "description"}
#: The shipped ruleset whose table structure a priced (v2-shaped) candidate must have.
PRICED_SHAPE = "v2"
_RULESET_CACHE: dict[tuple[str, str], Ruleset] = {}


def _default_canary() -> dict[str, Any]:
    return {"state": "STABLE", "percentage": 0.0, "candidate": None, "candidate_sha256": None,
            "reason": None, "updated_at": None, "updated_by": None}


def get_canary(store: Store) -> dict[str, Any]:
    """{"state", "percentage", "candidate", "candidate_sha256", "reason", "updated_at", "updated_by"}."""
    return {**_default_canary(), **(store.read(NS_META, _CANARY_KEY) or {})}


def canary_history(store: Store, n: int = 50) -> list[dict[str, Any]]:
    """The last ``n`` canary transitions, newest first."""
    return list(reversed(store.tail(STREAM_CANARY, max(0, int(n)))))


def cohort_bucket(cohort_key: str) -> int:
    """A run's bucket 0..9999: the first 8 hex digits of sha256(cohort_key), modulo 10,000."""
    return int(hashlib.sha256(cohort_key.encode("utf-8")).hexdigest()[:8], 16) % 10_000


def in_canary(cohort_key: str, percentage: float) -> bool:
    """True when the key's bucket falls in the first ``percentage`` % of the 10,000 buckets."""
    return cohort_bucket(cohort_key) < round(float(percentage) * 100)


def ruleset_for_run(store: Store, cohort_key: str) -> str:
    """The ruleset version a run uses: the candidate for its cohort share, else the stable v1."""
    canary = get_canary(store)
    if not canary["candidate"] or canary["percentage"] <= 0:
        return STABLE_VERSION
    return canary["candidate"] if in_canary(cohort_key, canary["percentage"]) else STABLE_VERSION


def _structure_errors(ref: Any, cand: Any, path: str, errors: list[FieldError]) -> None:
    """Compare a candidate table to its shipped shape (v1, or v2 for a priced candidate): same keys everywhere,
    numbers for numbers, same enums and grades; benchmark curves by the curve rules (any number of points)."""
    if len(errors) >= 20:
        return
    if path.startswith("benchmark_curves.") and path.endswith(".points"):
        errors.extend(FieldError(path, problem) for problem in curve_errors(cand))
        return
    if isinstance(ref, dict):
        if not isinstance(cand, dict):
            errors.append(FieldError(path, "must be an object"))
            return
        missing, extra = sorted(set(ref) - set(cand)), sorted(set(cand) - set(ref))
        if missing:
            errors.append(FieldError(path or "ruleset", f"missing keys: {', '.join(missing)}"))
        if extra:
            errors.append(FieldError(path or "ruleset", f"unexpected keys: {', '.join(extra)}"))
        for key in ref:
            if key in cand and not (path == "" and key in _FREE_TEXT):
                _structure_errors(ref[key], cand[key], f"{path}.{key}" if path else key, errors)
    elif isinstance(ref, list):
        if not isinstance(cand, list) or len(cand) != len(ref):
            errors.append(FieldError(path, f"must be a list of {len(ref)} items"))
            return
        for i, (r, c) in enumerate(zip(ref, cand, strict=True)):
            _structure_errors(r, c, f"{path}[{i}]", errors)
    elif isinstance(ref, bool | str):
        if _is_grade(ref):
            if not _is_grade(cand):
                errors.append(FieldError(path, "must be a rating grade AAA..B"))
        elif cand != ref:
            errors.append(FieldError(path, f"must be {json.dumps(ref)}"))
    elif isinstance(ref, int | float) and not _is_number(cand):
        errors.append(FieldError(path, "must be a finite number"))


def _is_grade(value: Any) -> bool:
    return isinstance(value, str) and value in RATINGS


def _is_number(value: Any) -> bool:
    """A finite int or float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_candidate(raw: bytes) -> Ruleset:
    """Parse and check a candidate ruleset file: JSON, the table structure of v1 (or of v2 when it has
    benchmark curves: a priced candidate such as a "v2.1" with other curves), a new version name."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError([FieldError("ruleset", f"must be a JSON file ({error})")], "ruleset") from None
    if not isinstance(data, dict):
        raise InputError([FieldError("ruleset", "must be a JSON object")], "ruleset")
    errors: list[FieldError] = []
    version = data.get("version")
    if not isinstance(version, str) or not RULESET_VERSION_RE.fullmatch(version):
        errors.append(FieldError("version", "must be 1-32 characters from A-Z a-z 0-9 _ . -"))
    elif version in available_versions() and ruleset_from_bytes(raw).sha256 == load_ruleset(version).sha256:
        return shipped_candidate(version)  # the shipped file itself (e.g. uploaded in the Ops Monitor)
    elif version in available_versions():
        errors.append(FieldError("version", f"{version} is a shipped ruleset: register it by name "
                                            f"(phase1 ops ruleset register {version}); a changed copy needs a new "
                                            "version"))
    description = data.get("description")
    if "description" in data and (problem := text_problem(description, max_len=500)) is not None:
        errors.append(FieldError("description", problem))
    shape = load_ruleset(PRICED_SHAPE if "benchmark_curves" in data else STABLE_VERSION).data
    _structure_errors(shape, data, "", errors)
    if not errors:  # the shape is right: now the values an engine can run on
        errors.extend(_value_errors(data))
    if errors:
        raise InputError(errors, "candidate ruleset")
    return ruleset_from_bytes(raw)


def _value_errors(data: Mapping[str, Any]) -> list[FieldError]:
    """Values a candidate's tables must hold for the engine to run on them (the shape is checked already):
    advance factors within (0, 1], DSCR floors >= 1, spreads >= 0 and not falling as the grade worsens, and
    under v2 cap rates 0.02..0.20, LTV limits within (0, 1], a term premium >= 0 and a finite breakeven grid."""
    errors: list[FieldError] = []

    def need(ok: bool, path: str, rule: str) -> None:
        if not ok:
            errors.append(FieldError(path, rule))

    for grade, row in data["tenants"].items():
        need(0 < row["af_min"] <= row["af_max"] <= 1, f"tenants.{grade}",
             "must have 0 < af_min <= af_max <= 1")
        need(row["dscr_floor"] >= 1, f"tenants.{grade}.dscr_floor", "must be >= 1.0")
        need(float(row["dsra_months"]).is_integer() and row["dsra_months"] >= 0, f"tenants.{grade}.dsra_months",
             "must be a whole number of months >= 0")
    spreads = [data["spread_bps"][g] for g in RATINGS]
    need(all(s >= 0 for s in spreads) and spreads == sorted(spreads), "spread_bps",
         "must be >= 0 and not fall from AAA to B")
    mc = data["monte_carlo"]
    need(float(mc["paths"]).is_integer() and 1 <= mc["paths"] <= 100_000, "monte_carlo.paths",
         "must be a whole number 1 .. 100,000")
    need(0 <= mc["percentile"] <= 100, "monte_carlo.percentile", "must be 0 .. 100")
    if "benchmark_curves" in data:
        for country, rate in data["cap_rates"].items():
            need(0.02 <= rate <= 0.20, f"cap_rates.{country}", "must be 0.02 .. 0.20 (a project's cap_rate rule)")
        for grade, share in data["max_ltv"].items():
            need(0 < share <= 1, f"max_ltv.{grade}", "must be > 0 and <= 1")
        premium = data["term_premium"]
        need(premium["bps_per_year"] >= 0 and premium["above_years"] >= 0, "term_premium",
             "bps_per_year and above_years must be >= 0")
        grid = data["breakevens"]
        need(grid["dscr"] > 0, "breakevens.dscr", "must be > 0")
        need(0.25 <= grid["cpi_step_bps"] <= 100, "breakevens.cpi_step_bps",
             "must be 0.25 .. 100 bps (at most 10,000 grid points from a base CPI of -5 %)")
        need(-0.05 <= grid["cpi_max"] <= 0.20, "breakevens.cpi_max", "must be -0.05 .. 0.20 (the base_cpi domain)")
    return errors


def shipped_candidate(version: str) -> Ruleset:
    """A shipped ruleset other than the stable one, as a canary candidate (``phase1 ops ruleset register v2``)."""
    if version == STABLE_VERSION:
        raise InputError([FieldError("ruleset", f"{version} is the stable ruleset, not a candidate")], "ruleset")
    return load_ruleset(version)


def register_candidate(store: Store, raw: bytes | Ruleset, actor: str = "system",
                       request_id: str | None = None) -> dict[str, Any]:
    """Store a candidate ruleset (a file's bytes, or a shipped :class:`Ruleset` by name) and make it the canary's
    candidate (the canary share stays as it is).

    ConflictError when another candidate is live (canary above 0 %) or the version exists with other content.
    """
    if isinstance(raw, Ruleset):
        ruleset = raw
        raw = (RULESET_DIR / f"{ruleset.version}.json").read_bytes()
    else:
        ruleset = validate_candidate(raw)
    now = store.now()
    record = {"version": ruleset.version, "sha256": ruleset.sha256,
              "description": ruleset.data["description"], "registered_at": now, "registered_by": actor,
              "raw_b64": base64.b64encode(raw).decode("ascii")}

    def put_ruleset(doc: dict[str, Any] | None) -> Write:
        if doc is not None and doc["sha256"] != ruleset.sha256:
            raise ConflictError(f"ruleset {ruleset.version} is already registered with other content "
                                f"(sha256 {doc['sha256'][:12]}...); give the new one another version")
        return Write(doc=record if doc is None else KEEP)

    def set_candidate(doc: dict[str, Any] | None) -> Write:
        canary = {**_default_canary(), **(doc or {})}
        if canary["percentage"] > 0 and canary["candidate"] not in (None, ruleset.version):
            raise ConflictError(f"candidate {canary['candidate']} is live at {canary['percentage']:g} %; "
                                f"roll the canary back to 0 before registering another",
                                candidate=canary["candidate"])
        entry = audit_entry("ruleset.register", actor, request_id, now, target=ruleset.version,
                            old=canary["candidate"], new=ruleset.version, sha256=ruleset.sha256)
        canary.update(candidate=ruleset.version, candidate_sha256=ruleset.sha256)
        return Write(doc=canary, appends=[(STREAM_AUDIT, entry)])

    store.transact(NS_RULESETS, ruleset.version, put_ruleset)
    store.transact(NS_META, _CANARY_KEY, set_candidate)
    return {k: record[k] for k in ("version", "sha256", "description", "registered_at", "registered_by")}


def list_rulesets(store: Store) -> dict[str, Any]:
    """The stable ruleset and the registered candidates (version, sha256, description), and which is live."""
    stable = load_ruleset(STABLE_VERSION).describe()
    docs = store.scan(NS_RULESETS).values()
    registered = sorted(({k: v for k, v in d.items() if k != "raw_b64"} for d in docs),
                        key=lambda d: d["registered_at"])
    canary = get_canary(store)
    candidate = next((d for d in registered if d["version"] == canary["candidate"]), None)
    return {"stable": stable, "candidate": candidate, "registered": registered}


def load_ruleset_version(store: Store, version: str) -> Ruleset:
    """A ruleset by version: shipped ones from disk, candidates from the store (hash checked)."""
    if version in available_versions():
        return load_ruleset(version)
    doc = store.read(NS_RULESETS, version)
    if doc is None:
        raise NotFoundError(f"no ruleset {version!r}; shipped: {', '.join(available_versions())}")
    cached = _RULESET_CACHE.get((version, doc["sha256"]))
    if cached is not None:
        return cached
    ruleset = ruleset_from_bytes(base64.b64decode(doc["raw_b64"]))
    if ruleset.sha256 != doc["sha256"]:  # pragma: no cover - store corruption
        raise ConflictError(f"stored ruleset {version} does not match its sha256")
    _RULESET_CACHE[(version, ruleset.sha256)] = ruleset
    return ruleset


def _check_canary_args(percentage: Any, reason: Any, name: str = "percentage") -> list[FieldError]:
    errors = []
    if not _is_number(percentage) or not 0 <= percentage <= 100:
        errors.append(FieldError(name, f"must be a number from 0 to 100 (got {percentage!r})"))
    if not isinstance(reason, str) or not reason.strip():
        errors.append(FieldError("reason", "must be a non-empty text saying why"))
    elif len(reason) > 500:
        errors.append(FieldError("reason", f"must be at most 500 characters (got {len(reason)})"))
    elif (problem := text_problem(reason, max_len=500)) is not None:
        errors.append(FieldError("reason", problem))
    return errors


def _transition(canary: dict[str, Any], state: str, percentage: float, action: str, reason: str,
                actor: str, request_id: str | None, now: float, **extra: Any) -> tuple[dict[str, Any], dict]:
    """The new canary document and its history record."""
    history = {"at": now, "action": action, "from_state": canary["state"], "to_state": state,
               "from_percentage": canary["percentage"], "to_percentage": percentage,
               "candidate": canary["candidate"], "reason": reason, "actor": actor, "request_id": request_id,
               **extra}
    new = {**canary, "state": state, "percentage": percentage, "reason": reason, "updated_at": now,
           "updated_by": actor}
    return new, history


def update_canary(store: Store, percentage: float, reason: str, actor: str,
                  request_id: str | None = None) -> dict[str, Any]:
    """Set the share of runs on the candidate: EXPANDING above 0, STABLE at 0. Returns the canary state.

    ConflictError (409) when raising above 0 without a registered candidate.
    """
    errors = _check_canary_args(percentage, reason)
    if errors:
        raise InputError(errors, "canary update")
    pct, reason, now = float(percentage), reason.strip(), store.now()

    def fn(doc: dict[str, Any] | None) -> Write:
        canary = {**_default_canary(), **(doc or {})}
        if pct > 0 and not canary["candidate"]:
            raise ConflictError("no candidate ruleset is registered: register one first "
                                "(phase1 ops ruleset register FILE)")
        new, history = _transition(canary, "EXPANDING" if pct > 0 else "STABLE", pct, "update", reason,
                                   actor, request_id, now)
        entry = audit_entry("canary.update", actor, request_id, now, target="canary",
                            old={"state": canary["state"], "percentage": canary["percentage"]},
                            new={"state": new["state"], "percentage": pct}, reason=reason)
        return Write(doc=new, result=new, appends=[(STREAM_CANARY, history), (STREAM_AUDIT, entry)])

    return store.transact(NS_META, _CANARY_KEY, fn)


def rollback(store: Store, target_percentage: float = 0, reason: str = "", actor: str = "system",
             request_id: str | None = None) -> dict[str, Any]:
    """Lower the canary share to ``target_percentage``: ROLLING_BACK, then ROLLED_BACK.

    Returns the final state plus ``previous_percentage`` and ``duration_ms`` (time from the start of the
    rollback to its commit). A target above the current share is refused: that is an expansion.
    """
    errors = _check_canary_args(target_percentage, reason, "target_percentage")
    if errors:
        raise InputError(errors, "rollback")
    target, reason, started = float(target_percentage), reason.strip(), time.perf_counter()
    first_now = store.now()

    def begin(doc: dict[str, Any] | None) -> Write:
        canary = {**_default_canary(), **(doc or {})}
        if target > canary["percentage"]:
            raise InputError([FieldError("target_percentage", f"must not exceed the current share "
                                                              f"{canary['percentage']:g} (got {target:g})")],
                             "rollback")
        new, history = _transition(canary, "ROLLING_BACK", canary["percentage"], "rollback_started", reason,
                                   actor, request_id, first_now, target_percentage=target)
        return Write(doc=new, result=canary, appends=[(STREAM_CANARY, history)])

    before = store.transact(NS_META, _CANARY_KEY, begin)
    now = store.now()

    def finish(doc: dict[str, Any] | None) -> Write:
        canary = {**_default_canary(), **(doc or {})}
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        new, history = _transition(canary, "ROLLED_BACK", target, "rollback_done", reason, actor, request_id,
                                   now, duration_ms=duration_ms)
        entry = audit_entry("canary.rollback", actor, request_id, now, target="canary",
                            old={"state": before["state"], "percentage": before["percentage"]},
                            new={"state": "ROLLED_BACK", "percentage": target}, reason=reason,
                            duration_ms=duration_ms)
        result = {**new, "previous_percentage": before["percentage"], "duration_ms": duration_ms}
        return Write(doc=new, result=result, appends=[(STREAM_CANARY, history), (STREAM_AUDIT, entry)])

    return store.transact(NS_META, _CANARY_KEY, finish)


# ---- metrics, status and health -------------------------------------------------------------------------

METRIC_KINDS = ("run", "request")
#: The operations guide's thresholds.
THRESHOLDS = {"error_rate_max": 0.001, "success_rate_min": 0.999, "p95_runs_1_10k_max_s": 5.0,
              "memory_drift_ratio": 1.2}
RUN_BAND = (1, 10_000)
DRIFT_WINDOW = 10
#: A process's first samples are its warm-up (imports, the first dashboard renders, the first run and export):
#: memory drift is measured against the mean of the DRIFT_WINDOW samples that follow them.
WARMUP_SAMPLES = 50
#: Runs listed in status/full with the ruleset each used.
RECENT_RUNS = 20
#: When this module was imported: the start of this process for uptime.
PROCESS_STARTED_AT = time.time()
#: This process in metric samples (memory is a per-process figure; several processes share one store).
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{PROCESS_STARTED_AT:.3f}"


def current_rss_bytes() -> int:
    """Resident memory of this process: VmRSS from /proc/self/status, else the peak from getrusage."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def record_metric(store: Store, kind: str, duration_s: float, ok: bool, permutations: int | None = None,
                  rss_bytes: int | None = None, refused: bool = False) -> dict[str, Any]:
    """Record one run or request: duration, ``ok`` (False only for a server fault: a 5xx answer, a crashed
    run), ``refused`` (a request answered 4xx: the client's input, not a fault), permutations (runs), and
    this process's RSS and id."""
    errors = []
    if kind not in METRIC_KINDS:
        errors.append(FieldError("kind", f"must be run or request (got {kind!r})"))
    if not _is_number(duration_s) or duration_s < 0:
        errors.append(FieldError("duration_s", f"must be a number of seconds >= 0 (got {duration_s!r})"))
    if not isinstance(ok, bool):
        errors.append(FieldError("ok", f"must be true or false (got {ok!r})"))
    if permutations is not None and (isinstance(permutations, bool) or not isinstance(permutations, int)
                                     or permutations < 0):
        errors.append(FieldError("permutations", f"must be a whole number >= 0 or null "
                                                 f"(got {permutations!r})"))
    if errors:
        raise InputError(errors, "metric")
    sample = {"kind": kind, "duration_s": float(duration_s), "ok": ok, "permutations": permutations,
              "rss_bytes": int(current_rss_bytes() if rss_bytes is None else rss_bytes), "at": store.now(),
              "refused": bool(refused), "process": PROCESS_ID}
    store.add_metric(sample)
    return sample


def percentile(values: list[float], q: float) -> float | None:
    """numpy.percentile with its default linear interpolation; None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def _latency(values: list[float]) -> dict[str, Any]:
    return {"samples": len(values), "p50_s": percentile(values, 50), "p95_s": percentile(values, 95)}


def memory_summary(rss: list[int]) -> dict[str, Any]:
    """Peak RSS and drift of one process's samples, oldest first: the first WARMUP_SAMPLES are warm-up; the
    baseline is the mean of the next DRIFT_WINDOW; drift when the mean of the last DRIFT_WINDOW exceeds 1.2 x
    the baseline. Unknown (None) before WARMUP_SAMPLES + 2 x DRIFT_WINDOW samples."""
    out: dict[str, Any] = {"samples": len(rss), "peak_rss_bytes": max(rss) if rss else None,
                           "warmup_samples": WARMUP_SAMPLES, "baseline_mean_bytes": None, "last10_mean_bytes": None,
                           "drift_ratio": None, "drift": None}
    if len(rss) >= WARMUP_SAMPLES + 2 * DRIFT_WINDOW:
        baseline = float(np.mean(rss[WARMUP_SAMPLES:WARMUP_SAMPLES + DRIFT_WINDOW]))
        last = float(np.mean(rss[-DRIFT_WINDOW:]))
        ratio = last / baseline if baseline > 0 else None
        out.update(baseline_mean_bytes=baseline, last10_mean_bytes=last, drift_ratio=ratio,
                   drift=bool(last > THRESHOLDS["memory_drift_ratio"] * baseline))
    return out


def _memory_process(samples: list[dict[str, Any]], process: str | None) -> str | None:
    """The process whose memory is reported: the given one, else the server (the newest request sample's)."""
    if process is not None:
        return process
    for sample in reversed(samples):
        if sample["kind"] == "request":
            return sample.get("process")
    return samples[-1].get("process") if samples else None


def metrics_summary(samples: list[dict[str, Any]], process: str | None = None) -> dict[str, Any]:
    """Counts, error and success rates, latency percentiles (all; runs of 1-10k permutations), memory.

    failures = server faults only (``ok`` false: 5xx answers, crashed runs); refused = requests answered 4xx.
    error_rate = failures / samples; success_rate = completed runs / runs (refused inputs are no runs).
    Memory is one process's (``process``, default the server's: see :func:`_memory_process`).
    """
    n = len(samples)
    failures = sum(1 for s in samples if not s["ok"])
    runs = [s for s in samples if s["kind"] == "run"]
    band = [s["duration_s"] for s in runs if s.get("permutations") is not None
            and RUN_BAND[0] <= s["permutations"] <= RUN_BAND[1]]
    proc = _memory_process(samples, process)
    rss = [int(s["rss_bytes"]) for s in samples if s.get("process") == proc]
    return {"samples": n, "runs": len(runs), "requests": n - len(runs), "failures": failures,
            "run_failures": sum(1 for s in runs if not s["ok"]),
            "refused": sum(1 for s in samples if s.get("refused")),
            "error_rate": failures / n if n else None,
            "success_rate": sum(1 for s in runs if s["ok"]) / len(runs) if runs else None,
            "latency": _latency([s["duration_s"] for s in samples]), "latency_runs_1_10k": _latency(band),
            "memory": {**memory_summary(rss), "process": proc}}


def _check(name: str, value: Any, ok: bool | None, rule: str, missing: str) -> dict[str, Any]:
    return {"name": name, "value": value, "rule": rule, "ok": ok, "reason": None if ok else missing}


def go_no_go(metrics: dict[str, Any]) -> dict[str, Any]:
    """GO only when every threshold of the operations guide is met; a failing or unknown check is a reason."""
    err, succ = metrics["error_rate"], metrics["success_rate"]
    p95 = metrics["latency_runs_1_10k"]["p95_s"]
    drift = metrics["memory"]["drift"]
    t = THRESHOLDS
    checks = [
        _check("error_rate", err, None if err is None else err < t["error_rate_max"], "< 0.1 %",
               "no samples yet: error rate unknown" if err is None
               else f"error rate {err * 100:.3g} % is not below 0.1 %"),
        _check("p95_runs_1_10k_s", p95, None if p95 is None else p95 < t["p95_runs_1_10k_max_s"], "< 5 s",
               "no runs of 1-10k permutations yet: p95 unknown" if p95 is None
               else f"p95 latency of 1-10k permutation runs {p95:.3g} s is not below 5 s"),
        _check("memory_drift", drift, None if drift is None else not drift,
               f"last 10 RSS mean <= 1.2 x the baseline after {WARMUP_SAMPLES} warm-up samples",
               f"memory drift unknown: the server process has {metrics['memory']['samples']} of the "
               f"{WARMUP_SAMPLES + 2 * DRIFT_WINDOW} samples needed ({WARMUP_SAMPLES} warm-up)" if drift is None
               else f"memory drift: last 10 RSS mean is {metrics['memory']['drift_ratio']:.3g} x the baseline"),
        _check("success_rate", succ, None if succ is None else succ > t["success_rate_min"], "> 99.9 %",
               "no runs yet: success rate unknown" if succ is None
               else f"success rate {succ * 100:.4g} % is not above 99.9 %"),
    ]
    reasons = [c["reason"] for c in checks if not c["ok"]]
    return {"decision": "GO" if not reasons else "NO-GO", "reasons": reasons, "checks": checks}


def status_full(store: Store, started_at: float | None = None, process: str | None = None) -> dict[str, Any]:
    """The operator's view: GO/NO-GO with reasons, canary, flags, rulesets, metrics, memory, uptime, and the
    health detail that the public health route no longer shows."""
    now = store.now()
    started = PROCESS_STARTED_AT if started_at is None else started_at
    metrics = metrics_summary(store.list_metrics(), process)
    verdict = go_no_go(metrics)
    recent = [{k: r.get(k) for k in ("run_id", "created_at", "title", "ruleset", "ruleset_sha256", "evaluated")}
              for r in store.list_runs(RECENT_RUNS)]
    return {"decision": verdict["decision"], "reasons": verdict["reasons"], "checks": verdict["checks"],
            "thresholds": dict(THRESHOLDS), "canary": get_canary(store), "flags": get_flags(store),
            "rulesets": list_rulesets(store), "recent_runs": recent, "metrics": metrics,
            "uptime_s": max(0.0, now - started),
            "started_at": started, "generated_at": now, "store": store.describe(),
            "versions": {"phase1lib": __version__, "engine": ENGINE_VERSION}, "health": health(store)}


def public_health(store: Store) -> dict[str, Any]:
    """What anyone may see: ``status`` ok or degraded, nothing else (no store location, versions or problems;
    those are in :func:`status_full`, behind the ops token)."""
    return {"status": health(store)["status"]}


def health(store: Store) -> dict[str, Any]:
    """Liveness: status ok/degraded, versions and store reachability. Never raises."""
    reachable = False
    candidate = None
    problems = []
    try:
        reachable = store.ping()
    except Exception as error:  # pragma: no cover - ping itself never raises
        problems.append(f"store: {type(error).__name__}")
    if reachable:
        try:
            candidate = get_canary(store)["candidate"]
        except Exception as error:
            problems.append(f"canary: {type(error).__name__}")
    else:
        problems.append("store unreachable")
    env = None
    try:
        env = settings.get().app_env
    except ConfigError as error:
        problems.append(str(error))
    try:
        backend = store.describe()
    except Exception:  # pragma: no cover
        backend = {"backend": getattr(store, "backend", "unknown")}
    return {"status": "ok" if not problems else "degraded", "problems": problems, "app_env": env,
            "versions": {"phase1lib": __version__, "engine": ENGINE_VERSION,
                         "rulesets": {"stable": STABLE_VERSION, "shipped": available_versions(),
                                      "candidate": candidate}},
            "store": {**backend, "reachable": reachable}}


def list_audit(store: Store, n: int = 50) -> list[dict[str, Any]]:
    """The last ``n`` audit entries, newest first."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError([FieldError("n", f"must be a whole number >= 1 (got {n!r})")], "audit query")
    return store.list_audit(n)

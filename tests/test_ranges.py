"""Range specs, the grid, permutation ids, the guardrail and sampling (METHODOLOGY section 3)."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phase1lib.errors import GuardrailError, InputError
from phase1lib.presets import list_presets, preset_names, preset_ranges
from phase1lib.project import load_project
from phase1lib.ranges import (
    KEYS,
    check_guardrail,
    expand_step,
    max_permutations,
    parse_ranges,
    permutation_id,
    permutation_ids,
    sample_indices,
)

LONDON = load_project("examples/london_dc_alpha.json")
BASE = {"senior_tenor": [10], "senior_coupon": 0.05, "senior_dscr": 1.3}


def enumerate_points(values: dict) -> list[dict]:
    """Plain nested-loop enumeration of the methodology's grid (test oracle)."""
    outer = KEYS[: KEYS.index("mezz_on")]
    mezz = ("mezz_coupon", "mezz_dscr", "mezz_tenor", "mezz_amort")
    points = []
    for combo in itertools.product(*(values[k] for k in outer)):
        base = dict(zip(outer, combo, strict=True))
        for on in values["mezz_on"]:
            inner = itertools.product(*(values[k] for k in mezz)) if on else [()]
            for m in inner:
                for h in values["sidecar_haircut_pct"]:
                    p = dict(base, mezz_on=on)
                    for k, v in zip(mezz if on else (), m, strict=True):
                        p[k] = base["senior_tenor"] if (k == "mezz_tenor" and v is None) else v
                    p["sidecar_haircut_pct"] = h
                    points.append(p)
    return points


def test_expand_step_index_based():
    assert expand_step(0.04, 0.0625, 0.0025) == [0.04, 0.0425, 0.045, 0.0475, 0.05, 0.0525, 0.055, 0.0575,
                                                 0.06, 0.0625]
    assert expand_step(1.20, 1.45, 0.05)[-1] == 1.45
    assert len(expand_step(0.04, 0.0625, 0.001)) == 23  # 0.0625 is not on the 0.001 grid
    assert len(expand_step(1.20, 1.45, 0.02)) == 13


def test_reference_cardinalities():
    assert {p["name"]: p["cardinality"] for p in list_presets()}.items() >= {
        "current_1920": 1920, "phase2_10k": 9568, "phase3_50k": 38272}.items()


def test_preset_descriptions_and_small_designed_presets():
    for p in list_presets(LONDON):
        assert p["description"] and "\n" not in p["description"]
        if p["name"] in ("conservative", "balanced", "aggressive"):
            assert p["cardinality"] < 10_000


def test_presets_from_issue():
    g = parse_ranges(preset_ranges("value_max_bbb"), LONDON)
    assert g.values["mezz_coupon"] == tuple(round(0.07 + i * 0.005, 10) for i in range(11))
    assert g.values["mezz_on"] == (True,)
    assert g.cardinality == 3 * 9 * 3 * 2 * (3 * 11 * 2)
    with pytest.raises(InputError, match="unknown preset"):
        preset_ranges("nope")
    assert set(preset_names()) >= {"repo_first_aaa_aa", "balanced_a", "value_max_bbb", "conservative",
                                   "balanced", "aggressive", "current_1920", "phase2_10k", "phase3_50k"}


def test_aliases_and_defaults():
    g = parse_ranges({"tenor_years": 10, "senior_coupon_pct": [0.05], "min_dscr_senior": 1.3,
                      "zcis_tenor": [0, 5], "senior_io_months": [0, 12], "haircut_pct": 0.2}, LONDON)
    assert g.values["senior_tenor"] == (10,) and g.values["zcis_tenor_years"] == (0, 5)
    assert g.values["io_months"] == (0, 12) and g.values["sidecar_haircut_pct"] == (0.2,)
    assert g.values["senior_amort"] == ("sculpted",) and g.values["indexation_mode"] == ("CPI_capped",)
    assert g.values["mezz_coupon"] == (0.09,) and g.values["mezz_tenor"] == (None,)
    assert g.point(0)["sidecar_haircut_pct"] == 0.2


def test_integer_keys_take_integers():
    g = parse_ranges(dict(BASE, senior_tenor=[10.0, 12]), LONDON)
    assert g.values["senior_tenor"] == (10, 12) and all(type(v) is int for v in g.values["senior_tenor"])
    with pytest.raises(InputError, match="senior_tenor"):
        parse_ranges(dict(BASE, senior_tenor=[10.5]), LONDON)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"senior_coupon": {"min": 0.04, "max": 0.06, "step": 0}}, "senior_coupon", "step must be > 0"),
        ({"senior_coupon": {"min": 0.06, "max": 0.04, "step": 0.01}}, "senior_coupon", "min must be <= max"),
        ({"senior_coupon": {"min": 0.04, "max": 0.06}}, "senior_coupon", "missing: step"),
        ({"senior_tenor": []}, "senior_tenor", "empty"),
        ({"senior_dscr": 0.9}, "senior_dscr", ">= 1.0"),
        ({"senior_coupon": 5}, "senior_coupon", "decimal"),
        ({"senior_coupon": -0.01}, "senior_coupon", "> 0"),
        ({"senior_amort": ["balloon"]}, "senior_amort", "sculpted"),
        ({"wrap": ["yes"]}, "wrap", "true or false"),
        ({"zcis_tenor_years": [25]}, "zcis_tenor_years", "24"),
        ({"io_months": [4]}, "io_months", "multiple of 3"),
        ({"mezz_tenor": [26]}, "mezz_tenor", "lease_years"),
        ({"senior_tenor": [10, 10]}, "senior_tenor", "distinct"),
        ({"sidecar_haircut_pct": 1.5}, "sidecar_haircut_pct", "between 0 and 1"),
        ({"senior_amort": {"min": 1, "max": 2, "step": 1}}, "senior_amort", "list or a single value"),
        ({"colour": ["red"]}, "colour", "unknown range key; known keys: senior_tenor"),
        ({"tenor_years": [12]}, "tenor_years", "given twice"),
    ],
)
def test_bad_ranges_name_the_key(change, field, words):
    with pytest.raises(InputError) as info:
        parse_ranges(dict(BASE, **change), LONDON)
    messages = {e.field: e.message for e in info.value.errors}
    assert field in messages, messages
    assert words in messages[field]


def test_required_keys():
    with pytest.raises(InputError) as info:
        parse_ranges({}, LONDON)
    assert {e.field for e in info.value.errors} == {"senior_tenor", "senior_coupon", "senior_dscr"}


def test_project_free_checks_skip_project_domains():
    assert parse_ranges(dict(BASE, zcis_tenor_years=[30], io_months=[7])).cardinality == 1


def test_order_first_key_outermost():
    g = parse_ranges({"senior_tenor": [10, 12], "senior_coupon": [0.04, 0.05], "senior_dscr": [1.3],
                      "wrap": [True, False]}, LONDON)
    pts = [(p["senior_tenor"], p["senior_coupon"], p["wrap"]) for p in g.iter_points()]
    assert pts == [(10, 0.04, True), (10, 0.04, False), (10, 0.05, True), (10, 0.05, False),
                   (12, 0.04, True), (12, 0.04, False), (12, 0.05, True), (12, 0.05, False)]


def test_mezz_subgrid_collapses_when_off():
    g = parse_ranges(dict(BASE, mezz_on=[False, True], mezz_dscr=[1.05, 1.1], mezz_tenor=[7, 10]), LONDON)
    assert g.cardinality == 1 + 4
    first = g.point(0)
    assert first["mezz_on"] is False and not any(k.startswith("mezz_") and k != "mezz_on" for k in first)
    assert g.point(1) == dict(first, mezz_on=True, mezz_coupon=0.09, mezz_dscr=1.05, mezz_tenor=7,
                              mezz_amort="sculpted")


def test_mezz_tenor_default_is_senior_tenor():
    g = parse_ranges(dict(BASE, senior_tenor=[10, 15], mezz_on=[True]), LONDON)
    assert [p["mezz_tenor"] for p in g.iter_points()] == [10, 15]


def test_permutation_id_definition():
    g = parse_ranges(preset_ranges("current_1920"), LONDON)
    p = g.point(7)
    text = json.dumps(p, sort_keys=True, separators=(",", ":"))
    assert permutation_id(p) == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_guardrail(monkeypatch):
    assert max_permutations() == 250_000
    with pytest.raises(GuardrailError, match="250,001 permutations exceed the guardrail of 250,000"):
        check_guardrail(250_001)
    check_guardrail(250_000)
    monkeypatch.setenv("PHASE1_MAX_PERMUTATIONS", "1000")
    with pytest.raises(GuardrailError) as info:
        check_guardrail(1920)
    assert "1,920" in str(info.value) and "1,000" in str(info.value)
    check_guardrail(1920, sample=500)
    with pytest.raises(GuardrailError):
        check_guardrail(5000, sample=1001)
    with pytest.raises(InputError, match="cardinality"):
        check_guardrail(100, sample=101)
    monkeypatch.setenv("PHASE1_MAX_PERMUTATIONS", "many")
    with pytest.raises(InputError, match="PHASE1_MAX_PERMUTATIONS"):
        max_permutations()


def test_sampling_is_seeded_distinct_sorted():
    a = sample_indices(10**9, 1000, 424242)
    assert np.array_equal(a, sample_indices(10**9, 1000, 424242))
    assert len(np.unique(a)) == 1000 and np.all(np.diff(a) > 0) and a.max() < 10**9
    rng = np.random.Generator(np.random.PCG64(424242))
    assert np.array_equal(a, np.sort(rng.choice(10**9, 1000, replace=False)))
    assert not np.array_equal(a, sample_indices(10**9, 1000, 1))


# --- property tests --------------------------------------------------------------------------------

steps = st.sampled_from([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05])


@given(lo=st.integers(0, 400), n=st.integers(0, 60), step=steps)
def test_expansion_never_drops_the_endpoint(lo, n, step):
    lo_v = round(0.01 + lo * 0.0001, 10)
    hi_v = round(lo_v + n * step, 10)
    values = expand_step(lo_v, hi_v, step)
    assert len(values) == n + 1
    assert values[-1] == hi_v


small_list = lambda pool: st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)  # noqa: E731


@st.composite
def small_requests(draw):
    req = {
        "senior_tenor": draw(small_list([5, 10, 12, 20])),
        "senior_coupon": draw(st.sampled_from([0.05, [0.04, 0.05], {"min": 0.04, "max": 0.05, "step": 0.005}])),
        "senior_dscr": draw(small_list([1.2, 1.3, 1.4])),
    }
    optional = {
        "senior_amort": small_list(["sculpted", "annuity", "level", "bullet"]),
        "indexation_mode": small_list(["flat", "CPI_capped"]),
        "zcis_tenor_years": small_list([0, 5, 10]),
        "io_months": small_list([0, 12]),
        "wrap": small_list([True, False]),
        "mezz_on": small_list([True, False]),
        "mezz_dscr": small_list([1.05, 1.1, 1.2]),
        "mezz_tenor": small_list([7, 10]),
        "mezz_amort": small_list(["sculpted", "annuity", "level"]),
        "mezz_coupon": small_list([0.08, 0.1]),
        "sidecar_haircut_pct": small_list([0.1, 0.2]),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            req[key] = draw(strategy)
    return req


@settings(max_examples=150, deadline=None)
@given(small_requests())
def test_grid_matches_plain_enumeration(req):
    g = parse_ranges(req, LONDON)
    expected = enumerate_points({k: list(v) for k, v in g.values.items()})
    assert g.cardinality == len(expected)
    points = list(g.iter_points())
    assert points == expected
    ids = [permutation_id(p) for p in points]
    assert len(set(ids)) == len(ids)  # unique: no duplicate structures, mezz sub-ranges included
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    idx = np.arange(g.cardinality)
    assert permutation_ids(g, g.decode(idx)) == ids  # vectorised ids agree with the definition
    assert permutation_ids(g, g.decode(idx)) == permutation_ids(g, g.decode(idx))  # stable

"""REGRESSION SNAPSHOT, labelled as one: ruleset v1 must rerun bit for bit after v2 (METHODOLOGY section 11).

tests/data/v1_regression.json was written on main at commit 2746766, before ruleset v2 existed, by running
each (sample, preset) below and hashing what a run stores: its run_id, the bytes of permutations.parquet and
of top.json, and the JSON of `evaluate_structure` for four structures. This test reruns them with today's
code and compares. It guards reproducibility, not correctness: correctness is asserted against the scalar
reference and the worked checks elsewhere. A deliberate v1 change must come with a new engine version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from samples import sample

from phase1lib.engine import evaluate_structure, run
from phase1lib.presets import preset_ranges
from phase1lib.project import parse_project
from phase1lib.runs import save_run

SNAPSHOT = json.loads((Path(__file__).parent / "data" / "v1_regression.json").read_text())
OSAKA = {"title": "Osaka DC Delta", "country": "JP", "currency": "JPY", "gross_it_load_mw": 30, "pue": 1.4,
         "lease_years": 20, "tenant_rating": "A", "gross_monthly_rent": 150_000_000, "opex_pct": 0.25,
         "capex_cost_per_mw": 1_400_000_000, "periods_per_year": 12, "base_cpi": 0.01, "cpi_floor": 0.0,
         "cpi_cap": 0.02, "residual_value_pct": 0.3, "mezz_amort": "level"}


def project(name: str):
    return parse_project(OSAKA) if name == "osaka_test" else sample(name)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("case", SNAPSHOT["runs"], ids=lambda c: f"{c['project']}-{c['preset']}")
def test_v1_runs_are_bit_identical(case, tmp_path):
    result = run(project(case["project"]), preset_ranges(case["preset"]), sample=case["sample"], seed=424242,
                 today=dt.date(2026, 11, 30))
    assert result.run_id == case["run_id"]
    folder = save_run(result, tmp_path)
    assert sha((folder / "permutations.parquet").read_bytes()) == case["parquet_sha256"]
    assert sha((folder / "top.json").read_bytes()) == case["top_sha256"]
    assert result.counts == case["counts"]


@pytest.mark.parametrize("case", SNAPSHOT["evaluate"],
                         ids=lambda c: f"{c['project']}-{c['structure'].get('senior_amort', 'sculpted')}")
def test_v1_evaluations_are_bit_identical(case):
    out = evaluate_structure(project(case["project"]), case["structure"], closing_date=dt.date(2026, 9, 30))
    assert sha(json.dumps(out, sort_keys=True).encode()) == case["sha256"]

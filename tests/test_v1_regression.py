"""REGRESSION SNAPSHOT, labelled as one: ruleset v1 must rerun bit for bit after v2 (METHODOLOGY section 11).

tests/data/v1_regression.json was written by tests/data/make_v1_regression.py from a checkout of commit
2746766, before ruleset v2 existed, running each (sample, preset) below and hashing what a run stores: its
run_id, the bytes of top.json, every value of the stored permutation table (:func:`frame_sha256`: the table
with its permutation_id column, the stored one or, since ids are derived on read, the one derived from the
recorded grid with the scalar definition of METHODOLOGY section 3), and the JSON of `evaluate_structure` for four
structures. This test reruns them with today's code and compares. It guards reproducibility, not correctness:
correctness is asserted against the scalar reference and the worked checks elsewhere. A deliberate v1 change
must come with a new engine version.
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


def frame_sha256(folder: Path) -> str:
    """sha256 of a stored run's permutation table, values and types, whatever the storage layout: the
    permutation_id column is the stored one or derived from meta.json's grid (one scalar id per row), and sits
    second, after permutation_index, as tables stored before ids were derived on read have it."""
    import io

    import polars as pl

    from phase1lib.ranges import Grid, permutation_id

    frame = pl.read_parquet(folder / "permutations.parquet")
    if "permutation_id" not in frame.columns:
        meta = json.loads((folder / "meta.json").read_text())
        grid = Grid(values={k: tuple(v) for k, v in meta["grid"].items()})
        ids = [permutation_id(grid.point(i)) for i in frame["permutation_index"].to_list()]
        frame.insert_column(1, pl.Series("permutation_id", ids, dtype=pl.String))
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return sha(buffer.getvalue())


@pytest.mark.parametrize("case", SNAPSHOT["runs"], ids=lambda c: f"{c['project']}-{c['preset']}")
def test_v1_runs_are_bit_identical(case, tmp_path):
    result = run(project(case["project"]), preset_ranges(case["preset"]), sample=case["sample"], seed=424242,
                 today=dt.date(2026, 11, 30))
    assert result.run_id == case["run_id"]
    folder = save_run(result, tmp_path)
    assert frame_sha256(folder) == case["frame_sha256"]
    assert sha((folder / "top.json").read_bytes()) == case["top_sha256"]
    assert result.counts == case["counts"]


@pytest.mark.parametrize("case", SNAPSHOT["evaluate"],
                         ids=lambda c: f"{c['project']}-{c['structure'].get('senior_amort', 'sculpted')}")
def test_v1_evaluations_are_bit_identical(case):
    out = evaluate_structure(project(case["project"]), case["structure"], closing_date=dt.date(2026, 9, 30))
    assert sha(json.dumps(out, sort_keys=True).encode()) == case["sha256"]

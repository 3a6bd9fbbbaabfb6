"""The phase1 command line: JSON on stdout, clean errors and exit codes, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phase1lib.cli import main

ROOT = Path(__file__).resolve().parent.parent
LONDON = ROOT / "examples" / "london_dc_alpha.json"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASE1_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PHASE1_MAX_PERMUTATIONS", raising=False)
    return tmp_path


def call(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_validate_acceptance_numbers(capsys):
    code, out, _ = call(capsys, "validate", str(LONDON))
    assert code == 0 and out["valid"] is True
    d = out["derived"]
    expected = {"net_it_load_mw": 60, "gross_income_annual": 30_000_000, "noi_annual": 23_400_000,
                "project_capex": 408_500_000, "market_value": 423_500_000, "upfront_fees": 6_740_250,
                "funding_need": 415_240_250, "admin_annual": 622_860.375, "tenor_cap": 23, "dscr_floor": 1.35,
                "dsra_months": 6, "af_min": 0.60, "af_max": 0.75}
    for key, value in expected.items():
        assert d[key] == pytest.approx(value, rel=1e-12), key


BAD_PROJECTS = {
    "missing field": ({"_drop": "pue"}, "pue"),
    "wrong type": ({"lease_years": "twenty"}, "lease_years"),
    "negative MW": ({"gross_it_load_mw": -75}, "gross_it_load_mw"),
    "PUE 0.5": ({"pue": 0.5}, "pue"),
    "country/currency": ({"currency": "USD"}, "currency"),
    "both rents": ({"rent_per_kwh_month": 0.1}, "rent_per_kwh_month"),
    "neither rent": ({"_drop": "gross_monthly_rent"}, "gross_monthly_rent"),
    "unknown field": ({"colour": "blue"}, "colour"),
    "lease of 2 years": ({"lease_years": 2}, "lease_years"),
    "cpi_floor above cpi_cap": ({"cpi_floor": 0.05, "cpi_cap": 0.04}, "cpi_floor"),
}


@pytest.mark.parametrize("case", list(BAD_PROJECTS))
def test_validate_bad_inputs_exit_2_naming_the_field(capsys, tmp_path, case):
    change, field = BAD_PROJECTS[case]
    data = json.loads(LONDON.read_text())
    drop = change.pop("_drop", None) if "_drop" in change else None
    data.update({k: v for k, v in change.items()})
    if drop:
        data.pop(drop)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    code, out, err = call(capsys, "validate", str(path))
    assert code == 2 and out["valid"] is False
    assert field in {e["field"] for e in out["errors"]}
    assert "Traceback" not in err and field in err


def test_missing_file_and_invalid_json(capsys, tmp_path):
    code, out, _ = call(capsys, "validate", str(tmp_path / "nope.json"))
    assert code == 2 and "file not found" in out["errors"][0]["message"]
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    code, out, _ = call(capsys, "validate", str(bad))
    assert code == 2 and "not valid JSON" in out["errors"][0]["message"]


@pytest.mark.parametrize(("ranges", "key"), [
    ({"senior_tenor": [10], "senior_coupon": {"min": 0.04, "max": 0.05, "step": 0}, "senior_dscr": 1.3},
     "senior_coupon"),
    ({"senior_tenor": [10], "senior_coupon": {"min": 0.05, "max": 0.04, "step": 0.01}, "senior_dscr": 1.3},
     "senior_coupon"),
    ({"senior_tenor": [10], "senior_coupon": 0.05, "senior_dscr": 1.3, "colour": [1]}, "colour"),
])
def test_cardinality_bad_ranges_exit_2(capsys, tmp_path, ranges, key):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(ranges))
    code, out, _ = call(capsys, "cardinality", "--ranges", str(path))
    assert code == 2 and key in {e["field"] for e in out["errors"]}


def test_cardinality_and_presets(capsys):
    code, out, _ = call(capsys, "cardinality", "--preset", "phase2_10k")
    assert code == 0 and out["cardinality"] == 9568 and out["exceeds_guardrail"] is False
    assert out["max_permutations"] == 250_000 and len(out["values"]["senior_coupon"]) == 23
    code, out, _ = call(capsys, "presets")
    cards = {p["name"]: p["cardinality"] for p in out["presets"]}
    assert cards["current_1920"] == 1920 and cards["phase3_50k"] == 38_272


def test_run_top_runs_and_rerun(capsys):
    code, out, _ = call(capsys, "run", "--project", str(LONDON), "--preset", "current_1920")
    assert code == 0 and out["cardinality"] == out["evaluated"] == 1920
    assert set(out) >= {"run_id", "seed", "cardinality", "evaluated", "counts", "top", "elapsed_s"}
    assert out["seed"] == 424242 and set(out["counts"]) == {"Diamond", "Gold", "Silver", "Bronze", "Not viable"}
    first = out["top"][0]
    assert set(first) == {"rank", "permutation_index", "permutation_id", "structure", "kpis"}
    assert {"mc_breach_probability", "mc_p5_min_dscr", "gate_a", "gate_b", "stress", "tier"} <= set(first["kpis"])
    run_id = out["run_id"]
    code, top, _ = call(capsys, "top", run_id, "--n", "3")
    assert code == 0 and top["top"] == out["top"][:3]
    code, runs, _ = call(capsys, "runs")
    assert [r["run_id"] for r in runs["runs"]] == [run_id]
    code, again, _ = call(capsys, "run", "--project", str(LONDON), "--preset", "current_1920")
    assert again["run_id"] == run_id and again["top"] == out["top"]


def test_run_over_the_guardrail_exits_3(capsys, monkeypatch):
    monkeypatch.setenv("PHASE1_MAX_PERMUTATIONS", "1000")
    code, out, _ = call(capsys, "run", "--project", str(LONDON), "--preset", "current_1920")
    assert code == 3 and "1,920" in out["message"] and "1,000" in out["message"]
    code, out, _ = call(capsys, "run", "--project", str(LONDON), "--preset", "current_1920", "--sample", "200")
    assert code == 0 and out["evaluated"] == 200


def test_top_of_unknown_run_exits_4(capsys):
    code, out, _ = call(capsys, "top", "0123456789abcdef")
    assert code == 4 and out["error"] == "not_found"


def test_evaluate_structure(capsys):
    code, out, _ = call(capsys, "evaluate", "--project", str(LONDON), "--structure",
                        str(ROOT / "examples" / "structure_rank1.json"))
    assert code == 0 and set(out) >= {"structure", "kpis", "schedule"}
    assert len(out["schedule"]) == 100 and out["kpis"]["tier"] in ("Diamond", "Gold", "Silver")
    assert out["structure"]["senior_amort"] == "sculpted" and out["structure"]["io_months"] == 0


def test_console_script_never_prints_a_traceback(tmp_path):
    exe = Path(sys.executable).parent / "phase1"
    done = subprocess.run([str(exe), "run", "--project", str(tmp_path / "missing.json"), "--preset", "current_1920"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "file not found" in done.stdout


FRANKFURT = ROOT / "examples" / "frankfurt_dc_beta.json"


def test_ruleset_choice_on_validate_evaluate_and_run(capsys, tmp_path):
    code, out, _ = call(capsys, "validate", str(LONDON), "--ruleset", "v2")
    assert code == 0 and out["ruleset"]["version"] == "v2"
    assert out["derived"]["lending_value"] == pytest.approx(23_400_000 / 0.0575, rel=1e-13)
    code, out, _ = call(capsys, "validate", str(LONDON))
    assert code == 0 and "lending_value" not in out["derived"]  # v1's output keys are unchanged
    code, out, err = call(capsys, "validate", str(LONDON), "--ruleset", "v9")
    assert code == 2 and [e["field"] for e in out["errors"]] == ["ruleset"] and "Traceback" not in err
    structure = tmp_path / "s.json"
    structure.write_text(json.dumps({"senior_tenor": 20, "senior_dscr": 1.35}))
    code, out, _ = call(capsys, "evaluate", "--project", str(LONDON), "--structure", str(structure), "--ruleset", "v2")
    assert code == 0 and out["kpis"]["market_coupon"] == 0.06 and out["structure"]["senior_coupon"] == "market"
    assert out["ruleset"]["version"] == "v2" and out["kpis"]["breakeven_cpi"] is not None
    code, out, _ = call(capsys, "evaluate", "--project", str(LONDON), "--structure", str(structure))
    assert code == 2 and [e["field"] for e in out["errors"]] == ["senior_coupon"]  # v1: the coupon is required
    code, out, _ = call(capsys, "run", "--project", str(FRANKFURT), "--preset", "market_1920")
    assert code == 0 and out["ruleset"] == "v2" and out["top"]  # the preset is written for v2
    assert {"breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi", "breakeven_cpi_capped",
            "market_coupon", "senior_coupon"} <= set(out["top"][0]["kpis"])
    code, out, _ = call(capsys, "run", "--project", str(FRANKFURT), "--preset", "market_1920", "--ruleset", "v1")
    assert code == 2 and [e["field"] for e in out["errors"]] == ["senior_coupon"]
    code, out, _ = call(capsys, "run", "--project", str(FRANKFURT), "--preset", "current_1920", "--ruleset", "v2")
    assert code == 0 and out["ruleset"] == "v2"


def test_register_a_shipped_ruleset_by_name(capsys):
    code, out, _ = call(capsys, "ops", "ruleset", "register", "v2")
    assert code == 0 and out["version"] == "v2"
    code, out, _ = call(capsys, "ops", "ruleset", "list")
    assert out["candidate"]["version"] == "v2"
    code, out, _ = call(capsys, "ops", "ruleset", "register", "v1")
    assert code == 2 and "stable ruleset" in out["message"]
    code, out, _ = call(capsys, "presets")
    written_for = {p["name"]: p["ruleset"] for p in out["presets"]}
    assert written_for["market_1920"] == written_for["market_max"] == "v2" and written_for["current_1920"] is None

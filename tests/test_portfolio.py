"""Portfolio runs on this machine: the file format and its errors (per project and field, nothing run until all are
valid), the guardrails, identity with single runs (run_id, Parquet and top.json bytes), the summary recomputed
from the stored frames, portfolio_id, reuse, progress, and the CLI (exit codes, an unreachable scheduler)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from server_fixtures import free_port

from phase1lib import service
from phase1lib.cli import EXIT_CLUSTER, EXIT_GUARDRAIL, EXIT_INVALID, main
from phase1lib.engine.gates import TIERS
from phase1lib.errors import GuardrailError, InputError
from phase1lib.portfolio import ClusterError, load_portfolio, parse_portfolio, portfolio_id
from phase1lib.portfolio.spec import DEFAULT_MAX_PORTFOLIO_PERMUTATIONS
from phase1lib.presets import preset_ranges
from phase1lib.project import load_project
from phase1lib.ranges import Grid, permutation_id
from phase1lib.runs import runs_dir
from phase1lib.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LONDON, FRANKFURT, ASHBURN = (EXAMPLES / f"{n}.json" for n in ("london_dc_alpha", "frankfurt_dc_beta",
                                                                 "ashburn_dc_gamma"))
OSAKA = ROOT / "tests" / "data" / "portfolio_osaka.json"
SMALL = {"senior_tenor": [15, 20], "senior_coupon": [0.045, 0.05], "senior_dscr": [1.3, 1.4]}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASE1_HOME", str(tmp_path / "home"))
    for name in ("PHASE1_MAX_PERMUTATIONS", "PHASE1_MAX_PORTFOLIO_PERMUTATIONS", "PHASE1_DASK_SCHEDULER"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "phase1.db")
    yield s
    s.close()


def call(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def hopeless() -> dict:
    """A project whose rent cannot carry any debt: no viable structure (not financeable)."""
    data = json.loads(LONDON.read_text())
    return dict(data, title="Hopeless DC", gross_monthly_rent=200_000)


# ---- the format ---------------------------------------------------------------------------------------------

def test_defaults_apply_and_a_project_overrides_them():
    pf = parse_portfolio({"title": "Q4 pipeline", "defaults": {"preset": "current_1920", "seed": 7, "topn": 5},
                          "projects": ["london_dc_alpha.json",
                                       {"project": "frankfurt_dc_beta.json", "preset": "market_1920"},
                                       {"project": hopeless(), "ranges": SMALL, "seed": 9, "topn": 3}]},
                         base=EXAMPLES)
    london, frankfurt, inline = pf.projects
    assert pf.title == "Q4 pipeline" and len(pf) == 3
    assert (london.ranges, london.seed, london.topn, london.ruleset) == (preset_ranges("current_1920"), 7, 5, None)
    assert frankfurt.ranges == preset_ranges("market_1920") and frankfurt.preset == "market_1920"
    assert frankfurt.ruleset is None  # the preset names v2 when it is planned (D45)
    assert (frankfurt.seed, frankfurt.topn) == (7, 5)
    assert (inline.ranges, inline.seed, inline.topn, inline.source) == (SMALL, 9, 3, "inline")
    assert london.project == load_project(LONDON) and london.source == str(LONDON)


def test_file_paths_are_relative_to_the_portfolio_file(tmp_path):
    path = tmp_path / "pipeline.json"
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.json").write_text(LONDON.read_text())
    path.write_text(json.dumps({"defaults": {"preset": "current_1920"}, "projects": ["p/a.json"]}))
    assert load_portfolio(path).projects[0].project.title == "London DC Alpha"


def test_every_problem_of_every_project_is_named():
    data = {"colour": 1, "defaults": {"preset": "nope", "topn": 0},
            "projects": ["missing.json", {"project": "london_dc_alpha.json", "seed": -1, "extra": True},
                         {"project": dict(json.loads(LONDON.read_text()), pue=5), "ranges": SMALL}, 42,
                         {"ranges": SMALL}]}
    with pytest.raises(InputError) as info:
        parse_portfolio(data, base=EXAMPLES)
    fields = [e.field for e in info.value.errors]
    assert fields == ["colour", "defaults.preset", "defaults.topn", "projects[0].project", "projects[1].extra",
                      "projects[1].seed", "projects[2].project.pue", "projects[3]", "projects[4].project"]
    assert "file not found" in info.value.errors[3].message and "missing.json" in info.value.errors[3].message


def test_the_server_reads_no_file_a_client_names():
    with pytest.raises(InputError) as info:
        parse_portfolio({"defaults": {"preset": "current_1920"}, "projects": ["/etc/passwd"]})
    assert info.value.errors[0].field == "projects[0].project" and "object" in info.value.errors[0].message


@pytest.mark.parametrize("data, field", [({}, "projects"), ({"projects": []}, "projects"), ([], "portfolio"),
                                         ({"projects": ["a.json"], "title": "a\nb"}, "title"),
                                         ({"projects": [{"project": {}, "ranges": 3}]}, "projects[0].ranges"),
                                         ({"projects": [{"project": {}, "ranges": SMALL, "preset": "balanced"}]},
                                          "projects[0].preset")])
def test_shape_errors(data, field):
    with pytest.raises(InputError) as info:
        parse_portfolio(data, base=EXAMPLES)
    assert field in [e.field for e in info.value.errors]


def test_range_problems_are_named_per_project_and_nothing_runs(store, home):
    """Planning problems (range keys under the project's ruleset) are named with the reading ones, all at once."""
    bad_ranges = dict(SMALL, senior_tenor=[0, 15])
    pf = parse_portfolio({"defaults": {"preset": "current_1920"},
                          "projects": [str(LONDON), {"project": str(FRANKFURT), "ranges": bad_ranges},
                                       {"project": str(ASHBURN), "ranges": dict(SMALL, senior_coupon="market")},
                                       {"project": str(OSAKA), "seed": "x"}]}, base=ROOT, strict=False)
    with pytest.raises(InputError) as info:
        service.execute_portfolio(store, pf, home=home)
    assert [e.field for e in info.value.errors] == ["projects[1].ranges.senior_tenor",
                                                    "projects[2].ranges.senior_coupon", "projects[3].seed"]
    assert not runs_dir(home).exists()
    assert not [a for a in store.list_audit(100) if a["action"] == "run.ruleset"]  # nothing planned was audited
    assert not store.list_metrics()


# ---- guardrails -------------------------------------------------------------------------------------------------

def test_total_guardrail_names_both_numbers(store, home, monkeypatch, capsys):
    assert DEFAULT_MAX_PORTFOLIO_PERMUTATIONS == 5_000_000
    monkeypatch.setenv("PHASE1_MAX_PORTFOLIO_PERMUTATIONS", "5000")
    pf = parse_portfolio({"defaults": {"preset": "current_1920"}, "projects": [str(LONDON), str(FRANKFURT),
                                                                                str(ASHBURN)]}, base=ROOT)
    with pytest.raises(GuardrailError) as info:
        service.execute_portfolio(store, pf, home=home)
    assert "5,760" in str(info.value) and "5,000" in str(info.value)
    assert info.value.status == 413 and not runs_dir(home).exists()
    code, out, _ = call(capsys, "portfolio", "--projects", LONDON, FRANKFURT, ASHBURN, "--preset", "current_1920")
    assert code == EXIT_GUARDRAIL and out["cardinality"] == 5760 and out["max_permutations"] == 5000


def test_each_project_keeps_its_own_guardrail(store, home, monkeypatch):
    monkeypatch.setenv("PHASE1_MAX_PERMUTATIONS", "1000")
    pf = parse_portfolio({"projects": [{"project": str(LONDON), "ranges": SMALL},
                                       {"project": str(FRANKFURT), "preset": "current_1920"}]}, base=ROOT)
    with pytest.raises(GuardrailError) as info:
        service.execute_portfolio(store, pf, home=home)
    (error,) = info.value.errors
    assert error.field == "projects[1]" and "1,920" in error.message and "1,000" in error.message
    assert not runs_dir(home).exists()


# ---- identity with single runs, the summary ------------------------------------------------------------------------

def _stored(home: Path, run_id: str) -> tuple[bytes, bytes, dict]:
    folder = runs_dir(home) / run_id
    meta = json.loads((folder / "meta.json").read_text())
    for volatile in ("created_at", "timings"):
        meta.pop(volatile)
    return (folder / "permutations.parquet").read_bytes(), (folder / "top.json").read_bytes(), meta


def test_each_run_is_stored_exactly_as_phase1_run_stores_it(tmp_path, store, home):
    """Every project's run equals service.execute_run of the same project: run_id, Parquet and top.json bytes,
    meta.json but for its clock fields; v2 (market_1920) and a sample included."""
    entries = [{"project": str(LONDON), "preset": "current_1920"},
               {"project": str(FRANKFURT), "preset": "market_1920"},
               {"project": str(ASHBURN), "preset": "phase3_50k", "sample": 3000, "seed": 11, "topn": 7}]
    pf = parse_portfolio({"defaults": {"seed": 424242}, "projects": entries}, base=ROOT)
    result = service.execute_portfolio(store, pf, home=home, workers=2)
    single_home = tmp_path / "single"
    single_store = SQLiteStore(tmp_path / "single.db")
    try:
        for entry, run in zip(pf.projects, result.runs, strict=True):
            one = service.execute_run(single_store, entry.project, entry.ranges, seed=entry.seed, topn=entry.topn,
                                      sample=entry.sample, ruleset=entry.ruleset, preset=entry.preset,
                                      home=single_home)
            assert one.run_id == run.run_id and one.top == run.top
            assert _stored(home, run.run_id) == _stored(single_home, one.run_id)
    finally:
        single_store.close()
    assert [r.meta["ruleset"]["version"] for r in result.runs] == ["v1", "v2", "v1"]
    audited = [e for e in store.list_audit(100) if e["action"] == "run.ruleset"]  # named rulesets only (D44)
    assert [(e["target"], e["source"]) for e in audited] == [(result.runs[1].run_id, "preset")]
    assert [m["ok"] for m in store.list_metrics() if m["kind"] == "run"] == [True, True, True]


def test_summary_recomputed_from_the_stored_frames(store, home):
    pf = parse_portfolio({"defaults": {"preset": "current_1920", "seed": 424242},
                          "projects": [str(LONDON), str(ASHBURN), {"project": hopeless(), "ranges": SMALL},
                                       str(OSAKA)]}, base=ROOT)
    result = service.execute_portfolio(store, pf, home=home)
    summary = result.summary
    lines = summary["projects"]
    by_currency: dict[str, list[float]] = {}
    for line, run in zip(lines, result.runs, strict=True):
        frame = pl.read_parquet(runs_dir(home) / run.run_id / "permutations.parquet")
        counts = {t: int((frame["tier"] == t).sum()) for t in TIERS}
        assert line["counts"] == counts and line["title"] == run.meta["project"]["title"]
        viable = frame.filter(pl.col("viable"))
        assert line["financeable"] == (len(viable) > 0) == (line["viable"] > 0)
        if not len(viable):
            assert line["best"] is None
            continue
        best = viable.sort([pl.col("day_one_value").round(2), pl.col("wacd").round(10),
                            pl.col("min_dscr").round(9), "permutation_index"],
                           descending=[True, False, True, False]).row(0, named=True)
        assert line["best"]["day_one_value"] == best["day_one_value"]
        assert line["best"]["equity_required"] == best["equity_required"]
        grid = Grid(values={k: tuple(v) for k, v in run.meta["grid"].items()})  # ids are derived on read
        assert line["best"]["permutation_id"] == permutation_id(grid.point(best["permutation_index"]))
        assert best["day_one_value"] + best["equity_required"] == pytest.approx(
            line["best"]["day_one_value"] + line["best"]["equity_required"], rel=1e-15)
        totals = by_currency.setdefault(line["currency"], [0, 0.0, 0.0])
        totals[0] += 1
        totals[1] += best["day_one_value"]
        totals[2] += best["equity_required"]
    assert [line["financeable"] for line in lines] == [True, True, False, True]
    t = summary["totals"]
    assert (t["projects"], t["financeable"], t["not_financeable"]) == (4, 3, ["Hopeless DC"])
    assert t["counts"] == {k: sum(line["counts"][k] for line in lines) for k in TIERS}
    assert t["evaluated"] == 1920 * 3 + 8
    assert set(t["financeable_by_currency"]) == {"GBP", "USD", "JPY"}  # never added across currencies
    for currency, (n, dov, equity) in by_currency.items():
        got = t["financeable_by_currency"][currency]
        assert (got["projects"], got["day_one_value"], got["equity_required"]) == (n, dov, equity)


def test_portfolio_id_reuse_and_progress(store, home):
    pf = parse_portfolio({"defaults": {"preset": "current_1920", "seed": 424242},
                          "projects": [str(LONDON), str(OSAKA)]}, base=ROOT)
    seen: list[tuple[int, int]] = []
    first = service.execute_portfolio(store, pf, home=home, progress=lambda d, t: seen.append((d, t)))
    expected = hashlib.sha256(json.dumps({"runs": [r.run_id for r in first.runs]}, separators=(",", ":"))
                              .encode()).hexdigest()[:16]
    assert first.portfolio_id == portfolio_id([r.run_id for r in first.runs]) == expected
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1] == (3840, 3840)
    assert {t for _, t in seen} == {3840}
    again = service.execute_portfolio(store, pf, home=home)
    assert again.portfolio_id == first.portfolio_id
    assert again.reused == [True, True] and first.reused == [False, False]
    stored = json.loads((home / "portfolios" / f"{first.portfolio_id}.json").read_text())
    assert stored == json.loads(json.dumps(again.answer()))
    other = parse_portfolio({"defaults": {"preset": "current_1920", "seed": 5}, "projects": [str(LONDON),
                                                                                           str(OSAKA)]}, base=ROOT)
    assert service.execute_portfolio(store, other, home=home).portfolio_id != first.portfolio_id
    audit = [a for a in store.list_audit(100) if a["action"] == "portfolio.run"]
    assert len(audit) == 3 and audit[-1]["target"] == first.portfolio_id


# ---- the command line -----------------------------------------------------------------------------------------------

def test_cli_projects_and_file_agree(capsys, tmp_path, home):
    code, out, _ = call(capsys, "portfolio", "--projects", LONDON, OSAKA, "--preset", "current_1920", "--top", "5")
    assert code == 0 and set(out) == {"portfolio_id", "title", "runs", "summary"}
    assert [r["title"] for r in out["runs"]] == ["London DC Alpha", "Osaka DC Epsilon"]
    assert all(len(r["top"]) == 5 and set(r) >= {"title", "run_id", "counts", "top"} for r in out["runs"])
    path = tmp_path / "pf.json"
    path.write_text(json.dumps({"defaults": {"preset": "current_1920", "topn": 5},
                                "projects": [str(LONDON), str(OSAKA)]}))
    code, again, _ = call(capsys, "portfolio", "--file", path)
    assert code == 0 and again == out
    for run in out["runs"]:
        code, single, _ = call(capsys, "run", "--project", LONDON if run["title"].startswith("London") else OSAKA,
                               "--preset", "current_1920", "--top", "5")
        assert (single["run_id"], single["counts"], single["top"]) == (run["run_id"], run["counts"], run["top"])


def test_cli_bad_input_exits_2_and_runs_nothing(capsys, tmp_path, home):
    code, out, err = call(capsys, "portfolio", "--projects", LONDON, tmp_path / "missing.json", "--preset",
                          "current_1920")
    assert code == EXIT_INVALID and [e["field"] for e in out["errors"]] == ["projects[1].project"]
    assert "Traceback" not in err and not runs_dir(home).exists()
    code, out, _ = call(capsys, "portfolio", "--file", tmp_path / "missing.json")
    assert code == EXIT_INVALID and out["errors"][0]["field"] == "portfolio"
    (tmp_path / "pf.json").write_text(json.dumps({"defaults": {"preset": "current_1920"}, "projects": [str(LONDON)]}))
    code, out, _ = call(capsys, "portfolio", "--file", tmp_path / "pf.json", "--seed", "3")
    assert code == EXIT_INVALID and out["errors"][0]["field"] == "--seed"
    code, out, _ = call(capsys, "portfolio", "--projects", LONDON)
    assert code == EXIT_INVALID and out["errors"][0]["field"] == "--ranges"
    code, out, _ = call(capsys, "portfolio", "--projects", LONDON, "--preset", "current_1920", "--scheduler",
                        "localhost")
    assert code == EXIT_INVALID and out["errors"][0]["field"] == "scheduler"
    assert not runs_dir(home).exists()


def test_an_unreachable_scheduler_is_an_error_naming_it_never_a_local_run(capsys, monkeypatch, home):
    monkeypatch.setenv("PHASE1_DASK_CONNECT_TIMEOUT", "1")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = call(capsys, "portfolio", "--projects", LONDON, "--preset", "current_1920", "--scheduler",
                          address)
    assert code == EXIT_CLUSTER == 6 and out["error"] == "cluster_unavailable" and out["scheduler"] == address
    assert address in out["message"] and address in err and not runs_dir(home).exists()
    monkeypatch.setenv("PHASE1_DASK_SCHEDULER", address)  # the environment's scheduler, the same refusal
    code, out, _ = call(capsys, "portfolio", "--projects", LONDON, "--preset", "current_1920")
    assert code == EXIT_CLUSTER and out["scheduler"] == address
    assert not runs_dir(home).exists()


def test_a_cluster_error_comes_before_anything_is_audited(store, home, monkeypatch):
    monkeypatch.setenv("PHASE1_DASK_CONNECT_TIMEOUT", "1")
    pf = parse_portfolio({"defaults": {"preset": "current_1920"}, "projects": [str(LONDON)]}, base=ROOT)
    with pytest.raises(ClusterError):
        service.execute_portfolio(store, pf, home=home, scheduler=f"tcp://127.0.0.1:{free_port()}")
    assert not store.list_audit(100) and not store.list_metrics()

"""Issue 14, the library side: hostile text never becomes a formula or breaks a page, one bad stored run never
takes a dashboard down, grids are counted before anything is built, refused inputs are no failed runs,
memory drift is measured after the warm-up, runs are private, and bad runs can be deleted.

Everything goes through the public API (``to_xlsx_bytes``, ``parse_project``, ``parse_ranges``, the
dashboards, the ``phase1`` CLI), so the tests survive a rewrite of the modules behind it. The server side of
the issue is tests/test_hardening_server.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import openpyxl
import pytest
from samples import sample
from ui_helpers import make_context

from phase1lib import ops, ranges, service
from phase1lib.cli import main
from phase1lib.engine.runner import run
from phase1lib.errors import InputError, Phase1Error
from phase1lib.project import parse_project
from phase1lib.runs import list_runs, runs_dir, save_run
from phase1lib.store import SQLiteStore
from phase1lib.termsheet import to_xlsx_bytes

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"senior_tenor": [15], "senior_coupon": [0.0575], "senior_dscr": [1.4]}
FORMULA_TITLES = ['=HYPERLINK("http://x.example","click")', "=1+1", '+cmd|" /C calc"!A0', "-2+3", "@SUM(1,1)"]
#: Text no free-text field may hold: lone surrogate, NUL, vertical tab, tab, newline, CR, DEL, C1, bidi override.
BAD_TEXTS = ["\ud800 lone", "a\x00b", "a\x0bb", "tab\there", "two\nlines", "cr\rhere", "del\x7f", "c1\x85x",
             "rtl \u202egnp.exe", "non\ufffechar"]


def titled(title: str, base: str = "slough_dc_delta"):
    """The sample project with another title, past validation (as a run stored before the text rule had it)."""
    return dataclasses.replace(sample(base), title=title)


# ---- 1. formula injection -------------------------------------------------------------------------------


@pytest.mark.parametrize("title", FORMULA_TITLES)
def test_a_title_that_looks_like_a_formula_is_written_as_text(title: str) -> None:
    project = parse_project({**sample("slough_dc_delta").to_dict(), "title": title})  # a valid title
    result = run(project, SMALL)
    assert result.top, "the sample has a viable structure at 15 years, 5.75 %, 1.40x"
    book = openpyxl.load_workbook(io.BytesIO(to_xlsx_bytes(result, 1)))
    holding = []
    for ws in book.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and title in cell.value:
                    holding.append(cell)
                    assert cell.data_type == "s", (ws.title, cell.coordinate, cell.value)
                if cell.data_type == "f":
                    assert "HYPERLINK" not in str(cell.value) and title not in str(cell.value), cell.coordinate
    sheets = {c.parent.title for c in holding}
    assert {"Assumptions", "Cash Flows", "Term Sheet"} <= sheets, sheets  # the sheets of the issue (new layout)
    assert any(c.value == title and c.parent.title == "Assumptions" for c in holding)  # shown as typed
    assert not any(ws._hyperlinks for ws in book.worksheets)


def test_a_title_with_an_ampersand_prints_as_typed_in_the_footer() -> None:
    result = run(titled("R&D Campus &P"), SMALL)
    with zipfile.ZipFile(io.BytesIO(to_xlsx_bytes(result, 1))) as z:
        sheets = [z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/sheet")]
    footers = [s[s.index("<oddFooter>"):s.index("</oddFooter>")] for s in sheets if "<oddFooter>" in s]
    assert footers and all("R&amp;&amp;D Campus &amp;&amp;P" in f for f in footers), footers[0]


def test_libreoffice_shows_the_formula_title_as_text(tmp_path: Path) -> None:
    from test_termsheet_libreoffice import SKIP_REASON, SOFFICE, soffice

    if SOFFICE is None:
        pytest.skip(SKIP_REASON)
    title = FORMULA_TITLES[0]
    result = run(parse_project({**sample("slough_dc_delta").to_dict(), "title": title}), SMALL)
    source = tmp_path / "in" / "termsheet.xlsx"
    source.parent.mkdir()
    source.write_bytes(to_xlsx_bytes(result, 1))
    soffice(["--calc", "--convert-to", "xlsx", "--outdir", str(tmp_path / "out"), str(source)], tmp_path / "p")
    book = openpyxl.load_workbook(tmp_path / "out" / "termsheet.xlsx")  # as LibreOffice saved it
    cells = [c for row in book["Assumptions"].iter_rows() for c in row if c.value == title]
    assert cells and all(c.data_type == "s" for c in cells)
    assert not any(ws._hyperlinks for ws in book.worksheets)


# ---- 2. text rules, bad stored runs, runs delete --------------------------------------------------------


@pytest.mark.parametrize("text", BAD_TEXTS)
def test_text_fields_refuse_control_characters_and_lone_surrogates(text: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        parse_project({**sample().to_dict(), "title": text})
    assert [e.field for e in caught.value.errors] == ["title"]
    assert "printable one-line text" in caught.value.errors[0].message
    store = SQLiteStore(tmp_path / "phase1.db")
    with pytest.raises(InputError) as caught:
        ops.rollback(store, 0, text, "tester")
    assert [e.field for e in caught.value.errors] == ["reason"]
    with pytest.raises(InputError) as caught:
        ops.update_canary(store, 0, text, "tester")
    assert [e.field for e in caught.value.errors] == ["reason"]
    candidate = {**json.loads((ROOT / "phase1lib" / "rulesets" / "v1.json").read_text()), "version": "v9-text",
                 "description": text}
    with pytest.raises(InputError) as caught:
        ops.register_candidate(store, json.dumps(candidate).encode(), "tester")
    assert "description" in [e.field for e in caught.value.errors]
    assert parse_project({**sample().to_dict(), "title": "Zürich — Überseering 数据中心"}).title  # Unicode is fine


def _instances() -> dict:
    from ipywidgets.widgets import widget

    return widget._instances


def _widget_states_pack(widgets_before: set[int]) -> None:
    """Serialise every widget made since ``widgets_before`` as ipykernel sends it to the page (UTF-8 JSON)."""
    from ipywidgets.widgets.widget import _remove_buffers
    from jupyter_client.session import json_packer

    for widget in list(_instances().values()):
        if id(widget) in widgets_before:
            continue
        state, _paths, _buffers = _remove_buffers(widget.get_state())
        json_packer(state)  # raises UnicodeEncodeError on a lone surrogate ("error when executing cell")


@pytest.fixture
def bad_runs_home(tmp_path: Path):
    """A good run, an old run whose title holds a lone surrogate, and a run folder with an unreadable meta.json;
    the store's run index holds the first two."""
    ctx = make_context(tmp_path)
    good = run(sample("slough_dc_delta"), SMALL)
    bad = run(titled("\ud800 lone"), SMALL)
    for result in (good, bad):
        save_run(result, tmp_path)
        ctx.store.index_run(service.run_record(result))
    broken = runs_dir(tmp_path) / "0123456789abcdef"
    broken.mkdir()
    for name in ("top.json", "permutations.parquet"):
        (broken / name).write_bytes(b"")
    (broken / "meta.json").write_bytes(b"\xff\xfe not json")
    ctx.workspace.update(last_run_id=bad.run_id)
    return ctx, good, bad, broken.name


def test_dashboards_show_the_good_runs_and_name_the_bad_ones(bad_runs_home) -> None:
    from phase1lib.ui import OpsMonitorDashboard, RunDashboard, SecuritisationDashboard

    ctx, good, bad, broken = bad_runs_home
    before = {id(w) for w in _instances().values()}
    run_page = RunDashboard(ctx, workers=1)
    securitisation = SecuritisationDashboard(ctx)
    ops_page = OpsMonitorDashboard(ctx)
    _widget_states_pack(before)
    assert [value for _label, value in run_page.runs.options] == [good.run_id]
    assert [value for _label, value in securitisation.run_picker.options] == [good.run_id]
    assert securitisation.result is not None and securitisation.result.run_id == good.run_id
    for page in (run_page, securitisation):
        shown = page.bad_runs.text
        assert bad.run_id in shown and broken in shown and "lone surrogate" in shown, shown
        assert f"phase1 runs delete {bad.run_id}" in shown
    assert good.run_id in ops_page.runs.value and "Slough DC Delta" in ops_page.runs.value
    assert bad.run_id in ops_page.runs.value and "bad record" in ops_page.runs.value


def test_phase1_runs_names_bad_runs_and_runs_delete_removes_them(bad_runs_home, monkeypatch, capsys) -> None:
    ctx, good, bad, broken = bad_runs_home
    monkeypatch.setenv("PHASE1_HOME", str(ctx.home))
    assert main(["runs"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in listed["runs"]] == [good.run_id]
    assert {r["run_id"] for r in listed["bad_runs"]} == {bad.run_id, broken}
    for run_id in (bad.run_id, broken):
        assert main(["runs", "delete", run_id, "--reason", "bad record"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["deleted"] is True and out["files"] is True
    assert not (runs_dir(ctx.home) / bad.run_id).exists() and not (runs_dir(ctx.home) / broken).exists()
    assert not [p for p in runs_dir(ctx.home).iterdir() if p.name.startswith(".tmp")]  # renamed, then removed
    store = SQLiteStore(ctx.home / "phase1.db")
    assert store.get_run(bad.run_id) is None and store.get_run(good.run_id) is not None
    audit = [e for e in store.list_audit(10) if e["action"] == "run.delete"]
    assert {e["target"] for e in audit} == {bad.run_id, broken} and audit[0]["actor"].startswith("cli:")
    assert [r["run_id"] for r in list_runs(ctx.home)] == [good.run_id]
    assert main(["runs", "delete", bad.run_id]) == 4  # gone: not found
    assert main(["runs", "delete", "../../etc"]) == 2  # never a path
    capsys.readouterr()


def test_exporting_an_old_bad_run_is_a_clear_refusal(bad_runs_home) -> None:
    ctx, _good, bad, _broken = bad_runs_home
    with pytest.raises(Phase1Error) as caught:
        service.export_term_sheet(ctx.store, bad.run_id, 1, home=ctx.home)
    assert caught.value.status == 409 and "phase1 runs delete" in str(caught.value)
    assert "\ud800" not in str(caught.value)


# ---- 3. counting before expanding ---------------------------------------------------------------------


def test_an_over_limit_key_is_refused_before_anything_is_built(monkeypatch, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "phase1.db")

    def built(*_args, **_kwargs):
        raise AssertionError("the values were built before the size was checked")

    monkeypatch.setattr(ranges, "expand_step", built)
    request = {"senior_tenor": [10], "senior_coupon": {"min": 1e-7, "max": 0.9999999, "step": 1e-7},
               "senior_dscr": [1.35]}
    count = int((0.9999999 - 1e-7) / 1e-7 + 1e-9) + 1  # METHODOLOGY section 3
    for call in (lambda: ranges.parse_ranges(request),
                 lambda: service.plan_run(store, sample(), request)):
        with pytest.raises(Phase1Error) as caught:
            call()
        error = caught.value
        assert error.status in (400, 413)
        assert "senior_coupon" in str(error) and f"{count:,}" in str(error) and "250,000" in str(error)
    # the product of small keys: over the guardrail, refused from the counts alone (none is expanded)
    request = {"senior_tenor": list(range(1, 41)), "senior_coupon": {"min": 0.01, "max": 0.9, "step": 0.01},
               "senior_dscr": {"min": 1.0, "max": 3.0, "step": 0.01}}
    with pytest.raises(Phase1Error) as caught:
        service.plan_run(store, sample(), request)
    assert caught.value.status == 413 and f"{40 * 90 * 201:,}" in str(caught.value)


def test_an_absurd_step_and_an_unsampleable_grid_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(Phase1Error) as caught:
        ranges.parse_ranges({"senior_tenor": [10], "senior_coupon": {"min": 0.01, "max": 0.9, "step": 5e-324},
                             "senior_dscr": [1.3]})
    assert caught.value.status in (400, 413) and "senior_coupon" in str(caught.value)
    thousand = {"min": 0, "max": 0.999, "step": 0.001}
    huge = {"senior_tenor": list(range(1, 1001)), "senior_coupon": {"min": 0.001, "max": 0.999, "step": 0.001},
            "senior_dscr": {"min": 1.0, "max": 1.999, "step": 0.001}, "sidecar_haircut_pct": thousand,
            "io_months": list(range(0, 3000, 3)), "mezz_on": [True], "mezz_coupon": thousand,
            "mezz_dscr": {"min": 1, "max": 1.999, "step": 0.001}}
    with pytest.raises(Phase1Error) as caught:  # ~10^21 points: beyond int64, so no sample can be drawn
        service.plan_run(SQLiteStore(tmp_path / "phase1.db"), sample(), huge, sample=10)
    assert caught.value.status == 400 and "sample" in str(caught.value)


# ---- 6. status/full counts server faults only; memory after the warm-up --------------------------------


def test_refused_inputs_are_not_failed_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "phase1.db")
    bad = {"senior_tenor": [10], "senior_coupon": {"min": 0.05, "max": 0.04, "step": 0.01}, "senior_dscr": [1.3]}
    for _ in range(10):
        with pytest.raises(InputError):
            service.execute_run(store, sample(), bad, home=tmp_path)
    with pytest.raises(Phase1Error):
        service.execute_run(store, sample(), {**SMALL, "senior_tenor": list(range(1, 41)),
                                              "senior_dscr": {"min": 1, "max": 100, "step": 0.01}}, home=tmp_path)
    service.execute_run(store, sample("slough_dc_delta"), SMALL, home=tmp_path)
    metrics = ops.status_full(store)["metrics"]
    assert metrics["failures"] == 0 and metrics["error_rate"] == 0
    assert metrics["runs"] == 1 and metrics["success_rate"] == 1
    # a crash is a failure
    with pytest.raises(AttributeError):
        service.execute_run(store, "not a project", SMALL, home=tmp_path)  # type: ignore[arg-type]
    metrics = ops.status_full(store)["metrics"]
    assert metrics["failures"] == 1 and metrics["runs"] == 2 and metrics["success_rate"] == 0.5


def test_memory_drift_ignores_the_dashboards_loading_after_start_up(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "phase1.db")
    mb = 1024 * 1024
    # 10 requests at start-up (300 MB), then the dashboards load (450 MB) and the server stays there
    for i in range(80):
        ops.record_metric(store, "request", 0.01, True, rss_bytes=(300 if i < 10 else 450) * mb)
    check = {c["name"]: c for c in ops.status_full(store)["checks"]}["memory_drift"]
    assert check["ok"] is True, check
    for _ in range(10):  # a real leak after the warm-up
        ops.record_metric(store, "request", 0.01, True, rss_bytes=600 * mb)
    check = {c["name"]: c for c in ops.status_full(store)["checks"]}["memory_drift"]
    assert check["ok"] is False and "memory drift" in check["reason"]


# ---- 7. prod lock-down: the Jupyter configuration ----------------------------------------------------------


def test_prod_config_has_no_terminals_culls_idle_kernels_and_caps_them(tmp_path: Path) -> None:
    from phase1lib.server.app import jupyter_config
    from phase1lib.server.context import ServerSettings

    def config(**env: str):
        settings = ServerSettings.from_env(tmp_path, env=env)
        return jupyter_config("127.0.0.1", 8866, settings, "s" * 40)

    prod = config(APP_ENV="prod")
    assert prod.ServerApp.terminals_enabled is False and prod.ServerApp.quit_button is False
    kernels = prod.MappingKernelManager
    assert (kernels.cull_idle_timeout, kernels.cull_interval, kernels.cull_connected) == (600, 60, False)
    assert prod.ServerApp.kernel_manager_class.endswith("Phase1KernelManager")
    assert prod.Phase1KernelManager.max_kernels_per_user == 4
    assert config(APP_ENV="prod", PHASE1_TERMINALS="1").ServerApp.terminals_enabled is True  # explicit opt-in
    assert config(APP_ENV="dev").ServerApp.terminals_enabled is True
    tuned = config(APP_ENV="prod", PHASE1_KERNEL_IDLE_MINUTES="5", PHASE1_MAX_KERNELS_PER_USER="2",
                   PHASE1_ALLOWED_HOSTS="Deals.Example.com")
    assert tuned.MappingKernelManager.cull_idle_timeout == 300 and tuned.Phase1KernelManager.max_kernels_per_user == 2
    assert tuned.ServerApp.local_hostnames == ["localhost", "deals.example.com"]
    with pytest.raises(Phase1Error):
        config(APP_ENV="prod", PHASE1_MAX_KERNELS_PER_USER="0")


def test_the_run_index_entry_is_removed(store) -> None:
    store.index_run({"run_id": "0123456789abcdef", "title": "x", "created_at": 1.0})
    assert store.unindex_run("0123456789abcdef") is True and store.get_run("0123456789abcdef") is None
    assert store.unindex_run("0123456789abcdef") is False and store.list_runs() == []


# ---- 8. runs are private to the owner --------------------------------------------------------------------


def test_run_files_are_600_and_folders_700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        folder = save_run(run(sample("slough_dc_delta"), SMALL), tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(runs_dir(tmp_path).stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"meta.json": 0o600, "top.json": 0o600, "permutations.parquet": 0o600}

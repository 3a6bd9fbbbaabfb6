"""Projects dashboard: every field in the form, messages beside the fields as the analyst types, the derived
preview, load / save JSON, samples."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ui_helpers import make_context

from phase1lib.project import SPECS
from phase1lib.ui import ProjectsDashboard
from phase1lib.ui.components import plain_text as text
from phase1lib.ui.projects import number_text, parse_number_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def london(tmp_path: Path) -> ProjectsDashboard:
    dash = ProjectsDashboard(make_context(tmp_path))
    dash.load_sample("London DC Alpha")
    return dash


def test_every_project_field_has_a_labelled_row_with_its_unit(tmp_path: Path) -> None:
    dash = ProjectsDashboard(make_context(tmp_path))
    assert set(dash.rows) == set(SPECS)
    assert "Gross IT load" in dash.rows["gross_it_load_mw"].label.value
    assert "MW" in dash.rows["gross_it_load_mw"].unit.value
    assert dash.rows["base_cpi"].input.placeholder == "default 0.02"
    assert dash.rows["zcis_rate"].input.placeholder == "= base CPI"


def test_empty_form_lists_required_fields_beside_them(tmp_path: Path) -> None:
    dash = ProjectsDashboard(make_context(tmp_path))
    assert dash.project is None
    assert "is required" in text(dash.rows["title"].message.value)
    assert "is required" in text(dash.rows["capex_cost_per_mw"].message.value)
    assert "problems to fix" in text(dash.status.value) and dash.preview.value == ""


def test_samples_are_one_click_away_and_valid(tmp_path: Path) -> None:
    dash = ProjectsDashboard(make_context(tmp_path))
    titles = {b.description for b in dash.sample_buttons}
    assert {"London DC Alpha", "Frankfurt DC Beta", "Ashburn DC Gamma"} <= titles
    for button in dash.sample_buttons:
        button.click()
        assert dash.project is not None, (button.description, dash.errors)
        assert dash.project.title == button.description


def test_messages_follow_typing(tmp_path: Path) -> None:
    dash = london(tmp_path)
    pue = dash.rows["pue"]
    pue.input.value = "5"
    assert "must be >= 1 and <= 3 (got 5)" in text(pue.message.value) and dash.project is None
    assert "1 problem to fix" in text(dash.status.value)
    pue.input.value = "abc"
    assert "must be a finite number" in text(pue.message.value)
    pue.input.value = "1.3"
    assert dash.project is not None and pue.message.value == "" and "✓ Valid" in text(dash.status.value)


def test_rent_rule_and_currency_follow_country(tmp_path: Path) -> None:
    dash = london(tmp_path)
    dash.rows["rent_per_kwh_month"].input.value = "0.2"
    assert "exactly one rent" in text(dash.rows["rent_per_kwh_month"].message.value)
    dash.rows["rent_per_kwh_month"].input.value = ""
    dash.rows["country"].input.value = "EU"
    assert dash.rows["currency"].input.value == "EUR" and dash.project is not None
    assert "€" in text(dash.preview.value)
    dash.rows["currency"].input.value = "USD"
    assert "must be EUR for country EU" in text(dash.rows["currency"].message.value)


def test_formats_beside_fields_and_percent_typing(tmp_path: Path) -> None:
    dash = london(tmp_path)
    assert dash.rows["gross_monthly_rent"].input.value == "2,500,000"
    assert "£2,500,000 / month" in text(dash.rows["gross_monthly_rent"].message.value)
    dash.rows["opex_pct"].input.value = "22.5%"
    assert dash.project is not None and dash.project.opex_pct == 0.225
    assert "22.50%" in text(dash.rows["opex_pct"].message.value)
    assert parse_number_text("1,250,000", "currency") == 1250000
    assert parse_number_text("2%", "rate") == 0.02 and parse_number_text("x1", "rate") == "x1"
    assert number_text(5400000, "currency / MW") == "5,400,000" and number_text(0.0125, "share") == "0.0125"


def test_derived_preview_shows_the_issue_figures(tmp_path: Path) -> None:
    preview = london(tmp_path).preview.value
    for label in ("Funding need", "NOI / yr", "Tenor cap", "DSCR floor", "Advance factor band", "DSRA",
                  "Repo jurisdiction"):
        assert label in preview
    assert "£23,400,000" in preview and "23 yrs" in preview and "1.35x" in preview and "60% – 75%" in preview


def test_save_link_round_trips_and_load_json_reports_unknown_fields(tmp_path: Path) -> None:
    dash = london(tmp_path)
    content, filename, mime = dash.save_link.payload()
    assert filename == "london-dc-alpha.json" and mime == "application/json"
    assert json.loads(content) == json.loads((EXAMPLES / "london_dc_alpha.json").read_text()) | {
        "indexation_basis": "CPI_capped", "mezz_amort": "sculpted", "periods_per_year": 4}
    other = ProjectsDashboard(make_context(tmp_path / "b"))
    other.upload.value = ({"name": "mine.json", "content": memoryview(content), "type": "application/json",
                           "size": len(content),
                           "last_modified": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},)
    assert other.project is not None and other.project.title == "London DC Alpha"
    other.load_json_text(json.dumps({"title": "X", "colour": "red"}), "odd.json")
    assert other.notice.kind == "warn" and "colour" in other.notice.text
    other.load_json_text("{not json", "bad.json")
    assert other.notice.kind == "error" and "not valid JSON" in other.notice.text


def test_use_hands_the_project_over_and_survives_a_reload(tmp_path: Path) -> None:
    dash = london(tmp_path)
    assert dash.use() is not None
    again = ProjectsDashboard(dash.ctx)
    assert again.project is not None and again.project.title == "London DC Alpha"


def test_use_refuses_an_invalid_project_with_every_problem(tmp_path: Path) -> None:
    dash = london(tmp_path)
    dash.rows["pue"].input.value = "9"
    dash.rows["lease_years"].input.value = "2"
    assert dash.use() is None
    assert dash.notice.kind == "error" and "pue" in dash.notice.text and "lease_years" in dash.notice.text
    assert "project" not in dash.ctx.workspace.get()

"""Shared formats and components: money in the project currency, %, 0.00x, badges, sortable table, downloads."""

from __future__ import annotations

import math

from phase1lib.ui import format as f
from phase1lib.ui.components import Column, DownloadLink, Notice, SortableTable, nav_bar, plain_text


def test_money_in_the_project_currency() -> None:
    assert f.money(254116770.87, "GBP") == "£254,116,771"
    assert f.money(254116770.87, "GBP", compact=True) == "£254.1m"
    assert f.money(254116770.87, "EUR", compact=True, dp=2) == "€254.12m"
    assert f.money(3.2e9, "JPY", compact=True) == "¥3.20bn" and f.money(-1500, "USD") == "−$1,500"
    assert f.money(None, "GBP") == f.money(math.nan, "GBP") == "–"


def test_rates_ratios_years_and_times() -> None:
    assert f.pct(0.0425) == "4.25%" and f.pct(0.6255, 1) == "62.5%" and f.pct(None) == "–"
    assert f.ratio(1.35) == "1.35x" and f.ratio(math.inf) == "–"
    assert f.years(20) == "20 yrs" and f.years(12.0787) == "12.1 yrs"
    assert f.seconds(0.264) == "0.26 s" and f.seconds(150) == "2 min 30 s"
    assert f.timestamp("2026-05-01T12:00:00Z") == "2026-05-01 12:00 UTC"
    assert f.timestamp(0) == "1970-01-01 00:00 UTC"


def test_tier_badges() -> None:
    assert f.tier_badge("Not viable") == '<span class="p1-tier p1-tier-not-viable">Not viable</span>'
    assert "p1-tier-diamond" in f.tier_badge("Diamond") and f.tier_badge(None) == "–"


def rows() -> list[dict]:
    return [{"name": "b", "v": 2.0}, {"name": "a", "v": None}, {"name": "c", "v": 1.0}]


def test_sortable_table_sorts_both_ways_with_missing_values_last() -> None:
    opened: list[str] = []
    table = SortableTable([Column("name", "Name", lambda r: r["name"], lambda r: r["name"], align="left"),
                           Column("v", "Value", lambda r: f.ratio(r["v"]), lambda r: r["v"])],
                          on_open=lambda r: opened.append(r["name"]), open_label=lambda r: r["name"].upper())
    table.set_rows(rows())
    table.header[1].click()
    assert [r["name"] for r in table.rows] == ["c", "b", "a"] and table.header[1].description == "Value ▲"
    table.header[1].click()
    assert [r["name"] for r in table.rows] == ["b", "c", "a"] and table.header[1].description == "Value ▼"
    assert table.cell_text(0, "v") == "2.00x" and table.cell_text(2, "v") == "–"
    table.header[0].click()
    assert [r["name"] for r in table.rows] == ["a", "b", "c"]
    table.open_row(1)
    assert opened == ["b"] and table._open_buttons[1].description == "B"
    table.select(table.rows[1])
    assert "p1-selected" in table._row_html[1]._dom_classes and "p1-selected" not in table._row_html[0]._dom_classes
    # one HTML widget per row (the cells in a CSS grid with the header's widths), escaped values in it
    assert len(table._row_html) == 3 and "grid-template-columns" in table._row_html[0].value


def test_download_link_carries_the_bytes_in_a_data_url() -> None:
    link = DownloadLink()
    payload = bytes(range(256)) * 10
    link.offer(payload, "a b.xlsx", "application/octet-stream")
    assert link.payload() == (payload, "a b.xlsx", "application/octet-stream")
    assert "2.5 KB" in link.value and 'download="a b.xlsx"' in link.value


def test_notice_lists_every_problem_escaped() -> None:
    notice = Notice()
    notice.error("Could not x:", ["pue: must be <= 3", "title: is required"])
    assert "&lt;= 3" in notice.value and notice.text == "Could not x: pue: must be <= 3 title: is required"
    notice.clear()
    assert notice.value == "" and notice.kind == ""


def test_nav_bar_links_every_dashboard_and_names_the_user() -> None:
    html = nav_bar("Run", "alice").value
    for href in ("Projects.ipynb", "Permutations.ipynb", "Run.ipynb", "Securitisation.ipynb", "Ops_Monitor.ipynb"):
        assert f'href="{href}"' in html
    assert 'class="p1-current">Run' in html and "alice" in plain_text(html)
    assert "Not signed in" in nav_bar("Run", None).value

"""Compare: two to four structures side by side (from the Top-N, the near misses or any earlier run, the same
project under another ruleset included): terms, KPIs, stresses and breakevens in one table, every row whose
values differ highlighted (and each cell that differs from the first column), DSCR profiles overlaid.

A pick is (run_id, permutation_index): kept in the workspace (``compare``), so it survives a reload and a
rerun. A Top-N row is shown as the run stored it; any other structure is evaluated again with the run's project,
ruleset and seed (the same numbers the run computed, plus its failures, hint and Monte Carlo).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .. import service
from ..engine import schedule
from ..engine.render import structure_of
from ..engine.structure import evaluate_points
from ..errors import NotFoundError
from ..project import parse_project
from ..store import Store
from .format import esc, money, pct, ratio, tier_badge, years

MAX_PICKS = 4
COLUMN_LETTERS = "ABCD"
STRESS_ROWS = (("cpi_0", "CPI 0%"), ("cpi_1_8", "CPI 1.8%"), ("cpi_2_5", "CPI 2.5%"), ("cpi_3_5", "CPI 3.5%"),
               ("cpi_spike_6", "CPI spike 6% (yrs 1-3)"), ("rent_minus_10", "Rent −10%"),
               ("opex_plus_10", "Opex +10%"))


@dataclass(frozen=True)
class Pick:
    """One structure to compare: a run and the permutation's index in it."""

    run_id: str
    permutation_index: int

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "permutation_index": self.permutation_index}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pick:
        return cls(str(data["run_id"]), int(data["permutation_index"]))


@dataclass
class Entry:
    """A pick resolved: its run's project, ruleset, the rendered structure and its schedule."""

    pick: Pick
    title: str
    ruleset: str
    currency: str
    rank: int | None
    structure: dict[str, Any]
    kpis: dict[str, Any]
    schedule: list[dict[str, Any]]
    source: str

    def label(self, i: int) -> str:
        where = f"#{self.rank}" if self.rank else self.source
        return f"{COLUMN_LETTERS[i]}: {self.title} · {self.ruleset} · {where}"


def resolve(store: Store, home: Path, pick: Pick, cache: dict[str, Any] | None = None) -> Entry:
    """Load (or evaluate) one pick. ``cache`` keeps loaded runs by id for the next picks."""
    cache = {} if cache is None else cache
    result = cache.get(pick.run_id)
    if result is None:
        result = cache[pick.run_id] = service.open_run(store, pick.run_id, home)
    meta = result.meta
    project = parse_project(meta["project"])
    ruleset = service.run_ruleset(store, meta)
    top = next((r for r in result.top if int(r["permutation_index"]) == pick.permutation_index), None)
    if top is not None:
        structure, kpis, rank = dict(top["structure"]), dict(top["kpis"]), int(top["rank"])
        source = f"rank {rank}"
    else:
        rows = result.frame.filter(pl.col("permutation_index") == pick.permutation_index).to_dicts()
        if not rows:
            raise NotFoundError(f"structure {pick.permutation_index} is not in run {pick.run_id}")
        structure = structure_of(rows[0])
        kpis = evaluate_points(project, [structure], ruleset, meta.get("seed"))[0]["kpis"]
        rank = None
        source = "near miss" if kpis.get("near_miss") else f"structure {pick.permutation_index}"
    closing = dt.date.fromisoformat(meta["closing_date"])
    sched = schedule(project, structure, ruleset, closing)
    return Entry(pick, project.title, str(meta["ruleset"]["version"]), project.currency, rank, structure, kpis,
                 sched, source)


def _coupon(e: Entry) -> str:
    used = e.kpis.get("senior_coupon")
    offered = e.structure.get("senior_coupon")
    if offered == "market":
        return f"{pct(used)} (market)"
    return pct(offered)


Row = tuple[str, Callable[[Entry], str]]


def _stress(name: str) -> Callable[[Entry], str]:
    return lambda e: ratio((e.kpis.get("stress") or {}).get(name))


def table_rows(entries: Sequence[Entry]) -> list[tuple[str, list[Row]]]:
    """The compare table's sections and rows (label, cell HTML of an entry)."""
    def k(name: str, fmt: Callable[[Any], str]) -> Callable[[Entry], str]:
        return lambda e: fmt(e.kpis.get(name))

    def m(name: str) -> Callable[[Entry], str]:
        return lambda e: money(e.kpis.get(name), e.currency)

    def s(name: str, fmt: Callable[[Any], str]) -> Callable[[Entry], str]:
        return lambda e: fmt(e.structure.get(name))

    sections: list[tuple[str, list[Row]]] = [
        ("Run", [("Project", lambda e: esc(e.title)), ("Ruleset", lambda e: esc(e.ruleset)),
                 ("Run", lambda e: f"<code>{esc(e.pick.run_id)}</code>"), ("Source", lambda e: esc(e.source)),
                 ("Tier", lambda e: tier_badge(e.kpis.get("tier")))]),
        ("Terms", [("Senior tenor", s("senior_tenor", years)), ("Senior coupon", _coupon),
                   ("DSCR target", s("senior_dscr", ratio)), ("Amortisation", s("senior_amort", esc)),
                   ("Indexation", s("indexation_mode", esc)),
                   ("ZCIS tenor", lambda e: years(e.structure.get("zcis_tenor_years")) if e.structure.get(
                       "zcis_tenor_years") else "no hedge"),
                   ("Interest-only", lambda e: f"{e.structure.get('io_months', 0)} months"),
                   ("Wrap", lambda e: "yes" if e.structure.get("wrap") else "no"),
                   ("Mezzanine", lambda e: "yes" if e.structure.get("mezz_on") else "no"),
                   ("Mezz coupon", s("mezz_coupon", pct)), ("Mezz DSCR", s("mezz_dscr", ratio)),
                   ("Sidecar haircut", s("sidecar_haircut_pct", lambda v: pct(v, 1)))]),
        ("KPIs", [("Day-one value", m("day_one_value")), ("Senior amount", m("senior_amount")),
                  ("Senior all-in rate", k("senior_rate", lambda v: pct(v, 3))),
                  ("Senior rating", k("senior_rating", lambda v: esc(v or "–"))),
                  ("Mezz amount", m("mezz_amount")), ("Equity required", m("equity_required")),
                  ("Min DSCR", k("min_dscr", ratio)), ("Avg DSCR", k("avg_dscr", ratio)), ("LLCR", k("llcr", ratio)),
                  ("WAL", k("wal_years", lambda v: years(v, 2))), ("LTV", k("ltv", lambda v: pct(v, 1))),
                  ("Advance factor", k("advance_factor", lambda v: pct(v, 1))),
                  ("WACD", k("wacd", lambda v: pct(v, 3))),
                  ("Equity IRR", k("equity_irr", pct)),
                  ("Breach probability (MC)", k("mc_breach_probability", lambda v: pct(v, 1))),
                  ("5th pct min DSCR (MC)", k("mc_p5_min_dscr", ratio)),
                  ("Repo eligible", lambda e: "yes" if e.kpis.get("repo_eligible") else "no")]),
        ("Stresses (senior min DSCR)", [(label, _stress(name)) for name, label in STRESS_ROWS]),
    ]
    if any("breakeven_rent_cut" in e.kpis for e in entries):
        def cpi(e: Entry) -> str:
            if "breakeven_rent_cut" not in e.kpis:
                return "– (v1)"
            text = pct(e.kpis.get("breakeven_cpi"))
            return f"≥ {text}" if e.kpis.get("breakeven_cpi_capped") else text

        sections.append(("Pricing and breakevens (v2)", [
            ("Market coupon", k("market_coupon", lambda v: pct(v, 3))),
            ("Coupon paid", k("senior_coupon", lambda v: pct(v, 3))),
            ("Breakeven rent cut", k("breakeven_rent_cut", lambda v: pct(v, 1))),
            ("Breakeven opex rise", k("breakeven_opex_rise", lambda v: pct(v, 1))),
            ("Breakeven CPI", cpi)]))
    return sections


def compare_html(entries: Sequence[Entry]) -> str:
    """The compare table: a column per entry; rows whose values differ carry ``p1-diff`` and each cell that
    differs from column A carries ``p1-diff-cell``."""
    if not entries:
        return ('<div class="p1-muted">Pick two to four structures: "Add to compare" on a structure or a near '
                "miss, or an earlier run below.</div>")
    head = "".join(f'<th class="p1-left">{esc(e.label(i))}</th>' for i, e in enumerate(entries))
    body = []
    differing = 0
    for section, rows in table_rows(entries):
        body.append(f'<tr class="p1-section"><td colspan="{len(entries) + 1}">{esc(section)}</td></tr>')
        for label, cell in rows:
            cells = [cell(e) for e in entries]
            differs = len(set(cells)) > 1
            differing += differs
            tds = "".join(f'<td class="{"p1-diff-cell" if differs and c != cells[0] else ""}">{c}</td>'
                          for c in cells)
            body.append(f'<tr class="{"p1-diff" if differs else ""}"><td class="p1-k">{esc(label)}</td>{tds}</tr>')
    note = (f'<div class="p1-muted">{differing} rows differ (highlighted; the cells that differ from A in bold)'
            "</div>")
    return (f'{note}<table class="p1-grid p1-compare"><thead><tr><th class="p1-left"></th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def differing_rows(entries: Sequence[Entry]) -> list[str]:
    """Labels of the rows whose values differ (tests)."""
    return [label for _s, rows in table_rows(entries) for label, cell in rows
            if len({cell(e) for e in entries}) > 1]

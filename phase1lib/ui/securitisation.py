"""Securitisation dashboard: the sortable Top-N with tier badges, the charts (day-one value against min DSCR
by tier, DSCR profile, debt balance, capital stack), the selected structure's detail (KPIs, gates, hints,
repo, stress grid, Monte Carlo) and **Download term sheet**, delivered through the widget connection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import polars as pl

from .. import service
from ..engine import RunResult, schedule
from ..errors import Phase1Error
from ..pricing import MARKET
from ..project import Project, derive, parse_project
from . import charts
from .components import (
    BadRecords,
    Chart,
    Column,
    DownloadLink,
    Notice,
    SortableTable,
    grid_table,
    heading,
    kv_table,
    page,
)
from .context import AppContext
from .format import TIER_ORDER, esc, money, pct, ratio, tier_badge, years
from .run import run_label, tier_counts_html

STRESS_LABELS = {"cpi_0": "CPI 0%", "cpi_1_8": "CPI 1.8%", "cpi_2_5": "CPI 2.5%", "cpi_3_5": "CPI 3.5%",
                 "cpi_spike_6": "CPI spike 6% (yrs 1-3)", "rent_minus_10": "Rent −10%", "opex_plus_10": "Opex +10%"}


def _k(row: Mapping[str, Any], name: str) -> Any:
    return row["kpis"].get(name)


def _s(row: Mapping[str, Any], name: str) -> Any:
    return row["structure"].get(name)


def profile_text(r: Mapping[str, Any]) -> str:
    """Amortisation profile plus its options: 'sculpted', 'bullet + wrap + mezz'."""
    extras = [name for name, on in (("wrap", _s(r, "wrap")), ("mezz", _s(r, "mezz_on"))) if on]
    return " + ".join([str(_s(r, "senior_amort")), *extras])


def hedge_text(r: Mapping[str, Any]) -> str:
    """Indexation mode and ZCIS tenor: 'capped · 10y', 'flat · no hedge'."""
    mode = "capped" if _s(r, "indexation_mode") == "CPI_capped" else str(_s(r, "indexation_mode"))
    zcis = _s(r, "zcis_tenor_years")
    return f"{mode} · {zcis}y" if zcis else f"{mode} · no hedge"


def coupon_used(r: Mapping[str, Any]) -> Any:
    """The coupon a row pays: the number used (v2 KPI senior_coupon), else the structure's coupon (v1)."""
    used = _k(r, "senior_coupon")
    return used if used is not None else _s(r, "senior_coupon")


def coupon_text(r: Mapping[str, Any]) -> str:
    """'6.00% mkt' for a market-priced note, '5.50%' for an offered coupon (v2 shows the market beside it)."""
    text = pct(coupon_used(r))
    return f"{text} mkt" if _s(r, "senior_coupon") == MARKET else text


def top_columns(currency: str) -> list[Column]:
    """The Top-N table's columns: tier, value, terms, then the KPIs that qualify a structure (fits 1,280 px)."""
    def m(name: str, label: str) -> Column:
        return Column(name, label, lambda r: money(_k(r, name), currency, compact=True, dp=2),
                      lambda r: _k(r, name), "100px")

    def num(name: str, label: str, fmt: Any, width: str, structure: bool = False) -> Column:
        get = _s if structure else _k
        return Column(name, label, lambda r: fmt(get(r, name)), lambda r: get(r, name), width)

    return [
        Column("tier", "Tier", lambda r: tier_badge(_k(r, "tier")),
               lambda r: TIER_ORDER.index(_k(r, "tier")) if _k(r, "tier") in TIER_ORDER else None, "84px", "left"),
        m("day_one_value", "Day-one value"),
        m("senior_amount", "Senior"),
        num("senior_tenor", "Tenor", years, "64px", structure=True),
        Column("senior_coupon", "Coupon", lambda r: esc(coupon_text(r)), coupon_used, "80px"),
        num("senior_dscr", "DSCR tgt", ratio, "76px", structure=True),
        num("min_dscr", "Min DSCR", ratio, "80px"),
        Column("profile", "Profile", lambda r: esc(profile_text(r)), profile_text, "118px", "left"),
        Column("hedge", "Index · ZCIS", lambda r: esc(hedge_text(r)), hedge_text, "104px", "left"),
        num("wal_years", "WAL", years, "70px"),
        num("ltv", "LTV", lambda v: pct(v, 1), "62px"),
        num("wacd", "WACD", pct, "66px"),
        num("equity_irr", "Equity IRR", lambda v: pct(v, 1), "86px"),
        Column("senior_rating", "Rating", lambda r: esc(_k(r, "senior_rating") or "–"),
               lambda r: _k(r, "senior_rating"), "60px", "left"),
        Column("repo_eligible", "Repo", lambda r: "✓" if _k(r, "repo_eligible") else "–",
               lambda r: int(bool(_k(r, "repo_eligible"))), "50px", "left"),
    ]


def terms_rows(structure: Mapping[str, Any], kpis: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """The structure's terms as label / value pairs (v2: the market coupon beside the offered one)."""
    s, k = structure, kpis or {}
    if s["senior_coupon"] == MARKET:
        coupon = f"market: {pct(k.get('senior_coupon'))}"
    elif k.get("market_coupon") is not None:
        coupon = f"{pct(s['senior_coupon'])} offered (market {pct(k['market_coupon'])})"
    else:
        coupon = pct(s["senior_coupon"])
    rows = [("Senior tenor", years(s["senior_tenor"])), ("Senior coupon", esc(coupon)),
            ("DSCR target", ratio(s["senior_dscr"])), ("Amortisation", esc(s["senior_amort"])),
            ("Indexation", esc(s["indexation_mode"])),
            ("ZCIS tenor", "no hedge" if not s["zcis_tenor_years"] else years(s["zcis_tenor_years"])),
            ("Interest-only", f"{s['io_months']} months"), ("Wrap", "yes" if s["wrap"] else "no"),
            ("Mezzanine", "yes" if s["mezz_on"] else "no")]
    if s["mezz_on"]:
        rows += [("Mezz coupon", pct(s["mezz_coupon"])), ("Mezz DSCR", ratio(s["mezz_dscr"])),
                 ("Mezz tenor", years(s["mezz_tenor"])), ("Mezz profile", esc(s["mezz_amort"]))]
    rows.append(("Sidecar haircut", pct(s["sidecar_haircut_pct"], 1)))
    return rows


def kpi_rows(k: Mapping[str, Any], currency: str) -> list[tuple[str, str]]:
    """The structure's KPIs (METHODOLOGY section 7) as label / value pairs."""
    def c(name: str) -> str:
        return money(k.get(name), currency)

    return [("Day-one value", f"<b>{c('day_one_value')}</b>"), ("Senior amount", c("senior_amount")),
            ("Senior all-in rate", pct(k.get("senior_rate"), 3)), ("Senior rating", esc(k.get("senior_rating") or "–")),
            ("Binding constraint", esc(k.get("binding_constraint") or "–")), ("Mezz amount", c("mezz_amount")),
            ("Mezz rate", pct(k.get("mezz_rate"))), ("Sidecar (gross)", c("sidecar_gross")),
            ("Sidecar (net)", c("sidecar_net")), ("DSRA", c("dsra_amount")),
            ("Equity required", c("equity_required")), ("Min DSCR", ratio(k.get("min_dscr"))),
            ("Avg DSCR", ratio(k.get("avg_dscr"))), ("LLCR", ratio(k.get("llcr"))),
            ("WAL", years(k.get("wal_years"), 2)), ("LTV", pct(k.get("ltv"), 1)),
            ("Advance factor", pct(k.get("advance_factor"), 1)), ("WACD", pct(k.get("wacd"), 3)),
            ("Total interest", c("total_interest")), ("Equity IRR", pct(k.get("equity_irr")))]


def gates_html(k: Mapping[str, Any]) -> str:
    """Gate A / B verdicts with every failure, the near-miss hint and repo eligibility."""
    parts = []
    for gate, name in (("gate_a", "Gate A (feasibility)"), ("gate_b", "Gate B (credit)")):
        fails = k.get(gate) or []
        if not fails:
            parts.append(f'<div><span class="p1-msg-ok">✓</span> {esc(name)}: passed</div>')
        else:
            items = "".join(f"<li>{esc(f['check'])}: {esc(f['value'])} vs {esc(f['threshold'])}"
                            f"{' · ' + esc(f['hint']) if f.get('hint') else ''}</li>" for f in fails)
            parts.append(f'<div><span class="p1-msg-error">✗</span> {esc(name)}: {len(fails)} failed<ul>{items}</ul>'
                         "</div>")
    if k.get("hint"):
        parts.append(f'<div class="p1-notice p1-notice-info">Hint: {esc(k["hint"])}</div>')
    if k.get("repo_eligible"):
        parts.append('<div><span class="p1-msg-ok">✓</span> Repo eligible</div>')
    else:
        reasons = "".join(f"<li>{esc(r)}</li>" for r in k.get("repo_reasons") or [])
        parts.append(f'<div><span class="p1-msg-error">✗</span> Not repo eligible<ul>{reasons}</ul></div>')
    return "".join(parts)


def stress_html(k: Mapping[str, Any]) -> str:
    """Stress grid: min senior DSCR (and combined with mezz) per scenario; below 1.00x in red."""
    stress, total = k.get("stress") or {}, k.get("stress_total")

    def cell(v: Any) -> str:
        bad = v is not None and v < 1.0 - 1e-9
        return f'<span class="p1-msg-error">{ratio(v)}</span>' if bad else ratio(v)

    header = ["Scenario", "Senior min DSCR"] + (["Combined"] if total else [])
    rows = [[esc(STRESS_LABELS.get(name, name)), cell(v)] + ([cell(total.get(name))] if total else [])
            for name, v in stress.items()]
    return grid_table(header, rows)


def lending_rows(project: Project, ruleset: Any, k: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Section 11.2 under a priced ruleset: lending value and the LTV limit; [] under v1."""
    if not ruleset.priced:
        return []
    d = derive(project, ruleset)
    ccy = project.currency
    return [("Market coupon", pct(k.get("market_coupon"), 3)),
            ("Income value", f"{money(d.income_value, ccy)} (NOI / {pct(d.cap_rate)})"),
            ("Lending value", f"<b>{money(d.lending_value, ccy)}</b>"),
            ("LTV limit", f"{money(d.ltv_limit, ccy)} ({pct(d.max_ltv, 0)})")]


def breakeven_rows(k: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Section 11.3: how far rent, opex and CPI can move before the min senior DSCR falls to 1.00x."""
    cpi = k.get("breakeven_cpi")
    cpi_text = "fails at base CPI" if cpi is None and k.get("senior_amount") else pct(cpi)
    if k.get("breakeven_cpi_capped"):
        cpi_text = f"≥ {cpi_text} (end of the grid)"
    return [("Rent cut", pct(k.get("breakeven_rent_cut"), 1)), ("Opex rise", pct(k.get("breakeven_opex_rise"), 1)),
            ("CPI level", esc(cpi_text))]


def monte_carlo_rows(k: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [("Breach probability", pct(k.get("mc_breach_probability"), 1)),
            ("5th pct min DSCR", ratio(k.get("mc_p5_min_dscr")))]


class SecuritisationDashboard:
    """The Securitisation page; ``widget`` is what Voila displays."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.result: RunResult | None = None
        self.project: Project | None = None
        self.selected: dict[str, Any] | None = None
        self.schedule: list[dict[str, Any]] = []
        self.notice = Notice()
        self.run_picker = widgets.Dropdown(description="Run", layout=widgets.Layout(width="760px"))
        self.bad_runs = BadRecords()
        self.run_picker.observe(lambda ch: self.open_run(ch["new"]) if ch["new"] else None, names="value")
        self.header = widgets.HTML()
        self.table = SortableTable([], on_open=self.open_structure, open_label=lambda r: f"#{r['rank']}")
        self.scatter, self.stack = Chart(), Chart()
        self.dscr_chart, self.balance_chart = Chart(), Chart()
        self.detail_title = widgets.HTML()
        self.terms, self.kpis, self.gates = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.stress, self.monte_carlo = widgets.HTML(), widgets.HTML()
        self.lending, self.breakevens = widgets.HTML(), widgets.HTML()
        self.breakeven_box = widgets.VBox([heading("Breakevens (min DSCR 1.00x)", 3), self.breakevens],
                                          layout=widgets.Layout(display="none"))
        self.lending_box = widgets.VBox([heading("Pricing and lending value", 3), self.lending],
                                        layout=widgets.Layout(display="none"))
        self.download_button = widgets.Button(description="Download term sheet", icon="download",
                                              button_style="primary", disabled=True,
                                              layout=widgets.Layout(width="200px"))
        self.download_button.on_click(lambda _b: self.download())
        self.download_link = DownloadLink()
        self.download_notice = Notice()
        self.widget = self._layout()
        self.refresh_runs()

    def _layout(self) -> widgets.Widget:
        detail = widgets.HBox([
            widgets.VBox([heading("Terms", 3), self.terms, heading("Monte Carlo (1,000 CPI paths)", 3),
                          self.monte_carlo, self.breakeven_box], layout=widgets.Layout(width="260px")),
            widgets.VBox([heading("KPIs", 3), self.kpis, self.lending_box], layout=widgets.Layout(width="330px")),
            widgets.VBox([heading("Gates and repo", 3), self.gates, heading("Stress grid", 3), self.stress],
                         layout=widgets.Layout(width="420px"))])
        actions = widgets.HBox([self.download_button, self.download_link],
                               layout=widgets.Layout(align_items="center", grid_gap="12px"))
        return page("Securitisation", self.ctx.user, self.run_picker, self.bad_runs, self.header, self.notice,
                    heading("Top-N"), self.table, widgets.HBox([self.scatter, self.stack]),
                    self.detail_title, actions, self.download_notice, widgets.HBox([self.dscr_chart,
                                                                                    self.balance_chart]), detail)

    # ---- runs ------------------------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Fill the run picker and open the workspace's current run (else the newest)."""
        try:
            metas, bad = service.run_catalogue(self.ctx.store, self.ctx.home, limit=200)
        except Phase1Error as error:
            self.notice.failure("list the stored runs", error)
            return
        self.bad_runs.show(bad)
        self.run_picker.options = [(run_label(m), m["run_id"]) for m in metas]
        if not metas:
            self.notice.info("No runs yet: start one in Run.")
            return
        wanted = self.ctx.workspace.get().get("last_run_id")
        ids = [m["run_id"] for m in metas]
        self.run_picker.value = wanted if wanted in ids else ids[0]

    def open_run(self, run_id: str) -> RunResult | None:
        """Show a stored run: header, Top-N table, scatter; then its workspace rank (or rank 1)."""
        try:
            result = service.open_run(self.ctx.store, run_id, self.ctx.home)
            project = parse_project(result.meta["project"])
        except Phase1Error as error:
            self.notice.failure(f"open run {run_id}", error)
            return None
        self.result, self.project = result, project
        m = result.meta
        self.notice.clear()
        self.header.value = (f'<div class="p1-muted"><b>{esc(project.title)}</b> · {m["evaluated"]:,} evaluated of '
                             f'{m["cardinality"]:,} · seed {m["seed"]} · ruleset {esc(m["ruleset"]["version"])}'
                             f"</div><div>{tier_counts_html(m['counts'])}</div>")
        self.table.set_columns(top_columns(project.currency))
        self.table.set_rows(result.top)
        ws = self.ctx.workspace.get()
        if ws.get("last_run_id") != run_id:
            self.ctx.workspace.update(last_run_id=run_id, rank=None)
            ws = {}
        if not result.top:
            self._clear_detail("No viable structure in this run: widen the ranges (Bronze near misses carry hints).")
            self._draw_scatter()
            return result
        rank = ws.get("rank") if isinstance(ws.get("rank"), int) and 1 <= ws["rank"] <= len(result.top) else 1
        self.open_structure(result.top[rank - 1])
        return result

    def _clear_detail(self, message: str) -> None:
        self.selected = None
        for w in (self.terms, self.kpis, self.gates, self.stress, self.monte_carlo, self.lending, self.breakevens):
            w.value = ""
        for c in (self.dscr_chart, self.balance_chart, self.stack):
            c.clear()
        self.detail_title.value = f'<div class="p1-muted">{esc(message)}</div>'
        self.download_button.disabled = True
        self.download_link.clear()

    # ---- one structure ---------------------------------------------------------------------------------------
    def open_rank(self, rank: int) -> None:
        """Open the structure of ``rank`` (1-based), as a click on its row does."""
        assert self.result is not None
        self.open_structure(self.result.top_row(rank))

    def open_structure(self, row: dict[str, Any]) -> None:
        """Show one ranked structure: its detail, schedule charts and capital stack."""
        assert self.result is not None and self.project is not None
        self.selected = row
        self.table.select(row)
        self.download_link.clear()
        self.download_notice.clear()
        self.download_button.disabled = False
        ccy = self.project.currency
        k = row["kpis"]
        self.detail_title.value = (f'<div class="p1-h2">Rank {row["rank"]} · {tier_badge(k["tier"])} · '
                                   f'<code>{esc(row["permutation_id"])}</code> · day-one value '
                                   f'{money(k["day_one_value"], ccy)}</div>')
        self.terms.value = kv_table(terms_rows(row["structure"], k))
        self.kpis.value = kv_table(kpi_rows(k, ccy))
        priced = "breakeven_rent_cut" in k
        lending = lending_rows(self.project, self._ruleset(), k) if priced else []
        self.lending.value = kv_table(lending) if lending else ""
        self.breakevens.value = kv_table(breakeven_rows(k)) if priced else ""
        self.lending_box.layout.display = "flex" if lending else "none"
        self.breakeven_box.layout.display = "flex" if priced else "none"
        self.gates.value = gates_html(k)
        self.stress.value = stress_html(k)
        self.monte_carlo.value = kv_table(monte_carlo_rows(k))
        self.ctx.workspace.update(rank=row["rank"])
        self._draw_structure(row)
        self._draw_scatter()

    def _ruleset(self) -> Any:
        assert self.result is not None
        return service.run_ruleset(self.ctx.store, self.result.meta)

    def _draw_structure(self, row: Mapping[str, Any]) -> None:
        assert self.result is not None and self.project is not None
        ruleset = self._ruleset()
        closing = dt.date.fromisoformat(self.result.meta["closing_date"])
        self.schedule = schedule(self.project, row["structure"], ruleset, closing)
        d = derive(self.project, ruleset)
        floor = d.dscr_floor - (self.project.wrap_dscr_relief if row["structure"]["wrap"] else 0.0)
        ccy = self.project.currency
        self.dscr_chart.show(*charts.dscr_profile(self.schedule, row["structure"]["senior_dscr"], floor))
        self.balance_chart.show(*charts.debt_balance(self.schedule, ccy))
        self.stack.show(*charts.capital_stack(row["kpis"], {"project_capex": d.project_capex,
                                                            "upfront_fees": d.upfront_fees}, ccy))

    def _draw_scatter(self) -> None:
        assert self.result is not None and self.project is not None
        frame = self.result.frame if self.result.frame.height else pl.DataFrame()
        if not frame.height:
            self.scatter.clear()
            return
        selected = self.selected["permutation_index"] if self.selected else None
        self.scatter.show(*charts.value_vs_dscr(frame, self.result.top, self.project.currency, selected))

    # ---- term sheet ------------------------------------------------------------------------------------------
    def download(self) -> bytes | None:
        """Build the selected structure's term sheet and hand it to the browser as a download link."""
        if self.result is None or self.selected is None:
            self.download_notice.error("Open a structure first.")
            return None
        rank = self.selected["rank"]
        try:
            content, filename, mime = service.export_term_sheet(self.ctx.store, self.result.run_id, rank, "xlsx",
                                                                home=self.ctx.home)
        except Phase1Error as error:
            self.download_notice.failure("build the term sheet", error)
            return None
        self.download_link.offer(content, filename, mime, f"Save {filename}")
        self.download_notice.ok(f"Term sheet of rank {rank} ready: click the link to save it.")
        return content


def securitisation_dashboard(ctx: AppContext | None = None) -> widgets.Widget:
    """The Securitisation page for Voila (``ctx`` defaults to the served context)."""
    return SecuritisationDashboard(ctx or AppContext.from_env()).widget

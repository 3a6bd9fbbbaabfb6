"""How one structure reads on a page: its Top-N columns, terms, KPIs, gates, stress grid, lending value,
breakevens, Monte Carlo, the scatter's tooltip and a near-miss card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..pricing import MARKET
from ..project import Project, derive
from . import nearmiss
from .components import Column, grid_table, kv_table
from .format import TIER_ORDER, esc, money, pct, ratio, tier_badge, years

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
    """The Top-N table's columns: tier, value, terms, then the KPIs that qualify a structure (every header
    in full: ~1,320 px, the near misses beside it on a 1,920 px screen)."""
    def m(name: str, label: str) -> Column:
        return Column(name, label, lambda r: money(_k(r, name), currency, compact=True, dp=2),
                      lambda r: _k(r, name), "112px")

    def num(name: str, label: str, fmt: Any, width: str, structure: bool = False) -> Column:
        get = _s if structure else _k
        return Column(name, label, lambda r: fmt(get(r, name)), lambda r: get(r, name), width)

    return [
        Column("tier", "Tier", lambda r: tier_badge(_k(r, "tier")),
               lambda r: TIER_ORDER.index(_k(r, "tier")) if _k(r, "tier") in TIER_ORDER else None, "84px", "left"),
        m("day_one_value", "Day-one value"),
        m("senior_amount", "Senior"),
        num("senior_tenor", "Tenor", years, "64px", structure=True),
        Column("senior_coupon", "Coupon", lambda r: esc(coupon_text(r)), coupon_used, "86px"),
        num("senior_dscr", "DSCR tgt", ratio, "80px", structure=True),
        num("min_dscr", "Min DSCR", ratio, "84px"),
        Column("profile", "Profile", lambda r: esc(profile_text(r)), profile_text, "130px", "left"),
        Column("hedge", "Index · ZCIS", lambda r: esc(hedge_text(r)), hedge_text, "110px", "left"),
        num("wal_years", "WAL", years, "72px"),
        num("ltv", "LTV", lambda v: pct(v, 1), "62px"),
        num("wacd", "WACD", pct, "66px"),
        num("equity_irr", "Equity IRR", lambda v: pct(v, 1), "90px"),
        Column("senior_rating", "Rating", lambda r: esc(_k(r, "senior_rating") or "–"),
               lambda r: _k(r, "senior_rating"), "62px", "left"),
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


def senior_terms(s: Mapping[str, Any]) -> str:
    """The senior note in one line, as markup: '20y · market · DSCR target 1.35x', '15y · 5.00% · ...'."""
    coupon = "market" if s.get("senior_coupon") == MARKET else pct(s.get("senior_coupon"))
    return f"{years(s.get('senior_tenor'))} · {esc(coupon)} · DSCR target {ratio(s.get('senior_dscr'))}"


def tooltip_html(row: Mapping[str, Any], currency: str) -> str:
    """A structure's terms and key KPIs for the scatter's hover (a frame row or a rendered row)."""
    s = row.get("structure") or row
    k = row.get("kpis") or row
    mezz = f" · mezz {pct(s.get('mezz_coupon'))} / {ratio(s.get('mezz_dscr'))}" if s.get("mezz_on") else ""
    terms = f"{senior_terms(s)} · {esc(s.get('senior_amort'))}{' + wrap' if s.get('wrap') else ''}{esc(mezz)}"
    rows = [("Day-one value", money(k.get("day_one_value"), currency)), ("Senior", money(k.get("senior_amount"),
                                                                                          currency)),
            ("Min DSCR", ratio(k.get("min_dscr"))), ("WAL", years(k.get("wal_years"), 1)),
            ("LTV", pct(k.get("ltv"), 1)), ("Equity IRR", pct(k.get("equity_irr"), 1)),
            ("Rating", esc(k.get("senior_rating") or "–"))]
    return (f'<div class="p1-tip"><div>{tier_badge(k.get("tier"))} <code>{esc(row.get("permutation_id") or "")}'
            f"</code></div><div>{terms}</div>{kv_table(rows)}</div>")


def near_miss_card(row: Mapping[str, Any], currency: str) -> str:
    """One near miss: terms, day-one value, the failed check (value vs threshold) and the hint."""
    s, k = row["structure"], row["kpis"]
    fails = "; ".join(nearmiss.failure_text(f) for f in nearmiss.failed_checks(k)) or "–"
    hint: nearmiss.Hint | None = row.get("hint")
    hint_text = esc(hint.text()) if hint else esc(k.get("hint") or "no single-lever fix")
    value = money(k.get("day_one_value"), currency, compact=True, dp=2)
    terms = f"{senior_terms(s)} · {esc(profile_text(row))}"
    return (f'<div class="p1-nm">{tier_badge(k.get("tier"))} <b>{value}</b> · {terms}<div>Fails {fails}</div>'
            f"<div>Hint: {hint_text}</div></div>")

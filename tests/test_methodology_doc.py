"""docs/methodology.md cannot drift from the engine.

The document marks its machine-checked content with HTML comments (invisible on GitHub):

- ``<!-- table: NAME -->`` before a ruleset table: every value must equal ``phase1lib/rulesets/v1.json`` and
  ``v2.json``, and together the tables must cover every table of both files;
- ``<!-- check: NAME -->`` before a table of worked numbers: every number is recomputed here with the scalar
  reference (tests/reference.py) and, where the engine reports it, with the library too (the two must agree to
  1e-9 relative), then compared with the printed value to 1e-9 relative;
- ``<!-- json: NAME -->`` before a fenced JSON block: the inputs of the worked examples, and the canonical texts
  hashed into a permutation_id and a run_id.

Run as a script to print the worked tables exactly as the document shows them (how they were produced):
``.venv/bin/python tests/test_methodology_doc.py [BLOCK ...]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference as ref
from samples import EXAMPLES, sample

from phase1lib import ENGINE_VERSION
from phase1lib.engine import evaluate_structure
from phase1lib.engine.runner import DEFAULT_SEED, canonical_project, make_run_id, run_key
from phase1lib.engine.structure import parse_structure
from phase1lib.pricing import benchmark_rate, market_coupon, pricing_hint
from phase1lib.project import Project, derive, parse_project
from phase1lib.ranges import expand_step, parse_ranges, permutation_id
from phase1lib.ruleset import RULESET_DIR, load_ruleset

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "methodology.md"
NOTES = ROOT / "docs" / "methodology-notes.md"
V1, V2 = load_ruleset("v1"), load_ruleset("v2")
REL = 1e-9
TEXT_COLUMNS = {"formula", "meaning", "used in", "note"}

# --- inputs of the worked examples (the document prints them as JSON blocks; the test checks they agree) ---

TOY_PROJECT: dict[str, Any] = {
    "title": "Toy lease", "country": "UK", "currency": "GBP", "gross_it_load_mw": 2, "pue": 1.25,
    "lease_years": 6, "tenant_rating": "A", "gross_monthly_rent": 100000, "opex_pct": 0.25,
    "capex_cost_per_mw": 2000000, "periods_per_year": 1,
}
TOY_STRUCTURE: dict[str, Any] = {"senior_tenor": 4, "senior_coupon": 0.05, "senior_dscr": 1.30,
                                 "zcis_tenor_years": 2}
TOY_MEZZ = {**TOY_STRUCTURE, "mezz_on": True}
TOY_FLAT = {**TOY_STRUCTURE, "indexation_mode": "flat"}
LONDON_STRUCTURE: dict[str, Any] = {"senior_tenor": 20, "senior_coupon": 0.04, "senior_dscr": 1.35,
                                    "senior_amort": "sculpted", "indexation_mode": "CPI_capped",
                                    "zcis_tenor_years": 10}
LONDON_NEAR = {**LONDON_STRUCTURE, "senior_dscr": 1.30}
V2_STRUCTURE: dict[str, Any] = {"senior_tenor": 12, "senior_dscr": 1.30, "zcis_tenor_years": 10}
V2_BREAKEVEN: dict[str, Any] = {"senior_tenor": 20, "senior_dscr": 1.35, "zcis_tenor_years": 10}
RUN_RANGES: dict[str, Any] = {"senior_tenor": [15, 20], "senior_coupon": 0.04, "senior_dscr": 1.35,
                              "zcis_tenor_years": 10}
CURRENT_RANGES: dict[str, Any] = {"senior_tenor": [10, 12, 15, 20],
                                  "senior_coupon": {"min": 0.04, "max": 0.0625, "step": 0.0025},
                                  "senior_dscr": {"min": 1.20, "max": 1.45, "step": 0.05},
                                  "indexation_mode": ["flat", "CPI_capped"], "zcis_tenor_years": [3, 5, 7, 10]}
FINE_RANGES = {**CURRENT_RANGES, "senior_coupon": {"min": 0.04, "max": 0.0625, "step": 0.001},
               "senior_dscr": {"min": 1.20, "max": 1.45, "step": 0.02}}
FINE_MEZZ_WRAP = {**FINE_RANGES, "mezz_on": [True, False], "wrap": [True, False]}


def london() -> Project:
    return sample("london_dc_alpha")


def toy() -> Project:
    return parse_project(TOY_PROJECT)


def json_blocks_expected() -> dict[str, Any]:
    """The JSON blocks of the document: inputs, and canonical texts (strings are compared verbatim)."""
    point = parse_structure(LONDON_STRUCTURE, london(), V1)
    market_point = parse_structure({k: v for k, v in LONDON_STRUCTURE.items() if k != "senior_coupon"}, london(), V2)
    return {
        "london_project": json.loads((EXAMPLES / "london_dc_alpha.json").read_text(encoding="utf-8")),
        "toy_project": TOY_PROJECT, "toy_structure": TOY_STRUCTURE, "london_structure": LONDON_STRUCTURE,
        "v2_structure": V2_STRUCTURE, "v2_breakeven_structure": V2_BREAKEVEN, "run_ranges": RUN_RANGES,
        "current_ranges": CURRENT_RANGES,
        "rank1_point": canonical(point), "market_point": canonical(market_point),
        "run_payload": run_payload(),
    }


def canonical(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, separators=(",", ":"))


def run_payload() -> dict[str, Any]:
    """The object whose compact, key-sorted JSON is hashed into the run_id (engine.runner.make_run_id)."""
    grid = parse_ranges(RUN_RANGES, london(), V1)
    key = run_key(london(), grid, DEFAULT_SEED, 20, None, True)
    return dict(key, ruleset={"version": V1.version, "sha256": V1.sha256}, engine=ENGINE_VERSION)


# --- worked blocks ------------------------------------------------------------------------------------------

@dataclass
class Block:
    """A worked table: first column ``key`` (row labels), checked ``columns``, unchecked text columns."""

    key: str
    columns: list[str]
    rows: dict[str, dict[str, Any]]
    text: dict[str, dict[str, str]] = field(default_factory=dict)
    text_columns: list[str] = field(default_factory=list)
    digits: int = 12
    period_table: bool = False
    rel: float = REL


def kv(items: list[tuple[str, Any, str]], digits: int = 12, rel: float = REL) -> Block:
    """A "quantity | formula | value" table."""
    rows = {name: {"value": value} for name, value, _ in items}
    text = {name: {"formula": formula} for name, _, formula in items}
    assert len(rows) == len(items), "duplicate quantity"
    return Block("quantity", ["value"], rows, text, ["formula"], digits, rel=rel)


def periods(columns: dict[str, list[Any]], first: int = 1) -> Block:
    """A per-period table: p = first.. and one column per quantity."""
    n = len(next(iter(columns.values())))
    rows = {str(p): {c: columns[c][p - first] for c in columns} for p in range(first, first + n)}
    return Block("p", list(columns), rows, period_table=True)


def agree(engine: Any, reference: Any, what: str) -> Any:
    """The engine's value, after checking it equals the reference's to 1e-9 relative (or exactly for text)."""
    if isinstance(engine, float) or isinstance(reference, float):
        assert engine is not None and reference is not None, (what, engine, reference)
        assert math.isclose(engine, reference, rel_tol=REL, abs_tol=1e-12), (what, engine, reference)
    else:
        assert engine == reference, (what, engine, reference)
    return engine


@cache
def evaluated(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(engine evaluation, reference evaluation) of a named worked structure."""
    project, structure, rs = {
        "toy": (toy(), TOY_STRUCTURE, V1), "toy_mezz": (toy(), TOY_MEZZ, V1), "toy_flat": (toy(), TOY_FLAT, V1),
        "london": (london(), LONDON_STRUCTURE, V1), "london_near": (london(), LONDON_NEAR, V1),
        "v2": (london(), V2_STRUCTURE, V2), "v2_wrap": (london(), {**V2_STRUCTURE, "wrap": True}, V2),
        "v2_numeric": (london(), {**V2_STRUCTURE, "senior_coupon": 0.055}, V2),
        "v2_low_coupon": (london(), {**V2_BREAKEVEN, "senior_coupon": 0.03}, V2),
        "v2_breakeven": (london(), V2_BREAKEVEN, V2),
    }[name]
    return evaluate_structure(project, structure, rs), ref.evaluate(project, structure, rs)


KPI_FORMULAS = {
    "senior_amount": "max(smallest limit, 0) (§5)", "senior_rate": "all-in rate R (§5)",
    "senior_rating": "worse of ladder(min_dscr), tenant cap; AAA if wrapped", "binding_constraint": "§5, D13",
    "mezz_amount": "§6", "mezz_rate": "mezz_coupon if mezz_on, else null (D20)",
    "sidecar_gross": "sum_p sidecar_p (1 + coupon / ppy)^-p", "sidecar_net": "sidecar_gross x (1 - haircut)",
    "dsra_amount": "largest service over w consecutive test periods (D22)",
    "day_one_value": "S + M + sidecar_net - DSRA", "equity_required": "funding_need - day_one_value",
    "min_dscr": "min_p CFADS_p / s_p (D21)", "avg_dscr": "mean_p CFADS_p / s_p", "llcr": "sum_p CFADS_p v^p / S",
    "wal_years": "sum_p (p / ppy) principal_p / S", "ltv": "S / market_value (v1)",
    "advance_factor": "S / funding_need",
    "wacd": "(S R + M mezz_coupon) / (S + M)", "total_interest": "sum_p interest_p",
    "equity_irr": "(1 + i)^ppy - 1 (D25, D33)",
}
KPI_ROWS = tuple(KPI_FORMULAS)


def kpi_items(name: str, project: Project, structure: dict[str, Any], rs=V1, mc: bool = True
              ) -> list[tuple[str, Any, str]]:
    """Every KPI of a worked structure (engine value, checked against the reference)."""
    engine, reference = evaluated(name)
    k, rk = engine["kpis"], reference["kpis"]
    items = [(key, agree(k[key], rk[key], key), KPI_FORMULAS[key]) for key in KPI_ROWS]
    items += [(f"stress.{s}", agree(k["stress"][s], rk["stress"][s], s), "min_p (scenario CFADS_p - sidecar_p) / s_p")
              for s in k["stress"]]
    if k["stress_total"] is not None:
        items += [(f"stress_total.{s}", agree(k["stress_total"][s], rk["stress_total"][s], s), "§8, D19")
                  for s in k["stress_total"]]
    if mc:
        breach, p5 = ref.monte_carlo(project, structure, DEFAULT_SEED, rs)
        items += [("mc_breach_probability", agree(k["mc_breach_probability"], breach, "breach"), "§9, D31"),
                  ("mc_p5_min_dscr", agree(k["mc_p5_min_dscr"], p5, "p5"), "§9")]
    failures = [f["check"] for f in k["gate_a"] + k["gate_b"]]
    assert failures == [f["check"] for f in rk["gate_a"] + rk["gate_b"]]
    items += [("failed checks", ", ".join(failures) or "none", "§8"),
              ("viable", agree(k["viable"], rk["viable"], "viable"), "§8"),
              ("tier", agree(k["tier"], rk["tier"], "tier"), "§8"),
              ("near_miss", agree(k["near_miss"], rk["near_miss"], "near_miss"), "§8"),
              ("hint", k["hint"], "§8, D28"),
              ("repo_eligible", agree(k["repo_eligible"], rk["repo_eligible"], "repo"), "§8"),
              ("repo_reasons", "; ".join(k["repo_reasons"]) or "none", "§8, D29")]
    return items


def check_derived(project: Project, rs) -> None:
    """Section 2's formulas written out again, independently of phase1lib.project.derive."""
    d, p = derive(project, rs), project
    tenant = rs.data["tenants"][p.tenant_rating]
    monthly = p.gross_monthly_rent if p.gross_monthly_rent is not None else \
        p.rent_per_kwh_month * p.gross_it_load_mw / p.pue * 1000 * 730
    capex = p.capex_cost_per_mw * p.gross_it_load_mw + p.land_fees_total
    need = capex * (1 + p.arranger_fee_pct + p.legal_fee_pct + p.rating_fee_pct)
    expected = {
        "net_it_load_mw": p.gross_it_load_mw / p.pue, "gross_income_monthly": monthly,
        "gross_income_annual": 12 * monthly, "opex_annual": p.opex_pct * 12 * monthly,
        "noi_annual": (1 - p.opex_pct) * 12 * monthly, "project_capex": capex,
        "market_value": p.capex_market_per_mw * p.gross_it_load_mw + p.land_fees_total,
        "upfront_fees": need - capex, "funding_need": need, "admin_annual": p.admin_bps / 1e4 * need,
        "tenor_cap": p.lease_years - 2, "dscr_floor": tenant["dscr_floor"], "dsra_months": tenant["dsra_months"],
        "af_min": tenant["af_min"], "af_max": tenant["af_max"], "rating_cap": tenant["rating_cap"],
        "locked_rate": min(max(p.zcis_rate - p.zcis_basis_bps / 1e4, p.cpi_floor), p.cpi_cap),
        "n_periods": p.lease_years * p.periods_per_year,
    }
    for name, want in expected.items():
        agree(getattr(d, name), want, name)


def derived_items(project: Project, rs=V1) -> list[tuple[str, Any, str]]:
    check_derived(project, rs)
    d = derive(project, rs)
    items = [
        ("net_it_load_mw", d.net_it_load_mw, "gross_it_load_mw / pue"),
        ("gross_income_monthly", d.gross_income_monthly,
         "gross_monthly_rent, or rent_per_kwh_month x net MW x 1000 x 730"),
        ("gross_income_annual", d.gross_income_annual, "12 x gross_income_monthly"),
        ("opex_annual", d.opex_annual, "opex_pct x gross_income_annual"),
        ("noi_annual", d.noi_annual, "gross_income_annual - opex_annual"),
        ("project_capex", d.project_capex, "capex_cost_per_mw x gross_it_load_mw + land_fees_total"),
        ("market_value", d.market_value, "capex_market_per_mw x gross_it_load_mw + land_fees_total"),
        ("upfront_fees", d.upfront_fees, "(arranger + legal + rating fee pct) x project_capex"),
        ("funding_need", d.funding_need, "project_capex + upfront_fees"),
        ("admin_annual", d.admin_annual, "admin_bps / 10^4 x funding_need"),
        ("tenor_cap", d.tenor_cap, "lease_years - 2"),
        ("dscr_floor", d.dscr_floor, "tenant table"),
        ("dsra_months", d.dsra_months, "tenant table"),
        ("af_min", d.af_min, "tenant table"),
        ("af_max", d.af_max, "tenant table"),
        ("rating_cap", d.rating_cap, "tenant table"),
        ("locked_rate", d.locked_rate, "clamp(zcis_rate - zcis_basis_bps / 10^4, cpi_floor, cpi_cap)"),
        ("repo_jurisdiction", d.repo_jurisdiction if d.repo_jurisdiction else "null", "country, if it has repo rules"),
        ("n_periods", d.n_periods, "lease_years x periods_per_year"),
        ("af_max x funding_need", d.af_max * d.funding_need, "advance_factor sizing limit (§5)"),
        ("af_min x funding_need", d.af_min * d.funding_need, "advance_factor floor of gate A (§8)"),
    ]
    if rs.priced:
        lend = ref.lending(project, d, rs)
        items += [
            ("cap_rate", d.cap_rate, "ruleset cap rate of the country (or the project's cap_rate)"),
            ("income_value", agree(d.income_value, lend["income_value"], "income"), "noi_annual / cap_rate"),
            ("lending_value", agree(d.lending_value, lend["lending_value"], "lending"),
             "min(market_value, income_value)"),
            ("max_ltv", d.max_ltv, "max_ltv table, by tenant"),
            ("ltv_limit", agree(d.ltv_limit, lend["ltv_limit"], "ltv_limit"), "max_ltv x lending_value"),
        ]
    return items


# section 10: CFADS [100 .. 140], k = 1.30, r = 6 %, annual periods
S10_CFADS = [100.0, 110.0, 120.0, 130.0, 140.0]
S10_K, S10_R = 1.30, 0.06


def block_s10_contract() -> Block:
    cap = [c / S10_K for c in S10_CFADS]
    sculpted = ref.size_sculpted(cap, S10_R)
    sched = ref.build_schedule("sculpted", sculpted, cap, S10_R)
    wal = sum(p * x for p, x in enumerate(sched["principal"], start=1)) / sculpted
    annuity = ref.size_annuity(cap, S10_R)
    a_sched = ref.build_schedule("annuity", annuity, cap, S10_R)
    ratios = [c / s for c, s in zip(S10_CFADS, a_sched["service"], strict=True)]
    llcr = sum(c * (1 + S10_R) ** -p for p, c in enumerate(S10_CFADS, start=1)) / annuity
    level = ref.size_level(cap, S10_R)
    l_sched = ref.build_schedule("level", level, cap, S10_R)
    l_wal = sum(p * x for p, x in enumerate(l_sched["principal"], start=1)) / level
    return kv([
        ("sculpted D", sculpted, "sum_p C_p v^p"),
        ("sculpted WAL", wal, "sum_p p principal_p / D"),
        ("annuity D", annuity, "min_p C_p x (1 - v^5) / r"),
        ("annuity min DSCR", min(ratios), "min_p CFADS_p / A"),
        ("annuity avg DSCR", sum(ratios) / len(ratios), "mean_p CFADS_p / A"),
        ("annuity LLCR", llcr, "sum_p CFADS_p v^p / D"),
        ("level D", level, "min_j C_j / (1/5 + r (5 - j + 1) / 5)"),
        ("level WAL", l_wal, "sum_p p (D / 5) / D"),
        ("pmt(200000, 0.075 / 12, 180)", ref.pmt(200000, 0.075 / 12, 180), "numpy-financial pmt docstring"),
    ], digits=17, rel=1e-12)


def block_s10_sculpted() -> Block:
    cap = [c / S10_K for c in S10_CFADS]
    debt = ref.size_sculpted(cap, S10_R)
    sched = ref.build_schedule("sculpted", debt, cap, S10_R)
    v = [(1 + S10_R) ** -p for p in range(1, 6)]
    return periods({
        "CFADS_p": S10_CFADS, "C_p = CFADS_p / k": cap, "v^p": v,
        "C_p v^p": [c * x for c, x in zip(cap, v, strict=True)],
        "B_(p-1)": sched["opening"], "interest_p": sched["interest"], "principal_p": sched["principal"],
        "B_p": [0.0 if abs(b) < 1e-9 * debt else b for b in sched["closing"]], "service_p": sched["service"],
        "DSCR_p": [c / s for c, s in zip(S10_CFADS, sched["service"], strict=True)],
    })


def block_cardinalities() -> Block:
    return kv([
        ("values of 0.04 .. 0.0625 step 0.0025", len(expand_step(0.04, 0.0625, 0.0025)),
         "floor((0.0625 - 0.04) / 0.0025 + 1e-9) + 1"),
        ("last of those values", expand_step(0.04, 0.0625, 0.0025)[-1], "round(0.04 + 9 x 0.0025, 10)"),
        ("current ranges", parse_ranges(CURRENT_RANGES).cardinality, "4 x 10 x 6 x 2 x 4"),
        ("coupon step 0.001, DSCR step 0.02", parse_ranges(FINE_RANGES).cardinality, "4 x 23 x 13 x 2 x 4"),
        ("... and mezz_on [true, false], wrap [true, false]", parse_ranges(FINE_MEZZ_WRAP).cardinality,
         "9,568 x 2 (wrap) x 2 (mezz_on)"),
    ])


def block_ids() -> Block:
    blocks = json_blocks_expected()
    return kv([
        ("permutation_id of rank1_point (v1)", permutation_id(json.loads(blocks["rank1_point"])),
         "sha256(text)[:12]"),
        ("permutation_id of market_point (v2)", permutation_id(json.loads(blocks["market_point"])),
         "sha256(text)[:12]"),
        ("cardinality of run_ranges", parse_ranges(RUN_RANGES, london(), V1).cardinality, "2 tenors"),
        ("ruleset v1 sha256", V1.sha256, "sha256 of phase1lib/rulesets/v1.json, the file's bytes"),
        ("ruleset v2 sha256", V2.sha256, "sha256 of phase1lib/rulesets/v2.json, the file's bytes"),
        ("engine version", ENGINE_VERSION, "phase1lib.ENGINE_VERSION"),
        ("run_id", make_run_id(run_key(london(), parse_ranges(RUN_RANGES, london(), V1), DEFAULT_SEED, 20, None,
                                       True), V1), "sha256(compact run_payload)[:16]"),
    ])


def block_london_derived() -> Block:
    return kv(derived_items(london(), V1))


def block_london_derived_v2() -> Block:
    return kv(derived_items(london(), V2)[-5:])


def block_toy_derived() -> Block:
    return kv(derived_items(toy(), V1))


def toy_flows(structure: dict[str, Any]) -> dict[str, Any]:
    project = toy()
    d = derive(project, V1)
    mode, h = structure.get("indexation_mode", "CPI_capped"), int(structure["zcis_tenor_years"])
    years = project.lease_years
    g_lender = ref.lender_rent_growth(project, d, mode, h)
    g_base = ref.realised_rent_growth(project, d, h, [project.base_cpi] * (years - 1))
    lender = ref.cash_flows(project, d, g_lender, [project.base_cpi] * (years - 1))
    base = ref.cash_flows(project, d, g_base, [project.base_cpi] * (years - 1))
    return {"project": project, "derived": d, "g_lender": g_lender, "g_base": g_base, "lender": lender,
            "base": base, "sidecar": ref.sidecar_flows(project, d, mode, h)}


def block_toy_cashflows() -> Block:
    f = toy_flows(TOY_STRUCTURE)
    d, project = f["derived"], f["project"]
    engine = evaluated("toy")[0]["schedule"]
    ppy = project.periods_per_year
    lender_cf = [agree(row["lender_cfads"], x, "lender") for row, x in zip(engine, f["lender"]["cfads"], strict=True)]
    base_cf = [agree(row["base_cfads"], x, "base") for row, x in zip(engine, f["base"]["cfads"], strict=True)]
    return periods({
        "g lender (into year p)": [None, *f["g_lender"]], "I lender": f["lender"]["rent_index"],
        "g base (into year p)": [None, *f["g_base"]], "I base": f["base"]["rent_index"],
        "J": f["lender"]["cost_index"],
        "revenue lender": [d.gross_income_annual / ppy * i for i in f["lender"]["rent_index"]],
        "revenue base": [d.gross_income_annual / ppy * i for i in f["base"]["rent_index"]],
        "opex": [d.opex_annual / ppy * j for j in f["lender"]["cost_index"]],
        "admin": [d.admin_annual / ppy] * project.n_periods,
        "CFADS lender": lender_cf, "CFADS base": base_cf,
    })


def toy_senior(structure: dict[str, Any] = TOY_STRUCTURE) -> dict[str, Any]:
    f = toy_flows(structure)
    st = ref.full_structure(f["project"], structure)
    return ref.size_senior(f["project"], f["derived"], V1, st, f["lender"]["cfads"])


def block_toy_sizing() -> Block:
    s = toy_senior()
    n, r = s["n"], s["r"]
    cap = s["capacity"][:n]
    v = [(1 + r) ** -p for p in range(1, n + 1)]
    return periods({"CFADS lender": toy_flows(TOY_STRUCTURE)["lender"]["cfads"][:n], "C_p": cap, "v^p": v,
                    "C_p v^p": [c * x for c, x in zip(cap, v, strict=True)]})


def block_toy_limits() -> Block:
    s = toy_senior()
    engine = evaluated("toy")[0]["kpis"]
    limits = dict(s["limits"])
    amount = agree(engine["senior_amount"], s["amount"], "senior_amount")
    return kv([
        ("r", s["r"], "R / ppy = senior_coupon / 1 (no wrap)"),
        ("n", s["n"], "min(senior_tenor, lease_years) x ppy"),
        ("D_post", s["d_post"], "sum_{p=1..4} C_p v^p"),
        ("limit dscr", limits["dscr"], "D_post"),
        ("limit io_cover", limits["io_cover"], "io = 0: does not apply (D11)"),
        ("limit refinancing_tail", limits["refinancing_tail"], "not a bullet (D11)"),
        ("limit advance_factor", limits["advance_factor"], "af_max x funding_need"),
        ("limit funding_need", limits["funding_need"], "funding_need"),
        ("senior_amount", amount, "max(smallest limit, 0)"),
        ("binding_constraint", agree(engine["binding_constraint"], s["binding"], "binding"), "first limit equal to it"),
        ("scale", amount / s["d_post"], "senior_amount / D_post"),
    ])


def block_toy_schedule() -> Block:
    engine, reference = evaluated("toy")
    rs = reference["schedule"]
    n = toy().n_periods
    service = [agree(row["senior_service"], x, "service") for row, x in zip(engine["schedule"], rs["senior_service"],
                                                                            strict=True)]
    amount = reference["kpis"]["senior_amount"]
    closing = [o - p for o, p in zip(rs["senior_opening"], rs["senior_principal"], strict=True)]
    for row, o, i, pr in zip(engine["schedule"], rs["senior_opening"], rs["senior_interest"], rs["senior_principal"],
                             strict=True):
        agree(row["senior_opening"], o, "opening")
        agree(row["senior_interest"], i, "interest")
        assert math.isclose(row["senior_principal"], pr, rel_tol=REL, abs_tol=REL * amount)
    return periods({
        "B_(p-1)": rs["senior_opening"], "interest_p": rs["senior_interest"], "principal_p": rs["senior_principal"],
        "B_p": [0.0 if abs(b) < 1e-9 * amount else b for b in closing], "service_p": service,
        "DSCR_p": [rs["lender_cfads"][i] / service[i] if service[i] > 0 else None for i in range(n)],
        "equity flow_p": [agree(row["equity_flow"], x, "equity") for row, x in zip(engine["schedule"],
                                                                                  rs["equity_flow"], strict=True)],
    })


def block_toy_kpis() -> Block:
    return kv(kpi_items("toy", toy(), TOY_STRUCTURE))


def block_toy_mezz() -> Block:
    project = toy()
    f = toy_flows(TOY_MEZZ)
    st = ref.full_structure(project, TOY_MEZZ)
    senior = ref.size_senior(project, f["derived"], V1, st, f["lender"]["cfads"])
    mezz = ref.size_mezz(project, f["derived"], V1, st, f["lender"]["cfads"], senior["service"], senior["amount"])
    n_m = mezz["n"]
    r_m = float(st["mezz_coupon"]) / project.periods_per_year
    cover = [max(c, 0.0) / float(st["mezz_dscr"]) for c in f["lender"]["cfads"][:n_m]]
    v = [(1 + r_m) ** -p for p in range(1, n_m + 1)]
    engine = evaluated("toy_mezz")[0]["schedule"]
    return periods({
        "cover = CFADS / mezz_dscr": cover, "s_p": senior["service"][:n_m], "M_p": mezz["capacity"],
        "v_m^p": v, "M_p v_m^p": [m * x for m, x in zip(mezz["capacity"], v, strict=True)],
        "mezz service": [agree(row["mezz_service"], x, "mezz service") for row, x in
                         zip(engine[:n_m], mezz["service"][:n_m], strict=True)],
        "mezz principal": mezz["principal"][:n_m],
    })


def block_toy_mezz_kpis() -> Block:
    project = toy()
    f = toy_flows(TOY_MEZZ)
    st = ref.full_structure(project, TOY_MEZZ)
    d = f["derived"]
    senior = ref.size_senior(project, d, V1, st, f["lender"]["cfads"])
    mezz = ref.size_mezz(project, d, V1, st, f["lender"]["cfads"], senior["service"], senior["amount"])
    engine, reference = evaluated("toy_mezz")
    k = engine["kpis"]
    headroom = (d.af_max + V1.gates["mezz_af_headroom"]) * d.funding_need - senior["amount"]
    return kv([
        ("r_m", float(st["mezz_coupon"]) / project.periods_per_year, "mezz_coupon / ppy"),
        ("mezz capacity", mezz["capacity_amount"], "sum_p M_p v_m^p"),
        ("mezz cap", headroom, "(af_max + 0.10) x funding_need - senior_amount"),
        ("mezz_amount", agree(k["mezz_amount"], reference["kpis"]["mezz_amount"], "mezz"),
         "max(min(capacity, cap), 0)"),
        ("wacd", agree(k["wacd"], reference["kpis"]["wacd"], "wacd"), "(S R + M mezz_coupon) / (S + M)"),
        ("day_one_value", agree(k["day_one_value"], reference["kpis"]["day_one_value"], "dov"),
         "S + M + sidecar_net - DSRA"),
        ("equity_irr", agree(k["equity_irr"], reference["kpis"]["equity_irr"], "irr"), "§7"),
        ("stress_total.rent_minus_10", agree(k["stress_total"]["rent_minus_10"],
                                             reference["kpis"]["stress_total"]["rent_minus_10"], "st"),
         "min_p cash_p / (s_p + m_p)"),
        ("failed checks", ", ".join(f_["check"] for f_ in k["gate_a"] + k["gate_b"]) or "none", "§8"),
        ("tier", agree(k["tier"], reference["kpis"]["tier"], "tier"), "one failure within 5 %: Bronze"),
        ("hint", k["hint"], "ladder search on mezz_dscr (D28)"),
    ])


def block_toy_sidecar() -> Block:
    f = toy_flows(TOY_FLAT)
    for row, x in zip(evaluated("toy_flat")[0]["schedule"], f["sidecar"], strict=True):
        agree(row["sidecar"], x, "sidecar")
    coupon = TOY_FLAT["senior_coupon"]
    disc = [(1 + coupon) ** -p for p in range(1, toy().n_periods + 1)]
    return periods({"CFADS lender (mode flat)": f["lender"]["cfads"], "sidecar_p": f["sidecar"],
                    "(1 + coupon / ppy)^-p": disc,
                    "sidecar_p x discount": [s * x for s, x in zip(f["sidecar"], disc, strict=True)]})


def block_toy_sidecar_kpis() -> Block:
    engine, reference = evaluated("toy_flat")
    k, rk = engine["kpis"], reference["kpis"]
    return kv([(key, agree(k[key], rk[key], key), formula) for key, formula in (
        ("sidecar_gross", "sum_p sidecar_p (1 + coupon / ppy)^-p"),
        ("sidecar_net", "sidecar_gross x (1 - sidecar_haircut_pct)"),
        ("senior_amount", "sized on the flat lender case"),
        ("dsra_amount", "largest service over w = 1 period"),
        ("day_one_value", "S + M + sidecar_net - DSRA"),
        ("equity_required", "funding_need - day_one_value"),
        ("equity_irr", "§7"))])


def block_london_kpis() -> Block:
    return kv(kpi_items("london", london(), LONDON_STRUCTURE))


def block_london_near_miss() -> Block:
    from phase1lib.engine.evaluate import evaluate as engine_evaluate
    from phase1lib.engine.evaluate import make_context, table_from_points

    project = london()
    point = parse_structure(LONDON_NEAR, project, V1)
    ctx = make_context(project, V1, [point["indexation_mode"]], [point["zcis_tenor_years"]])
    out = engine_evaluate(ctx, table_from_points([point]))
    engine, reference = evaluated("london_near")
    k = engine["kpis"]
    failure = (k["gate_a"] + k["gate_b"])[0]
    g = float(out["_capacity_k"][0])
    senior = k["senior_amount"]
    need = failure["value"] * senior / failure["threshold"]
    return kv([
        ("min_dscr", agree(k["min_dscr"], reference["kpis"]["min_dscr"], "min_dscr"), "the only failure"),
        ("threshold", failure["threshold"], "dscr_floor of an AA tenant"),
        ("0.95 x threshold", 0.95 * failure["threshold"], "near-miss band"),
        ("senior_amount", senior, "S"),
        ("G = k x cash-flow limit", g, "1.30 x D_post"),
        ("senior amount that passes", need, "min_dscr x S / threshold"),
        ("G / that amount", g / need, "the DSCR target that sizes to it"),
        ("tier", k["tier"], "§8"),
        ("hint", k["hint"], "the smallest 0.01 step at or above G / amount (D28)"),
    ])


def block_mc_path() -> Block:
    project = london()
    mc = V1.monte_carlo
    rng = np.random.Generator(np.random.PCG64(DEFAULT_SEED))
    eps = rng.standard_normal((int(mc["paths"]), project.lease_years))
    pi, items = project.base_cpi, []
    for y in (1, 2, 3):
        items.append((f"eps[0, {y - 1}]", float(eps[0, y - 1]), "standard normal draw"))
    for y in (1, 2, 3):
        pi = project.base_cpi + mc["persistence"] * (pi - project.base_cpi) + mc["volatility"] * float(eps[0, y - 1])
        items.append((f"pi_{y} of path 0", pi, "base_cpi + 0.6 (pi_(y-1) - base_cpi) + 0.01 eps[0, y-1]"))
    return kv(items)


def block_s11_checks() -> Block:
    curve = V2.data["benchmark_curves"]["GBP"]["points"]
    project = london()
    d = derive(project, V2)
    engine, reference = evaluated("v2_breakeven")
    k = engine["kpis"]
    return kv([
        ("benchmark GBP 20y", agree(benchmark_rate(V2.benchmark_curve("GBP"), 20), ref.benchmark(curve, 20), "b20"),
         "a curve point"),
        ("benchmark GBP 12y", agree(benchmark_rate(V2.benchmark_curve("GBP"), 12), ref.benchmark(curve, 12), "b12"),
         "0.0390 + 0.2 x 0.0040"),
        ("benchmark GBP 40y", agree(benchmark_rate(V2.benchmark_curve("GBP"), 40), ref.benchmark(curve, 40), "b40"),
         "flat beyond 30y"),
        ("London 20y at 1.35: underlying", ref.underlying_rating(project, d, V2, 1.35),
         "worse of AA (ladder), AA (cap)"),
        ("London 20y at 1.35: market_coupon", agree(k["market_coupon"], reference["kpis"]["market_coupon"], "mc"),
         "round(0.0430 + (150 + 2 x 10) / 10^4, 10)"),
        ("income_value", d.income_value, "23,400,000 / 0.0575"),
        ("lending_value", d.lending_value, "min(423,500,000, income_value)"),
        ("ltv limit", d.ltv_limit, "0.70 x lending_value"),
        ("pricing hint of 0.034999999999999996", pricing_hint(0.034999999999999996), "ceil(round(x 10^4, 6)) / 10^4"),
        ("pricing hint of 0.035000000000000003", pricing_hint(0.035000000000000003), "ceil(round(x 10^4, 6)) / 10^4"),
    ])


def block_v2_coupon() -> Block:
    project = london()
    d = derive(project, V2)
    engine, reference = evaluated("v2")
    k, rk = engine["kpis"], reference["kpis"]
    bench = benchmark_rate(V2.benchmark_curve("GBP"), 12)
    bps, above = V2.term_premium
    underlying = ref.underlying_rating(project, d, V2, 1.30)
    spread = V2.spread_bps(underlying)
    mc = market_coupon(bench, spread, 12, bps, above)
    wrap_e, wrap_r = evaluated("v2_wrap")
    num_e, num_r = evaluated("v2_numeric")
    assert [f["check"] for f in num_e["kpis"]["gate_b"]] == [f["check"] for f in num_r["kpis"]["gate_b"]]
    low_e, low_r = evaluated("v2_low_coupon")
    pricing = next(f for f in num_e["kpis"]["gate_b"] if f["check"] == "pricing")
    senior = ref.size_senior(project, d, V2, ref.full_structure(project, {**V2_STRUCTURE, "senior_coupon": "market"}),
                             reference["schedule"]["lender_cfads"])
    limits = dict(senior["limits"])
    return kv([
        ("ladder rating of 1.30 (UK)", V2.rating_from_dscr("UK", 1.30), "1.25 <= 1.30 < 1.35"),
        ("underlying", underlying, "worse of A (ladder), AA (tenant cap)"),
        ("benchmark GBP 12y", bench, "0.0390 + (12 - 10) / (20 - 10) x (0.0430 - 0.0390)"),
        ("spread bps", spread, "v2 spread of A"),
        ("term premium bps", bps * max(12 - above, 0), "2 x max(12 - 10, 0)"),
        ("market_coupon", agree(k["market_coupon"], agree(mc, rk["market_coupon"], "mc"), "mc"),
         "round(benchmark + (spread + term) / 10^4, 10)"),
        ("senior_rate (unwrapped)", agree(k["senior_rate"], rk["senior_rate"], "R"), "R = the market coupon"),
        ("senior_rate (wrapped)", agree(wrap_e["kpis"]["senior_rate"], wrap_r["kpis"]["senior_rate"], "Rw"),
         "round(0.0612 - (210 - 120) / 10^4 + 60 / 10^4, 10)"),
        ("limit dscr", limits["dscr"], "D_post at r = 0.0612 / 4"),
        ("limit advance_factor", limits["advance_factor"], "0.75 x funding_need"),
        ("limit ltv", limits["ltv"], "0.70 x lending_value"),
        ("limit funding_need", limits["funding_need"], "funding_need"),
        ("senior_amount", agree(k["senior_amount"], rk["senior_amount"], "S"), "smallest limit"),
        ("binding_constraint", agree(k["binding_constraint"], rk["binding_constraint"], "b"), "§5"),
        ("ltv", agree(k["ltv"], rk["ltv"], "ltv"), "senior_amount / lending_value (v2)"),
        ("offered 0.055: pricing value", pricing["value"], "the offered coupon"),
        ("offered 0.055: pricing threshold", pricing["threshold"], "the market coupon"),
        ("offered 0.055: pricing hint", pricing["hint"], "whole bp at or above the market coupon"),
        ("offered 0.03 at 20y, 1.35: senior_amount", agree(low_e["kpis"]["senior_amount"],
                                                           low_r["kpis"]["senior_amount"], "S low"),
         "= the ltv limit"),
        ("offered 0.03 at 20y, 1.35: binding_constraint", agree(low_e["kpis"]["binding_constraint"],
                                                                low_r["kpis"]["binding_constraint"], "b"), "§11.2"),
        ("offered 0.03 at 20y, 1.35: ltv", agree(low_e["kpis"]["ltv"], low_r["kpis"]["ltv"], "ltv"), "0.70"),
    ])


def breakeven_parts() -> dict[str, Any]:
    """The per-period terms of the breakeven closed forms for the V2_BREAKEVEN structure (reference flows)."""
    project = london()
    d = derive(project, V2)
    engine, reference = evaluated("v2_breakeven")
    sched = reference["schedule"]
    st = ref.full_structure(project, {**V2_BREAKEVEN, "senior_coupon": "market"})
    ppy, years, h = project.periods_per_year, project.lease_years, int(st["zcis_tenor_years"])
    rent_index = ref.index_by_year(ref.realised_rent_growth(project, d, h, [project.base_cpi] * (years - 1)))
    cost_index = ref.index_by_year([project.base_cpi] * (years - 1))
    served = [p for p in range(1, project.n_periods + 1) if sched["senior_service"][p - 1] > 0]
    rev = {p: d.gross_income_annual / ppy * rent_index[ref.lease_year(p, ppy) - 1] for p in served}
    opex = {p: d.opex_annual / ppy * cost_index[ref.lease_year(p, ppy) - 1] for p in served}
    admin = d.admin_annual / ppy
    s, side = sched["senior_service"], sched["sidecar"]
    rent_need = {p: (s[p - 1] + opex[p] + admin + side[p - 1]) / rev[p] for p in served}
    opex_room = {p: (rev[p] - admin - side[p - 1] - s[p - 1]) / opex[p] for p in served}
    p_rent = max(served, key=lambda p: (rent_need[p], -p))
    p_opex = min(served, key=lambda p: (opex_room[p], p))
    return {"project": project, "derived": d, "engine": engine, "reference": reference, "rev": rev, "opex": opex,
            "admin": admin, "s": s, "sidecar": side, "p_rent": p_rent, "p_opex": p_opex, "rent_need": rent_need,
            "opex_room": opex_room, "h": h, "served": served}


def block_breakeven() -> Block:
    b = breakeven_parts()
    k, rk = b["engine"]["kpis"], b["reference"]["kpis"]
    pr, po = b["p_rent"], b["p_opex"]
    project, d = b["project"], b["derived"]

    def min_dscr_at(x: float) -> float:
        cf = ref.realised_cash_flows(project, d, b["h"], [x] * (project.lease_years - 1))
        cash = [c - sc for c, sc in zip(cf, b["sidecar"], strict=True)]
        low = ref.min_ratio(cash, b["s"], max(b["served"]))
        assert low is not None
        return low

    x = agree(k["breakeven_cpi"], rk["breakeven_cpi"], "cpi")
    return kv([
        ("market_coupon", k["market_coupon"], "11.4: AA, 20 years"),
        ("senior_amount", agree(k["senior_amount"], rk["senior_amount"], "S"), "binding dscr"),
        ("rent: binding period p*", pr, "argmax_p of the ratio below"),
        ("rev_p* (base case)", b["rev"][pr], "gross_income_annual / 4 x I_y(p*)"),
        ("S_p*", b["s"][pr - 1], "senior service"),
        ("opex_p*", b["opex"][pr], "opex_annual / 4 x J_y(p*)"),
        ("admin_p", b["admin"], "admin_annual / 4"),
        ("sidecar_p*", b["sidecar"][pr - 1], "mode CPI_capped: 0"),
        ("m* (rent)", b["rent_need"][pr], "(S + opex + admin + sidecar) / rev at p*"),
        ("breakeven_rent_cut", agree(k["breakeven_rent_cut"], rk["breakeven_rent_cut"], "rent"), "1 - m*"),
        ("opex: binding period p**", po, "argmin_p of the ratio below"),
        ("m* (opex)", b["opex_room"][po], "(rev - admin - sidecar - S) / opex at p**"),
        ("breakeven_opex_rise", agree(k["breakeven_opex_rise"], rk["breakeven_opex_rise"], "opex"), "m* - 1"),
        ("breakeven_cpi", x, "last grid point with min DSCR >= 1.00"),
        ("min senior DSCR at CPI = breakeven_cpi", min_dscr_at(x), "case \"CPI x\""),
        ("min senior DSCR at CPI = breakeven_cpi + 0.0001", min_dscr_at(round(x + 0.0001, 10)), "below 1.00"),
        ("breakeven_cpi_capped", agree(k["breakeven_cpi_capped"], rk["breakeven_cpi_capped"], "capped"),
         "the grid's last point (0.20) was not reached"),
    ])


BLOCKS: dict[str, Callable[[], Block]] = {
    "s3_cardinalities": block_cardinalities, "s3_ids": block_ids,
    "s10_contract": block_s10_contract, "s10_sculpted": block_s10_sculpted,
    "london_derived": block_london_derived, "london_derived_v2": block_london_derived_v2,
    "toy_derived": block_toy_derived, "toy_cashflows": block_toy_cashflows, "toy_sizing": block_toy_sizing,
    "toy_limits": block_toy_limits, "toy_schedule": block_toy_schedule, "toy_kpis": block_toy_kpis,
    "toy_mezz": block_toy_mezz, "toy_mezz_kpis": block_toy_mezz_kpis, "toy_sidecar": block_toy_sidecar,
    "toy_sidecar_kpis": block_toy_sidecar_kpis, "london_kpis": block_london_kpis,
    "london_near_miss": block_london_near_miss, "mc_path": block_mc_path, "s11_checks": block_s11_checks,
    "v2_coupon": block_v2_coupon, "breakeven": block_breakeven,
}


# --- ruleset tables -----------------------------------------------------------------------------------------

def ruleset_table(name: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(first-column header, rows) of a ruleset table as the document prints it, from the JSON files."""
    v1, v2 = V1.data, V2.data
    if name == "ratings":
        return "notch", {str(i): {"rating": r} for i, r in enumerate(v1["ratings"])}
    if name == "tenants":
        return "tenant", v1["tenants"]
    if name == "rating_ladder":
        return "jurisdiction", v1["rating_ladder"]
    if name == "spread_bps":
        return "rating", {r: {"v1": v1["spread_bps"][r], "v2": v2["spread_bps"][r]} for r in v1["spread_bps"]}
    if name == "repo_rules":
        return "rule", {f"{c} {cls}": row for c, rules in v1["repo_rules"].items() for cls, row in rules.items()}
    if name == "stress_scenarios":
        return "scenario", v1["stress_scenarios"]
    if name in ("gates", "monte_carlo"):
        return ("constant" if name == "gates" else "parameter"), {k: {"value": v} for k, v in v1[name].items()}
    if name == "benchmark_curves":
        return "currency", {c: {"kind": spec["kind"], **{_num_text(t): r for t, r in spec["points"]}}
                            for c, spec in v2["benchmark_curves"].items()}
    if name in ("term_premium", "breakevens"):
        return "parameter", {k: {"value": v} for k, v in v2[name].items()}
    if name == "cap_rates":
        return "jurisdiction", {c: {"cap_rate": v} for c, v in v2["cap_rates"].items()}
    if name == "max_ltv":
        return "tenant", {t: {"max_ltv": v} for t, v in v2["max_ltv"].items()}
    raise KeyError(name)


def _num_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


RULESET_TABLES = ("ratings", "tenants", "rating_ladder", "spread_bps", "repo_rules", "stress_scenarios", "gates",
                  "monte_carlo", "benchmark_curves", "term_premium", "cap_rates", "max_ltv", "breakevens")
SHARED = {"ratings", "tenants", "rating_ladder", "repo_rules", "stress_scenarios", "gates", "monte_carlo"}
V2_ONLY = {"benchmark_curves", "term_premium", "cap_rates", "max_ltv", "breakevens"}


# --- parsing the document -----------------------------------------------------------------------------------

MARKER = re.compile(r"<!--\s*(check|table|json):\s*([\w.-]+)\s*-->")


@dataclass
class Parsed:
    header: list[str]
    rows: list[list[str]]


def split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip().replace("\\|", "|") for c in cells[1:-1]]


@cache
def doc_blocks() -> dict[tuple[str, str], Any]:
    """Every marked block of the document: (kind, name) -> Parsed table or JSON text."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    out: dict[tuple[str, str], Any] = {}
    for i, line in enumerate(lines):
        m = MARKER.search(line)
        if not m:
            continue
        kind, name = m.groups()
        assert (kind, name) not in out, f"{kind} block {name!r} appears twice"
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if kind == "json":
            assert lines[j].startswith("```"), f"json block {name!r} must be a fenced code block"
            end = next(e for e in range(j + 1, len(lines)) if lines[e].startswith("```"))
            out[(kind, name)] = "\n".join(lines[j + 1:end])
            continue
        table = []
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            table.append(lines[j])
            j += 1
        assert len(table) >= 3, f"{kind} block {name!r} must be followed by a Markdown table"
        out[(kind, name)] = Parsed(split_row(table[0]), [split_row(t) for t in table[2:]])
    return out


def cell_value(text: str) -> Any:
    """A table cell as a value: null, true/false, +inf, a number (thousands separators allowed) or text."""
    t = text.strip().strip("`").strip()
    if t in ("null", "—"):
        return None
    if t in ("true", "false"):
        return t == "true"
    if t in ("+inf", "inf"):
        return math.inf
    try:
        return float(t.replace(",", ""))
    except ValueError:
        return t


def clean(text: str) -> str:
    return text.strip().strip("`").strip()


def same(doc: Any, expected: Any, abs_tol: float = 0.0, rel: float = REL) -> bool:
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return doc == expected
    if not isinstance(doc, float):
        return False
    if math.isinf(expected):
        return doc == expected
    return math.isclose(doc, float(expected), rel_tol=rel, abs_tol=abs_tol)


# --- rendering (script mode) ----------------------------------------------------------------------------------

def fmt(x: Any, digits: int = 12) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return x
    if isinstance(x, int | np.integer):
        return f"{int(x):,}" if abs(x) >= 10_000 else str(int(x))
    x = float(x)
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    text = repr(x) if digits >= 17 else f"{x:.{digits}g}"
    if "e" in text:
        return text
    sign, body = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, frac = body.partition(".")
    if len(whole) > 4:
        whole = f"{int(whole):,}"
    return sign + whole + ("." + frac if frac else "")


def render(block: Block) -> str:
    header = [block.key, *block.text_columns, *block.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, row in block.rows.items():
        cells = [f"`{key}`" if not block.period_table else key]
        cells += [block.text.get(key, {}).get(c, "") for c in block.text_columns]
        cells += [fmt(row[c], block.digits) for c in block.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- tests ------------------------------------------------------------------------------------------------------

def test_every_marked_block_is_known_and_present():
    found = set(doc_blocks())
    expected = ({("check", n) for n in BLOCKS} | {("table", n) for n in RULESET_TABLES}
                | {("json", n) for n in json_blocks_expected()})
    assert found == expected, (sorted(found - expected), sorted(expected - found))


@pytest.mark.parametrize("name", list(BLOCKS))
def test_worked_numbers(name):
    block = BLOCKS[name]()
    parsed = doc_blocks()[("check", name)]
    header = [clean(h) for h in parsed.header]
    assert header[0] == block.key, header
    assert set(block.columns) <= set(header[1:]), (block.columns, header)
    assert set(header[1:]) - set(block.columns) <= TEXT_COLUMNS, header
    doc_rows = {clean(r[0]): r for r in parsed.rows}
    assert len(doc_rows) == len(parsed.rows), "a row label appears twice"
    assert list(doc_rows) == list(block.rows), (list(doc_rows), list(block.rows))
    for col in block.columns:
        i = header.index(col)
        finite = [abs(float(r[col])) for r in block.rows.values()
                  if isinstance(r[col], int | float) and not isinstance(r[col], bool) and math.isfinite(r[col])]
        tol = REL * max(finite, default=0.0) if block.period_table else 0.0
        for key, row in block.rows.items():
            got = cell_value(doc_rows[key][i])
            assert same(got, row[col], tol, block.rel), \
                f"{name}: row {key}, column {col}: doc {got!r}, computed {row[col]!r}"


@pytest.mark.parametrize("name", RULESET_TABLES)
def test_ruleset_tables_equal_the_json_files(name):
    key, rows = ruleset_table(name)
    parsed = doc_blocks()[("table", name)]
    header = [clean(h) for h in parsed.header]
    assert header[0] == key, header
    doc_rows = {clean(r[0]): r for r in parsed.rows}
    assert set(doc_rows) == set(rows), (sorted(doc_rows), sorted(rows))
    for label, row in rows.items():
        cells = dict(zip(header[1:], doc_rows[label][1:], strict=True))
        for col, value in row.items():
            assert col in cells, f"{name}: column {col} missing"
            got = cell_value(cells[col])
            want = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
            assert got == want, f"{name}: {label}.{col}: doc {got!r}, ruleset {value!r}"
        extra = {c for c, text in cells.items() if c not in row and c not in TEXT_COLUMNS}
        assert all(clean(cells[c]) in ("—", "") for c in extra), f"{name}: {label} has values the ruleset lacks"
    if name in SHARED:
        assert V1.data[name] == V2.data[name], f"{name} differs between v1 and v2 but the doc prints one table"
    if name in V2_ONLY:
        assert name not in V1.data


def test_the_tables_cover_every_ruleset_table():
    for rs in (V1, V2):
        tables = set(rs.data) - {"version", "description"}
        assert tables <= set(RULESET_TABLES), sorted(tables - set(RULESET_TABLES))
    assert set(V1.data) | set(V2.data) == set(RULESET_TABLES) | {"version", "description"}
    assert sorted(p.name for p in RULESET_DIR.glob("*.json")) == ["v1.json", "v2.json"]


def test_json_blocks():
    blocks = doc_blocks()
    for name, want in json_blocks_expected().items():
        text = blocks[("json", name)]
        if isinstance(want, str):
            assert text.strip() == want, f"json block {name} is not the canonical text"
            assert canonical(json.loads(text)) == text.strip()
        else:
            assert json.loads(text) == want, f"json block {name} differs"
    assert parse_project(json.loads(blocks[("json", "london_project")])) == london()
    rank1 = json.loads((EXAMPLES / "structure_rank1.json").read_text(encoding="utf-8"))
    assert json.loads(blocks[("json", "london_structure")]) == rank1, "§10.4 is the sample structure_rank1.json"


def test_identifiers_recomputed_by_hand():
    """The ids the document prints, hashed from its own JSON text with hashlib only."""
    blocks, rows = doc_blocks(), {clean(r[0]): clean(r[-1]) for r in doc_blocks()[("check", "s3_ids")].rows}
    for name in ("rank1_point", "market_point"):
        text = blocks[("json", name)].strip()
        label = f"permutation_id of {name} ({'v1' if name == 'rank1_point' else 'v2'})"
        assert rows[label] == hashlib.sha256(text.encode()).hexdigest()[:12]
    payload = json.loads(blocks[("json", "run_payload")])
    compact = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert rows["run_id"] == hashlib.sha256(compact.encode()).hexdigest()[:16]
    assert payload["project"] == canonical_project(london())
    assert rows["ruleset v1 sha256"] == hashlib.sha256((RULESET_DIR / "v1.json").read_bytes()).hexdigest()
    assert rows["ruleset v2 sha256"] == hashlib.sha256((RULESET_DIR / "v2.json").read_bytes()).hexdigest()


def test_section_numbering_matches_the_contract():
    headings = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    numbers = [m.group(1) for h in headings if (m := re.match(r"#{2,3} (\d+(?:\.\d+)?)[. ]", h))]
    top = [n for n in numbers if "." not in n]
    assert top == [str(i) for i in range(1, 12)], top
    assert [n for n in numbers if n.startswith("11.")] == ["11.1", "11.2", "11.3", "11.4"]


def test_every_reading_is_cited():
    notes = set(re.findall(r"\*\*(D\d+)\b", NOTES.read_text(encoding="utf-8")))
    text = DOC.read_text(encoding="utf-8")
    assert notes, "no D notes found"
    missing = sorted((n for n in notes if not re.search(rf"\b{n}\b", text)), key=lambda n: int(n[1:]))
    assert not missing, missing


def test_the_document_is_self_contained():
    text = DOC.read_text(encoding="utf-8")
    assert "/work/" not in text and "../shared" not in text


if __name__ == "__main__":
    names = sys.argv[1:] or list(BLOCKS)
    for block_name in names:
        if block_name in json_blocks_expected():
            value = json_blocks_expected()[block_name]
            text = value if isinstance(value, str) else re.sub(  # short lists on one line
                r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                json.dumps(value, indent=2))
            print(f"<!-- json: {block_name} -->\n```json\n{text}\n```\n")
            continue
        print(f"<!-- check: {block_name} -->\n{render(BLOCKS[block_name]())}\n")

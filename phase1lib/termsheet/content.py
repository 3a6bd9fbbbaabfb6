"""Content shared by the JSON term sheet and the workbook: the JSON document, descriptions of the stress
scenarios, the labels and units of fields. Every number comes from the engine (the run's Top-N entry, its
schedule and its structure detail) or the project; nothing here re-derives an engine rule.
"""

from __future__ import annotations

import math
from typing import Any

from ..jsonsafe import finite_or_none
from ..pricing import benchmark_rate
from ..project import Project
from ..ruleset import Ruleset
from .source import Source

FORMAT_VERSION = 1
PERIOD_NAMES = {1: "Annual", 2: "Semi-annual", 4: "Quarterly", 12: "Monthly"}
STRESS_PASS_TOL = 1e-9  # METHODOLOGY section 8: a minimum passes when value >= threshold - 1e-9

DERIVED_INFO: dict[str, tuple[str, str]] = {
    "net_it_load_mw": ("Net IT load", "MW"), "gross_income_monthly": ("Gross income, per month", "currency"),
    "gross_income_annual": ("Gross income, per year", "currency"), "opex_annual": ("Opex, per year", "currency"),
    "noi_annual": ("Net operating income, per year", "currency"), "project_capex": ("Project capex", "currency"),
    "market_value": ("Market value", "currency"), "upfront_fees": ("Upfront fees", "currency"),
    "funding_need": ("Funding need", "currency"), "admin_annual": ("Admin cost, per year", "currency"),
    "tenor_cap": ("Tenor cap", "years"), "dscr_floor": ("Tenant DSCR floor", "ratio"),
    "dsra_months": ("DSRA months", "months"), "af_min": ("Advance factor, minimum", "share"),
    "af_max": ("Advance factor, maximum", "share"), "rating_cap": ("Rating cap", "text"),
    "locked_rate": ("ZCIS locked rate", "rate"), "repo_jurisdiction": ("Repo jurisdiction", "text"),
    "n_periods": ("Periods (N)", "periods"),
}

STRUCTURE_INFO: dict[str, tuple[str, str]] = {
    "senior_tenor": ("Senior tenor", "years"), "senior_coupon": ("Senior coupon", "rate"),
    "senior_dscr": ("Senior sizing DSCR", "ratio"), "senior_amort": ("Senior amortisation", "text"),
    "indexation_mode": ("Indexation mode", "text"), "zcis_tenor_years": ("ZCIS tenor", "years"),
    "io_months": ("Interest-only months", "months"), "wrap": ("Wrap", "bool"), "mezz_on": ("Mezzanine", "bool"),
    "mezz_coupon": ("Mezz coupon", "rate"), "mezz_dscr": ("Mezz combined DSCR", "ratio"),
    "mezz_tenor": ("Mezz tenor", "years"), "mezz_amort": ("Mezz amortisation", "text"),
    "sidecar_haircut_pct": ("Sidecar haircut", "share"),
}


def stress_description(ruleset: Ruleset, project: Project, name: str) -> str:
    """One line describing a stress scenario of the ruleset."""
    spec = ruleset.stress_scenarios[name]
    if spec["kind"] == "cpi":
        return f"CPI {float(spec['cpi']):.1%} at every anniversary (rent and costs)"
    if spec["kind"] == "cpi_spike":
        return (f"CPI {float(spec['cpi']):.1%} at anniversaries 1-{int(spec['anniversaries'])}, "
                f"base CPI {project.base_cpi:.1%} after")
    parts = []
    if float(spec["rent_mult"]) != 1.0:
        parts.append(f"rent {float(spec['rent_mult']) - 1:+.0%}")
    if float(spec["opex_mult"]) != 1.0:
        parts.append(f"opex {float(spec['opex_mult']) - 1:+.0%}")
    return "Base case, " + " and ".join(parts or ["unchanged"])


def coupon_used(src: Source) -> float:
    """The senior coupon the engine used: the structure's number (v2: the market coupon of a "market" point)."""
    used = src.kpis.get("senior_coupon")
    return float(used if used is not None else src.point["senior_coupon"])


def _passes(value: float | None, threshold: float) -> bool | None:
    return None if value is None else value >= threshold - STRESS_PASS_TOL


def mezz_figures(src: Source) -> dict[str, Any] | None:
    """Mezz WAL, total interest and the lowest combined lender-case DSCR, from the engine's schedule."""
    if not src.has_mezz:
        return None
    amount = float(src.kpis["mezz_amount"])
    rows = src.schedule
    wal = math.fsum(r["period"] / src.ppy * r["mezz_principal"] for r in rows) / amount if amount > 0 else None
    span = max(src.test_periods, src.n_mezz)
    combined = [r["lender_cfads"] / (r["senior_service"] + r["mezz_service"]) for r in rows[:span]
                if r["senior_service"] + r["mezz_service"] > 0]
    return {"amount": amount, "wal_years": finite_or_none(wal),
            "total_interest": math.fsum(r["mezz_interest"] for r in rows),
            "min_combined_dscr": min(combined) if combined and amount > 0 else None}


def build_json(src: Source) -> dict[str, Any]:
    """JSON content of a term sheet: header, capital structure, sidecar, DSRA, fees, wrap, day-one value, equity,
    repo, gates, Monte Carlo, schedule, stress grid and assumptions (no NaN or infinity)."""
    k, p, d, pt = src.kpis, src.project, src.derived, src.point
    threshold = float(src.ruleset.gates["stress_min_dscr"])
    doc = {
        "format": "phase1-term-sheet", "format_version": FORMAT_VERSION,
        "header": _json_header(src),
        "structure": dict(pt),
        "capital_structure": _json_capital(src),
        "sidecar": {"indexation_mode": pt["indexation_mode"], "zcis_tenor_years": int(pt["zcis_tenor_years"]),
                    "exists": src.has_sidecar, "locked_rate": d.locked_rate, "gross": k["sidecar_gross"],
                    "haircut_pct": float(pt["sidecar_haircut_pct"]), "net": k["sidecar_net"]},
        "dsra": {"months": d.dsra_months, "window_periods": src.dsra_window, "amount": k["dsra_amount"],
                 "release_period": src.test_periods, "release_date": src.date_of(src.test_periods).isoformat()},
        "fees": _json_fees(src),
        "wrap": _json_wrap(src),
        "day_one_value": {"senior": k["senior_amount"], "mezzanine": k["mezz_amount"], "sidecar_net": k["sidecar_net"],
                          "dsra": k["dsra_amount"], "value": k["day_one_value"]},
        "equity": {"funding_need": d.funding_need, "required": k["equity_required"],
                   "share_of_funding_need": k["equity_required"] / d.funding_need, "irr": k["equity_irr"]},
        "repo": _json_repo(src),
        "gates": {"viable": k["viable"], "tier": k["tier"], "gate_a": k["gate_a"], "gate_b": k["gate_b"],
                  "near_miss": k["near_miss"], "hint": k["hint"]},
        "monte_carlo": _json_monte_carlo(src),
        "schedule": src.schedule,
        "stress": {"threshold": threshold, "scenarios": [
            {"name": name, "description": stress_description(src.ruleset, p, name),
             "min_dscr": k["stress"][name], "passed": _passes(k["stress"][name], threshold),
             "combined_min_dscr": (k["stress_total"] or {}).get(name),
             "combined_passed": _passes((k["stress_total"] or {}).get(name), threshold)}
            for name in src.ruleset.stress_scenarios]},
        "assumptions": {"project": p.to_dict(), "derived": d.to_dict(), "structure": dict(pt),
                        "ruleset": _json_ruleset(src)},
    }
    if src.priced:  # ruleset v2 (METHODOLOGY section 11): pricing, lending value, breakevens
        doc["capital_structure"]["senior"]["market_coupon"] = k["market_coupon"]
        doc.update(pricing=_json_pricing(src), lending_value=_json_lending(src), breakevens=_json_breakevens(src))
    return doc


def pricing_failure(src: Source) -> dict[str, Any] | None:
    """The engine's failure record of the ``pricing`` check (ruleset v2), None when it passed or did not run."""
    return next((f for f in src.kpis["gate_b"] if f["check"] == "pricing"), None)


def _json_pricing(src: Source) -> dict[str, Any]:
    """Section 11.1: the market coupon from the benchmark, the spread and the term premium; the coupon used; the
    pricing check of an offered coupon (the engine's record, with its hint)."""
    k, pt, rs, d = src.kpis, src.point, src.ruleset, src.derived
    tenor = float(pt["senior_tenor"])
    bps_per_year, above = rs.term_premium
    failure = pricing_failure(src)
    offered = not src.market
    return {"senior_coupon": pt["senior_coupon"], "coupon_used": k["senior_coupon"],
            "market_coupon": k["market_coupon"], "basis": "offered" if offered else "market",
            "tenor_years": int(pt["senior_tenor"]),
            "benchmark_rate": benchmark_rate(d.benchmark_curve or (), tenor),
            "benchmark_curve": [list(point) for point in d.benchmark_curve or ()],
            "curve_source": "project" if src.project.benchmark_curve is not None else "ruleset",
            "underlying_rating": src.underlying_rating, "spread_bps": rs.spread_bps(src.underlying_rating),
            "term_premium_bps": bps_per_year * max(tenor - above, 0.0),
            "check": {"applies": offered, "passed": failure is None,
                      "value": pt["senior_coupon"] if offered else None, "threshold": k["market_coupon"],
                      "hint": failure["hint"] if failure else None}}


def _json_lending(src: Source) -> dict[str, Any]:
    """Section 11.2: lending value = min(market value, NOI / cap rate), the ltv limit, the ltv against it."""
    d, k = src.derived, src.kpis
    return {"market_value": d.market_value, "noi_annual": d.noi_annual, "cap_rate": d.cap_rate,
            "cap_rate_source": "project" if src.project.cap_rate is not None else "ruleset",
            "income_value": d.income_value, "lending_value": d.lending_value, "max_ltv": d.max_ltv,
            "ltv_limit": d.ltv_limit, "ltv": k["ltv"], "ltv_limit_binds": k["binding_constraint"] == "ltv"}


def _json_breakevens(src: Source) -> dict[str, Any]:
    """Section 11.3: the engine's breakevens of the structure and the grid they were searched on."""
    k, rules = src.kpis, src.ruleset.breakevens
    return {**{name: k.get(name) for name in ("breakeven_rent_cut", "breakeven_opex_rise", "breakeven_cpi",
                                              "breakeven_cpi_capped")},
            "dscr": float(rules["dscr"]), "cpi_step_bps": float(rules["cpi_step_bps"]),
            "cpi_max": float(rules["cpi_max"])}


def _json_header(src: Source) -> dict[str, Any]:
    m, p = src.run.meta, src.project
    return {"title": p.title, "country": p.country, "currency": p.currency, "tenant_rating": p.tenant_rating,
            "lease_years": p.lease_years, "gross_it_load_mw": p.gross_it_load_mw,
            "periods_per_year": p.periods_per_year,
            "run_id": src.run.run_id, "seed": m["seed"], "ruleset": dict(m["ruleset"]),
            "engine_version": m["engine_version"], "rank": src.rank, "topn": len(src.run.top),
            "tier": src.kpis["tier"], "permutation_id": src.entry["permutation_id"],
            "permutation_index": src.entry["permutation_index"], "created_at": m["created_at"],
            "closing_date": m["closing_date"]}


def _json_capital(src: Source) -> dict[str, Any]:
    k, d, pt = src.kpis, src.derived, src.point
    senior = {
        "amount": k["senior_amount"], "share_of_funding_need": k["advance_factor"], "rating": k["senior_rating"],
        "all_in_rate": k["senior_rate"], "coupon": coupon_used(src), "tenor_years": int(pt["senior_tenor"]),
        "amortisation": pt["senior_amort"], "io_months": int(pt["io_months"]), "wal_years": k["wal_years"],
        "min_dscr": k["min_dscr"], "avg_dscr": k["avg_dscr"], "llcr": k["llcr"],
        "sizing_dscr": float(pt["senior_dscr"]),
        "binding_constraint": k["binding_constraint"], "sizing_limits": dict(src.detail["limits"]),
        "final_maturity": src.date_of(src.n).isoformat(),
        "refinanced_until": src.date_of(src.test_periods).isoformat() if src.bullet else None,
        "total_interest": k["total_interest"], "ltv": k["ltv"],
    }
    mz = mezz_figures(src)
    mezz = None
    if mz is not None:
        mezz = {"amount": mz["amount"], "share_of_funding_need": mz["amount"] / d.funding_need, "rating": None,
                "rate": k["mezz_rate"], "tenor_years": int(pt["mezz_tenor"]), "amortisation": pt["mezz_amort"],
                "wal_years": mz["wal_years"], "sizing_combined_dscr": float(pt["mezz_dscr"]),
                "min_combined_dscr": mz["min_combined_dscr"], "final_maturity": src.date_of(src.n_mezz).isoformat(),
                "total_interest": mz["total_interest"]}
    total = k["senior_amount"] + k["mezz_amount"]
    return {"senior": senior, "mezzanine": mezz,
            "total": {"amount": total, "share_of_funding_need": total / d.funding_need, "wacd": k["wacd"]}}


def _json_fees(src: Source) -> dict[str, Any]:
    p, d = src.project, src.derived
    fees = {name: {"pct": getattr(p, f"{name}_fee_pct"), "amount": getattr(p, f"{name}_fee_pct") * d.project_capex}
            for name in ("arranger", "legal", "rating")}
    return {**fees, "upfront_total": d.upfront_fees, "project_capex": d.project_capex,
            "admin_bps": p.admin_bps, "admin_annual": d.admin_annual, "wrap_premium_bps": p.wrap_premium_bps}


def _json_wrap(src: Source) -> dict[str, Any]:
    wrapped = bool(src.point["wrap"])
    u = src.underlying_rating
    return {"wrapped": wrapped, "underlying_rating": u if wrapped else None,
            "underlying_spread_bps": src.ruleset.spread_bps(u) if wrapped else None,
            "aaa_spread_bps": src.ruleset.spread_bps("AAA"), "premium_bps": src.project.wrap_premium_bps,
            "all_in_rate": src.kpis["senior_rate"], "rating": "AAA" if wrapped else None,
            "dscr_relief": src.project.wrap_dscr_relief}


def _json_repo(src: Source) -> dict[str, Any]:
    rule = src.ruleset.repo_rule(src.project.country, src.bullet)
    return {"eligible": src.kpis["repo_eligible"], "jurisdiction": src.project.country,
            "class": "bullet" if src.bullet else "amortising", "rule": rule, "reasons": src.kpis["repo_reasons"]}


def _json_monte_carlo(src: Source) -> dict[str, Any]:
    mc = src.ruleset.monte_carlo
    return {"paths": int(mc["paths"]), "persistence": float(mc["persistence"]), "volatility": float(mc["volatility"]),
            "seed": src.run.meta["seed"], "breach_dscr": float(mc["breach_dscr"]),
            "percentile": float(mc["percentile"]), "breach_probability": src.kpis.get("mc_breach_probability"),
            "p5_min_dscr": src.kpis.get("mc_p5_min_dscr")}


def _json_ruleset(src: Source) -> dict[str, Any]:
    rs, p = src.ruleset, src.project
    out = {"version": rs.version, "sha256": rs.sha256, "tenant": {p.tenant_rating: rs.tenant(p.tenant_rating)},
           "rating_ladder": {p.country: rs.ladder(p.country)}, "spread_bps": rs.data["spread_bps"],
           "repo_rule": rs.repo_rule(p.country, src.bullet), "stress_scenarios": rs.stress_scenarios,
           "gates": rs.gates, "monte_carlo": rs.monte_carlo}
    if rs.priced:
        out.update(benchmark_curve={p.currency: rs.data["benchmark_curves"][p.currency]},
                   term_premium=rs.data["term_premium"], cap_rate={p.country: rs.cap_rate(p.country)},
                   max_ltv={p.tenant_rating: rs.max_ltv(p.tenant_rating)}, breakevens=rs.breakevens)
    return out

"""The Sizing sheets: senior sizing by reverse DSCR (METHODOLOGY section 5) and the mezzanine on the combined
test (section 6), as live formulas.

"Sizing" holds the scalars: the structure's period counts, the all-in rate (the wrap from the ladder and the
spreads), the senior capacity at 1.00x cover of each amortisation profile, the sizing limits in the order that
names ties (D13) with ``senior_amount = MAX(MIN(limits), 0)`` and ``binding_constraint``, then the mezzanine.
"Sizing Flows" holds the per-period working: positive lender CFADS, the sculpted discount factors, the level
factors, the interest cover, the bullet's refinancing window, the service per unit of debt, and the mezz room.

The limits are one block (named ``senior_limits``): ruleset v2's ``ltv`` limit is one more row before
``funding_need``, and the MIN, the binding name and the tie order follow without a change.
"""

from __future__ import annotations

from dataclasses import replace

from openpyxl.worksheet.worksheet import Worksheet

from .formulas import Column, Line, PeriodTable, Rows, write_period_sheet
from .pricing import market_lines
from .printing import page_setup, paginate
from .source import Source
from .styles import LEGEND, Book, Formula, money_width

KV_WIDTHS = (42, 24, 18, 16, 44)
F = Formula


def write_sizing(book: Book, ws: Worksheet, src: Source) -> None:
    """Periods, rates, capacities, limits, the senior amount and the mezzanine (scalars)."""
    rows = Rows.on_sheet(book, ws, KV_WIDTHS, f"Sizing — {src.project.title}",
                         "Reverse-DSCR sizing of the senior notes (METHODOLOGY section 5) and the mezzanine "
                         "(section 6), from the inputs on Assumptions and the per-period working on Sizing Flows. "
                         + LEGEND)
    rows.section("Periods of the structure")
    rows.lines([
        Line("Interest-only periods (io)", F("=io_months*periods_per_year/12"), "int", "io_periods"),
        Line("Note periods n", F("=MIN(senior_tenor,lease_years)*periods_per_year"),
             "int", "note_periods", note="min(tenor, lease) x ppy"),
        Line("Post-IO periods (m = n - io)", F("=note_periods-io_periods"), "int", "post_periods"),
        Line("Amortisation profile code",
             F("=MATCH(senior_amort,amort_profiles,0)"), "int", "senior_amort_code",
                 note="1 sculpted, 2 annuity, 3 level, 4 bullet"),
        Line("Bullet", F("=senior_amort_code=4"), None, "is_bullet"),
        Line("Refinancing window ends",
             F("=n_periods-refinancing_buffer_years*periods_per_year"), "int", "refi_end", note="period N - 2 ppy"),
        Line("Senior test periods T", F("=IF(is_bullet,refi_end,note_periods)"),
             "int", "test_periods", note="n, or N - 2 ppy for a bullet"),
        Line("Mezz periods (n_m)", F("=IF(mezz_on,MIN(mezz_tenor,lease_years)*periods_per_year,0)"), "int",
             "mezz_periods"),
        Line("Mezz periods in the level rule (at least 1)", F("=MAX(mezz_periods,1)"), "int", "mezz_level_m"),
        Line("Mezz profile (1 sculpted, 2 annuity, 3 level)", F("=MATCH(mezz_amort,mezz_profiles,0)"), "int",
             "mezz_amort_code"),
        Line("DSRA window w", F("=ROUNDUP(dsra_months*periods_per_year/12,0)"),
             "int", "dsra_window", note="ceil(dsra_months x ppy / 12)"),
    ])
    rows.section("Rating, market coupon (section 11.1) and all-in rate (wrap: section 5)" if src.priced else
                 "Rating and all-in rate (wrap: section 5)")
    rows.lines([
        Line("Ladder notch of the sizing DSCR",
             F("=SUMPRODUCT(--(senior_dscr<ladder_dscr-tolerance))"), "int", "ladder_notch", note="0 = AAA"),
        Line("Tenant rating cap notch", F("=MATCH(rating_cap,ratings,0)-1"), "int", "cap_notch"),
        Line("Underlying notch (the worse of the two)", F("=MAX(ladder_notch,cap_notch)"), "int",
             "underlying_notch"),
        Line("Underlying rating", F("=INDEX(ratings,underlying_notch+1)"), None, "underlying_rating"),
        Line("Spread of the underlying rating", F("=INDEX(spread_bps,underlying_notch+1)"), "bps",
             "underlying_spread"),
        Line("AAA spread", F("=INDEX(spread_bps,1)"), "bps", "aaa_spread"),
        *(market_lines() if src.priced else []),
        Line("All-in rate R",
             F("=IF(wrap,ROUND(senior_coupon-(underlying_spread-aaa_spread)/10000+wrap_premium_bps/10000,10),"
               "senior_coupon)"), "pct4", "senior_rate", key=True,
                   note="wrapped: coupon - spread saving + premium, rounded to 10 decimals"),
        Line("Periodic rate r = R / ppy", F("=senior_rate/periods_per_year"), "pct4", "senior_rate_periodic"),
        Line("Discount factor v = 1 / (1 + r)", F("=1/(1+senior_rate_periodic)"), "factor", "senior_discount"),
        Line("Refinancing rate per period r_f",
             F("=(senior_rate+refinancing_spread)/periods_per_year"), "pct4", "refi_rate_periodic",
                 note="(R + 2 %) / ppy"),
        Line("Refinancing discount factor", F("=1/(1+refi_rate_periodic)"), "factor", "refinancing_discount"),
        Line("Annuity factor (1 - v^m) / r (m when r = 0)",
             F("=IF(post_periods>0,IF(senior_rate_periodic=0,post_periods,"
               "(1-senior_discount^post_periods)/senior_rate_periodic),0)"), "factor", "annuity_factor"),
    ])
    rows.section("Senior capacity at 1.00x cover, by profile (the sizing DSCR divides it)")
    rows.lines([
        Line("Sculpted", F("=IF(post_periods>0,SUM(sz_sculpted_term),0)"),
             "money", "capacity_sculpted", note="sum of CFADS+ x v^j over the post-IO periods"),
        Line("Annuity",
             F("=IF(post_periods>0,MIN(sz_annuity_cfads)*annuity_factor,0)"), "money", "capacity_annuity",
                 note="lowest CFADS+ after IO x annuity factor"),
        Line("Level",
             F('=IF(post_periods>0,IF(COUNT(sz_level_ratio)=0,"n/a",MIN(sz_level_ratio)),0)'), "money",
             "capacity_level", note="lowest CFADS+ / (1/m + r (m - j + 1)/m)"),
        Line("Bullet, interest cover",
             F('=IF(post_periods>0,IF(senior_rate_periodic=0,"n/a",MIN(sz_interest_cover)),0)'), "money",
             "capacity_bullet", note="lowest CFADS+ / r after IO"),
        Line("Bullet, refinancing tail", F("=SUM(sz_tail_term)"), "money",
             "refinancing_capacity", note="PV of CFADS+ over the window at r_f"),
        Line("The structure's profile", F("=CHOOSE(senior_amort_code,capacity_sculpted,capacity_annuity,"
                                          "capacity_level,capacity_bullet)"), "money", "capacity"),
        Line("Interest cover in the IO periods",
             F('=IF(COUNT(sz_io_cover)=0,"n/a",MIN(sz_io_cover))'), "money", "io_capacity", note="lowest CFADS+ / r"),
    ])
    _limits(rows, src.priced)
    _mezz(rows)
    page_setup(ws, src.footer())
    paginate(ws, KV_WIDTHS, rows.row - 1, rows.headings, rows.blocks)


LIMIT_ROWS = (
    ("dscr", "Cash-flow limit (D_post; bullet: interest cover)",
     '=IF(ISNUMBER(capacity),capacity/senior_dscr,"n/a")'),
    ("io_cover", "Interest cover in the IO periods",
     '=IF(ISNUMBER(io_capacity),io_capacity/senior_dscr,"n/a")'),
    ("refinancing_tail", "Refinancing tail (bullets)",
     '=IF(is_bullet,refinancing_capacity/senior_dscr,"n/a")'),
    ("advance_factor", "Advance factor cap (af_max x funding need)", "=af_max*funding_need"),
    ("funding_need", "Funding need", "=funding_need"),
)
#: Ruleset v2's limit (section 11.2), placed before funding_need in the order that names ties.
LTV_ROW = ("ltv", "LTV limit (max_ltv x lending value, v2)", "=ltv_limit")


def limit_rows(priced: bool) -> tuple[tuple[str, str, str], ...]:
    """The sizing limits in the order that names ties (D13); under v2 with ``ltv`` before funding_need (D40)."""
    return (*LIMIT_ROWS[:-1], LTV_ROW, LIMIT_ROWS[-1]) if priced else LIMIT_ROWS


def _limits(rows: Rows, priced: bool) -> None:
    rows.section("Senior sizing limits, in the order that names ties (D13; n/a: does not apply, D11)")
    first = rows.row
    for key, label, formula in limit_rows(priced):
        rows.add(Line(label, F(formula), "money", f"limit_{key}", unit=key))
    last = rows.row - 1
    rows.book.name("senior_limits", rows.ws, f"C{first}:C{last}")
    rows.book.name("senior_limit_names", rows.ws, f"D{first}:D{last}")
    rows.blocks.append((first - 2, last + 4))
    rows.lines([
        Line("Smallest limit", F("=MIN(senior_limits)"), "money", "smallest_limit"),
        Line("Senior amount", F("=MAX(smallest_limit,0)"), "money", "senior_amount",
             key=True, note="max(smallest limit, 0)"),
        Line("Binding constraint",
             F("=INDEX(senior_limit_names,MATCH(smallest_limit,senior_limits,0))"), None, "binding_constraint",
             key=True, note="the first limit equal to the smallest"),
        Line("Scale of the post-IO service",
             F('=IF(AND(ISNUMBER(limit_dscr),is_bullet),IF(MIN(limit_dscr,limit_refinancing_tail)>0,'
               'senior_amount/MIN(limit_dscr,limit_refinancing_tail),0),'
               'IF(ISNUMBER(limit_dscr),IF(limit_dscr>0,senior_amount/limit_dscr,0),0))'), "factor", "service_scale",
             note="information: the service per unit of debt is on Sizing Flows"),
    ])


def _mezz(rows: Rows) -> None:
    rows.section("Mezzanine on the combined lender-case test (section 6, D18)")
    rows.lines([
        Line("Mezz periodic rate", F("=mezz_coupon/periods_per_year"), "pct4", "mezz_rate_periodic"),
        Line("Mezz discount factor", F("=1/(1+mezz_rate_periodic)"), "factor", "mezz_discount"),
        Line("Mezz annuity factor",
             F("=IF(mezz_periods>0,IF(mezz_rate_periodic=0,mezz_periods,"
               "(1-mezz_discount^mezz_periods)/mezz_rate_periodic),0)"), "factor", "mezz_annuity_factor"),
        Line("Capacity, sculpted", F("=SUM(sz_mezz_pv)"), "money", "mezz_capacity_sculpted", note="PV of the room"),
        Line("Capacity, annuity",
             F("=IF(mezz_periods>0,MIN(sz_mezz_room_live)*mezz_annuity_factor,0)"), "money",
             "mezz_capacity_annuity", note="lowest room x annuity factor"),
        Line("Capacity, level",
             F("=IF(mezz_periods>0,MIN(sz_mezz_level_ratio),0)"), "money", "mezz_capacity_level",
                 note="lowest room / level factor"),
        Line("Capacity of the structure's profile",
             F("=IF(mezz_on,CHOOSE(mezz_amort_code,mezz_capacity_sculpted,mezz_capacity_annuity,"
               "mezz_capacity_level),0)"), "money", "mezz_capacity"),
        Line("Headroom",
             F("=(af_max+mezz_af_headroom)*funding_need-senior_amount"), "money", "mezz_headroom",
                 note="(af_max + 0.10) x funding need - senior amount"),
        Line("Mezz amount",
             F("=IF(mezz_on,MAX(MIN(mezz_capacity,mezz_headroom),0),0)"), "money", "mezz_amount", key=True,
                 note="max(min(capacity, headroom), 0)"),
        Line("Mezz rate (blank without mezzanine, D20)", F('=IF(mezz_on,mezz_coupon,"")'), "pct", "mezz_rate"),
        Line("Annuity service per unit of mezz", F("=IF(mezz_capacity>0,MIN(sz_mezz_room_live)/mezz_capacity,0)"),
             "factor", "mezz_annuity_unit"),
    ])


def flow_columns(src: Source) -> list[Column]:
    """Per-period working of the sizing: senior then mezzanine."""
    n = src.n_periods
    s, m, z = "Senior capacity", "Senior service", "Mezzanine room"
    r = src.detail["all_in_rate"] / src.ppy
    cfads = max(max(abs(row["lender_cfads"]) for row in src.schedule), 1.0)
    big = max(src.derived.funding_need, cfads / r if r > 0 else cfads * 100)
    cols = [
        Column("period", "Period", "Period", "int", 7.5, values=list(range(1, n + 1))),
        Column("lender_cfads", "CFADS\n(lender)", s, "money_whole", 11, "=INDEX(cf_lender_cfads,{period})"),
        Column("cfads_pos", "CFADS+\n(>= 0)", s, "money_whole", 11, "=MAX({lender_cfads},0)"),
        Column("in_io", "IO", s, "int", 5, "=IF({period}<=io_periods,1,0)"),
        Column("post", "Post-IO", s, "int", 7.5, "=IF(AND({period}>io_periods,{period}<=note_periods),1,0)"),
        Column("disc_sculpted", "v^(p - io)", s, "factor", 9.5, "=IF({period}>io_periods,{prev.disc_sculpted}"
               "*senior_discount,1)", first="=IF({period}>io_periods,senior_discount,1)"),
        Column("sculpted_term", "Sculpted\nCFADS+ v^j", s, "money_whole", 11,
               "=IF({post}=1,{cfads_pos}*{disc_sculpted},0)"),
        Column("annuity_cfads", "CFADS+\nafter IO", s, "money_whole", 11, '=IF({post}=1,{cfads_pos},"")'),
        Column("level_factor", "Level\nfactor", s, "factor", 9.5,
               '=IF({post}=1,1/post_periods+senior_rate_periodic*(post_periods-({period}-io_periods)+1)'
               '/post_periods,"")'),
        Column("level_ratio", "CFADS+ /\nlevel factor", s, "money_whole", 11,
               '=IF({post}=1,IF({level_factor}>0,{cfads_pos}/{level_factor},""),"")'),
        Column("interest_cover", "CFADS+ / r\nafter IO", s, "money_whole", 12,
               '=IF(AND({post}=1,senior_rate_periodic<>0),{cfads_pos}/senior_rate_periodic,"")'),
        Column("io_cover", "CFADS+ / r\nin IO", s, "money_whole", 12,
               '=IF(AND({in_io}=1,senior_rate_periodic<>0),{cfads_pos}/senior_rate_periodic,"")'),
        Column("io_cfads", "CFADS+\nin IO", s, "money_whole", 11, '=IF({in_io}=1,{cfads_pos},"")'),
        Column("window", "Refi\nwindow", s, "int", 7,
               "=IF(AND(is_bullet,{period}>note_periods,{period}<=refi_end),1,0)"),
        Column("disc_refinancing", "(1 + r_f)\n^-(p - n)", s, "factor", 10,
               "=IF({period}>note_periods,{prev.disc_refinancing}*refinancing_discount,1)",
               first="=IF({period}>note_periods,refinancing_discount,1)"),
        Column("tail_term", "Tail\nCFADS+ disc", s, "money_whole", 11,
               "=IF({window}=1,{cfads_pos}*{disc_refinancing},0)"),
        Column("unit_service", "Service per\nunit of debt", m, "factor", 11,
               "=IF({in_io}=1,senior_rate_periodic,IF({post}=1,CHOOSE(senior_amort_code,IF(capacity_sculpted=0,0,"
               "{cfads_pos}/capacity_sculpted),IF(annuity_factor=0,0,1/annuity_factor),{level_factor},"
               "senior_rate_periodic),IF({window}=1,IF(refinancing_capacity=0,0,{cfads_pos}/refinancing_capacity),0)))"),
        Column("senior_service", "Senior\nservice", m, "money_whole", 11, "=INDEX(cf_senior_service,{period})"),
        Column("mezz_cover", "CFADS+ /\nmezz DSCR", z, "money_whole", 11,
               "=IF(AND(mezz_on,{period}<=mezz_periods),{cfads_pos}/mezz_dscr,0)"),
        Column("mezz_room", "Room\n(noise = 0)", z, "money_whole", 11,
               "=IF(AND(mezz_on,{period}<=mezz_periods),IF({mezz_cover}-{senior_service}>mezz_noise*{mezz_cover},"
               "{mezz_cover}-{senior_service},0),0)"),
        Column("disc_mezz", "v_m^p", z, "factor", 9.5, "={prev.disc_mezz}*mezz_discount", first="=mezz_discount"),
        Column("mezz_pv", "Room\nx v_m^p", z, "money_whole", 11, "={mezz_room}*{disc_mezz}"),
        Column("mezz_room_live", "Room, mezz\nperiods", z, "money_whole", 11,
               '=IF(AND(mezz_on,{period}<=mezz_periods),{mezz_room},"")'),
        Column("mezz_level_factor", "Mezz level\nfactor", z, "factor", 10,
               '=IF(AND(mezz_on,{period}<=mezz_periods),1/mezz_level_m+mezz_rate_periodic*(mezz_level_m-{period}+1)'
               '/mezz_level_m,"")'),
        Column("mezz_level_ratio", "Room /\nlevel factor", z, "money_whole", 11,
               '=IF(AND(mezz_on,{period}<=mezz_periods),IF({mezz_level_factor}>0,{mezz_room}/{mezz_level_factor},""),'
               '"")'),
        Column("mezz_unit_service", "Mezz service\nper unit", z, "factor", 11,
               "=IF(AND(mezz_on,{period}<=mezz_periods),CHOOSE(mezz_amort_code,IF(mezz_capacity=0,0,"
               "{mezz_room}/mezz_capacity),mezz_annuity_unit,{mezz_level_factor}),0)"),
    ]
    currency = src.project.currency
    return [replace(c, width=money_width(currency, big, c.width)) if c.fmt == "money_whole" else c for c in cols]


def write_sizing_flows(book: Book, ws: Worksheet, src: Source) -> PeriodTable:
    """One row per period of the sizing working (names sz_<column>)."""
    return write_period_sheet(book, ws, "sz", flow_columns(src), src.n_periods, f"Sizing flows — {src.project.title}",
                              "Per-period working of the senior and mezzanine sizing (Sizing sheet). " + LEGEND, 1,
                              src.footer())

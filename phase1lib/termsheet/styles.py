"""How the workbook looks and how a cell is written: fonts, fills, number formats, and the one cell writer.

The writer separates the kinds of values by type, so text can never become a formula: a :class:`Formula` (or
:class:`ArrayFormula`) is written as a formula; any other ``str`` (a title, a name, a reason, a hint, a
project field) is written as a string cell, whatever it starts with (issue 14: a project titled
``=HYPERLINK(...)`` stays that text). Colours say what a figure is: blue an input the analyst may change, grey an
input fixed by the layout, purple an engine result that the workbook does not recalculate, black a live formula.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet import formula as xlformula
from openpyxl.worksheet.worksheet import Worksheet

from ..project import CURRENCY_SYMBOLS

#: Arial everywhere: Excel has it and LibreOffice substitutes the metric-compatible Liberation Sans, so column
#: widths and page breaks come out the same in both (Calibri falls back to the wider DejaVu Sans without Carlito).
FONT_NAME = "Arial"
NAVY = "1F3864"
INPUT_BLUE = "0B3FB0"
FIXED_GREY = "6E6E6E"
ENGINE_PURPLE = "7030A0"
THIN = Side(style="thin", color="A6A6A6")
MEDIUM = Side(style="medium", color=NAVY)
FONT_TITLE = Font(name=FONT_NAME, size=16, bold=True, color=NAVY)
FONT_SUBTITLE = Font(name=FONT_NAME, size=10, italic=True, color="595959")
FONT_NOTE = Font(name=FONT_NAME, size=9, italic=True, color="595959")
FONT_SECTION = Font(name=FONT_NAME, size=12, bold=True, color=NAVY)
FONT_HEADER = Font(name=FONT_NAME, size=10, bold=True, color="FFFFFF")
FONT_KEY = Font(name="Courier New", size=9, color="595959")
FONT_PASS = Font(name=FONT_NAME, size=10, bold=True, color="2E7D32")
FILL_HEADER = PatternFill("solid", fgColor=NAVY)
FILL_GROUP = PatternFill("solid", fgColor="D9E1F2")
FILL_TOTAL = PatternFill("solid", fgColor="F2F2F2")
FILL_KEY = PatternFill("solid", fgColor="FFF2CC")
FILL_INPUT = PatternFill("solid", fgColor="EAF1FB")
ALIGN_HEADER = Alignment(horizontal="center", vertical="center", wrap_text=True)
ALIGN_RIGHT = Alignment(horizontal="right", vertical="center")
ALIGN_LEFT = Alignment(horizontal="left", vertical="center")
ALIGN_CENTER = Alignment(horizontal="center", vertical="center")
ALIGN_WRAP = Alignment(horizontal="left", vertical="top", wrap_text=True)
#: Fonts by role and weight: (regular, bold).
ROLE_FONTS = {role: (Font(name=FONT_NAME, size=10, color=color), Font(name=FONT_NAME, size=10, bold=True, color=color))
              for role, color in (("label", None), ("formula", "000000"), ("input", INPUT_BLUE),
                                  ("fixed", FIXED_GREY), ("engine", ENGINE_PURPLE))}
LEGEND = ("Blue: inputs you may change. Grey: fixed by the layout. Black: live formulas. Purple: engine results "
          "at the exported inputs, not recalculated.")
#: Characters a worksheet cannot hold (XML 1.0): replaced in text so an odd title never breaks the export.
_ILLEGAL = re.compile(r"[\000-\010\013\014\016-\037]")


class Formula(str):
    """A formula this package built ("=..."); every other str is written as text."""


class ArrayFormula(str):
    """A single-cell array formula ({=...} in Excel, entered with Ctrl+Shift+Enter): MIN(IF(...)) over ranges."""


def number_formats(currency: str) -> dict[str, str]:
    """Number formats of a workbook in ``currency``: money with 2 decimals (0 for JPY), whole money for the
    periodic tables (amounts below half a unit show as "-"), percentages, ratios, dates."""
    sym = CURRENCY_SYMBOLS[currency]
    decimals = "" if currency == "JPY" else ".00"
    money = f'"{sym}"#,##0{decimals}'
    whole = f'"{sym}"#,##0'
    return {
        "money": f'{money};({money});"-"',
        "money_whole": f'[>=0.5]{whole};[<=-0.5]({whole});"-"',
        "money_rate": f'"{sym}"#,##0.0000',
        "money_m": f'"{sym}"#,##0.0,,"m";("{sym}"#,##0.0,,"m");"-"', "sci": "0.000E+00", "diff": "0.0E+00",
        "pct": "0.00%", "pct4": "0.0000%", "ratio": '0.00"x"', "ratio4": '0.0000"x"', "index": "0.0000",
        "factor": "0.000000", "int": "0", "number": "#,##0.00", "count": "#,##0", "years": '0.00" yrs"',
        "tenor": '0" yrs"', "months": '0" months"', "bps": '0.0" bps"', "date": "DD-MMM-YYYY",
        "datetime": 'DD-MMM-YYYY HH:MM" UTC"', "text": "@", "general": "General", "periods": '0" periods"',
        "bool": '"Yes";"Yes";"No"',
    }


def money_width(currency: str, amount: float, minimum: float = 9.0) -> float:
    """A column width that shows ``amount`` in whole units with its symbol (and a 30 % margin for flexed inputs)."""
    text = f"{CURRENCY_SYMBOLS[currency]}{abs(amount):,.0f}"
    return max(minimum, round(1.3 * len(text) + 1.5, 1))


def literal(text: str) -> str:
    """A text as a string literal inside a formula ("" for each quote), so ruleset text cannot break out of it."""
    return '"' + _ILLEGAL.sub(" ", text).replace('"', '""') + '"'


def footer_text(value: str) -> str:
    """Text for a header or footer: "&" starts a code there (&P page, &D date), so a literal one is "&&"."""
    return _ILLEGAL.sub(" ", value).replace("&", "&&")


def absolute(ref: str) -> str:
    """A1 or A1:B9 as $A$1 or $A$1:$B$9."""
    return ":".join(f"${''.join(c for c in part if c.isalpha())}${''.join(c for c in part if c.isdigit())}"
                    for part in ref.split(":"))


@dataclass
class Book:
    """The workbook being built, its number formats and its defined names (name -> target)."""

    wb: Workbook
    fmt: dict[str, str]
    names: dict[str, str] = field(default_factory=dict)

    def name(self, name: str, ws: Worksheet, ref: str) -> None:
        """Define a workbook name for a cell or range of ``ws`` (absolute reference)."""
        if name.lower() in (n.lower() for n in self.names):
            raise ValueError(f"duplicate workbook name {name}")
        target = f"{quote_sheetname(ws.title)}!{absolute(ref)}"
        self.names[name] = target
        self.wb.defined_names[name] = DefinedName(name, attr_text=target)

    def put(self, ws: Worksheet, row: int, col: int, value: Any, fmt: str | None = None, *, name: str | None = None,
            role: str | None = None, bold: bool = False, align: Alignment | None = None) -> Any:
        """Write one cell. ``role`` (input, fixed, engine) colours a value; formulas are black and labels plain.
        Text is always a string cell; None and non-finite numbers leave the cell blank."""
        cell = ws.cell(row=row, column=col)
        if isinstance(value, ArrayFormula):
            cell.value = xlformula.ArrayFormula(cell.coordinate, str(value))
            kind = "formula"
        elif isinstance(value, Formula):
            cell.value = str(value)
            kind = "formula"
        elif isinstance(value, str):
            cell.value = _ILLEGAL.sub(" ", value)
            cell.data_type = "s"  # never a formula, whatever the text starts with
            kind = role or "label"
        elif isinstance(value, float) and not math.isfinite(value):
            kind = role or "label"
        else:
            cell.value = value
            kind = role or ("input" if isinstance(value, int | float | dt.date) else "label")
        cell.font = ROLE_FONTS[kind][1 if bold else 0]
        if fmt:
            cell.number_format = self.fmt[fmt]
        if align is not None:
            cell.alignment = align
        elif kind == "formula" or (isinstance(value, int | float | dt.date) and not isinstance(value, bool)):
            cell.alignment = ALIGN_RIGHT
        if name:
            self.name(name, ws, cell.coordinate)
        return cell


def title(book: Book, ws: Worksheet, heading: str, subtitle: str, width: int) -> None:
    """Sheet title (row 1) and subtitle (row 2) with a rule under row 2 over ``width`` columns."""
    book.put(ws, 1, 1, heading).font = FONT_TITLE
    book.put(ws, 2, 1, subtitle, align=ALIGN_WRAP).font = FONT_SUBTITLE
    if width > 1:
        ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width)
    ws.row_dimensions[1].height = 24
    ws.row_dimensions[2].height = 27
    for col in range(1, width + 1):
        ws.cell(row=2, column=col).border = Border(bottom=MEDIUM)


def section(book: Book, ws: Worksheet, row: int, text: str, width: int, col: int = 1) -> None:
    """A section heading with a rule under it."""
    book.put(ws, row, col, text).font = FONT_SECTION
    for c in range(col, col + width):
        ws.cell(row=row, column=c).border = Border(bottom=MEDIUM)


def header_row(book: Book, ws: Worksheet, row: int, col: int, titles: Sequence[str], height: float = 30) -> None:
    """White-on-navy column headers."""
    for i, text in enumerate(titles):
        cell = book.put(ws, row, col + i, text, align=ALIGN_HEADER)
        cell.font, cell.fill = FONT_HEADER, FILL_HEADER
    ws.row_dimensions[row].height = height


def widths(ws: Worksheet, values: Sequence[float], first: int = 1) -> None:
    for i, w in enumerate(values, start=first):
        ws.column_dimensions[get_column_letter(i)].width = w


def rule_below(ws: Worksheet, row: int, first: int, last: int) -> None:
    for c in range(first, last + 1):
        ws.cell(row=row, column=c).border = Border(bottom=THIN)

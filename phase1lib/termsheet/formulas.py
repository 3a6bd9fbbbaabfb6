"""Formula builders: period tables whose columns are formula templates, and label / value rows with names.

A period table has one row per period (or lease year); each column is a template such as
``"={revenue_lender}-{opex}-{admin}"`` in which ``{key}`` is the same row's cell of column ``key``,
``{prev.key}`` the row above and ``{r}`` the row number. Workbook names (``senior_amount``,
``periods_per_year``...) are written as they are, so the formulas read like the methodology. Every column
gets a name ``<prefix>_<key>`` over its period rows, for aggregates (``=MIN(cf_dscr)``) and lookups from
other sheets (``=INDEX(cf_lender_cfads,{period})``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openpyxl.styles import Alignment, Border
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from .printing import HEADING_PT, ROW_PT, Col, block_breaks, page_setup, print_in_blocks
from .styles import (
    ALIGN_CENTER,
    ALIGN_HEADER,
    ALIGN_LEFT,
    ALIGN_WRAP,
    FILL_GROUP,
    FILL_HEADER,
    FILL_KEY,
    FILL_TOTAL,
    FONT_HEADER,
    FONT_KEY,
    FONT_NOTE,
    FONT_SUBTITLE,
    FONT_TITLE,
    MEDIUM,
    THIN,
    ArrayFormula,
    Book,
    Formula,
    section,
    title,
    widths,
)


class _Row:
    """``{prev.key}``: the cell of column ``key`` on the row above."""

    def __init__(self, letters: dict[str, str], row: int):
        self._letters, self._row = letters, row

    def __getattr__(self, key: str) -> str:
        return f"{self._letters[key]}{self._row}"


class _Refs(dict):
    """format_map mapping of one row: ``{key}``, ``{prev.key}``, ``{r}``."""

    def __init__(self, letters: dict[str, str], row: int):
        super().__init__()
        self.letters, self.row = letters, row

    def __missing__(self, key: str) -> Any:
        if key == "r":
            return str(self.row)
        if key == "prev":
            return _Row(self.letters, self.row - 1)
        return f"{self.letters[key]}{self.row}"


def fill(template: str, letters: dict[str, str], row: int) -> Formula:
    """The formula of ``template`` on sheet row ``row``."""
    return Formula(template.format_map(_Refs(letters, row)))


@dataclass(frozen=True)
class Column:
    """A period-table column: either ``values`` (one per period) or a formula ``template`` (``first``: the
    template of the first period row, e.g. an index that starts at 1); ``row0``: the closing row's formula."""

    key: str
    title: str
    group: str
    fmt: str
    width: float = 11.0
    template: str | None = None
    values: Sequence[Any] | None = None
    first: str | float | None = None
    row0: str | None = None
    total: bool = False
    role: str = "fixed"

    @property
    def col(self) -> Col:
        return Col(self.key, self.title, self.group, self.fmt, self.width, self.total)


@dataclass
class PeriodTable:
    """Where a period table sits: column letters, the closing row (period 0, or None) and the period rows."""

    prefix: str
    letters: dict[str, str]
    row0: int | None
    first: int
    last: int
    total_row: int | None = None

    def row(self, period: int) -> int:
        return self.first + period - 1

    def name(self, key: str) -> str:
        return f"{self.prefix}_{key}"


#: The group header's row of a period table (the column headers are on the next one).
HEADER_ROW = 4


def write_period_table(book: Book, ws: Worksheet, prefix: str, columns: Sequence[Column], periods: int,
                       header: int = HEADER_ROW, with_row0: bool = True, breaks: Sequence[int] = (),
                       totals: bool = False) -> PeriodTable:
    """Group and column headers on rows ``header`` and ``header + 1``, the closing row (when ``with_row0``), one
    row per period, an optional totals row; a workbook name per column over the period rows."""
    letters = {c.key: get_column_letter(i) for i, c in enumerate(columns, start=1)}
    row0 = header + 2 if with_row0 else None
    first = header + 2 + (1 if with_row0 else 0)
    table = PeriodTable(prefix, letters, row0, first, first + periods - 1)
    _headers(book, ws, columns, header, breaks)
    for i, c in enumerate(columns, start=1):
        if row0 is not None:
            if c.row0 is not None:
                book.put(ws, row0, i, Formula(c.row0), c.fmt)
            ws.cell(row=row0, column=i).fill = FILL_TOTAL
        for p in range(1, periods + 1):
            r = table.row(p)
            if c.values is not None:
                value = c.values[p - 1]
                book.put(ws, r, i, value, c.fmt, role=c.role)
                continue
            template = c.first if p == 1 and c.first is not None else c.template
            if isinstance(template, int | float):
                book.put(ws, r, i, template, c.fmt, role=c.role)
            elif template is not None:
                book.put(ws, r, i, fill(template, letters, r), c.fmt)
        book.name(table.name(c.key), ws, f"{letters[c.key]}{table.first}:{letters[c.key]}{table.last}")
    if totals:
        table.total_row = table.last + 1
        _totals(book, ws, columns, table)
    return table


def write_period_sheet(book: Book, ws: Worksheet, prefix: str, columns: Sequence[Column], periods: int,
                       heading: str, subtitle: str, title_columns: int, footer: str, *, with_row0: bool = False,
                       totals: bool = False) -> PeriodTable:
    """A sheet of one row per period or lease year (Cash Flows, Indices, Sizing flows, Stress flows): the heading
    over each printed block, the widths, the table (:func:`write_period_table`), panes frozen below the headers and
    beside the title columns, printed A4 landscape in page-wide column blocks with the headers repeated."""
    plain = [c.col for c in columns]
    breaks = block_breaks(plain, title_columns)
    period_title(book, ws, heading, subtitle, len(columns), breaks, title_columns)
    widths(ws, [c.width for c in columns])
    table = write_period_table(book, ws, prefix, columns, periods, HEADER_ROW, with_row0, breaks, totals)
    ws.freeze_panes = ws.cell(row=table.row0 if table.row0 is not None else table.first, column=title_columns + 1)
    page_setup(ws, footer, f"{HEADER_ROW}:{HEADER_ROW + 1}")
    print_in_blocks(ws, plain, breaks, title_columns)
    return table


def period_title(book: Book, ws: Worksheet, heading: str, subtitle: str, ncols: int, breaks: Sequence[int],
                 title_columns: int) -> None:
    """The heading over each printed block (the repeated title columns stay free, so nothing prints cut) and the
    subtitle wrapped inside the first block."""
    bounds = [title_columns, *breaks, ncols]
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        book.put(ws, 1, a + 1, heading + (" (continued)" if i else "")).font = FONT_TITLE
        ws.merge_cells(start_row=1, start_column=a + 1, end_row=1, end_column=b)
    book.put(ws, 2, title_columns + 1, subtitle, align=ALIGN_WRAP).font = FONT_SUBTITLE
    ws.merge_cells(start_row=2, start_column=title_columns + 1, end_row=2, end_column=bounds[1])
    ws.row_dimensions[1].height = 24
    ws.row_dimensions[2].height = 40
    for c in range(1, ncols + 1):
        ws.cell(row=2, column=c).border = Border(bottom=MEDIUM)


def _headers(book: Book, ws: Worksheet, columns: Sequence[Column], row: int, breaks: Sequence[int]) -> None:
    """Group header (merged per group, cut at printed block breaks) and the column headers."""
    start = 1
    for i in range(1, len(columns) + 1):
        if i == len(columns) or columns[i].group != columns[start - 1].group or i in breaks:
            continued = start > 1 and columns[start - 2].group == columns[start - 1].group
            text = columns[start - 1].group + (" (continued)" if continued else "")
            book.put(ws, row, start, text, align=ALIGN_HEADER, bold=True)
            for j in range(start, i + 1):
                cell = ws.cell(row=row, column=j)
                cell.fill = FILL_GROUP
                cell.border = Border(left=THIN if j == start else None, right=THIN if j == i else None)
            if i > start:
                ws.merge_cells(start_row=row, start_column=start, end_row=row, end_column=i)
            start = i + 1
    for i, c in enumerate(columns, start=1):
        cell = book.put(ws, row + 1, i, c.title, align=ALIGN_HEADER)
        cell.font, cell.fill = FONT_HEADER, FILL_HEADER
    ws.row_dimensions[row + 1].height = 30


def _totals(book: Book, ws: Worksheet, columns: Sequence[Column], table: PeriodTable) -> None:
    r = table.total_row
    assert r is not None
    book.put(ws, r, 1, f"Total, periods 1-{table.last - table.first + 1}", bold=True, align=ALIGN_LEFT)
    for i, c in enumerate(columns, start=1):
        cell = ws.cell(row=r, column=i)
        cell.fill = FILL_TOTAL
        cell.border = Border(top=THIN, bottom=MEDIUM)
        if c.total:
            book.put(ws, r, i, Formula(f"=SUM({table.name(c.key)})"), c.fmt, bold=True)


# ---- label / value rows ----------------------------------------------------------------------------------

@dataclass
class Line:
    """One label / value row: the value (a Formula, a number, a text...), its format, its workbook name, a
    role for a non-formula value (input, fixed, engine), a unit and a note."""

    label: str
    value: Any
    fmt: str | None = None
    name: str | None = None
    role: str | None = None
    unit: str = ""
    note: str = ""
    key: bool = False
    wide: bool = False  # text that runs on to the right (left-aligned), e.g. a list of failed checks
    options: Sequence[str] | None = None  # a list validation for an input


@dataclass
class Rows:
    """Label / name / value / unit / note rows on a key-value sheet, with section headings recorded."""

    book: Book
    ws: Worksheet
    row: int
    width: int = 5
    label_col: int = 1
    headings: list[int] = field(default_factory=list)
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (first, last) rows printed on one page
    validations: list[tuple[str, Sequence[str]]] = field(default_factory=list)

    @classmethod
    def on_sheet(cls, book: Book, ws: Worksheet, column_widths: Sequence[float], heading: str,
                 subtitle: str) -> Rows:
        """A key-value sheet: its column widths, title and subtitle, then rows from row 3 over its width."""
        widths(ws, column_widths)
        title(book, ws, heading, subtitle, len(column_widths))
        return cls(book, ws, 3, width=len(column_widths))

    def section(self, text: str) -> None:
        self.row += 1
        self.headings.append(self.row)
        section(self.book, self.ws, self.row, text, self.width, self.label_col)
        self.ws.row_dimensions[self.row].height = HEADING_PT
        self.row += 1

    def note(self, text: str, height: float | None = None) -> None:
        """A wrapped explanatory line over the sheet's width."""
        c = self.label_col
        cell = self.book.put(self.ws, self.row, c, text, align=Alignment(horizontal="left", vertical="top",
                                                                         wrap_text=True))
        cell.font = FONT_NOTE
        self.ws.merge_cells(start_row=self.row, start_column=c, end_row=self.row, end_column=c + self.width - 1)
        self.ws.row_dimensions[self.row].height = height or ROW_PT * 2
        self.row += 1

    def add(self, line: Line) -> Any:
        """Write a row: label, name (the key), value, unit, note; returns the value cell."""
        c, book, ws = self.label_col, self.book, self.ws
        book.put(ws, self.row, c, line.label, bold=line.key, align=Alignment(horizontal="left", shrink_to_fit=True))
        if line.name:
            book.put(ws, self.row, c + 1, line.name).font = FONT_KEY
        cell = book.put(ws, self.row, c + 2, line.value, line.fmt, name=line.name, role=line.role, bold=line.key)
        if line.wide or (isinstance(line.value, str) and not isinstance(line.value, Formula | ArrayFormula)):
            cell.alignment = Alignment(horizontal="left", indent=1)
        if line.key:
            cell.fill = FILL_KEY
        if line.unit:
            book.put(ws, self.row, c + 3, line.unit, align=Alignment(horizontal="left", indent=1, shrink_to_fit=True))
        if line.note:
            note = book.put(ws, self.row, c + 4, line.note, align=Alignment(horizontal="left", shrink_to_fit=True))
            note.font = FONT_NOTE
            if self.width > 5:
                ws.merge_cells(start_row=self.row, start_column=c + 4, end_row=self.row, end_column=c + self.width - 1)
        if line.options:
            self.validations.append((cell.coordinate, line.options))
        for col in range(c, c + self.width):
            ws.cell(row=self.row, column=col).border = Border(bottom=THIN)
        self.row += 1
        return cell

    def lines(self, items: Sequence[Line]) -> None:
        for line in items:
            self.add(line)


def grid(book: Book, ws: Worksheet, row: int, col: int, headers: Sequence[str], body: Sequence[Sequence[Any]],
         fmts: Sequence[str | None], roles: Sequence[str | None] | None = None,
         names: Sequence[str | None] | None = None) -> tuple[int, int]:
    """A small table: a header row then ``body`` rows; ``names`` name each column's body range. Returns the
    first and last body rows."""
    from .styles import header_row

    header_row(book, ws, row, col, headers)
    first = row + 1
    for i, values in enumerate(body):
        for j, value in enumerate(values):
            align = ALIGN_CENTER if isinstance(value, str) and j > 1 else None
            book.put(ws, first + i, col + j, value, fmts[j], role=(roles or [None] * len(values))[j], align=align)
        for j in range(len(headers)):
            ws.cell(row=first + i, column=col + j).border = Border(bottom=THIN)
    last = first + len(body) - 1
    for j, name in enumerate(names or []):
        if name:
            letter = get_column_letter(col + j)
            book.name(name, ws, f"{letter}{first}:{letter}{last}")
    return first, last


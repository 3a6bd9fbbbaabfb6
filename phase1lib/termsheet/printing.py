"""Print layout: landscape A4 with a footer; wide period tables in page-wide column blocks; key-value sheets
fitted to the page width with section headings kept with their rows; the Term Sheet on one page.

Scales are computed from the known column widths and row heights (Arial 10: a column of width w is about
7 w + 5 px at 96 dpi), because fit-to-page ignores manual page breaks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from openpyxl.utils import get_column_letter
from openpyxl.worksheet.pagebreak import Break
from openpyxl.worksheet.worksheet import Worksheet

from .styles import footer_text

#: Printable width of landscape A4 with 0.4 in margins, in pixels at 96 dpi.
A4_LANDSCAPE_PX = 1045
A4_LANDSCAPE_HEIGHT_PX = 688  # 8.27 in less 0.5 in top and 0.6 in bottom margins, at 96 dpi
MIN_PRINT_SCALE = 0.62  # 10 pt figures print at 6.2 pt or larger
MAX_PRINT_SCALE = 0.80  # larger only adds pages
ROW_PT, HEADING_PT = 13.0, 15.5


@dataclass(frozen=True)
class Col:
    """A column of a period table: key, header, group, number format, width, whether it is totalled."""

    key: str
    title: str
    group: str
    fmt: str
    width: float = 11.0
    total: bool = False


def page_setup(ws: Worksheet, footer: str, title_rows: str | None = None) -> None:
    """Landscape A4, fit to one page wide, print titles, narrow margins, a footer with page numbers."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = 0.5
    ws.page_margins.bottom = 0.6
    ws.page_margins.footer = 0.25
    ws.oddFooter.left.text = footer_text(footer)
    ws.oddFooter.left.size = 8
    ws.oddFooter.right.text = "&A · page &P of &N"
    ws.oddFooter.right.size = 8
    if title_rows:
        ws.print_title_rows = title_rows


def px(cols: Sequence[Col]) -> float:
    return sum(7 * c.width + 5 for c in cols)


def width_px(values: Sequence[float]) -> float:
    return sum(7 * w + 5 for w in values)


def _fill(units: list[list[Col]], budget: float) -> list[list[Col]] | None:
    """Greedy page-wide blocks of whole units within ``budget`` px; None if a unit alone is too wide."""
    blocks: list[list[Col]] = [[]]
    for unit in units:
        if px(unit) > budget:
            return None
        if blocks[-1] and px(blocks[-1]) + px(unit) > budget:
            blocks.append([])
        blocks[-1].extend(unit)
    return blocks


def _balanced(units: list[list[Col]], budget: float) -> list[list[Col]] | None:
    """The fewest blocks of whole units within ``budget``, filled against the narrowest budget that keeps them."""
    fewest = _fill(units, budget)
    if fewest is None:
        return None
    best, low, high = fewest, max(px(u) for u in units), budget
    while high - low > 1:
        mid = (low + high) / 2
        trial = _fill(units, mid)
        if trial is not None and len(trial) <= len(fewest):
            best, high = trial, mid
        else:
            low = mid
    return best


def print_blocks(cols: Sequence[Col], title_columns: int) -> list[list[Col]]:
    """The columns after the title columns in as few page-wide blocks as print at MIN_PRINT_SCALE, balanced;
    breaks fall between column groups unless splitting a group saves a page width or makes the widest block
    over 10 % narrower."""
    title, body = cols[:title_columns], list(cols[title_columns:])
    budget = A4_LANDSCAPE_PX / MIN_PRINT_SCALE - px(title)
    groups: list[list[Col]] = []
    for c in body:
        if groups and groups[-1][0].group == c.group:
            groups[-1].append(c)
        else:
            groups.append([c])
    options = [(blocks, penalty) for blocks, penalty in ((_balanced(groups, budget), 1.0),
                                                         (_balanced([[c] for c in body], budget), 1.1))
               if blocks is not None]
    if not options:
        return [body]
    best, _ = min(options, key=lambda o: (len(o[0]), o[1] * max(px(b) for b in o[0])))
    return best


def block_breaks(cols: Sequence[Col], title_columns: int) -> list[int]:
    """Column numbers (1-based) after which a printed block ends; none when the table fits one page wide."""
    ends, end = [], title_columns
    for block in print_blocks(cols, title_columns)[:-1]:
        end += len(block)
        ends.append(end)
    return ends


def print_in_blocks(ws: Worksheet, cols: Sequence[Col], breaks: list[int], title_columns: int) -> None:
    """Print a wide table in page-wide column blocks: one scale for all blocks (each fits the page width), a
    column break between blocks, the title columns repeated, pages ordered across then down."""
    if not breaks:
        return
    bounds = [title_columns, *breaks, len(cols)]
    widest = max(px(cols[:title_columns]) + px(cols[a:b]) for a, b in itertools.pairwise(bounds))
    ws.sheet_properties.pageSetUpPr.fitToPage = False
    ws.page_setup.scale = int(100 * min(MAX_PRINT_SCALE, 0.97 * A4_LANDSCAPE_PX / widest))
    ws.page_setup.pageOrder = "overThenDown"
    ws.print_title_cols = f"A:{get_column_letter(title_columns)}"
    for end in breaks:
        ws.col_breaks.append(Break(id=end))


def paginate(ws: Worksheet, column_widths: Sequence[float], last_row: int, headings: Sequence[int],
             keep: Sequence[tuple[int, int]] = ()) -> None:
    """Fit the columns to the page width with an explicit scale (Excel ignores manual breaks under fit-to-page)
    and break before a section heading that would otherwise end a page without at least three of its rows, or
    before a block (first, last row) in ``keep`` that would otherwise be split."""
    scale = min(1.0, 0.97 * A4_LANDSCAPE_PX / width_px(column_widths))
    ws.sheet_properties.pageSetUpPr.fitToPage = False
    ws.page_setup.scale = int(100 * scale)
    for r in range(3, last_row + 1):
        if ws.row_dimensions[r].height is None:
            ws.row_dimensions[r].height = HEADING_PT if r in headings else ROW_PT
    capacity = 0.97 * A4_LANDSCAPE_HEIGHT_PX / scale * 72 / 96  # points of rows per page
    blocks = {first: last for first, last in keep}
    used = 0.0
    for r in range(1, last_row + 1):
        height = 0.0 if ws.row_dimensions[r].hidden else ws.row_dimensions[r].height or ROW_PT
        need = height + 3 * ROW_PT if r in headings else height
        if r in blocks:
            need = max(need, sum(ws.row_dimensions[q].height or ROW_PT for q in range(r, blocks[r] + 1)))
        if used + need > capacity and used > 0:
            ws.row_breaks.append(Break(id=r - 1))
            used = 0.0
        used += height

"""Term sheets of a ranked structure: an Excel workbook that is a live model of the deal, and the same content
as JSON.

``to_xlsx_bytes(run, rank)`` builds the workbook in memory; ``write_xlsx`` writes it to a file atomically;
``term_sheet_json(run, rank)`` is the content as a JSON-safe dict. In the workbook every engine number is a
formula of named inputs (Assumptions): the indices, CFADS, the sizing limits and the senior amount, the
schedule, the mezzanine, the DSRA, the KPIs, the equity IRR, the stress grid, the gates and the tier, so an
analyst who changes the DSCR target, the coupon, the rent, opex or CPI sees the debt re-size (docs/termsheet.md);
under ruleset v2 the market coupon re-prices, and the lending value, the ltv limit, the pricing check and the
breakevens follow. Only the Monte Carlo, the near-miss hint and the run's rank stay engine values, labelled so.

Modules: ``source`` (the data of one term sheet, from the engine), ``content`` (JSON and shared texts),
``styles`` and ``printing`` (look and print layout), ``formulas`` (period tables and label rows), one module
per sheet, ``pricing`` and ``breakevens`` (ruleset v2's items), and ``xlsx`` (reproducible bytes).
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from ..engine.runner import RunResult
from ..fsutil import atomic_write_bytes
from ..ruleset import Ruleset
from .assumptions import write_assumptions
from .cashflows import write_cash_flows
from .content import build_json
from .gates import write_gates
from .indices import write_indices
from .outputs import OUTPUTS, engine_outputs, write_outputs
from .sensitivity import write_sensitivity
from .sizing import write_sizing, write_sizing_flows
from .source import Source, load_source
from .stress import write_stress_flows
from .styles import Book, number_formats
from .summary import write_term_sheet
from .xlsx import set_properties, workbook_bytes

SHEETS = ("Term Sheet", "Assumptions", "Sizing", "Outputs", "Gates", "Sensitivity", "Cash Flows", "Sizing Flows",
          "Stress Flows", "Indices")


def term_sheet_json(run: RunResult, rank: int, ruleset: Ruleset | None = None) -> dict:
    """The term sheet of ``rank`` as JSON (no NaN or infinity)."""
    return build_json(load_source(run, rank, ruleset))


def build_workbook(src: Source) -> Workbook:
    """The workbook of a term sheet (in memory): under ruleset v2 also the market coupon, the lending value and
    the ltv limit, the pricing check and the breakevens (METHODOLOGY section 11), as live formulas."""
    wb = Workbook()
    book = Book(wb=wb, fmt=number_formats(src.project.currency))
    sheets = {name: (wb.active if i == 0 else wb.create_sheet(name)) for i, name in enumerate(SHEETS)}
    sheets["Term Sheet"].title = "Term Sheet"
    write_assumptions(book, sheets["Assumptions"], src)
    write_indices(book, sheets["Indices"], src)
    cash = write_cash_flows(book, sheets["Cash Flows"], src)
    write_sizing(book, sheets["Sizing"], src)
    write_sizing_flows(book, sheets["Sizing Flows"], src)
    write_stress_flows(book, sheets["Stress Flows"], src)
    write_outputs(book, sheets["Outputs"], src, cash)
    write_gates(book, sheets["Gates"], src)
    write_sensitivity(book, sheets["Sensitivity"], src)
    write_term_sheet(book, sheets["Term Sheet"], src, cash)
    for name, ws in sheets.items():
        if name != "Term Sheet":  # text never prints past the last column on pages of its own
            ws.print_area = f"A1:{get_column_letter(ws.max_column)}{ws.max_row}"
    set_properties(wb, src.created(), f"Term sheet: {src.project.title}, rank {src.rank}",
                   f"Phase-1 run {src.run.run_id}, permutation {src.entry['permutation_id']}",
                   f"phase1 {src.run.run_id} rank{src.rank}")
    return wb


def to_xlsx_bytes(run: RunResult, rank: int, ruleset: Ruleset | None = None) -> bytes:
    """The term sheet of ``rank`` as .xlsx bytes (nothing written to disk); byte-identical for the same run."""
    src = load_source(run, rank, ruleset)
    return workbook_bytes(build_workbook(src), src.created())


def write_xlsx(run: RunResult, rank: int, path: str | Path, ruleset: Ruleset | None = None) -> Path:
    """Write the term sheet of ``rank`` to ``path`` atomically; returns the path."""
    target = Path(path)
    atomic_write_bytes(target, to_xlsx_bytes(run, rank, ruleset))
    return target


__all__ = ["OUTPUTS", "SHEETS", "Source", "build_json", "build_workbook", "engine_outputs", "load_source",
           "number_formats", "term_sheet_json", "to_xlsx_bytes", "write_xlsx"]

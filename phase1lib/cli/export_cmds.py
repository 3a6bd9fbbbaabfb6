"""Export commands: ``export`` writes the term sheet of a ranked structure as Excel (live formulas) or JSON."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from ..errors import FieldError, InputError
from ..fsutil import atomic_write_bytes
from ..store import open_store
from . import emit, say
from .lazy import service

FORMATS = ("xlsx", "json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="the term sheet of a ranked structure: Excel with live formulas, or JSON",
                       description="Write the term sheet of rank N of a stored run. xlsx needs --output; json "
                                   "without --output prints the term sheet on stdout.")
    p.add_argument("run_id", help="a stored run (see `phase1 runs`)")
    p.add_argument("--rank", type=int, required=True, help="rank in the run's Top-N (1 = best)")
    p.add_argument("--output", "-o", default=None, help="file to write (.xlsx or .json), replaced atomically")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="xlsx or json (default: json for a .json output, else xlsx)")
    p.set_defaults(handler=cmd_export)


def export_format(fmt: str | None, output: str | None) -> str:
    """The format asked for, or the one the output's suffix implies (xlsx by default)."""
    if fmt:
        return fmt
    return "json" if output and Path(output).suffix.lower() == ".json" else "xlsx"


def write_output(path: Path, content: bytes) -> None:
    """Write atomically; an unwritable path is bad input naming ``output``, never a traceback."""
    try:
        atomic_write_bytes(path, content)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise InputError([FieldError("output", f"cannot write {str(path)!r}: {reason}")], "export") from None


def cmd_export(args: argparse.Namespace) -> int:
    fmt = export_format(args.format, args.output)
    if fmt == "xlsx" and not args.output:
        raise InputError([FieldError("output", "is required for --format xlsx (a file path such as "
                                               "term-sheet.xlsx); --format json prints to stdout")], "export")
    store = open_store()
    try:
        content, name, media_type = service.export_term_sheet(store, args.run_id, args.rank, fmt)
    finally:
        store.close()
    if not args.output:
        sys.stdout.write(content.decode("utf-8") + "\n")
        sys.stdout.flush()
        return 0
    path = Path(args.output)
    write_output(path, content)
    emit({"run_id": args.run_id, "rank": args.rank, "format": fmt, "output": str(path), "file_name": name,
          "media_type": media_type, "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()})
    say(f"term sheet of rank {args.rank} of run {args.run_id} written to {path} ({len(content):,} bytes)")
    return 0

"""The ``phase1`` command line: JSON on stdout, human messages on stderr, never a traceback for bad input.

Each command module exposes ``register(subparsers)``; its handlers take the parsed arguments and
return an exit code. Expected errors (:class:`~phase1lib.errors.Phase1Error`) become a JSON error
object on stdout, a one-line message on stderr and an exit code by kind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import GuardrailError, InputError, NotFoundError, Phase1Error

#: Exit codes: 2 invalid input, 3 guardrail, 4 not found, 5 disabled or refused, 6 the Dask cluster cannot do the
#: work (unreachable scheduler, no workers, hung or failing tasks: phase1 portfolio --scheduler), 1 anything else.
EXIT_INVALID, EXIT_GUARDRAIL, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_CLUSTER = 2, 3, 4, 5, 6


def emit(obj: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A human message on stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def cli_actor() -> str:
    """``cli:<os user>`` for the audit log."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def exit_code(error: Phase1Error) -> int:
    cluster = sys.modules.get("phase1lib.portfolio.cluster")  # a ClusterError exists only once it is imported
    if cluster is not None and isinstance(error, cluster.ClusterError):
        return EXIT_CLUSTER
    if isinstance(error, InputError):
        return EXIT_INVALID
    if isinstance(error, GuardrailError):
        return EXIT_GUARDRAIL
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    return EXIT_REFUSED if error.status in (401, 403, 409, 429, 503) else 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: exit 2 with a JSON error, as bad input
        self.print_usage(sys.stderr)
        emit({"error": "usage", "message": message})
        say(f"{self.prog}: error: {message}")
        raise SystemExit(EXIT_INVALID)


def build_parser() -> argparse.ArgumentParser:
    from . import admin_cmds, export_cmds, portfolio_cmds, project_cmds, run_cmds, serve_cmds

    parser = _Parser(prog="phase1", description="Phase-1 Workbench: structure data-centre lease securitisations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in (project_cmds, run_cmds, portfolio_cmds, export_cmds, admin_cmds, serve_cmds):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except Phase1Error as error:
        emit(error.to_dict())
        say(f"phase1 {args.command}: {error}")
        return exit_code(error)
    except KeyboardInterrupt:
        say("interrupted")
        return 130


def console() -> None:
    """The ``phase1`` console script: :func:`main`, then exit without tearing the heap down.

    Everything is written and closed by then (runs are fsynced and renamed, the store commits each write);
    interpreter teardown would only free a large run's arrays one by one (~0.2 s after 250,000 permutations).
    ``serve`` exits normally: Jupyter's own exit handlers (kernels, runtime files) must run.
    """
    from ..engine.memory import tune_allocator

    tune_allocator()  # the process's malloc policy is the entry point's choice, not the library's
    code = main()
    if sys.argv[1:2] == ["serve"]:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()

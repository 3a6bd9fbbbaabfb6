"""Commands on inputs: ``validate``, ``cardinality``, ``presets``."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..presets import list_presets, preset_ranges
from ..project import derive, load_project, read_json_file
from ..ranges import cardinality_summary, parse_ranges
from . import EXIT_INVALID, emit, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate a project JSON file and show its derived fields")
    p.add_argument("project", help="project JSON file")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("cardinality", help="count the permutations of a range request or preset")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ranges", help="range request JSON file")
    src.add_argument("--preset", help="preset name (see `phase1 presets`)")
    p.add_argument("--project", help="project JSON file: checks project-dependent domains, fills its defaults")
    p.set_defaults(handler=cmd_cardinality)

    p = sub.add_parser("presets", help="list the presets with descriptions and cardinalities")
    p.set_defaults(handler=cmd_presets)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        project = load_project(args.project)
    except InputError as error:
        emit({"valid": False, "errors": [e.to_dict() for e in error.errors]})
        say(f"phase1 validate: {error}")
        return EXIT_INVALID
    emit({"valid": True, "project": project.to_dict(), "derived": derive(project).to_dict()})
    return 0


def load_ranges_arg(args: argparse.Namespace) -> dict:
    """The range request of ``--ranges FILE`` or ``--preset NAME``."""
    if getattr(args, "preset", None):
        return preset_ranges(args.preset)
    return read_json_file(args.ranges, "ranges")


def cmd_cardinality(args: argparse.Namespace) -> int:
    project = load_project(args.project) if args.project else None
    grid = parse_ranges(load_ranges_arg(args), project)
    emit(cardinality_summary(grid))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    emit({"presets": [{k: p[k] for k in ("name", "description", "cardinality", "ranges")}
                      for p in list_presets()]})
    return 0

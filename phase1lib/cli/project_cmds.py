"""Commands on inputs: ``validate``, ``cardinality``, ``presets``."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..presets import list_presets, preset_ranges, preset_ruleset
from ..project import derive, load_project, read_json_file
from ..ranges import cardinality_summary, parse_ranges
from ..ruleset import Ruleset, available_versions, load_ruleset
from . import EXIT_INVALID, emit, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate a project JSON file and show its derived fields")
    p.add_argument("project", help="project JSON file")
    add_ruleset_arg(p)
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("cardinality", help="count the permutations of a range request or preset")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ranges", help="range request JSON file")
    src.add_argument("--preset", help="preset name (see `phase1 presets`)")
    p.add_argument("--project", help="project JSON file: checks project-dependent domains, fills its defaults")
    add_ruleset_arg(p)
    p.set_defaults(handler=cmd_cardinality)

    p = sub.add_parser("presets", help="list the presets with descriptions and cardinalities")
    p.set_defaults(handler=cmd_presets)


def add_ruleset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ruleset", default=None, metavar="VERSION",
                   help="v1 (stable, default), v2 (market-priced notes, lending value, breakevens) or a "
                        "registered candidate")


def ruleset_arg(args: argparse.Namespace, fallback: str | None = None) -> Ruleset | None:
    """The ruleset ``--ruleset`` names (shipped, or a candidate in the store), else ``fallback``'s; None: v1."""
    name = getattr(args, "ruleset", None) or fallback
    if name is None:
        return None
    if name in available_versions():
        return load_ruleset(name)
    from .. import service
    from ..store import open_store

    store = open_store()
    try:
        return service.ruleset_named(store, name)
    finally:
        store.close()


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        ruleset = ruleset_arg(args)
        project = load_project(args.project)
    except InputError as error:
        emit({"valid": False, "errors": [e.to_dict() for e in error.errors]})
        say(f"phase1 validate: {error}")
        return EXIT_INVALID
    emit({"valid": True, "project": project.to_dict(), "derived": derive(project, ruleset).to_dict(),
          "ruleset": (ruleset or load_ruleset()).describe()})
    return 0


def load_ranges_arg(args: argparse.Namespace) -> dict:
    """The range request of ``--ranges FILE`` or ``--preset NAME``."""
    if getattr(args, "preset", None):
        return preset_ranges(args.preset)
    return read_json_file(args.ranges, "ranges")


def cmd_cardinality(args: argparse.Namespace) -> int:
    project = load_project(args.project) if args.project else None
    grid = parse_ranges(load_ranges_arg(args), project, ruleset_arg(args, preset_ruleset(args.preset)))
    emit(cardinality_summary(grid))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    emit({"presets": [{k: p[k] for k in ("name", "description", "ruleset", "cardinality", "ranges")}
                      for p in list_presets()]})
    return 0

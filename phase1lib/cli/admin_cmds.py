"""Admin and operator commands, working on the store directly: ``phase1 admin ...`` and ``phase1 ops ...``.

Every command prints JSON on stdout, except ``admin create-user``/``reset-mfa`` without ``--json``, which
print the otpauth URI alone (ready for a QR code tool) with a note on stderr. The actor recorded in
the audit log is ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import FieldError, InputError
from ..ruleset import available_versions
from ..store import Store, open_store
from . import cli_actor, emit, say
from .lazy import auth, ops

_ON = {"on", "true", "1", "yes"}
_OFF = {"off", "false", "0", "no"}


def register(sub: argparse._SubParsersAction) -> None:
    _register_admin(sub)
    _register_ops(sub)


def _register_admin(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="admin users: create-user, list, disable, enable, reset-mfa")
    asub = admin.add_subparsers(dest="admin_command", required=True)

    p = asub.add_parser("create-user", help="create an admin (password from stdin, or prompted twice)")
    p.add_argument("username", help="3-64 characters from A-Z a-z 0-9 _ . @ -")
    p.add_argument("--json", action="store_true",
                   help='print {"username", "totp_secret", "otpauth_uri"} for automation')
    p.set_defaults(handler=cmd_create_user)

    p = asub.add_parser("list", help="list admins (no secrets)")
    p.set_defaults(handler=cmd_list_users)

    for name, handler, text in (("disable", cmd_disable, "refuse a user's logins and end their sessions"),
                                ("enable", cmd_enable, "allow a disabled user to log in again")):
        p = asub.add_parser(name, help=text)
        p.add_argument("username")
        p.set_defaults(handler=handler)

    p = asub.add_parser("reset-mfa", help="give a user a new TOTP secret (lost device); ends their sessions")
    p.add_argument("username")
    p.add_argument("--json", action="store_true", help="print the new enrolment as JSON")
    p.set_defaults(handler=cmd_reset_mfa)


def _register_ops(sub: argparse._SubParsersAction) -> None:
    opsp = sub.add_parser("ops", help="operations: status, health, flags, canary, rollback, audit, ruleset")
    osub = opsp.add_subparsers(dest="ops_command", required=True)

    osub.add_parser("status", help="status/full: GO/NO-GO, canary, flags, rulesets, metrics").set_defaults(
        handler=cmd_status)
    osub.add_parser("health", help="versions and store reachability").set_defaults(handler=cmd_health)

    p = osub.add_parser("flags", help="show the feature flags, or change them with --set and --version")
    p.add_argument("--set", action="append", default=[], metavar="NAME=on|off", dest="changes",
                   help="a flag change (repeatable)")
    p.add_argument("--version", type=int, help="the flags version you read (required with --set)")
    p.set_defaults(handler=cmd_flags)

    p = osub.add_parser("canary", help="set the share of runs (0-100 %%) on the candidate ruleset")
    p.add_argument("percentage", type=float, metavar="PCT")
    p.add_argument("--reason", required=True)
    p.set_defaults(handler=cmd_canary)

    p = osub.add_parser("rollback", help="lower the canary share (default to 0 %%)")
    p.add_argument("--to", type=float, default=0.0, dest="target", metavar="PCT")
    p.add_argument("--reason", required=True)
    p.set_defaults(handler=cmd_rollback)

    p = osub.add_parser("audit", help="the last audit entries, newest first")
    p.add_argument("--n", type=int, default=50)
    p.set_defaults(handler=cmd_audit)

    rp = osub.add_parser("ruleset", help="candidate rulesets: register VERSION or FILE, list")
    rsub = rp.add_subparsers(dest="ruleset_command", required=True)
    p = rsub.add_parser("register", help="make a ruleset the canary's candidate: a shipped version by name (v2) "
                                         "or a FILE (the tables of v1 or v2, a new version)")
    p.add_argument("file", metavar="VERSION_OR_FILE")
    p.set_defaults(handler=cmd_ruleset_register)
    rsub.add_parser("list", help="stable and registered rulesets").set_defaults(handler=cmd_ruleset_list)


# ---- helpers ----------------------------------------------------------------------------------------------


def _request_id() -> str:
    return f"cli-{secrets.token_hex(6)}"


def _with_store(body: Callable[[Store], Any]) -> Any:
    store = open_store()
    try:
        return body(store)
    finally:
        store.close()


def read_password() -> str:
    """The new password: the first line of stdin when it is not a terminal, else prompted twice."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password (at least 12 characters): ")
    if getpass.getpass("Repeat the password: ") != first:
        raise InputError([FieldError("password", "the two entries differ")], "password")
    return first


def _print_enrolment(enrolment: dict[str, str], as_json: bool, what: str) -> None:
    if as_json:
        emit(enrolment)
        return
    sys.stdout.write(enrolment["otpauth_uri"] + "\n")
    sys.stdout.flush()
    say(f"{what} {enrolment['username']!r}. Add the otpauth URI above to an authenticator app (for a QR "
        "code: qrencode -t ansiutf8 'URI'), then log in with the password and a 6-digit code. "
        "The URI holds the TOTP secret: do not store or share it.")


# ---- admin ------------------------------------------------------------------------------------------------


def cmd_create_user(args: argparse.Namespace) -> int:
    password = read_password()
    enrolment = _with_store(lambda store: auth.Auth(store).create_user(args.username, password, cli_actor(),
                                                                  _request_id()))
    _print_enrolment(enrolment, args.json, "Created admin user")
    return 0


def cmd_list_users(args: argparse.Namespace) -> int:
    emit({"users": _with_store(lambda store: auth.Auth(store).list_users())})
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    emit(_with_store(lambda store: auth.Auth(store).disable_user(args.username, cli_actor(), _request_id())))
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    emit(_with_store(lambda store: auth.Auth(store).enable_user(args.username, cli_actor(), _request_id())))
    return 0


def cmd_reset_mfa(args: argparse.Namespace) -> int:
    enrolment = _with_store(lambda store: auth.Auth(store).reset_mfa(args.username, cli_actor(), _request_id()))
    _print_enrolment(enrolment, args.json, "New TOTP secret for")
    return 0


# ---- ops --------------------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    emit(_with_store(ops.status_full))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    result = _with_store(ops.health)
    emit(result)
    return 0 if result["status"] == "ok" else 1


def parse_flag_changes(items: list[str]) -> dict[str, bool]:
    """``NAME=on|off`` items as {name: bool}; every malformed item is reported."""
    changes: dict[str, bool] = {}
    errors = []
    for item in items:
        name, sep, value = item.partition("=")
        value = value.strip().lower()
        if not sep or not name.strip() or value not in _ON | _OFF:
            errors.append(FieldError("--set", f"must be NAME=on or NAME=off (got {item!r})"))
            continue
        changes[name.strip()] = value in _ON
    if errors:
        raise InputError(errors, "flag change")
    return changes


def cmd_flags(args: argparse.Namespace) -> int:
    if not args.changes:
        if args.version is not None:
            raise InputError([FieldError("--version", "only used with --set NAME=on|off")], "flags command")
        emit(_with_store(ops.get_flags))
        return 0
    changes = parse_flag_changes(args.changes)
    if args.version is None:
        rule = "required with --set: the version shown by `phase1 ops flags`"
        raise InputError([FieldError("--version", rule)], "flags command")
    emit(_with_store(lambda store: ops.update_flags(store, args.version, changes, cli_actor(),
                                                    _request_id())))
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    emit(_with_store(lambda store: ops.update_canary(store, args.percentage, args.reason, cli_actor(),
                                                     _request_id())))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    emit(_with_store(lambda store: ops.rollback(store, args.target, args.reason, cli_actor(), _request_id())))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    emit({"entries": _with_store(lambda store: ops.list_audit(store, args.n))})
    return 0


def cmd_ruleset_register(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.file in available_versions():  # a shipped version by name (a file of that name: ./v2)
        shipped = ops.shipped_candidate(args.file)
        emit(_with_store(lambda store: ops.register_candidate(store, shipped, cli_actor(), _request_id())))
        return 0
    try:
        raw = path.read_bytes()
    except OSError as error:
        problem = FieldError("FILE", f"cannot read {path}: {error.strerror}")
        raise InputError([problem], "ruleset file") from None
    emit(_with_store(lambda store: ops.register_candidate(store, raw, cli_actor(), _request_id())))
    return 0


def cmd_ruleset_list(args: argparse.Namespace) -> int:
    emit(_with_store(ops.list_rulesets))
    return 0

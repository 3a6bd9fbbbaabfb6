"""Shared set-up of the ``phase1lib.ui`` tests: a temporary store and runs folder, an admin, a candidate."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from phase1lib.ruleset import load_ruleset
from phase1lib.store import SQLiteStore
from phase1lib.ui.context import AppContext

ADMIN = "alice.admin"


def make_context(tmp_path: Path, user: str | None = ADMIN, admin: bool = True) -> AppContext:
    """A dashboard context on a fresh SQLite store in ``tmp_path``; ``user`` is created as an admin."""
    store = SQLiteStore(tmp_path / "phase1.db")
    if user and admin and store.get_user(user) is None:
        store.create_user(user, "argon2-hash-not-used-here", "JBSWY3DPEHPK3PXP")
    return AppContext(store=store, home=tmp_path, user=user)


def candidate_ruleset(version: str = "v2-ui") -> bytes:
    """A valid candidate ruleset: v1's tables, a new version, one spread changed."""
    data = copy.deepcopy(load_ruleset("v1").data)
    data["version"] = version
    data["description"] = "candidate for the dashboard tests"
    data["spread_bps"]["AAA"] = 75
    return json.dumps(data).encode()

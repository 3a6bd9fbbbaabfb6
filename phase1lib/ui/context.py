"""Who is using a dashboard, which store and runs folder it works on, and the analyst's workspace.

Every dashboard is one Voila notebook with its own kernel, so what one dashboard hands to the next
(the validated project, the chosen ranges, the last run) lives in the shared store, keyed by user:
the :class:`Workspace`. The identity comes from the server (``phase1 serve`` starts each kernel with
the logged-in admin in its environment, see :data:`USER_ENVS`, or hands a pre-heated kernel its user, see
:func:`session_user`), so a dashboard never asks for credentials.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config
from ..auth import DEV_ADMIN
from ..errors import ForbiddenError
from ..store import Store, Write, open_store

#: Store namespace of the per-user workspaces.
NS_WORKSPACE = "ui_workspace"
#: Environment variables naming the logged-in admin of the kernel, first found wins: the request header
#: ``X-Phase1-User`` that the server sets from the session (Voila passes it as HTTP_X_PHASE1_USER when
#: configured with ``http_header_envs``), then PHASE1_USER for a kernel started by hand.
USER_ENVS = ("HTTP_X_PHASE1_USER", "PHASE1_USER")
USER_ENV = "PHASE1_USER"
#: A pre-heated kernel's hand-off file (phase1lib.server.preheat): the server writes the session's user there
#: when it hands the kernel to a request.
HANDOFF_ENV = "PHASE1_HANDOFF"
#: Seconds between two looks at the hand-off file while a pre-heated kernel waits for its user.
HANDOFF_POLL_S = 0.01
WORKSPACE_KEYS = ("project", "ranges", "preset", "ruleset", "sample", "last_run_id", "rank", "applied_hint", "compare")


def repo_root() -> Path | None:
    """The source checkout holding ``phase1lib`` (editable install), if there is one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """PHASE1_HOME, else ``.phase1`` of the checkout (not of the kernel's folder, which Voila serves)."""
    env = os.environ if env is None else env
    if env.get("PHASE1_HOME"):
        return Path(env["PHASE1_HOME"]).resolve()
    root = repo_root()
    return (root / ".phase1") if root else config.phase1_home()


def examples_dir() -> Path | None:
    """The sample projects folder (``examples/`` of the checkout), if present."""
    root = repo_root()
    folder = root / "examples" if root else None
    return folder if folder and folder.is_dir() else None


def session_user(env: Mapping[str, str] | None = None, timeout_s: float | None = None) -> str | None:
    """The logged-in user this kernel acts for.

    A pre-heated kernel (``PHASE1_HANDOFF`` set, started before anyone logged in) waits here until the server
    hands it to a request and writes that session's user to its hand-off file; nothing the dashboard shows is
    built before. The name then becomes ``HTTP_X_PHASE1_USER`` of the kernel, as for a kernel started for a
    request, and the hand-off is forgotten. Otherwise the first of :data:`USER_ENVS` that is set.
    """
    live = env is None
    env = os.environ if env is None else env
    handoff = (env.get(HANDOFF_ENV) or "").strip()
    if handoff:
        path = Path(handoff)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if not path.exists():  # tell the server this kernel is ready (it heats the next one)
            Path(handoff + ".waiting").touch()
        while not path.exists():
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(HANDOFF_POLL_S)
        user = str(json.loads(path.read_text(encoding="utf-8")).get("user") or "").strip() or None
        path.unlink(missing_ok=True)
        if live:
            os.environ.pop(HANDOFF_ENV, None)
            os.environ.pop(USER_ENV, None)  # never the server's fallback: the session's user only
            if user:
                os.environ[USER_ENVS[0]] = user
        return user
    return next((value for name in USER_ENVS if (value := (env.get(name) or "").strip())), None)


class Workspace:
    """The analyst's hand-over between dashboards: project, ranges, preset, sample, last run, rank."""

    def __init__(self, store: Store, user: str | None):
        self.store = store
        self.key = user or "anonymous"

    def get(self) -> dict[str, Any]:
        """The current workspace (empty when nothing was saved yet)."""
        return dict(self.store.read(NS_WORKSPACE, self.key) or {})

    def update(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` (None removes a key) in one store transaction; returns the new workspace."""
        unknown = sorted(set(changes) - set(WORKSPACE_KEYS))
        if unknown:
            raise KeyError(f"unknown workspace keys: {', '.join(unknown)}")

        def fn(doc: dict[str, Any] | None) -> Write:
            new = dict(doc or {})
            for key, value in changes.items():
                if value is None:
                    new.pop(key, None)
                else:
                    new[key] = value
            return Write(doc=new, result=new)

        return dict(self.store.transact(NS_WORKSPACE, self.key, fn))


@dataclass
class AppContext:
    """Store, runs folder and identity a dashboard acts with (tests build one on a temporary store)."""

    store: Store
    home: Path
    user: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, warm: type | None = None) -> AppContext:
        """The served context: the configured store, PHASE1_HOME and the kernel's user (:data:`USER_ENVS`).

        In a pre-heated kernel still waiting for its user, the dashboard class ``warm`` is first built once on a
        scratch store with no user and thrown away (first-use costs paid before anyone waits; nothing of it is
        shown or kept), then the kernel waits for its user.
        """
        if warm is not None and (os.environ if env is None else env).get(HANDOFF_ENV):
            warm_up(warm)
        user = session_user(env)  # a pre-heated kernel waits here for the request's user
        env = dict(os.environ if env is None else env)
        home = default_home(env)
        env["PHASE1_HOME"] = str(home)
        return cls(store=open_store(env), home=home, user=user)

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.store, self.user)

    def admin_problem(self) -> str | None:
        """Why this context may not take admin actions, or None when it may.

        An admin is a known, enabled user of the store; ``dev-admin`` only counts with APP_ENV=dev.
        """
        if not self.user:
            return ("no logged-in admin: open this dashboard through `phase1 serve` and log in "
                    f"(or start Voila with {USER_ENV}=<admin user>)")
        if self.user == DEV_ADMIN:
            return None if _app_env() == "dev" else "the dev admin only exists with APP_ENV=dev"
        doc = self.store.get_user(self.user)
        if doc is None:
            return f"{self.user!r} is not an admin user of this store"
        if doc.get("disabled"):
            return f"admin {self.user!r} is disabled"
        return None

    def require_admin(self) -> str:
        """The acting admin's name, or ForbiddenError saying why not."""
        problem = self.admin_problem()
        if problem:
            raise ForbiddenError(problem)
        assert self.user is not None
        return self.user


def _app_env() -> str:
    try:
        return config.app_env()
    except ValueError:
        return "prod"


def warm_up(dashboard: type) -> None:
    """Build ``dashboard`` once on an empty scratch store, without a user, and close every widget it made."""
    import tempfile

    from ipywidgets.widgets.widget import _instances

    from ..store import SQLiteStore

    before = set(_instances)
    with tempfile.TemporaryDirectory(prefix="phase1-warm-") as folder:
        store = SQLiteStore(Path(folder) / "warm.db")
        try:
            dashboard(AppContext(store=store, home=Path(folder), user=None))
        except Exception:
            pass
        finally:
            close = getattr(store, "close", None)
            if close:
                close()
    for key in set(_instances) - before:
        widget = _instances.get(key)
        if widget is not None:
            widget.close()


def request_id() -> str:
    """A request id for audit entries of dashboard actions."""
    return f"ui-{uuid.uuid4().hex[:12]}"

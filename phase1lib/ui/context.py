"""Who is using a dashboard, which store and runs folder it works on, and the analyst's workspace.

Every dashboard is one Voila notebook with its own kernel, so what one dashboard hands to the next
(the validated project, the chosen ranges, the last run) lives in the shared store, keyed by user:
the :class:`Workspace`. The identity comes from the server (``phase1 serve`` starts each kernel with
the logged-in admin in its environment, see :data:`USER_ENVS`, or hands a pre-heated kernel its user, see
:func:`session_user`), so a dashboard never asks for credentials.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import handoff, settings
from ..auth import DEV_ADMIN
from ..errors import ConfigError, ForbiddenError
from ..store import Store, open_store
from ..workspace import Workspace

#: The logged-in admin of a kernel comes from the environment, first found wins (phase1lib.settings.USER_ENVS):
#: the request header ``X-Phase1-User`` that the server sets from the session (Voila passes it as
#: HTTP_X_PHASE1_USER when configured with ``http_header_envs``), then PHASE1_USER for a kernel started by hand.
USER_ENVS = settings.USER_ENVS
USER_ENV = "PHASE1_USER"
HANDOFF_ENV = settings.HANDOFF_ENV


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """PHASE1_HOME, else its one documented default (phase1lib.settings), as the CLI and the server use."""
    return settings.get(env).home


def session_user(env: Mapping[str, str] | None = None, timeout_s: float | None = None) -> str | None:
    """The logged-in user this kernel acts for.

    A pre-heated kernel (``PHASE1_HANDOFF`` set, started before anyone logged in) waits here until the server
    hands it to a request and writes that session's user to its hand-off file (:mod:`phase1lib.handoff`);
    nothing the dashboard shows is built before. The name then becomes ``HTTP_X_PHASE1_USER`` of the kernel, as
    for a kernel started for a request, and the hand-off is forgotten. Otherwise the first of :data:`USER_ENVS`
    that is set.
    """
    config = settings.get(env)
    if config.handoff is not None:
        try:  # the protocol, both sides: phase1lib.handoff
            user = handoff.wait_for_handoff(config.handoff, timeout_s)
        except TimeoutError:
            return None
        if env is None:  # this process: the session's user from now on, the hand-off forgotten
            settings.adopt_user(user)
        return user
    return settings.get(env).kernel_user


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
        shown or kept), then the kernel waits for its user. A kernel whose user is already there (heated for a
        waiting request) skips the warm-up: its request would pay for it.
        """
        path = settings.get(env).handoff
        if warm is not None and path is not None and not handoff.handed_over(path):
            warm_up(warm)
        user = session_user(env)  # a pre-heated kernel waits here for the request's user
        return cls(store=open_store(env), home=settings.get(env).home, user=user)

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
        return settings.get().app_env
    except ConfigError:
        return "prod"


def request_id() -> str:
    """A request id for audit entries of dashboard actions."""
    return f"ui-{uuid.uuid4().hex[:12]}"


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
        except Exception:  # a warm-up is only a cache fill: the real build after the hand-off reports errors
            pass
        finally:
            close = getattr(store, "close", None)
            if close:
                close()
    for key in set(_instances) - before:
        widget = _instances.get(key)
        if widget is not None:
            widget.close()

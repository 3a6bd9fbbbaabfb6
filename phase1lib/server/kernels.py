"""Kernel limits of ``phase1 serve``, in one place: idle culling and a cap on the kernels each user runs.

Every dashboard GET (Voila) and every notebook opened in JupyterLab starts a kernel (~150 MB). Two rules
keep that bounded:

- **Cull**: a kernel with no open connection (its tab closed without the shutdown beacon, or a dashboard
  fetched by a script) is shut down after ``idle_minutes`` idle; a kernel with an open tab is kept.
- **Cap**: a user runs at most ``max_per_user`` kernels; one more is refused with HTTP 429 and a message
  saying how to free one.
- **Pool**: ``pool_size`` pre-heated kernels per dashboard (:mod:`phase1lib.server.preheat`) wait for their
  user; they belong to nobody (no cap counts them, nobody may connect to them) until one is handed out.

:func:`configure` writes them into the Jupyter config; :func:`capped` turns any Jupyter kernel manager
class into one that enforces the cap, and :func:`~phase1lib.server.preheat.pooled` adds the pool (the
server's :class:`Phase1KernelManager` is both). Who starts a kernel is the Phase-1 session's user, set by the
login gate in :data:`KERNEL_OWNER` for the request being served; :class:`Phase1Authorizer` (Jupyter's kernel
and session routes) and the login gate (Voila's shutdown route) let only that user reach the kernel afterwards
(:func:`kernel_refusal`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .. import settings

#: The user of the request being served (set by the login gate), who owns any kernel it starts.
KERNEL_OWNER: contextvars.ContextVar[str | None] = contextvars.ContextVar("phase1_kernel_owner", default=None)


@dataclass(frozen=True)
class KernelLimits:
    """How many kernels a user may run, and when an unconnected idle kernel is shut down."""

    max_per_user: int = settings.DEFAULT_MAX_KERNELS_PER_USER
    idle_minutes: int = 10
    cull_interval_s: int = 60
    pool_size: int = settings.DEFAULT_KERNEL_POOL

    @classmethod
    def from_settings(cls, config: settings.Settings) -> KernelLimits:
        """PHASE1_MAX_KERNELS_PER_USER (default 4), PHASE1_KERNEL_IDLE_MINUTES (default 10) and
        PHASE1_KERNEL_POOL (pre-heated kernels per dashboard, default 1, 0 = off)."""
        return cls(max_per_user=config.max_kernels_per_user, idle_minutes=config.kernel_idle_minutes,
                   pool_size=config.kernel_pool)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KernelLimits:
        return cls.from_settings(settings.get(env))

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def refusal(self, running: int) -> str:
        return (f"you already run {running} kernels, the limit per user (PHASE1_MAX_KERNELS_PER_USER is "
                f"{self.max_per_user}): close a dashboard tab or shut a notebook's kernel down in JupyterLab "
                f"(Kernel > Shut Down Kernel), then reload; a kernel left without a tab ends after "
                f"{self.idle_minutes} idle minutes")


def configure(c: Any, limits: KernelLimits) -> None:
    """Culling and the per-user cap in the traitlets Config of the Jupyter Server."""
    c.ServerApp.kernel_manager_class = f"{__name__}.Phase1KernelManager"
    c.MappingKernelManager.cull_idle_timeout = limits.idle_minutes * 60
    c.MappingKernelManager.cull_interval = limits.cull_interval_s
    c.MappingKernelManager.cull_connected = False  # a kernel with an open tab is in use, even when idle
    c.MappingKernelManager.cull_busy = False
    c.Phase1KernelManager.max_kernels_per_user = limits.max_per_user
    c.Phase1KernelManager.pool_size = limits.pool_size
    c.ServerApp.authorizer_class = f"{__name__}.Phase1Authorizer"


def _cap_error() -> type:
    from jupyter_client.multikernelmanager import DuplicateKernelError
    from tornado import web

    class KernelCapError(web.HTTPError, DuplicateKernelError):
        """HTTP 429 with the message; also a DuplicateKernelError, which Jupyter's sessions API answers as 409
        with the same message (it would turn any other error into a 500)."""

    return KernelCapError


def capped(base: type) -> type:
    """A subclass of the kernel manager class ``base`` that refuses a user's kernel past the cap (HTTP 429)."""
    from traitlets import Integer

    cap_error = _cap_error()

    class Capped(base):  # type: ignore[misc, valid-type]
        max_kernels_per_user = Integer(KernelLimits.max_per_user, config=True,
                                       help="Kernels one Phase-1 user may run at once.")

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._phase1_owners: dict[str, str] = {}

        def kernels_of(self, user: str) -> list[str]:
            """The running kernels started by ``user`` (forgetting those that have ended)."""
            running = set(self.list_kernel_ids())
            self._phase1_owners = {k: u for k, u in self._phase1_owners.items() if k in running}
            return [k for k, u in self._phase1_owners.items() if u == user]

        def owner_of(self, kernel_id: str) -> str | None:
            """Who a kernel belongs to (None: started without a session user, or still in a pool)."""
            return self._phase1_owners.get(kernel_id)

        def refuse_if_capped(self, user: str) -> None:
            """HTTP 429 with the way out when ``user`` already runs the maximum of kernels."""
            running = len(self.kernels_of(user))
            if running >= self.max_kernels_per_user:
                limits = KernelLimits(self.max_kernels_per_user, max(1, int(self.cull_idle_timeout) // 60))
                self.log.warning("kernel refused for %s: %d running (limit %d)", user, running,
                                 self.max_kernels_per_user)
                raise cap_error(429, limits.refusal(running), reason="Too Many Kernels")

        def assign_owner(self, kernel_id: str, user: str) -> None:
            self._phase1_owners[kernel_id] = user

        async def start_kernel(self, *args: Any, kernel_id: str | None = None, **kwargs: Any) -> str:
            user = KERNEL_OWNER.get()
            new = kernel_id is None or kernel_id not in self
            if user is not None and new:
                self.refuse_if_capped(user)
            started = await super().start_kernel(*args, kernel_id=kernel_id, **kwargs)
            if user is not None and new:
                self.assign_owner(started, user)
            return started

    Capped.__name__ = Capped.__qualname__ = "Phase1KernelManager"  # its config section: c.Phase1KernelManager
    return Capped


def _default_manager() -> type:
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    from .preheat import pooled

    return pooled(capped(AsyncMappingKernelManager))


def kernel_refusal(manager: Any, kernel_id: str | None, user: str | None) -> str | None:
    """Why ``user`` may not act on kernel ``kernel_id`` (connect, inspect, interrupt, restart, shut down), or
    None when they may: the one rule of :class:`Phase1Authorizer` and of the login gate for Voila's shutdown
    route. A kernel still in the pre-heated pool is nobody's; a kernel with an owner is the owner's only."""
    if not kernel_id or manager is None or not hasattr(manager, "owner_of"):
        return None
    if hasattr(manager, "pool_kernel_ids") and kernel_id in manager.pool_kernel_ids():
        return "this kernel waits in the pre-heated pool: it is nobody's to reach"
    owner = manager.owner_of(kernel_id)
    if owner is not None and owner != user:
        return "this kernel belongs to another user: only its owner may reach it"
    return None


async def _kernels_named(handler: Any, resource: str) -> list[str]:
    """The kernels a Jupyter request acts on: the kernel routes' id; for the sessions routes, the kernel of the
    session named in the path and any kernel id in the body (a session attached to a kernel can delete it)."""
    path_kwargs = getattr(handler, "path_kwargs", None) or {}
    if resource == "kernels":
        kernel_id = getattr(handler, "kernel_id", None) or path_kwargs.get("kernel_id")
        return [kernel_id] if kernel_id else []
    if resource != "sessions":
        return []
    found: list[str] = []
    session_id = path_kwargs.get("session_id")
    manager = handler.settings.get("session_manager")
    if session_id and manager is not None:
        try:
            model = await manager.get_session(session_id=session_id)
        except Exception:  # no such session: the handler answers it (404)
            model = None
        kernel = (model or {}).get("kernel") or {}
        if kernel.get("id"):
            found.append(kernel["id"])
    if handler.request.method in ("POST", "PATCH"):
        try:
            body = handler.get_json_body() or {}
        except Exception:  # not JSON: the handler answers it (400)
            body = {}
        kernel = body.get("kernel") if isinstance(body, dict) else None
        if isinstance(kernel, dict) and isinstance(kernel.get("id"), str):
            found.append(kernel["id"])
    return found


def _authorizer() -> type:
    from jupyter_server.auth.authorizer import Authorizer

    class Phase1Authorizer(Authorizer):
        """Jupyter's authorizer with one rule more (:func:`kernel_refusal`): a request naming a kernel (its
        websocket, its REST routes, a session attached to it) reaches it only as the kernel's owner; a kernel
        still in the pre-heated pool is nobody's to reach. Kernels started without a session user (none under
        ``phase1 serve``) stay open to every admin, as Jupyter has it. Listing ``/api/kernels`` and
        ``/api/sessions`` stays Jupyter's (every id to every admin: an id grants nothing by itself)."""

        async def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
            manager = handler.settings.get("kernel_manager")
            name = getattr(user, "username", None)
            for kernel_id in await _kernels_named(handler, resource):
                why = kernel_refusal(manager, kernel_id, name)
                if why is not None:
                    handler.log.warning("refused %s %s of kernel %s: %s", name, action, kernel_id, why)
                    return False
            return True

    return Phase1Authorizer


def __getattr__(name: str) -> Any:
    """``Phase1KernelManager`` and ``Phase1Authorizer`` are built on first use (importing jupyter_server takes
    a while)."""
    builders = {"Phase1KernelManager": _default_manager, "Phase1Authorizer": _authorizer}
    if name in builders:
        cls = builders[name]()
        globals()[name] = cls
        return cls
    raise AttributeError(name)

"""Kernel limits of ``phase1 serve``, in one place: idle culling and a cap on the kernels each user runs.

Every dashboard GET (Voila) and every notebook opened in JupyterLab starts a kernel (~150 MB). Two rules
keep that bounded:

- **Cull**: a kernel with no open connection (its tab closed without the shutdown beacon, or a dashboard
  fetched by a script) is shut down after ``idle_minutes`` idle; a kernel with an open tab is kept.
- **Cap**: a user runs at most ``max_per_user`` kernels; one more is refused with HTTP 429 and a message
  saying how to free one.

:func:`configure` writes both into the Jupyter config; :func:`capped` turns any Jupyter kernel manager
class into one that enforces the cap (the server's default :class:`Phase1KernelManager`; a future pool of
pre-heated Voila kernels wraps its own manager class the same way). Who starts a kernel is the Phase-1
session's user, set by the login gate in :data:`KERNEL_OWNER` for the request being served.
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

    max_per_user: int = 4
    idle_minutes: int = 10
    cull_interval_s: int = 60

    @classmethod
    def from_settings(cls, config: settings.Settings) -> KernelLimits:
        """PHASE1_MAX_KERNELS_PER_USER (default 4) and PHASE1_KERNEL_IDLE_MINUTES (default 10)."""
        return cls(max_per_user=config.max_kernels_per_user, idle_minutes=config.kernel_idle_minutes)

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

        async def start_kernel(self, *args: Any, kernel_id: str | None = None, **kwargs: Any) -> str:
            user = KERNEL_OWNER.get()
            new = kernel_id is None or kernel_id not in self
            if user is not None and new:
                running = len(self.kernels_of(user))
                if running >= self.max_kernels_per_user:
                    limits = KernelLimits(self.max_kernels_per_user, max(1, int(self.cull_idle_timeout) // 60))
                    self.log.warning("kernel refused for %s: %d running (limit %d)", user, running,
                                     self.max_kernels_per_user)
                    raise cap_error(429, limits.refusal(running), reason="Too Many Kernels")
            started = await super().start_kernel(*args, kernel_id=kernel_id, **kwargs)
            if user is not None and new:
                self._phase1_owners[started] = user
            return started

    Capped.__name__ = Capped.__qualname__ = "Phase1KernelManager"  # its config section: c.Phase1KernelManager
    return Capped


def _default_manager() -> type:
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    return capped(AsyncMappingKernelManager)


def __getattr__(name: str) -> Any:
    """``Phase1KernelManager`` is built on first use (importing jupyter_server takes a while)."""
    if name == "Phase1KernelManager":
        cls = _default_manager()
        globals()[name] = cls
        return cls
    raise AttributeError(name)

"""What every request handler of the Phase-1 server shares: store, auth, ops token, settings, run pool, jobs.

One :class:`Phase1Context` per server process, kept in the tornado settings under ``"phase1"``. It also
resolves the Phase-1 session of any request (Jupyter's pages and APIs through the identity provider,
the Phase-1 routes directly), once per request, and (re)sets the session cookie when auth hands out a
new session id (after MFA, or a dev-bridge session in dev).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tornado import web

from .. import auth as auth_mod
from .. import settings
from ..auth import Auth, Session
from ..errors import AuthError, ForbiddenError, Phase1Error
from ..project import Project, load_project
from ..samples import DEFAULT_PROJECT, sample_path
from ..store import Store, open_store
from .kernels import KernelLimits

log = logging.getLogger("phase1lib.server")

COOKIE_NAME = "phase1_session"
#: The sample project a run uses when neither the request nor the session has one (the guide's flow): its
#: economics give viable structures on the guide's own ranges (docs/api.md).
SAMPLE_PROJECT = sample_path(DEFAULT_PROJECT)
_NO_SESSION = object()


@dataclass
class ServerSettings:
    """The server's own options (the Jupyter ones live in the ServerApp config)."""

    app_env: str
    root_dir: Path
    dashboards_dir: Path
    default_project: Path | None = SAMPLE_PROJECT
    #: True / False forces the Secure cookie attribute; None sets it when the request came over https.
    secure_cookies: bool | None = None
    run_workers: int = 4
    max_pending_runs: int = 16
    max_body_bytes: int = 1_048_576
    started_at: float = field(default_factory=time.time)
    #: Jupyter terminals (a shell as the server's user): on in dev, off in prod unless PHASE1_TERMINALS=1.
    terminals: bool = True
    kernel_limits: KernelLimits = field(default_factory=KernelLimits)
    #: Host names accepted besides loopback and "localhost" (Jupyter's local_hostnames), e.g. the public name a
    #: reverse proxy forwards in the Host header: PHASE1_ALLOWED_HOSTS, comma-separated.
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, root_dir: Path, dashboards_dir: Path | None = None, default_project: Path | None = None,
                 env: Mapping[str, str] | None = None) -> ServerSettings:
        """The server's options from the command line and the process settings (phase1lib.settings)."""
        config = settings.get(env)
        root = Path(root_dir).resolve()
        dashboards = Path(dashboards_dir or config.dashboards or root / "dashboards").resolve()
        default_project = default_project or config.default_project
        return cls(app_env=config.app_env, root_dir=root, dashboards_dir=dashboards,
                   default_project=Path(default_project).resolve() if default_project else SAMPLE_PROJECT,
                   secure_cookies=config.secure_cookies, run_workers=config.run_workers,
                   max_pending_runs=config.max_pending_runs, terminals=config.terminals,
                   kernel_limits=KernelLimits.from_settings(config), allowed_hosts=config.allowed_hosts)

    def check(self) -> list[str]:
        """Problems that stop the server from starting."""
        problems = []
        if not self.root_dir.is_dir():
            problems.append(f"root directory {self.root_dir} does not exist")
        try:
            self.dashboards_dir.relative_to(self.root_dir)
        except ValueError:
            problems.append(f"the dashboards directory {self.dashboards_dir} must be inside the root directory "
                            f"{self.root_dir} (Voila serves notebooks below the root)")
        if self.default_project is not None and self.default_project != SAMPLE_PROJECT \
                and not self.default_project.is_file():
            problems.append(f"default project {self.default_project} does not exist")
        elif self.default_project is not None and self.default_project.exists():
            try:
                load_project(self.default_project)
            except Phase1Error as error:
                problems.append(f"default project {self.default_project}: {error}")
        return problems

    @property
    def dashboards_url_path(self) -> str:
        """The dashboards directory relative to the root, as a URL path ("" when it is the root)."""
        rel = self.dashboards_dir.relative_to(self.root_dir).as_posix()
        return "" if rel == "." else rel


class Phase1Context:
    """Store, auth, ops token and the run pool of one server process."""

    def __init__(self, settings: ServerSettings, store: Store | None = None, auth: Auth | None = None,
                 ops_token: str | None = None, env: Mapping[str, str] | None = None):
        self.settings = settings
        self.store = store or open_store(env)
        self.auth = auth or Auth(self.store, app_env=settings.app_env, env=env)
        self.ops_token_generated = ops_token is None and auth_mod.ops_token_generated(env)
        self.ops_token = ops_token or auth_mod.ops_token(env)
        self.executor = ThreadPoolExecutor(max_workers=settings.run_workers, thread_name_prefix="phase1-run")
        self.auth_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="phase1-auth")
        #: Request work that is not a run (parsing, validation, counting, store actions, large answers).
        self.work_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="phase1-work")
        #: The health check alone, so that it answers even while the work pool is busy.
        self.health_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phase1-health")
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._default_project: Project | None = None
        self.shutting_down = threading.Event()
        from .jobs import JobRunner

        self.jobs = JobRunner(self)

    # ---- runs in flight (the rate limit) -----------------------------------------------------------

    def try_reserve_run(self) -> bool:
        """Count one more run in flight unless the limit is reached (then the caller answers 429)."""
        with self._pending_lock:
            if self._pending >= self.settings.max_pending_runs:
                return False
            self._pending += 1
            return True

    def release_run(self) -> None:
        with self._pending_lock:
            self._pending = max(0, self._pending - 1)

    @property
    def runs_in_flight(self) -> int:
        return self._pending

    @property
    def kernel_limits(self) -> KernelLimits:
        return self.settings.kernel_limits

    # ---- projects ----------------------------------------------------------------------------------

    def default_project(self) -> Project | None:
        path = self.settings.default_project
        if path is None or not path.exists():
            return None
        if self._default_project is None:
            self._default_project = load_project(path)
        return self._default_project

    # ---- sessions ----------------------------------------------------------------------------------

    def secure_cookie(self, handler: web.RequestHandler) -> bool:
        forced = self.settings.secure_cookies
        return forced if forced is not None else handler.request.protocol == "https"

    def set_session_cookie(self, handler: web.RequestHandler, session_id: str) -> None:
        """The session cookie: signed, HttpOnly, SameSite=Strict, Secure over https (or when configured)."""
        handler.set_signed_cookie(COOKIE_NAME, session_id, expires_days=None, httponly=True, samesite="Strict",
                                  secure=self.secure_cookie(handler), path="/")

    def clear_session_cookie(self, handler: web.RequestHandler) -> None:
        handler.clear_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict",
                             secure=self.secure_cookie(handler))

    @staticmethod
    def session_id(handler: web.RequestHandler) -> str | None:
        """The session id of the request's cookie (signature checked), or None."""
        raw = handler.get_signed_cookie(COOKIE_NAME, max_age_days=31)
        if not raw:
            return None
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            return None

    def admin_session(self, handler: web.RequestHandler) -> Session:
        """The elevated (or, dev on loopback, dev-bridge) session of a request, resolved once per request.

        AuthError (401) without a session, ForbiddenError (403) for a password-only one. A new session id
        (the dev bridge) is set as the cookie.
        """
        cached = getattr(handler, "_phase1_admin", _NO_SESSION)
        if cached is _NO_SESSION:
            presented = self.session_id(handler)
            try:
                cached = self.auth.require_admin(presented, handler.request.remote_ip)
            except (AuthError, ForbiddenError) as error:
                cached = error
            else:
                if cached.session_id != presented and not getattr(handler, "_headers_written", False):
                    self.set_session_cookie(handler, cached.session_id)
            handler._phase1_admin = cached  # type: ignore[attr-defined]
        if isinstance(cached, Phase1Error):
            raise cached
        return cached

    def admin_or_none(self, handler: web.RequestHandler) -> Session | None:
        try:
            return self.admin_session(handler)
        except (AuthError, ForbiddenError):
            return None

    def close(self) -> None:
        self.shutting_down.set()
        self.jobs.shutdown("cancelled: the server was shut down")
        self.auth_executor.shutdown(wait=True, cancel_futures=True)
        self.work_executor.shutdown(wait=True, cancel_futures=True)
        self.health_executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()

"""The process configuration, read from the environment in one place and handed to whoever needs it.

Every variable the workbench reads is parsed here, with its default and its rule (docs/operations.md lists
them). :func:`get` returns the :class:`Settings` of the current environment, parsed once per distinct
environment (tests change variables; a running process never re-reads an unchanged one). Secrets are kept
out of the representation, so a logged Settings never shows them.

PHASE1_HOME (runs, the embedded SQLite store) defaults to ``~/.phase1``: the same folder whichever directory
a command runs from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, FieldError, InputError

APP_ENVS = ("dev", "prod")
KERNEL_MODES = ("auto", "numpy", "c")
DEFAULT_MAX_PERMUTATIONS = 250_000
DEFAULT_MAX_PORTFOLIO_PERMUTATIONS = 5_000_000
#: The server's engine processes: one per core (at most 8), so runs scale with the machine.
DEFAULT_RUN_PROCESSES = min(os.cpu_count() or 1, 8)
#: Kernels one admin may run at once (PHASE1_MAX_KERNELS_PER_USER; phase1lib.server.kernels enforces it).
DEFAULT_MAX_KERNELS_PER_USER = 4
#: Pre-heated Voila kernels kept ready per dashboard (PHASE1_KERNEL_POOL; 0: none; phase1lib.server.preheat).
DEFAULT_KERNEL_POOL = 1
#: Environment variables naming the logged-in admin of a dashboard kernel (set by the server for Voila).
USER_ENVS = ("HTTP_X_PHASE1_USER", "PHASE1_USER")
#: A pre-heated kernel's private hand-off file (phase1lib.server.preheat writes the session's user there when it
#: hands the kernel to a request; phase1lib.ui.context.session_user waits for it).
HANDOFF_ENV = "PHASE1_HANDOFF"
_PREFIXES = ("PHASE1_", "HTTP_X_PHASE1_")
_OTHERS = ("APP_ENV", "XDG_CACHE_HOME", "CC", "JUPYTER_PATH", "HOME")


def default_home() -> Path:
    """The documented PHASE1_HOME default: ``~/.phase1`` (not the working directory)."""
    return Path.home() / ".phase1"


@dataclass(frozen=True)
class Settings:
    """Everything the workbench reads from its environment, parsed and checked."""

    home: Path
    app_env: str = "dev"
    max_permutations: int = DEFAULT_MAX_PERMUTATIONS
    max_portfolio_permutations: int = DEFAULT_MAX_PORTFOLIO_PERMUTATIONS
    redis_url: str | None = field(default=None, repr=False)
    redis_prefix: str = "phase1:"
    session_idle_s: float = 30 * 60.0
    session_absolute_s: float = 12 * 3600.0
    admin_token: str | None = field(default=None, repr=False)
    cookie_secret: str | None = field(default=None, repr=False)
    dashboards: Path | None = None
    default_project: Path | None = None
    secure_cookies: bool | None = None
    run_workers: int = 4
    #: Engine processes of the server (0: runs in the server process's run threads).
    run_processes: int = DEFAULT_RUN_PROCESSES
    max_pending_runs: int = 16
    terminals: bool = True
    max_kernels_per_user: int = DEFAULT_MAX_KERNELS_PER_USER
    kernel_idle_minutes: int = 10
    #: Pre-heated Voila kernels kept ready per dashboard (0: none).
    kernel_pool: int = DEFAULT_KERNEL_POOL
    allowed_hosts: tuple[str, ...] = ()
    kernels: str = "auto"
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "phase1")
    c_compiler: str | None = None
    jupyter_path: tuple[str, ...] = ()
    kernel_user: str | None = None
    #: A pre-heated kernel's hand-off file (PHASE1_HANDOFF; None in every other process).
    handoff: Path | None = None
    dask_scheduler: str | None = None
    dask_connect_timeout_s: float = 10.0
    dask_task_timeout_s: float = 300.0

    @property
    def prod(self) -> bool:
        return self.app_env == "prod"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse ``env`` (default: the process environment); ConfigError listing every problem at once."""
        env = os.environ if env is None else env
        problems: list[str] = []
        p = _Parser(env, problems)
        app_env = (env.get("APP_ENV") or "dev").strip().lower()
        if app_env not in APP_ENVS:
            problems.append(f"APP_ENV must be dev or prod (got {app_env!r})")
        terminals = p.flag("PHASE1_TERMINALS")
        settings = cls(
            home=Path(env["PHASE1_HOME"]).expanduser().resolve() if env.get("PHASE1_HOME") else default_home(),
            app_env=app_env,
            max_permutations=p.integer("PHASE1_MAX_PERMUTATIONS", DEFAULT_MAX_PERMUTATIONS, 1, 10**12),
            max_portfolio_permutations=p.integer("PHASE1_MAX_PORTFOLIO_PERMUTATIONS",
                                                 DEFAULT_MAX_PORTFOLIO_PERMUTATIONS, 1, 10**13),
            redis_url=(env.get("PHASE1_REDIS_URL") or "").strip() or None,
            redis_prefix=env.get("PHASE1_REDIS_PREFIX") or "phase1:",
            session_idle_s=p.positive("PHASE1_SESSION_IDLE_MINUTES", 30.0) * 60,
            session_absolute_s=p.positive("PHASE1_SESSION_ABSOLUTE_HOURS", 12.0) * 3600,
            admin_token=env.get("PHASE1_ADMIN_TOKEN") or None,
            cookie_secret=env.get("PHASE1_COOKIE_SECRET") or None,
            dashboards=Path(env["PHASE1_DASHBOARDS"]) if env.get("PHASE1_DASHBOARDS") else None,
            default_project=Path(env["PHASE1_DEFAULT_PROJECT"]) if env.get("PHASE1_DEFAULT_PROJECT") else None,
            secure_cookies=p.flag("PHASE1_SECURE_COOKIES"),
            run_workers=p.integer("PHASE1_RUN_WORKERS", 4, 1, 64),
            run_processes=p.integer("PHASE1_RUN_PROCESSES", DEFAULT_RUN_PROCESSES, 0, 64),
            max_pending_runs=p.integer("PHASE1_MAX_PENDING_RUNS", 16, 1, 10_000),
            terminals=terminals if terminals is not None else app_env != "prod",
            max_kernels_per_user=p.integer("PHASE1_MAX_KERNELS_PER_USER", DEFAULT_MAX_KERNELS_PER_USER, 1, 1000),
            kernel_idle_minutes=p.integer("PHASE1_KERNEL_IDLE_MINUTES", 10, 1, 7 * 24 * 60),
            kernel_pool=p.integer("PHASE1_KERNEL_POOL", DEFAULT_KERNEL_POOL, 0, 4),
            allowed_hosts=p.hosts("PHASE1_ALLOWED_HOSTS"),
            kernels=p.choice("PHASE1_KERNELS", KERNEL_MODES, "auto"),
            cache_dir=(Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache")
            / "phase1",
            c_compiler=env.get("CC") or None,
            jupyter_path=tuple(x for x in (env.get("JUPYTER_PATH") or "").split(os.pathsep) if x),
            kernel_user=next((v for n in USER_ENVS if (v := (env.get(n) or "").strip())), None),
            handoff=Path(env[HANDOFF_ENV].strip()) if (env.get(HANDOFF_ENV) or "").strip() else None,
            dask_scheduler=(env.get("PHASE1_DASK_SCHEDULER") or "").strip() or None,
            dask_connect_timeout_s=p.positive("PHASE1_DASK_CONNECT_TIMEOUT", 10.0),
            dask_task_timeout_s=p.positive("PHASE1_DASK_TASK_TIMEOUT", 300.0),
        )
        if problems:
            raise ConfigError("; ".join(problems))
        return settings


class _Parser:
    """Readers of one kind of variable each; a bad value is a problem naming the variable and the rule."""

    def __init__(self, env: Mapping[str, str], problems: list[str]):
        self.env, self.problems = env, problems

    def raw(self, name: str) -> str:
        return (self.env.get(name) or "").strip()

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.raw(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = lo - 1
        if not lo <= value <= hi:
            self.problems.append(f"{name} must be a whole number from {lo:,} to {hi:,} (got {raw!r})")
            return default
        return value

    def positive(self, name: str, default: float) -> float:
        raw = self.raw(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 < value < float("inf"):
            self.problems.append(f"{name} must be a positive number (got {raw!r})")
            return default
        return value

    def flag(self, name: str) -> bool | None:
        raw = self.raw(name).lower()
        if not raw:
            return None
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be 1/true/yes/on or 0/false/no/off (got {raw!r})")
        return None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        raw = self.raw(name).lower()
        if not raw:
            return default
        if raw not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)} (got {raw!r})")
            return default
        return raw

    def hosts(self, name: str) -> tuple[str, ...]:
        """Host names (no port, no scheme), comma-separated."""
        hosts = tuple(h.strip().lower() for h in self.raw(name).split(",") if h.strip())
        bad = [h for h in hosts if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", h)]
        if bad:
            self.problems.append(f"{name} must be host names separated by commas (got {', '.join(bad)!r})")
            return ()
        return hosts


_CACHE: dict[tuple[tuple[str, str], ...], Settings] = {}


def get(env: Mapping[str, str] | None = None) -> Settings:
    """The Settings of ``env`` (default: the process environment), parsed once per distinct environment."""
    source = os.environ if env is None else env
    key = tuple(sorted((k, v) for k, v in source.items() if k.startswith(_PREFIXES) or k in _OTHERS))
    settings = _CACHE.get(key)
    if settings is None:
        settings = Settings.from_env(source)
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = settings
    return settings


def max_permutations() -> int:
    """The permutation guardrail (PHASE1_MAX_PERMUTATIONS, default 250,000); a bad value names the variable."""
    try:
        return get().max_permutations
    except ConfigError as error:
        if "PHASE1_MAX_PERMUTATIONS" not in str(error):
            raise
        raw = os.environ.get("PHASE1_MAX_PERMUTATIONS", "")
        raise InputError([FieldError("PHASE1_MAX_PERMUTATIONS", f"must be a positive integer (got {raw!r})")],
                         "environment") from None


#: The thread pools a process can cap before it imports polars and numpy (polars, OpenBLAS, OpenMP, MKL).
THREAD_ENVS = ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Cap this process's polars and BLAS threads (an engine process's share of the cores); effective only
    before those libraries are imported."""
    for name in THREAD_ENVS:
        os.environ[name] = str(threads)


def kernel_environment() -> dict[str, str]:
    """The server's environment for a pre-heated kernel: all of it but the identity variables (USER_ENVS), so a
    kernel started before anyone logged in carries no user."""
    return {k: v for k, v in os.environ.items() if k not in USER_ENVS}


def adopt_user(user: str | None) -> None:
    """A pre-heated kernel takes its session's user: the hand-off is forgotten and the user becomes the kernel's
    HTTP_X_PHASE1_USER, as for a kernel started for a request (never the server's PHASE1_USER fallback)."""
    for name in (HANDOFF_ENV, *USER_ENVS):
        os.environ.pop(name, None)
    if user:
        os.environ[USER_ENVS[0]] = user

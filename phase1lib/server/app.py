"""``phase1 serve``: one process, one port, one login for the REST API, the Voila dashboards and JupyterLab.

It is a Jupyter Server (jupyter_server 2) with three extensions: JupyterLab, Voila and
:mod:`phase1lib.server`. Jupyter's identity provider is :class:`~.identity.Phase1IdentityProvider`, so
JupyterLab and Voila see the Phase-1 session; the Phase-1 extension gates every other route too.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from .. import auth as auth_mod
from .. import settings as phase1_settings
from ..errors import Phase1Error
from .context import Phase1Context, ServerSettings
from .kernels import configure as configure_kernels
from .security import PAGE_CSP, USER_HEADER

HERE = Path(__file__).resolve().parent
#: Jupyter data directory holding the "phase1" Voila template (voila/templates/phase1).
JUPYTER_DATA = HERE / "jupyter_data"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8866


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def server_app_class() -> type:
    """The Jupyter ServerApp of ``phase1 serve`` (imported only when starting: Jupyter takes seconds to import,
    and a refused configuration should be reported at once)."""
    from jupyter_server.serverapp import ServerApp

    class Phase1ServerApp(ServerApp):
        name = "phase1-serve"
        description = "Phase-1 Workbench server: REST API, Voila dashboards and JupyterLab behind one login."
        phase1_context: Phase1Context | None = None
        phase1_banner: tuple[str, ...] = ()

        def start_app(self) -> None:
            super().start_app()
            self.io_loop.add_callback(self._print_banner)  # after the socket is bound (queued before us)
            self.io_loop.add_callback(self._start_kernel_pools)

        def _start_kernel_pools(self) -> None:
            """Pre-heat the dashboards that wait for their user (phase1lib.server.preheat)."""
            from .preheat import preheat_notebooks, voila_settings

            ctx, start = self.phase1_context, getattr(self.kernel_manager, "start_pools", None)
            voila = voila_settings(self.web_app)
            if ctx is None or start is None or voila is None:
                return
            start(preheat_notebooks(ctx.settings.root_dir, ctx.settings.dashboards_dir), voila)

        def _print_banner(self) -> None:
            for line in self.phase1_banner:
                say(line)

    return Phase1ServerApp


def jupyter_config(host: str, port: int, settings: ServerSettings, cookie_secret: str,
                   trust_proxy: bool = False) -> Any:
    """The traitlets Config of the Jupyter Server, JupyterLab and Voila."""
    from traitlets.config import Config

    c = Config()
    c.ServerApp.ip = host
    c.ServerApp.port = port
    c.ServerApp.port_retries = 0
    c.ServerApp.open_browser = False
    c.ServerApp.root_dir = str(settings.root_dir)
    c.ServerApp.default_url = "/phase1"
    c.ServerApp.allow_root = True  # containers often run as root; the login still guards every route
    c.ServerApp.jpserver_extensions = {"jupyterlab": True, "voila.server_extension": True, "phase1lib.server": True}
    c.ServerApp.identity_provider_class = "phase1lib.server.identity.Phase1IdentityProvider"
    c.ServerApp.allow_unauthenticated_access = False
    c.ServerApp.cookie_secret = cookie_secret.encode("utf-8")
    c.ServerApp.trust_xheaders = trust_proxy
    c.ServerApp.tornado_settings = {
        "login_url": "/auth/login",
        "headers": {"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY",
                    "Referrer-Policy": "same-origin"},
        # "null" makes Voila's front end use JupyterLab's bundled MathJax 3 instead of loading one from a CDN.
        "mathjax_url": "null",
        "mathjax_config": "null",
    }
    # Kernels: a dashboard opened by a script (no browser to close it) leaves its kernel behind; unconnected idle
    # kernels are culled, and each user runs at most a few (phase1lib.server.kernels, one place for both).
    configure_kernels(c, settings.kernel_limits)
    # prod: no shell (terminals) and no shutdown over HTTP (refused by the gate; the menu item is hidden).
    c.ServerApp.terminals_enabled = settings.terminals
    # The Host allow-list (DNS rebinding) of Jupyter's routes, which the Phase-1 routes apply too: loopback,
    # "localhost" and PHASE1_ALLOWED_HOSTS (the public name behind a reverse proxy).
    c.ServerApp.local_hostnames = ["localhost", *settings.allowed_hosts]
    if settings.app_env == "prod":
        c.ServerApp.quit_button = False
    # Offline: no news feed, no update check, no PyPI extension manager.
    c.LabApp.news_url = None
    c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
    c.LabApp.extension_manager = "readonly"
    # Lab settings defaults (overrides.json): never fetch news, never check for updates, and do not ask.
    c.LabApp.app_settings_dir = str(JUPYTER_DATA / "lab" / "settings")
    # Voila: our template (Font Awesome served here, not from a CDN); no ?template= override back to a CDN one.
    c.VoilaConfiguration.template = "phase1"
    c.VoilaConfiguration.allow_template_override = "NO"
    c.VoilaConfiguration.show_tracebacks = False
    c.VoilaConfiguration.file_denylist = [r".*\.(ipynb|py)", r"(.*/)?\..*"]
    # The logged-in admin reaches each dashboard kernel as HTTP_X_PHASE1_USER (phase1lib.ui.context).
    c.VoilaConfiguration.http_header_envs = [USER_HEADER]
    return c


def banner(url: str, settings: ServerSettings, ctx: Phase1Context) -> list[str]:
    lines = [f"Phase-1 Workbench is serving {url}  (APP_ENV={settings.app_env}, store: "
             f"{ctx.store.describe().get('path') or ctx.store.describe().get('url')})"]
    if settings.app_env == "dev":
        lines.append(f"  dev: open {url} in a browser on this machine -- loopback requests act as the local "
                     "dev admin, no login needed.")
        lines.append(f"  From another machine: log in at {url}auth/login with an admin made by "
                     "`phase1 admin create-user NAME` (password, then the TOTP code).")
    else:
        lines.append(f"  Log in at {url}auth/login with an admin made by `phase1 admin create-user NAME` "
                     "(password, then the 6-digit TOTP code).")
    lines.append(f"  Dashboards: {url}phase1 (from {settings.dashboards_dir})   JupyterLab: {url}lab   "
                 f"API: {url}api/phase1/route-list")
    if settings.app_env == "prod" and settings.terminals:
        lines.append("  warning: terminals are on in prod (PHASE1_TERMINALS=1): an admin session can open a shell")
    if ctx.ops_token_generated:
        lines.append(f"  Ops token for this run (X-Admin-Token; shown once, set PHASE1_ADMIN_TOKEN to fix it): "
                     f"{ctx.ops_token}")
    return lines


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, root_dir: str | Path | None = None,
          dashboards_dir: str | Path | None = None, default_project: str | Path | None = None,
          secure_cookies: bool | None = None, trust_proxy: bool = False, env: Any = None) -> int:
    """Start the server and block until it stops; 2 when the configuration is refused."""
    from ..engine.memory import tune_allocator

    tune_allocator()  # freed run temporaries stay in the process (engine/memory.py)
    problems = auth_mod.check_prod_config(env)
    try:
        settings = ServerSettings.from_env(Path(root_dir or os.getcwd()),
                                           Path(dashboards_dir) if dashboards_dir else None,
                                           Path(default_project) if default_project else None, env)
    except Phase1Error as error:
        problems.append(str(error))
        settings = None
    if settings is not None:
        if secure_cookies is not None:
            settings.secure_cookies = secure_cookies
        problems += settings.check()
    if problems:
        say("phase1 serve: refusing to start:")
        for problem in problems:
            say(f"  - {problem}")
        return 2
    assert settings is not None
    cookie_secret = auth_mod.cookie_secret(env)
    # The "phase1" Voila template lives in our Jupyter data directory.
    paths = [str(JUPYTER_DATA), *phase1_settings.get(env).jupyter_path]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(dict.fromkeys(paths))  # for Jupyter, which reads it itself
    ctx = Phase1Context(settings, env=env)
    # Jupyter warns about extension routes without its own auth decorators: the Phase-1 gate covers them all
    # (phase1lib.server.security.harden), so the warning would only alarm the operator.
    from jupyter_server.serverapp import JupyterServerAuthWarning

    warnings.filterwarnings("ignore", category=JupyterServerAuthWarning)
    # Third-party traitlets deprecations (voila, jupyter_server) are not the operator's to act on. Importing voila
    # turns them on (voila/__init__.py), so it is imported first and the filter put in front of its own.
    import voila  # noqa: F401

    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"traitlets(\.|$)")
    app = server_app_class().instance(config=jupyter_config(host, port, settings, cookie_secret, trust_proxy))
    app.phase1_context = ctx
    try:
        app.initialize(argv=[])
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{app.port}/"
        lines = banner(url, settings, ctx)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("  warning: running as root; prefer an unprivileged user")
        app.phase1_banner = tuple(lines)
        app.start()
    finally:
        ctx.close()
    return 0

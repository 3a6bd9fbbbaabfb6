"""Loading the Phase-1 extension into a Jupyter ServerApp."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback

from .context import Phase1Context, ServerSettings
from .handlers import record_request_metric
from .routes import handlers
from .security import HeadersTransform, keep_hardened

log = logging.getLogger("phase1lib.server")
PURGE_SESSIONS_EVERY_MS = 10 * 60 * 1000


def load(serverapp: Any) -> Phase1Context:
    """Add the Phase-1 routes, headers, metrics and the login gate to ``serverapp``'s web application."""
    web_app = serverapp.web_app
    _share_log_handlers(serverapp)
    ctx: Phase1Context | None = getattr(serverapp, "phase1_context", None)
    if ctx is None:  # loaded by a plain `jupyter server`: configure from the environment
        ctx = Phase1Context(ServerSettings.from_env(Path(serverapp.root_dir)))
        serverapp.phase1_context = ctx
    web_app.settings["phase1"] = ctx

    failed = ctx.store.fail_interrupted_jobs()
    if failed:
        log.warning("%d background run(s) interrupted by the restart are marked failed: %s", len(failed),
                    ", ".join(failed))

    if HeadersTransform not in web_app.transforms:
        web_app.transforms.append(HeadersTransform)
    web_app.add_handlers(".*$", handlers(web_app.settings.get("base_url", "/")))

    log_function = web_app.settings.get("log_function")

    def log_and_measure(handler: Any) -> None:
        if log_function is not None:
            log_function(handler)
        record_request_metric(handler)

    web_app.settings["log_function"] = log_and_measure
    keep_hardened(web_app)

    purge = PeriodicCallback(ctx.auth.purge_expired_sessions, PURGE_SESSIONS_EVERY_MS)
    purge.start()
    ctx.purge_callback = purge
    return ctx


def _share_log_handlers(serverapp: Any) -> None:
    """phase1lib's log messages (auth, jobs, the gate) go where the server's own log goes."""
    lib_log = logging.getLogger("phase1lib")
    if lib_log.handlers or not getattr(serverapp.log, "handlers", None):
        return
    for handler in serverapp.log.handlers:
        lib_log.addHandler(handler)
    lib_log.setLevel(logging.INFO)
    lib_log.propagate = False

"""The Phase-1 routes, declared once: path, handler, auth, feature flags, summary and request body.

Routing (:func:`handlers`), the auth and flag checks of every request (``Phase1Handler.prepare`` reads the
handler's ``phase1_route``), ``/api/phase1/route-list`` and ``/api/phase1/openapi.json`` all derive from
:data:`ROUTES`. A path parameter ``{name}`` matches :data:`PARAMS` [name].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated

from .handlers import api, auth, jobs, ops, portfolio

STATIC = Path(__file__).resolve().parent / "static"
CORE = ("phase1_core",)
#: Path parameters and what they match.
PARAMS = {"job_id": r"[0-9a-f]{8,64}", "rank": r"[^/]+", "path": r".*", "anything": r".*"}
AUTHS = ("public", "session", "ops_token")


@dataclass(frozen=True)
class Route:
    """One Phase-1 route. ``auth``: "public", "session" (an elevated admin session; the dev bridge in dev from
    loopback) or "ops_token" (X-Admin-Token). ``body``: the request body's schema name (server/openapi.py) for
    POST routes; ``form``: login forms; ``answers``: the media type of a success."""

    path: str
    handler: type
    auth: str
    flags: tuple[str, ...] = ()
    summary: str = ""
    body: str | None = None
    form: bool = False
    answers: str = "application/json"
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def pattern(self, base_url: str = "/") -> str:
        """The tornado regex of the path, each ``{param}`` a group matching :data:`PARAMS`."""
        b = base_url.rstrip("/")
        path = self.path.rstrip("/") + ("/?" if self.path == "/phase1" else "")
        regex = re.sub(r"\{(\w+)\}", lambda m: f"({PARAMS[m.group(1)]})", path)
        if self.path == "/api/phase1/{anything}":
            regex = "/api/phase1(?:/.*)?"
        return f"{b}{regex}"


ROUTES: tuple[Route, ...] = (
    Route("/auth/login", auth.LoginHandler, "public", form=True, answers="text/html",
          summary="login page (GET); password step (POST form username, password)"),
    Route("/auth/mfa", auth.MfaHandler, "public", form=True, answers="text/html",
          summary="MFA page (GET); TOTP step (POST form code); sets a new session cookie"),
    Route("/auth/logout", auth.LogoutHandler, "public", summary="end the session (POST)"),
    Route("/login", auth.JupyterLoginRedirect, "public", answers="text/html",
          summary="Jupyter's login URL: redirects to /auth/login"),
    Route("/logout", auth.JupyterLogout, "public", answers="text/html",
          summary="Jupyter's logout URL (JupyterLab's File > Log Out): ends the session"),
    Route("/phase1", auth.HomeHandler, "session", answers="text/html",
          summary="landing page: the dashboards and JupyterLab"),
    Route("/phase1/static/{path}", ops.PublicStaticHandler, "public", answers="text/css",
          summary="stylesheet of the login pages", options={"path": str(STATIC / "public")}),
    Route("/phase1/assets/{path}", ops.AssetsHandler, "session", answers="application/octet-stream",
          summary="Font Awesome (vendored) for the dashboards", options={"path": str(STATIC)}),
    Route("/api/phase1/projects/validate", api.ValidateHandler, "session", CORE, body="validate",
          summary="validate a project (body: the project object); remembers it in the session"),
    Route("/api/phase1/permutations/presets", api.PresetsHandler, "session", CORE,
          summary="the presets with their ranges and cardinality"),
    Route("/api/phase1/permutations/cardinality", api.CardinalityHandler, "session", CORE, body="cardinality",
          summary="cardinality and guardrail verdict of {\"ranges\"} or {\"preset\"} (no evaluation)"),
    Route("/api/phase1/run", api.RunHandler, "session", CORE, body="run",
          summary="run synchronously: {\"seed\", \"topn\", \"ranges\" or \"preset\", optional \"project\", "
                  "\"ruleset\"}"),
    Route("/api/phase1/run/submit", jobs.SubmitHandler, "session", CORE, body="run",
          summary="start a background run (same body as run): {\"job_id\"}"),
    Route("/api/phase1/run/progress/{job_id}", jobs.ProgressHandler, "session", CORE,
          summary="state and progress (0-1) of a background run"),
    Route("/api/phase1/run/result/{job_id}", jobs.ResultHandler, "session", CORE,
          summary="the result of a finished background run (becomes the session's last run)"),
    Route("/api/phase1/run/cancel/{job_id}", jobs.CancelHandler, "session", CORE, body="empty",
          summary="ask a background run to stop"),
    Route("/api/phase1/portfolio", portfolio.PortfolioSubmitHandler, "session", CORE, body="portfolio",
          summary="start a background portfolio: {\"title\", \"defaults\", \"projects\": [{\"project\": {...}, "
                  "\"preset\" or \"ranges\", ...}]}: {\"job_id\"} (docs/portfolio.md)"),
    Route("/api/phase1/portfolio/progress/{job_id}", portfolio.PortfolioProgressHandler, "session", CORE,
          summary="state and progress (0-1, permutations across all projects) of a background portfolio"),
    Route("/api/phase1/portfolio/result/{job_id}", portfolio.PortfolioResultHandler, "session", CORE,
          summary="a finished portfolio: {\"portfolio_id\", \"runs\", \"summary\"}; each run is an ordinary run"),
    Route("/api/phase1/securitisation/top20", api.Top20Handler, "session", CORE,
          summary="the Top-20 of the session's last run"),
    Route("/api/phase1/securitisation/export/{rank}", api.ExportHandler, "session", ("phase1_core", "docs_exports"),
          answers="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          summary="the term sheet of a ranked structure of the session's last run: xlsx, or ?format=json"),
    Route("/api/phase1/calc", api.CalcHandler, "session", ("phase1_core", "reverse_dscr_engine"), body="calc",
          summary="one structure with KPIs and schedule: {\"structure\", optional \"project\", \"seed\", "
                  "\"ruleset\"}"),
    Route("/api/phase1/status/full", ops.StatusHandler, "ops_token",
          summary="GO / NO-GO, canary, flags, rulesets, recent runs, metrics, memory, uptime, and the health detail"),
    Route("/api/phase1/canary/update", ops.CanaryHandler, "ops_token", body="canary",
          summary="set the canary share: {\"percentage\", \"reason\"}"),
    Route("/api/phase1/rollback", ops.RollbackHandler, "ops_token", body="rollback",
          summary="lower the canary share: {\"target_percentage\" (default 0), \"reason\"}; reports duration_ms"),
    Route("/api/phase1/flags", ops.FlagsHandler, "ops_token", body="flags",
          summary="feature flags (GET); update (POST) {\"flag\": true, ...}, or {\"version\", \"changes\"} "
                  "(stale: 409)"),
    Route("/api/phase1/runs/delete", ops.RunsDeleteHandler, "ops_token", body="runs_delete",
          summary="remove a stored run (also a bad record): {\"run_id\", optional \"reason\"}; audited"),
    Route("/api/phase1/health", ops.HealthHandler, "public",
          summary="liveness: {\"status\": \"ok\"} or 503 \"degraded\" (the detail is in status/full)"),
    Route("/api/phase1/route-list", ops.RouteListHandler, "public",
          summary="this list, from the live routing table (?all=1: every route)"),
    Route("/api/phase1/openapi.json", ops.OpenAPIHandler, "public",
          summary="the OpenAPI 3.1 document of these routes"),
    Route("/api/phase1/{anything}", ops.ApiNotFoundHandler, "public", summary="unknown Phase-1 API path: a JSON 404"),
)


def handlers(base_url: str = "/") -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado rules of :data:`ROUTES`, in matching order; each handler learns its route (``phase1_route``)."""
    rules = []
    for route in ROUTES:
        assert route.auth in AUTHS, route
        cls = route.handler
        cls.phase1_route = route
        for name in ("get", "post", "put", "delete", "patch", "head"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__allow_unauthenticated", False):
                # Jupyter's own gate must let us answer: our routes check their auth themselves (prepare)
                setattr(cls, name, allow_unauthenticated(method))
        rules.append((route.pattern(base_url), cls, dict(route.options)))
    return rules

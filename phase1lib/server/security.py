"""Cross-cutting protection of every route: request ids, security headers, the login gate, the route table.

- :class:`HeadersTransform` runs on every response of the process (Jupyter's, Voila's, ours): it adds
  ``X-Request-ID``, ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, a referrer policy and,
  where the handler set none, a Content-Security-Policy without third-party origins.
- :func:`harden` walks the tornado routing table once the extensions are loaded (and again whenever a
  handler is added later) and puts :class:`GateMixin` in front of every handler that is not a Phase-1
  route: static files, Voila's ``/voila/files/`` (a plain, unauthenticated tornado handler upstream),
  JupyterLab, the REST API of Jupyter. Without an elevated Phase-1 session a page request is redirected
  to ``/auth/login`` (``/auth/mfa`` after the password step) and anything else gets a JSON 401 or 403.
- :func:`route_table` lists the routes from that same routing table.
- :func:`host_allowed` is Jupyter's Host allow-list (against DNS rebinding), applied to the Phase-1 routes too.
- In prod, :class:`GateMixin` refuses Jupyter's ``/api/shutdown`` (terminals are not even started there).
- :class:`GateMixin` owner-checks the handlers of :data:`KERNEL_ROUTES` (Voila's ``/voila/api/shutdown/<id>``,
  only ``@authenticated`` upstream) with the rule of :class:`~phase1lib.server.kernels.Phase1Authorizer`, which
  guards Jupyter's own kernel and session routes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from tornado import httputil, web
from tornado.routing import PathMatches, Router, Rule

from ..errors import AuthError, ForbiddenError, Phase1Error
from .kernels import KERNEL_OWNER, kernel_refusal

log = logging.getLogger("phase1lib.server")

#: Jupyter's and Voila's pages: scripts, styles, fonts, images, XHR and websockets from this origin only.
#: JupyterLab and Voila need inline scripts and eval (page config, widget managers), never another origin.
PAGE_CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "frame-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
#: The login, MFA and landing pages: no script at all, our stylesheet only.
FORM_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")
#: JSON, files and anything else that is not a page.
API_CSP = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
#: Request header naming the session's admin, set by the gate; Voila hands it to dashboard kernels.
USER_HEADER = "X-Phase1-User"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{8,64}")
_API_PREFIXES = ("/api/", "/voila/api/", "/lab/api/")


def request_id(request: httputil.HTTPServerRequest) -> str:
    """The request's id: a well-formed incoming X-Request-ID (from a proxy), else a new random one."""
    rid = getattr(request, "_phase1_request_id", None)
    if rid is None:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _REQUEST_ID_RE.fullmatch(incoming) else secrets.token_hex(8)
        request._phase1_request_id = rid  # type: ignore[attr-defined]
    return rid


class HeadersTransform(web.OutputTransform):
    """Adds the request id and the security headers to every response of the application."""

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self.request_id = request_id(request)

    def transform_first_chunk(self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes,
                              finishing: bool) -> tuple[int, httputil.HTTPHeaders, bytes]:
        headers["X-Request-ID"] = self.request_id
        headers.pop("Server", None)  # no "TornadoServer/6.x": the software and version are nobody's business
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
        if "Content-Security-Policy" not in headers:
            html = headers.get("Content-Type", "").startswith("text/html")
            headers["Content-Security-Policy"] = PAGE_CSP if html else API_CSP
        return status_code, headers, chunk


def host_allowed(handler: web.RequestHandler) -> bool:
    """Jupyter's Host check (JupyterHandler.check_host), for handlers that are not Jupyter's: unless
    ``ServerApp.allow_remote_access`` (the default when listening on a non-loopback address), the Host header
    must be a loopback address or one of ``ServerApp.local_hostnames`` (default "localhost")."""
    settings = handler.settings
    if settings.get("allow_remote_access", False):
        return True
    match = re.match(r"^(.*?)(:\d+)?$", handler.request.host or "")
    host = match.group(1) if match else ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        allowed = ipaddress.ip_address(host).is_loopback
    except ValueError:
        allowed = host in settings.get("local_hostnames", ["localhost"])
    if not allowed:
        log.warning("refused a request with the non-local Host %r", handler.request.host[:100])
    return allowed


#: Jupyter routes refused in prod (by their handler class): what to do instead.
PROD_REFUSED = {
    "jupyter_server.services.shutdown.ShutdownHandler":
        "shutting the server down over HTTP is off in prod: stop the service on its host (SIGTERM)",
}

#: Handlers outside Jupyter's authorizer whose first path argument is a kernel id: reached only as the kernel's
#: owner (phase1lib.server.kernels.kernel_refusal), never for a pooled kernel.
KERNEL_ROUTES = frozenset({
    "voila.shutdown_kernel_handler.VoilaShutdownKernelHandler",  # the tab-close beacon: POST .../shutdown/<id>
})


# ---- route metadata ------------------------------------------------------------------------------------


def _handler_rules(router: Router) -> Iterator[Rule]:
    for rule in getattr(router, "rules", []):
        target = rule.target
        if isinstance(target, type) and issubclass(target, web.RequestHandler):
            yield rule
        elif hasattr(target, "rules"):
            yield from _handler_rules(target)


def handler_rules(app: web.Application) -> list[Rule]:
    """Every (matcher, handler class) rule of the application, in matching order."""
    return list(_handler_rules(app.default_router))


def original_class(cls: type) -> type:
    return getattr(cls, "_phase1_original", cls)


def implemented_methods(cls: type) -> list[str]:
    return [m for m in cls.SUPPORTED_METHODS
            if getattr(cls, m.lower(), None) is not web.RequestHandler._unimplemented_method
            and m not in ("OPTIONS",)]


def _pattern(rule: Rule) -> str:
    matcher = rule.matcher
    if isinstance(matcher, PathMatches):
        return matcher.regex.pattern.rstrip("$")
    return repr(matcher)


def route_table(app: web.Application, everything: bool = False) -> list[dict[str, Any]]:
    """[{"method", "path", "auth", "flags"}] from the live routing table.

    By default the Phase-1 routes (REST API, login pages, landing page); with ``everything`` also the
    Jupyter, JupyterLab and Voila routes, each with the gate that protects it.
    """
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for rule in handler_rules(app):
        cls = rule.target
        info = getattr(cls, "phase1_route", None)  # a routes.Route
        if info is None and not everything:
            continue
        path = info.path if info else _pattern(rule)
        if info is not None:
            auth, flags = info.auth, list(info.flags)
        else:
            auth = "session" if getattr(cls, "phase1_gated", False) else "unprotected"
            flags = []
        for method in implemented_methods(cls):
            if (method, path) in seen:
                continue
            seen.add((method, path))
            entry = {"method": method, "path": path, "auth": auth, "flags": flags}
            if info is not None and info.summary:
                entry["summary"] = info.summary
            if everything:
                entry["handler"] = f"{original_class(cls).__module__}.{original_class(cls).__qualname__}"
            out.append(entry)
    return out


# ---- the login gate ------------------------------------------------------------------------------------


def wants_page(handler: web.RequestHandler) -> bool:
    """A browser navigation (redirect it to the login page) rather than an API, XHR or websocket call."""
    request = handler.request
    if request.method not in ("GET", "HEAD"):
        return False
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return False
    if request.headers.get("X-Requested-With") or request.headers.get("X-XSRFToken"):
        return False
    path = request.path.rstrip("/") + "/"
    return not any(path.startswith(p) for p in _API_PREFIXES)


def login_redirect(handler: web.RequestHandler, error: Phase1Error) -> None:
    """Send a browser to the login page (or the MFA page for a password-only session), keeping ``next``."""
    base = handler.settings.get("base_url", "/")
    page = "auth/mfa" if isinstance(error, ForbiddenError) else "auth/login"
    handler.redirect(f"{base}{page}?{urlencode({'next': handler.request.uri})}")


def deny(handler: web.RequestHandler, error: Phase1Error) -> None:
    """Refuse a request that lacks a session: a redirect for pages, else a JSON error (401 or 403)."""
    if wants_page(handler):
        login_redirect(handler, error)
        return
    _refuse(handler, error)


def _refuse(handler: web.RequestHandler, error: Phase1Error) -> None:
    """Answer ``error`` as JSON with its status, pages included (no redirect)."""
    handler.clear()
    handler.set_status(error.status)
    handler.set_header("Content-Type", "application/json; charset=UTF-8")
    body = {**error.to_dict(), "request_id": request_id(handler.request)}
    handler.finish(json.dumps(body))


class GateMixin:
    """Put in front of a handler class: nothing is served without an elevated Phase-1 session."""

    phase1_gated = True

    async def prepare(self) -> None:
        ctx = self.settings["phase1"]  # type: ignore[attr-defined]
        if not host_allowed(self):  # type: ignore[arg-type]  # as Jupyter would, before any session is looked up
            _refuse(self, ForbiddenError("this Host is not this server's: refused"))  # type: ignore[arg-type]
            return
        try:
            session = ctx.admin_session(self)
        except (AuthError, ForbiddenError) as error:
            deny(self, error)  # type: ignore[arg-type]
            return
        handler_name = _qualified(original_class(type(self)))
        refused = PROD_REFUSED.get(handler_name)
        if refused and ctx.settings.app_env == "prod":
            deny(self, ForbiddenError(refused))  # type: ignore[arg-type]
            return
        if handler_name in KERNEL_ROUTES:
            kernel_id = (self.path_args or [None])[0]  # type: ignore[attr-defined]
            why = kernel_refusal(self.settings.get("kernel_manager"), kernel_id, session.username)  # type: ignore
            if why is not None:
                log.warning("refused %s %s of kernel %s: %s", session.username, self.request.method,  # type: ignore
                            kernel_id, why)
                _refuse(self, ForbiddenError(why))  # type: ignore[arg-type]
                return
        # Who is acting, for Voila kernels (HTTP_X_PHASE1_USER via VoilaConfiguration.http_header_envs): always
        # the session's user, whatever header the client sent. The same user owns the kernels this request
        # starts (the per-user cap of phase1lib.server.kernels).
        self.request.headers[USER_HEADER] = session.username  # type: ignore[attr-defined]
        KERNEL_OWNER.set(session.username)
        result = super().prepare()  # type: ignore[misc]
        if result is not None:
            await result
        if wants_page(self) and not isinstance(self, web.StaticFileHandler) and not self._finished:  # type: ignore
            # Pages get Jupyter's _xsrf cookie up front: Voila's page reads it for the kernel-shutdown beacon
            # it sends when the tab closes (otherwise refused, and the kernel would outlive the tab).
            _ = self.xsrf_token  # type: ignore[attr-defined]


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_GATED: dict[type, type] = {}


def gated(cls: type) -> type:
    """``cls`` behind the gate (one subclass per class, cached)."""
    if getattr(cls, "phase1_gated", False) or getattr(cls, "phase1_route", None) is not None:
        return cls
    if cls not in _GATED:
        _GATED[cls] = type(cls.__name__, (GateMixin, cls), {"__module__": cls.__module__,
                                                             "__qualname__": cls.__qualname__,
                                                             "_phase1_original": cls})
    return _GATED[cls]


def harden(app: web.Application) -> int:
    """Gate every handler of the routing table that is not a Phase-1 route; returns how many changed."""
    changed = 0
    for rule in handler_rules(app):
        target = gated(rule.target)
        if target is not rule.target:
            rule.target = target
            changed += 1
    if changed:
        log.info("login gate put in front of %d more route(s); %d gated in all", changed,
                 sum(1 for r in handler_rules(app) if getattr(r.target, "phase1_gated", False)))
    return changed


def keep_hardened(app: web.Application) -> None:
    """Harden now and after every later ``add_handlers`` call (extensions loaded after this one)."""
    harden(app)
    if getattr(app, "_phase1_hardened", False):
        return
    original = app.add_handlers

    def add_handlers(host_pattern: str, host_handlers: list[Any]) -> None:
        original(host_pattern, host_handlers)
        harden(app)

    app.add_handlers = add_handlers  # type: ignore[method-assign]
    app._phase1_hardened = True  # type: ignore[attr-defined]

"""The base of every Phase-1 route: request ids, security headers, the auth and flags its route declares,
JSON bodies checked in one place, JSON errors, and the ops metric of each request.

A handler's :class:`~phase1lib.server.routes.Route` (``phase1_route``, set from the route table) says who may
call it; :meth:`Phase1Handler.prepare` enforces that and the route's feature flags before any method runs, so a
handler never checks auth or flags by hand. No CPU work runs on the event loop: engine work goes to the run pool,
parsing, validation, store actions and the serialising of large answers to the work pool (:meth:`answer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from tornado import web

from ... import __version__, ops
from ...auth import Session, check_ops_token
from ...errors import DisabledError, FieldError, ForbiddenError, HTTPProblem, InputError, Phase1Error, unknown_fields
from ...text import safe_display
from ..context import Phase1Context
from ..security import API_CSP, FORM_CSP, SECURITY_HEADERS, host_allowed, request_id

if TYPE_CHECKING:
    from ..routes import Route

log = logging.getLogger("phase1lib.server")

SERVER = Path(__file__).resolve().parent.parent
TEMPLATES = Environment(loader=FileSystemLoader(SERVER / "templates"), autoescape=select_autoescape(["html"]))
T = TypeVar("T")
#: Deepest JSON nesting a body may have (project, ranges and flags bodies are 3 levels deep).
MAX_JSON_DEPTH = 32


class Phase1Handler(web.RequestHandler):
    """Base of every Phase-1 route: request id, security headers, JSON bodies and JSON errors, CSRF."""

    phase1_route: Route
    csp = API_CSP
    #: The elevated admin session of a "session" route (set by :meth:`prepare`).
    session: Session

    @property
    def ctx(self) -> Phase1Context:
        return self.settings["phase1"]

    @property
    def request_id(self) -> str:
        return request_id(self.request)

    def set_default_headers(self) -> None:
        self.set_header("X-Request-ID", request_id(self.request))
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Content-Security-Policy", self.csp)
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        """Tornado's automatic check is replaced by :meth:`check_csrf`, per kind of route."""

    def prepare(self) -> None:
        if not host_allowed(self):  # Jupyter's own Host allow-list (DNS rebinding), on every Phase-1 route too
            raise ForbiddenError(f"Host {safe_display(self.request.host)!r} is not this server's: refused "
                                 "(ServerApp.allow_remote_access, local_hostnames)")
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            self._check_origin()
            if len(self.request.body or b"") > self.ctx.settings.max_body_bytes:
                raise HTTPProblem(413, "too_large", f"request body of {len(self.request.body):,} bytes exceeds "
                                                    f"{self.ctx.settings.max_body_bytes:,}")
        self.authorise()
        for name in self.phase1_route.flags:  # the route's feature flags: off is a 503 naming the flag
            ops.require_flag(self.ctx.store, name)

    def authorise(self) -> None:
        """The route's auth: an elevated admin session (CSRF-checked), the X-Admin-Token, or nothing (public)."""
        auth = self.phase1_route.auth
        if auth == "session":
            self.session = self.ctx.admin_session(self)
            self.check_csrf()
        elif auth == "ops_token":
            if not check_ops_token(self.request.headers.get("X-Admin-Token"), self.ctx.ops_token):
                raise ForbiddenError("missing or invalid X-Admin-Token")
            if self.request.method == "POST" and self.content_type() not in ("application/json", ""):
                raise InputError([FieldError("Content-Type", "must be application/json")], "request")

    def _check_origin(self) -> None:
        """A browser's cross-site POST carries an Origin (or Referer) of another site: refuse it."""
        origin = self.request.headers.get("Origin") or self.request.headers.get("Referer")
        if not origin:  # curl, scripts
            return
        if urlsplit(origin).netloc.lower() != self.request.host.lower():  # "null" (sandboxed) is refused too
            raise ForbiddenError("cross-origin request refused")

    def check_csrf(self) -> None:
        """State-changing business requests: JSON (a cross-site form cannot send it) or Jupyter's XSRF token."""
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if self.content_type() == "application/json":
            return
        try:
            web.RequestHandler.check_xsrf_cookie(self)
        except web.HTTPError:
            raise ForbiddenError("state-changing requests must send JSON (Content-Type: application/json) "
                                 "or carry the _xsrf token") from None

    def content_type(self) -> str:
        return self.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    # ---- bodies ----------------------------------------------------------------------------------------

    def json_body(self, required: bool = True) -> dict[str, Any]:
        """The request body as a JSON object; InputError naming the problem otherwise."""
        raw = self.request.body or b""
        if not raw.strip():
            if not required:
                return {}
            raise InputError([FieldError("body", "required: a JSON object")], "JSON body")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError([FieldError("body", f"must be UTF-8 ({error.reason} at byte {error.start})")],
                             "JSON body") from None
        return parse_json_object(text)

    def body_fields(self, allowed: Iterable[str], what: str = "request", required: bool = True) -> dict[str, Any]:
        """The JSON body, refusing fields other than ``allowed`` (each named, with the known ones listed)."""
        body = self.json_body(required)
        unknown = unknown_fields(body, allowed)
        if unknown:
            raise InputError(unknown, what)
        return body

    def form_or_json(self) -> dict[str, Any]:
        """Login and MFA: an HTML form / curl -d, or a JSON object; a field given twice is refused."""
        if self.content_type() == "application/json":
            return self.json_body()
        twice = [FieldError(safe_display(k)[:64], "given more than once: send each form field once")
                 for k, values in self.request.body_arguments.items() if len(values) > 1]
        if twice:
            raise InputError(twice, "form")
        return {k: self.get_body_argument(k) for k in self.request.body_arguments}

    # ---- responses -------------------------------------------------------------------------------------

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(obj, allow_nan=False, default=str))

    async def answer(self, fn: Callable[..., Any], *args: Any, status: int = 200, **kwargs: Any) -> None:
        """Run ``fn`` (parse, validate, act) in the work pool, serialise its answer there too, then send it: the
        event loop only moves bytes. ``fn`` may return (obj, status) to answer another status."""
        result = await self.in_worker(fn, *args, **kwargs)
        if isinstance(result, tuple):
            result, status = result
        text = await self.in_worker(json.dumps, result, allow_nan=False, default=str)
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(text)

    def wants_html(self) -> bool:
        return "text/html" in self.request.headers.get("Accept", "")

    def render_page(self, name: str, status: int = 200, **ns: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", FORM_CSP)
        base = self.settings.get("base_url", "/")
        page = TEMPLATES.get_template(name).render(base_url=base, version=__version__, **ns)
        self.finish(page)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = _error_of(status_code, kwargs.get("exc_info"))
        if error.status != status_code:
            self.set_status(error.status, reason=_reason(error.status))
        retry_after = getattr(error, "retry_after_s", None)  # LockedError, and "busy"
        if retry_after is not None:
            self.set_header("Retry-After", str(retry_after))
        body = {**error.to_dict(), "request_id": self.request_id}
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Content-Security-Policy", API_CSP)
        self._phase1_error_kind = error.kind  # the ops metric tells a switched-off flag (503) from a fault
        self.finish(json.dumps(body, default=str))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, Phase1Error):  # expected: a message for the user, not a traceback
            return
        if isinstance(value, web.HTTPError):
            super().log_exception(typ, value, tb)
            return
        log.error("unexpected error in %s %s (request id %s)", self.request.method, self.request.path,
                  self.request_id, exc_info=(typ, value, tb))

    # ---- helpers for business routes ------------------------------------------------------------------

    async def in_pool(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking engine or file work in the run pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ctx.executor, functools.partial(fn, *args, **kwargs))

    async def in_worker(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run request work (parsing, validation, counting, store actions) in the work pool, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ctx.work_executor, functools.partial(fn, *args, **kwargs))

    async def in_auth_pool(self, fn: Callable[..., T], *args: Any) -> T:
        """Password hashing (argon2, tens of milliseconds) off the event loop, apart from the engine's pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ctx.auth_executor, functools.partial(fn, *args))

    def safe_next(self, default: str = "/") -> str:
        """The ``next`` argument if it is a local path (no open redirect), else ``default``."""
        target = self.get_argument("next", "") or ""
        if target.startswith("/") and not target.startswith("//") and "\\" not in target:
            return target
        return default



def _refuse_constant(name: str) -> Any:
    raise ValueError(f"malformed JSON: {name} is not a JSON number")


class _DuplicateKey(ValueError):
    pass


def _object_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: a key given twice is refused, never "the last one wins"."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(f"malformed JSON: duplicate key {json.dumps(key)} in an object: give each key once")
        obj[key] = value
    return obj


def json_depth_over(value: Any, limit: int) -> bool:
    """True when ``value`` nests containers deeper than ``limit`` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def parse_json_object(text: str, limit: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """A request body's JSON object; InputError naming the problem: malformed (with line and column), NaN or
    Infinity, a duplicate key, nested deeper than ``limit`` levels, or not an object."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_object_once)
    except json.JSONDecodeError as error:
        raise InputError([FieldError("body", f"malformed JSON: {error.msg} at line {error.lineno} column "
                                             f"{error.colno}")], "JSON body") from None
    except RecursionError:
        raise InputError([FieldError("body", f"malformed JSON: nested deeper than {limit} levels")],
                         "JSON body") from None
    except ValueError as error:
        raise InputError([FieldError("body", str(error))], "JSON body") from None
    if json_depth_over(data, limit):
        raise InputError([FieldError("body", f"malformed JSON: nested deeper than {limit} levels")], "JSON body")
    if not isinstance(data, dict):
        raise InputError([FieldError("body", f"must be a JSON object (got {_json_type(data)})")], "JSON body")
    return data


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Closed Request" if status == 499 else "Error"


def _error_of(status_code: int, exc_info: Any) -> Phase1Error:
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, Phase1Error):
        return exc
    if isinstance(exc, web.HTTPError):
        status = exc.status_code
        if status == 405:
            return HTTPProblem(405, "method_not_allowed", "method not allowed on this route; see "
                                                       "/api/phase1/route-list")
        if status == 404:
            return HTTPProblem(404, "not_found", "no such route; see /api/phase1/route-list")
        if status == 403:
            return HTTPProblem(403, "forbidden", exc.log_message or "forbidden")
        if status == 400:
            return HTTPProblem(400, "bad_request", exc.log_message or "bad request")
        return HTTPProblem(status, _reason(status).lower().replace(" ", "_"), exc.log_message or _reason(status))
    if status_code >= 500:
        return HTTPProblem(500, "internal", "internal error; the server log has the details under this request id")
    return HTTPProblem(status_code, _reason(status_code).lower().replace(" ", "_"), _reason(status_code))



def request_outcome(status: int, error_kind: str | None = None) -> tuple[bool, bool]:
    """(ok, refused) of an answered request for the ops metrics: a 5xx is a server fault, except a 503 for a
    switched-off flag (the operator's choice); a 4xx is a refused request (the client's input), never a fault."""
    fault = status >= 500 and error_kind != DisabledError.kind
    return not fault, 400 <= status < 500


def record_request_metric(handler: web.RequestHandler) -> None:
    """ops metric of one request: its duration and outcome (:func:`request_outcome`), written off the loop."""
    ctx = handler.settings.get("phase1")
    if ctx is None or not _measured(handler):
        return
    ok, refused = request_outcome(handler.get_status(), getattr(handler, "_phase1_error_kind", None))
    duration = handler.request.request_time()

    def record() -> None:
        try:
            ops.record_metric(ctx.store, "request", duration, ok, refused=refused)
        except Exception:  # a metric must never break a response
            log.warning("could not record the request metric", exc_info=True)

    with contextlib.suppress(RuntimeError):  # the pool is shut down: the server is stopping
        ctx.work_executor.submit(record)


def _measured(handler: web.RequestHandler) -> bool:
    """Phase-1 routes, the dashboards and the JupyterLab page; not static files or Jupyter's polling."""
    if isinstance(handler, web.StaticFileHandler):
        return False
    if isinstance(handler, Phase1Handler):
        return True
    path = handler.request.path
    return path.startswith("/voila/render/") or path in ("/lab", "/lab/")

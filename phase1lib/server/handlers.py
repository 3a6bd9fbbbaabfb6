"""The Phase-1 routes: login pages and forms, the business REST API, the ops API, health and the route list.

Every handler answers JSON errors ``{"error", "message", "request_id"}`` (validation adds ``"errors"``)
with the status of the :class:`~phase1lib.errors.Phase1Error` raised by the library, and every response
carries ``X-Request-ID``. No CPU work runs on the event loop: engine work runs in the context's run pool,
and parsing, validation, counting, the ops actions and the serialising of large answers in its work pool
(:meth:`Phase1Handler.answer`), so ``/api/phase1/health`` answers while a big request is processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

from .. import __version__, ops, service
from ..auth import Session
from ..engine.runner import DEFAULT_TOPN, RunResult
from ..errors import (
    AuthError,
    ConflictError,
    DisabledError,
    FieldError,
    ForbiddenError,
    InputError,
    LockedError,
    NotFoundError,
    Phase1Error,
)
from ..presets import preset_ranges, preset_ruleset
from ..project import Project, parse_project
from ..ranges import precheck_guardrail
from ..runs import load_run
from ..text import safe_display
from .context import Phase1Context
from .jobs import public_job
from .security import (
    API_CSP,
    FORM_CSP,
    SECURITY_HEADERS,
    GateMixin,
    RouteInfo,
    deny,
    host_allowed,
    request_id,
    route_table,
)

log = logging.getLogger("phase1lib.server")

HERE = Path(__file__).resolve().parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
T = TypeVar("T")
MAX_SEED = 2**63 - 1
RUN_FIELDS = ("seed", "topn", "ranges", "preset", "project", "sample", "ruleset")
CORE = ("phase1_core",)
#: Deepest JSON nesting a body may have (project, ranges and flags bodies are 3 levels deep).
MAX_JSON_DEPTH = 32
#: The home page lists the dashboards in the analyst's order; other notebooks follow alphabetically.
FLOW_ORDER = ("Projects", "Permutations", "Run", "Securitisation", "Ops_Monitor")


def _problem(status: int, kind: str, message: str) -> Phase1Error:
    error = Phase1Error(message)
    error.status = status
    error.kind = kind
    return error


# ---- base handler --------------------------------------------------------------------------------------


class Phase1Handler(web.RequestHandler):
    """Base of every Phase-1 route: request id, security headers, JSON bodies and JSON errors, CSRF."""

    phase1_route: RouteInfo
    csp = API_CSP

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
                raise _problem(413, "too_large", f"request body of {len(self.request.body):,} bytes exceeds "
                                                 f"{self.ctx.settings.max_body_bytes:,}")

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
            return _problem(405, "method_not_allowed", "method not allowed on this route; see "
                                                       "/api/phase1/route-list")
        if status == 404:
            return _problem(404, "not_found", "no such route; see /api/phase1/route-list")
        if status == 403:
            return _problem(403, "forbidden", exc.log_message or "forbidden")
        if status == 400:
            return _problem(400, "bad_request", exc.log_message or "bad request")
        return _problem(status, _reason(status).lower().replace(" ", "_"), exc.log_message or _reason(status))
    if status_code >= 500:
        return _problem(500, "internal", "internal error; the server log has the details under this request id")
    return _problem(status_code, _reason(status_code).lower().replace(" ", "_"), _reason(status_code))


def route(path: str, auth: str, flags: tuple[str, ...] = (), summary: str = "") -> Callable[[type], type]:
    """Attach the route-list entry to a handler class."""

    def deco(cls: type) -> type:
        cls.phase1_route = RouteInfo(path, auth, flags, summary)
        for name in ("get", "post", "put", "delete", "patch", "head"):
            method = cls.__dict__.get(name)
            if method is not None:  # Jupyter's own gate must let us answer (our routes check auth themselves)
                setattr(cls, name, allow_unauthenticated(method))
        return cls

    return deco


# ---- login, MFA, logout --------------------------------------------------------------------------------


@route("/auth/login", "public", summary="login page (GET); password step (POST form username, password)")
class LoginHandler(Phase1Handler):
    csp = FORM_CSP

    def get(self) -> None:
        sid = self.ctx.session_id(self)
        session = self.ctx.auth.get_session(sid) if sid else None
        if session is not None and session.elevated and not self.get_argument("again", ""):
            self.redirect(self.safe_next(f"{self.settings.get('base_url', '/')}phase1"))
            return
        self.render_page("login.html", next=self.safe_next(""), error=None, username="",
                         logged_out=bool(self.get_argument("logged_out", "")), dev=self.dev_hint())

    def dev_hint(self) -> bool:
        return self.ctx.auth.dev_admin_allowed(self.request.remote_ip)

    async def post(self) -> None:
        data = await self.in_worker(self.form_or_json)
        username, password = data.get("username"), data.get("password")
        old = self.ctx.session_id(self)
        if old:
            self.ctx.auth.logout(old)  # a new login never reuses an earlier session id
        try:
            session = await self.in_auth_pool(self.ctx.auth.login_password, username, password,
                                              self.request.remote_ip)
        except (AuthError, LockedError) as error:
            self.ctx.clear_session_cookie(self)
            if self.wants_html():
                if isinstance(error, LockedError):
                    self.set_header("Retry-After", str(error.retry_after_s))
                self.render_page("login.html", status=error.status, next=self.safe_next(""), error=str(error),
                                 username=username if isinstance(username, str) else "", logged_out=False,
                                 dev=self.dev_hint())
                return
            raise
        self.ctx.set_session_cookie(self, session.session_id)
        nxt = self.safe_next("")
        if self.wants_html():
            self.redirect(f"{self.settings.get('base_url', '/')}auth/mfa"
                          + (f"?{urlencode({'next': nxt})}" if nxt else ""), status=303)
            return
        self.write_json({"state": session.state, "username": session.username, "mfa": "/auth/mfa",
                         "expires_at": session.expires_at,
                         "message": "password accepted: POST the 6-digit code of your authenticator app to "
                                    "/auth/mfa (form field code) within 5 minutes"})


@route("/auth/mfa", "public", summary="MFA page (GET); TOTP step (POST form code); sets a new session cookie")
class MfaHandler(Phase1Handler):
    csp = FORM_CSP

    def _pending(self) -> bool:
        sid = self.ctx.session_id(self)
        session = self.ctx.auth.get_session(sid) if sid else None
        return session is not None and not session.elevated and not session.dev_bridge

    def get(self) -> None:
        if not self._pending():
            nxt = self.safe_next("")
            self.redirect(f"{self.settings.get('base_url', '/')}auth/login"
                          + (f"?{urlencode({'next': nxt})}" if nxt else ""))
            return
        self.render_page("mfa.html", next=self.safe_next(""), error=None)

    async def post(self) -> None:
        code = (await self.in_worker(self.form_or_json)).get("code")
        sid = self.ctx.session_id(self)
        try:
            session = await self.in_auth_pool(self.ctx.auth.verify_mfa, sid or "",
                                              code if isinstance(code, str) else "", self.request.remote_ip)
        except (AuthError, LockedError) as error:
            pending = self._pending()
            if not pending:
                self.ctx.clear_session_cookie(self)
            if self.wants_html():
                if isinstance(error, LockedError):
                    self.set_header("Retry-After", str(error.retry_after_s))
                page = "mfa.html" if pending else "login.html"
                self.render_page(page, status=error.status, next=self.safe_next(""), error=str(error),
                                 username="", logged_out=False, dev=False)
                return
            raise
        self.ctx.set_session_cookie(self, session.session_id)
        if self.wants_html():
            self.redirect(self.safe_next(f"{self.settings.get('base_url', '/')}phase1"), status=303)
            return
        self.write_json({"state": session.state, "username": session.username, "expires_at": session.expires_at,
                         "message": "logged in"})


@route("/auth/logout", "public", summary="end the session (POST)")
class LogoutHandler(Phase1Handler):
    csp = FORM_CSP

    def post(self) -> None:
        sid = self.ctx.session_id(self)
        ended = self.ctx.auth.logout(sid) if sid else False
        self.ctx.clear_session_cookie(self)
        if self.wants_html():
            self.redirect(f"{self.settings.get('base_url', '/')}auth/login?logged_out=1", status=303)
            return
        self.write_json({"logged_out": ended})


@route("/login", "public", summary="Jupyter's login URL: redirects to /auth/login")
class JupyterLoginRedirect(Phase1Handler):
    def get(self) -> None:
        nxt = self.safe_next("")
        self.redirect(f"{self.settings.get('base_url', '/')}auth/login" + (f"?{urlencode({'next': nxt})}"
                                                                           if nxt else ""))


@route("/logout", "public", summary="Jupyter's logout URL (JupyterLab's File > Log Out): ends the session")
class JupyterLogout(Phase1Handler):
    def get(self) -> None:
        sid = self.ctx.session_id(self)
        if sid:
            self.ctx.auth.logout(sid)
        self.ctx.clear_session_cookie(self)
        self.redirect(f"{self.settings.get('base_url', '/')}auth/login?logged_out=1")

    def post(self) -> None:
        self.get()


# ---- landing page --------------------------------------------------------------------------------------


@route("/phase1", "session", summary="landing page: the dashboards and JupyterLab")
class HomeHandler(Phase1Handler):
    csp = FORM_CSP

    def get(self) -> None:
        try:
            session = self.ctx.admin_session(self)
        except (AuthError, ForbiddenError) as error:
            deny(self, error)
            return
        settings = self.ctx.settings
        folder = settings.dashboards_dir
        prefix = settings.dashboards_url_path
        base = self.settings.get("base_url", "/")
        dashboards = []
        found = folder.glob("*.ipynb") if folder.is_dir() else []
        for path in sorted(found, key=lambda p: (FLOW_ORDER.index(p.stem) if p.stem in FLOW_ORDER else 99, p.stem)):
            rel = f"{prefix}/{path.name}" if prefix else path.name
            dashboards.append({"name": path.stem.replace("_", " ").strip().title(),
                               "url": f"{base}voila/render/{quote(rel)}"})
        self.render_page("home.html", user=session.username, dev_bridge=session.dev_bridge,
                         dashboards=dashboards, dashboards_dir=str(folder), xsrf=self.xsrf_token.decode())


# ---- business routes -----------------------------------------------------------------------------------


class BusinessHandler(Phase1Handler):
    """Routes that need an elevated admin session (or, in dev from loopback, the dev bridge)."""

    session: Session

    def prepare(self) -> None:
        super().prepare()
        self.session = self.ctx.admin_session(self)
        self.check_csrf()

    @property
    def store(self):
        return self.ctx.store

    def session_data(self) -> dict[str, Any]:
        return self.ctx.auth.get_session_data(self.session.session_id)

    def remember(self, **updates: Any) -> None:
        self.ctx.auth.set_session_data(self.session.session_id, updates)

    def resolve_project(self, raw: Any) -> tuple[Project, str]:
        """The request's project, else the session's validated one, else the configured default sample."""
        if raw is not None:
            return _parse_project_field(raw), "request"
        stored = self.session_data().get("project")
        if stored:
            return parse_project(stored), "session"
        default = self.ctx.default_project()
        if default is not None:
            return default, "default"
        raise InputError([FieldError("project", "no project: send \"project\", or validate one first with POST "
                                                "/api/phase1/projects/validate")], "request")

    def optional_project(self) -> Project | None:
        stored = self.session_data().get("project")
        return parse_project(stored) if stored else None

    def last_run_id(self) -> str:
        run_id = self.session_data().get("last_run_id")
        if not run_id:
            raise NotFoundError("no run in this session yet: POST /api/phase1/run first")
        return str(run_id)

    def reserve_run(self) -> None:
        if not self.ctx.try_reserve_run():
            error = _problem(429, "busy", f"{self.ctx.runs_in_flight} runs are in progress (the limit is "
                                          f"{self.ctx.settings.max_pending_runs}); retry in a few seconds")
            error.retry_after_s = 2  # type: ignore[attr-defined]
            raise error


def _parse_project_field(raw: Any) -> Project:
    if not isinstance(raw, Mapping):
        raise InputError([FieldError("project", "must be a JSON object of project fields")], "request")
    try:
        return parse_project(raw)
    except InputError as error:
        raise InputError([FieldError(f"project.{e.field}", e.message) for e in error.errors], "project") from None


def _whole(value: Any, name: str, lo: int, hi: int, errors: list[FieldError], *, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value, ok = int(value), True
    if not ok or not lo <= value <= hi:
        what = "a whole number" + (" or null" if allow_none else "")
        errors.append(FieldError(name, f"must be {what} from {lo:,} to {hi:,} (got {value!r})"))
        return None
    return value


def parse_run_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """{"seed", "topn", "ranges" | "preset", "project", "sample"} checked, every problem at once."""
    errors = [FieldError(k, f"unknown field; known: {', '.join(RUN_FIELDS)}") for k in body if k not in RUN_FIELDS]
    seed = _whole(body.get("seed"), "seed", 0, MAX_SEED, errors, allow_none=True)
    topn = _whole(body.get("topn", DEFAULT_TOPN), "topn", 1, 1000, errors, allow_none=False)
    sample = _whole(body.get("sample"), "sample", 1, 10**9, errors, allow_none=True)
    ranges: Any = None
    has_ranges, has_preset = body.get("ranges") is not None, body.get("preset") is not None
    if has_ranges and has_preset:
        errors.append(FieldError("preset", "send either ranges or preset, not both"))
    elif has_preset:
        if not isinstance(body["preset"], str):
            errors.append(FieldError("preset", "must be a preset name (GET /api/phase1/permutations/presets)"))
        else:
            try:
                ranges = preset_ranges(body["preset"])
            except InputError as error:
                errors.extend(error.errors)
    elif has_ranges:
        if not isinstance(body["ranges"], Mapping):
            errors.append(FieldError("ranges", "must be a JSON object of range keys"))
        else:
            ranges = dict(body["ranges"])
    else:
        errors.append(FieldError("ranges", "required: ranges (an object of range keys) or preset (a name)"))
    ruleset = body.get("ruleset")
    if ruleset is not None and not isinstance(ruleset, str):
        errors.append(FieldError("ruleset", f"must be a ruleset version such as \"v2\" (got {ruleset!r})"))
    elif ruleset is None and has_preset and not has_ranges and ranges is not None:
        ruleset = preset_ruleset(body["preset"])  # a preset written for v2 names its ruleset (D45)
    if errors:
        raise InputError(errors, "run request")
    return {"seed": seed, "topn": topn, "sample": sample, "ranges": ranges, "project": body.get("project"),
            "ruleset": ruleset}


def run_answer(result: RunResult, project: Project, source: str) -> dict[str, Any]:
    return {**result.summary(), "project": {"title": project.title, "source": source},
            "links": {"top20": "/api/phase1/securitisation/top20",
                      "export": "/api/phase1/securitisation/export/1"}}


@route("/api/phase1/projects/validate", "session", CORE,
       "validate a project (body: the project object); remembers it in the session")
class ValidateHandler(BusinessHandler):
    async def post(self) -> None:
        await self.answer(self.validate)

    def validate(self) -> tuple[dict[str, Any], int]:
        body = self.json_body()
        wrapped = set(body) in ({"project"}, {"project", "ruleset"}) and isinstance(body["project"], Mapping)
        data = body["project"] if wrapped else body
        try:
            project, derived = service.validate_project(self.store, data, body.get("ruleset") if wrapped else None)
        except InputError as error:
            return {**error.to_dict(), "valid": False, "request_id": self.request_id}, 400
        self.remember(project=project.to_dict())
        return {"valid": True, "project": project.to_dict(), "derived": derived}, 200


@route("/api/phase1/permutations/presets", "session", CORE, "the presets with their ranges and cardinality")
class PresetsHandler(BusinessHandler):
    async def get(self) -> None:
        await self.answer(lambda: {"presets": service.presets(self.store, self.optional_project())})


@route("/api/phase1/permutations/cardinality", "session", CORE,
       "cardinality and guardrail verdict of {\"ranges\"} or {\"preset\"} (no evaluation)")
class CardinalityHandler(BusinessHandler):
    async def post(self) -> None:
        await self.answer(self.cardinality)

    def cardinality(self) -> dict[str, Any]:
        body = self.json_body()
        unknown = [FieldError(k, "unknown field; known: ranges, preset, project, ruleset") for k in body
                   if k not in ("ranges", "preset", "project", "ruleset")]
        if unknown:
            raise InputError(unknown, "cardinality request")
        request = parse_run_request(body)
        project = _parse_project_field(request["project"]) if request["project"] is not None \
            else self.optional_project()
        return service.cardinality(self.store, request["ranges"], project, request["ruleset"])


@route("/api/phase1/run", "session", CORE,
       "run synchronously: {\"seed\", \"topn\", \"ranges\" or \"preset\", optional \"project\"}")
class RunHandler(BusinessHandler):
    async def post(self) -> None:
        request, project, source = await self.in_worker(self.run_request)
        self.reserve_run()
        try:
            result = await self.in_pool(service.execute_run, self.store, project, request["ranges"],
                                        seed=request["seed"], topn=request["topn"], sample=request["sample"],
                                        cancel=self.ctx.shutting_down, ruleset=request["ruleset"],
                                        actor=self.session.username, request_id=self.request_id)
        finally:
            self.ctx.release_run()
        await self.answer(self.finish_run, result, project, source)

    def run_request(self) -> tuple[dict[str, Any], Project, str]:
        """The checked run body and its project; over-limit keys and grids are refused here, by counting."""
        request = parse_run_request(self.json_body())
        project, source = self.resolve_project(request["project"])
        precheck_guardrail(request["ranges"], request["sample"])
        return request, project, source

    def finish_run(self, result: RunResult, project: Project, source: str) -> dict[str, Any]:
        self.remember(last_run_id=result.run_id)
        return run_answer(result, project, source)


@route("/api/phase1/run/submit", "session", CORE, "start a background run (same body as run): {\"job_id\"}")
class SubmitHandler(BusinessHandler):
    async def post(self) -> None:
        await self.answer(self.submit, status=202)

    def submit(self) -> dict[str, Any]:
        request = parse_run_request(self.json_body())
        project, source = self.resolve_project(request["project"])
        plan = service.plan_run(self.store, project, request["ranges"], request["seed"], request["topn"],
                                request["sample"], request["ruleset"])
        permutations = plan.count
        self.reserve_run()
        try:
            job = self.ctx.jobs.submit(self.session.username, project, request["ranges"], seed=request["seed"],
                                       topn=request["topn"], sample=request["sample"], permutations=permutations,
                                       request_id=self.request_id, ruleset=request["ruleset"])
        except BaseException:
            self.ctx.release_run()
            raise
        job_id = job["job_id"]
        return {"job_id": job_id, "state": job["state"], "permutations": permutations,
                "project": {"title": project.title, "source": source},
                "progress": f"/api/phase1/run/progress/{job_id}", "result": f"/api/phase1/run/result/{job_id}"}


class JobHandler(BusinessHandler):
    def job(self, job_id: str) -> dict[str, Any]:
        job = self.store.get_job(job_id)
        if job is None or job.get("owner") != self.session.username:
            raise NotFoundError(f"no job {job_id!r} of yours")
        return job


@route("/api/phase1/run/progress/{job_id}", "session", CORE, "state and progress (0-1) of a background run")
class ProgressHandler(JobHandler):
    async def get(self, job_id: str) -> None:
        await self.answer(lambda: public_job(self.job(job_id)))


@route("/api/phase1/run/result/{job_id}", "session", CORE,
       "the result of a finished background run (becomes the session's last run)")
class ResultHandler(JobHandler):
    async def get(self, job_id: str) -> None:
        job = await self.in_worker(self.job, job_id)
        if job["state"] != "done":
            detail = f": {job['error']}" if job.get("error") else f" ({job['progress'] * 100:.0f} %)"
            raise ConflictError(f"job {job_id} is {job['state']}{detail}", state=job["state"],
                                progress=job["progress"], job_error=job.get("error"))
        ops.require_flag(self.store, "phase1_core")
        result = await self.in_pool(load_run, job["run_id"], frame=False)
        await self.answer(self.result_answer, result, job_id)

    def result_answer(self, result: RunResult, job_id: str) -> dict[str, Any]:
        self.remember(last_run_id=result.run_id)
        return {**result.summary(), "job_id": job_id, "project": {"title": result.meta["project"]["title"]}}


@route("/api/phase1/run/cancel/{job_id}", "session", CORE, "ask a background run to stop")
class CancelHandler(JobHandler):
    async def post(self, job_id: str) -> None:
        await self.answer(self.cancel, job_id, status=202)

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        if job["state"] in ("done", "failed"):
            raise ConflictError(f"job {job_id} is {job['state']} already", state=job["state"])
        if not self.ctx.jobs.cancel(job_id):
            raise ConflictError(f"job {job_id} is not running in this server process", state=job["state"])
        return {"job_id": job_id, "cancelling": True}


@route("/api/phase1/securitisation/top20", "session", CORE, "the Top-20 of the session's last run")
class Top20Handler(BusinessHandler):
    async def get(self) -> None:
        await self.answer(self.top20)

    def top20(self) -> dict[str, Any]:
        ops.require_flag(self.store, "phase1_core")
        result = load_run(self.last_run_id(), frame=False)
        m = result.meta
        return {"run_id": result.run_id, "title": m["project"]["title"], "seed": m["seed"],
                "cardinality": m["cardinality"], "evaluated": m["evaluated"], "counts": m["counts"],
                "ruleset": m["ruleset"]["version"], "created_at": m["created_at"], "top": result.top[:20]}


@route("/api/phase1/securitisation/export/{rank}", "session", ("phase1_core", "docs_exports"),
       "the term sheet of a ranked structure of the session's last run: xlsx, or ?format=json")
class ExportHandler(BusinessHandler):
    async def get(self, rank_text: str) -> None:
        fmt = self.get_argument("format", "xlsx").strip().lower()
        try:
            rank = int(rank_text)
        except ValueError:
            rank = 0
        if rank < 1:
            raise InputError([FieldError("rank", f"must be a whole number from 1 (got {rank_text!r})")], "export")
        run_id = await self.in_worker(self.last_run_id)
        try:
            content, filename, media_type = await self.in_pool(service.export_term_sheet, self.store, run_id,
                                                               rank, fmt)
        except ImportError as error:
            raise DisabledError(f"term-sheet export is not available in this build ({error})") from None
        self.set_header("Content-Type", media_type)
        disposition = "inline" if fmt == "json" else "attachment"
        self.set_header("Content-Disposition", f"{disposition}; filename=\"{filename}\"")
        self.finish(content)


@route("/api/phase1/calc", "session", ("phase1_core", "reverse_dscr_engine"),
       "one structure with KPIs and schedule: {\"structure\", optional \"project\", \"seed\"}")
class CalcHandler(BusinessHandler):
    async def post(self) -> None:
        body, project, source = await self.in_worker(self.calc_request)
        out = await self.in_pool(service.evaluate, self.store, project, body["structure"], body.get("seed"),
                                 body.get("ruleset"))
        await self.answer(lambda: {**out, "project": {"title": project.title, "source": source}})

    def calc_request(self) -> tuple[dict[str, Any], Project, str]:
        body = self.json_body()
        errors = [FieldError(k, "unknown field; known: structure, project, seed, ruleset") for k in body
                  if k not in ("structure", "project", "seed", "ruleset")]
        seed = _whole(body.get("seed"), "seed", 0, MAX_SEED, errors, allow_none=True)
        if not isinstance(body.get("structure"), Mapping):
            errors.append(FieldError("structure", "required: an object with one value per range key"))
        if errors:
            raise InputError(errors, "calc request")
        project, source = self.resolve_project(body.get("project"))
        return {**body, "seed": seed}, project, source


# ---- ops routes ----------------------------------------------------------------------------------------


class OpsHandler(Phase1Handler):
    """Routes for operators: the X-Admin-Token header, compared in constant time."""

    def prepare(self) -> None:
        super().prepare()
        from ..auth import check_ops_token

        if not check_ops_token(self.request.headers.get("X-Admin-Token"), self.ctx.ops_token):
            raise ForbiddenError("missing or invalid X-Admin-Token")
        if self.request.method == "POST" and self.content_type() not in ("application/json", ""):
            raise InputError([FieldError("Content-Type", "must be application/json")], "request")

    @property
    def actor(self) -> str:
        return f"ops-token@{self.request.remote_ip}"

    def body_fields(self, allowed: tuple[str, ...]) -> dict[str, Any]:
        body = self.json_body()
        unknown = [FieldError(k, f"unknown field; known: {', '.join(allowed)}") for k in body if k not in allowed]
        if unknown:
            raise InputError(unknown, "request")
        return body


@route("/api/phase1/status/full", "ops_token", (),
       "GO / NO-GO, canary, flags, rulesets, metrics, memory, uptime, and the health detail")
class StatusHandler(OpsHandler):
    async def get(self) -> None:
        await self.answer(self.status)

    def status(self) -> dict[str, Any]:
        status = ops.status_full(self.ctx.store, started_at=self.ctx.settings.started_at, process=ops.PROCESS_ID)
        status["server"] = {"app_env": self.ctx.settings.app_env, "runs_in_flight": self.ctx.runs_in_flight,
                            "max_pending_runs": self.ctx.settings.max_pending_runs,
                            "kernels": self.ctx.kernel_limits.describe()}
        return status


@route("/api/phase1/canary/update", "ops_token", (), "set the canary share: {\"percentage\", \"reason\"}")
class CanaryHandler(OpsHandler):
    async def post(self) -> None:
        await self.answer(self.update)

    def update(self) -> dict[str, Any]:
        body = self.body_fields(("percentage", "reason"))
        return ops.update_canary(self.ctx.store, body.get("percentage"), body.get("reason"), self.actor,
                                 self.request_id)


@route("/api/phase1/rollback", "ops_token", (),
       "lower the canary share: {\"target_percentage\" (default 0), \"reason\"}; reports duration_ms")
class RollbackHandler(OpsHandler):
    async def post(self) -> None:
        await self.answer(self.roll_back)

    def roll_back(self) -> dict[str, Any]:
        body = self.body_fields(("target_percentage", "reason"))
        return ops.rollback(self.ctx.store, body.get("target_percentage", 0), body.get("reason"), self.actor,
                            self.request_id)


@route("/api/phase1/flags", "ops_token", (),
       "feature flags (GET); update (POST) {\"flag\": true, ...}, or {\"version\", \"changes\"} (stale: 409)")
class FlagsHandler(OpsHandler):
    async def get(self) -> None:
        await self.answer(ops.get_flags, self.ctx.store)

    async def post(self) -> None:
        await self.answer(self.update)

    def update(self) -> dict[str, Any]:
        """The operations guide's body {"reverse_dscr_engine": true} (last writer wins), or the optimistic
        {"version": N, "changes": {...}} (a stale N is a 409); both audited."""
        body = self.json_body()
        if "version" not in body and "changes" not in body:
            return ops.update_flags(self.ctx.store, None, body, self.actor, self.request_id, field_prefix="")
        unknown = [FieldError(safe_display(k)[:64], "unknown field next to version / changes; send either "
                                                    "{\"flag\": true, ...} or {\"version\": N, \"changes\": {...}}")
                   for k in body if k not in ("version", "changes")]
        if unknown:
            raise InputError(unknown, "flag update")
        return ops.update_flags(self.ctx.store, body.get("version"), body.get("changes"), self.actor,
                                self.request_id)


@route("/api/phase1/runs/delete", "ops_token", (),
       "remove a stored run (also a bad record): {\"run_id\", optional \"reason\"}; audited")
class RunsDeleteHandler(OpsHandler):
    async def post(self) -> None:
        await self.answer(self.delete)

    def delete(self) -> dict[str, Any]:
        body = self.body_fields(("run_id", "reason"))
        return service.delete_run(self.ctx.store, body.get("run_id"), self.actor, self.request_id,
                                  body.get("reason"))


# ---- public routes -------------------------------------------------------------------------------------


@route("/api/phase1/health", "public", (),
       "liveness: {\"status\": \"ok\"} or 503 \"degraded\" (the detail is in status/full)")
class HealthHandler(Phase1Handler):
    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.ctx.health_executor, ops.public_health, self.ctx.store)
        self.write_json(result, status=200 if result["status"] == "ok" else 503)


@route("/api/phase1/route-list", "public", (), "this list, from the live routing table (?all=1: every route)")
class RouteListHandler(Phase1Handler):
    def get(self) -> None:
        everything = self.get_argument("all", "").lower() in ("1", "true", "yes")
        self.write_json(route_table(self.application, everything=everything))


@route("/api/phase1/{anything}", "public", (), "unknown Phase-1 API path: a JSON 404")
class ApiNotFoundHandler(Phase1Handler):
    def prepare(self) -> None:
        raise NotFoundError(f"no route {self.request.method} {self.request.path}; see /api/phase1/route-list")


# ---- static files --------------------------------------------------------------------------------------


@route("/phase1/static/{path}", "public", (), "stylesheet of the login pages")
class PublicStaticHandler(web.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


class AssetsHandler(GateMixin, web.StaticFileHandler):
    """Vendored assets (Font Awesome for the Voila template), for logged-in sessions only."""

    phase1_route = RouteInfo("/phase1/assets/{path}", "session", (), "Font Awesome (vendored) for the dashboards")


def handlers(base_url: str = "/") -> list[tuple[str, type, dict[str, Any]] | tuple[str, type]]:
    """The Phase-1 routes, in matching order."""
    from .portfolio_handlers import portfolio_routes  # imports this module: loaded once its classes exist

    b = base_url.rstrip("/")
    job = r"([0-9a-f]{8,64})"
    static = HERE / "static"
    return [
        (f"{b}/auth/login", LoginHandler),
        (f"{b}/auth/mfa", MfaHandler),
        (f"{b}/auth/logout", LogoutHandler),
        (f"{b}/login", JupyterLoginRedirect),
        (f"{b}/logout", JupyterLogout),
        (f"{b}/phase1/?", HomeHandler),
        (f"{b}/phase1/static/(.*)", PublicStaticHandler, {"path": str(static / "public")}),
        (f"{b}/phase1/assets/(.*)", AssetsHandler, {"path": str(static)}),
        (f"{b}/api/phase1/projects/validate", ValidateHandler),
        (f"{b}/api/phase1/permutations/presets", PresetsHandler),
        (f"{b}/api/phase1/permutations/cardinality", CardinalityHandler),
        (f"{b}/api/phase1/run", RunHandler),
        (f"{b}/api/phase1/run/submit", SubmitHandler),
        (f"{b}/api/phase1/run/progress/{job}", ProgressHandler),
        (f"{b}/api/phase1/run/result/{job}", ResultHandler),
        (f"{b}/api/phase1/run/cancel/{job}", CancelHandler),
        (f"{b}/api/phase1/securitisation/top20", Top20Handler),
        (f"{b}/api/phase1/securitisation/export/([^/]+)", ExportHandler),
        (f"{b}/api/phase1/calc", CalcHandler),
        (f"{b}/api/phase1/status/full", StatusHandler),
        (f"{b}/api/phase1/canary/update", CanaryHandler),
        (f"{b}/api/phase1/rollback", RollbackHandler),
        (f"{b}/api/phase1/flags", FlagsHandler),
        (f"{b}/api/phase1/runs/delete", RunsDeleteHandler),
        *portfolio_routes(b, job),
        (f"{b}/api/phase1/health", HealthHandler),
        (f"{b}/api/phase1/route-list", RouteListHandler),
        (f"{b}/api/phase1(?:/.*)?", ApiNotFoundHandler),
    ]


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


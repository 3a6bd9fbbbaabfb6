"""The OpenAPI 3.1 document of the Phase-1 routes (``GET /api/phase1/openapi.json``), built from the route table.

Each operation says its auth (a session cookie after password + TOTP, the X-Admin-Token header, or none), its
feature flags, its request body (schemas derived from the library's own field specs where there are any) and
every status it can answer, errors with the one error body of the API.
"""

from __future__ import annotations

import re
from typing import Any

from .. import __version__
from ..defaults import MAX_SEED
from ..ops import FLAGS
from ..project import SPECS
from ..ranges import KEY_SPECS
from .context import COOKIE_NAME
from .routes import ROUTES, Route
from .security import implemented_methods

ERROR = {
    "type": "object", "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "the kind: invalid_input, guardrail, not_found, unauthorized, "
                                                   "forbidden, conflict, locked, busy, disabled, ..."},
        "message": {"type": "string"}, "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"],
                                               "properties": {"field": {"type": "string"},
                                                              "message": {"type": "string"}}}},
    },
}
OBJECT = {"type": "object"}


def _field_schema(name: str) -> dict[str, Any]:
    """A project field's JSON schema from its spec (phase1lib.project.SPECS)."""
    spec = SPECS[name]
    kinds = {"text": {"type": "string", "minLength": 1, "maxLength": 200}, "enum": {"enum": list(spec.choices)},
             "number": {"type": "number"}, "integer": {"type": "integer"}, "date": {"type": "string",
                                                                                    "format": "date"},
             "curve": {"type": "array", "minItems": 1, "maxItems": 20,
                       "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}}}}
    schema = dict(kinds[spec.kind])
    if spec.kind == "integer" and spec.choices:
        schema = {"enum": list(spec.choices)}
    if spec.lo is not None:
        schema["exclusiveMinimum" if spec.lo_open else "minimum"] = spec.lo
    if spec.hi is not None:
        schema["exclusiveMaximum" if spec.hi_open else "maximum"] = spec.hi
    schema["description"] = f"{spec.label} ({spec.unit})" if spec.unit else spec.label
    return schema if spec.default is not None or spec.kind == "text" else {"anyOf": [schema, {"type": "null"}]}


def _optional(name: str) -> bool:
    from ..project import field_spec

    return not field_spec(name)["required"]


def project_schema() -> dict[str, Any]:
    """A project object (METHODOLOGY section 1; section 11's optional benchmark_curve and cap_rate)."""
    return {"type": "object", "additionalProperties": False,
            "required": [n for n in SPECS if not _optional(n)],
            "properties": {n: _field_schema(n) for n in SPECS}}


def ranges_schema() -> dict[str, Any]:
    """A range request: per key a list, a scalar or {min, max, step} (section 3); "market" coupons under v2."""
    step = {"type": "object", "required": ["min", "max", "step"], "additionalProperties": False,
            "properties": {k: {"type": "number"} for k in ("min", "max", "step")}}
    scalar = {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
    value = {"anyOf": [scalar, {"type": "array", "minItems": 1, "items": scalar}, step]}
    keys = {a: value for s in KEY_SPECS for a in (s.name, *s.aliases)}
    return {"type": "object", "additionalProperties": False, "properties": keys}


def bodies() -> dict[str, dict[str, Any]]:
    """Request body schemas by the route table's ``body`` name."""
    project = project_schema()
    ruleset = {"type": "string", "description": "v1, v2 or a registered candidate"}
    seed = {"type": "integer", "minimum": 0, "maximum": MAX_SEED}
    run = {"type": "object", "additionalProperties": False,
           "properties": {"ranges": ranges_schema(), "preset": {"type": "string"}, "project": project,
                          "seed": seed, "topn": {"type": "integer", "minimum": 1, "maximum": 1000},
                          "sample": {"type": "integer", "minimum": 1}, "ruleset": ruleset}}
    reason = {"type": "string", "minLength": 1, "maxLength": 500}
    return {
        "validate": {"anyOf": [project, {"type": "object", "additionalProperties": False, "required": ["project"],
                                         "properties": {"project": project, "ruleset": ruleset}}]},
        "cardinality": {"type": "object", "additionalProperties": False,
                        "properties": {"ranges": ranges_schema(), "preset": {"type": "string"}, "project": project,
                                       "ruleset": ruleset}},
        "run": run,
        "calc": {"type": "object", "additionalProperties": False, "required": ["structure"],
                 "properties": {"structure": ranges_schema(), "project": project, "seed": seed,
                                "ruleset": ruleset}},
        "canary": {"type": "object", "additionalProperties": False, "required": ["percentage", "reason"],
                   "properties": {"percentage": {"type": "number", "minimum": 0, "maximum": 100},
                                  "reason": reason}},
        "rollback": {"type": "object", "additionalProperties": False, "required": ["reason"],
                     "properties": {"target_percentage": {"type": "number", "minimum": 0, "maximum": 100},
                                    "reason": reason}},
        "flags": {"anyOf": [
            {"type": "object", "additionalProperties": False, "minProperties": 1,
             "properties": {name: {"type": "boolean"} for name in FLAGS}},
            {"type": "object", "additionalProperties": False, "required": ["version", "changes"],
             "properties": {"version": {"type": "integer", "minimum": 0},
                            "changes": {"type": "object", "minProperties": 1,
                                        "properties": {name: {"type": "boolean"} for name in FLAGS},
                                        "additionalProperties": False}}}]},
        "runs_delete": {"type": "object", "additionalProperties": False, "required": ["run_id"],
                        "properties": {"run_id": {"type": "string"}, "reason": reason}},
        "empty": {"type": "object", "maxProperties": 0},
        "portfolio": portfolio_schema(project, run),
    }


def portfolio_schema(project: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """A portfolio (docs/portfolio.md) as the API takes it: inline projects, shared or per-project options."""
    options = {k: run["properties"][k] for k in ("ranges", "preset", "ruleset", "seed", "topn", "sample")}
    entry = {"type": "object", "additionalProperties": False, "required": ["project"],
             "properties": {"project": project, **options}}
    return {"type": "object", "additionalProperties": False, "required": ["projects"],
            "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 200},
                           "defaults": {"type": "object", "additionalProperties": False, "properties": options},
                           "projects": {"type": "array", "minItems": 1, "maxItems": 500, "items": entry}}}


FORMS = {"/auth/login": {"username": {"type": "string"}, "password": {"type": "string"}},
         "/auth/mfa": {"code": {"type": "string"}}}
SUCCESS = {"post:/api/phase1/run/submit": "202", "post:/api/phase1/run/cancel/{job_id}": "202",
           "post:/api/phase1/portfolio": "202"}
RESPONSES = {
    "get:/api/phase1/health": {"type": "object", "required": ["status"],
                               "properties": {"status": {"enum": ["ok", "degraded"]}}},
    "get:/api/phase1/route-list": {"type": "array", "items": {
        "type": "object", "required": ["method", "path", "auth", "flags"],
        "properties": {"method": {"type": "string"}, "path": {"type": "string"},
                       "auth": {"type": "string"}, "flags": {"type": "array", "items": {"type": "string"}}}}},
}


def _statuses(route: Route, method: str) -> list[str]:
    """Every status an operation can answer besides its success."""
    codes = {"400", "403", "404", "405", "413"}
    if route.auth == "session":
        codes |= {"401", "409", "429", "503"}
    if route.auth == "ops_token":
        codes |= {"409"}
    if route.form:
        codes |= {"401", "429", "303"}
    if route.body == "run":
        codes |= {"499"}
    if route.path == "/api/phase1/health":
        codes |= {"503"}
    if route.path in ("/auth/logout", "/logout", "/login") or route.answers == "text/html":
        codes |= {"302", "303"}
    return sorted(codes)


def _operation(route: Route, method: str) -> dict[str, Any]:
    key = f"{method}:{route.path}"
    success = SUCCESS.get(key, "200")
    media = "application/json" if method == "post" or route.answers == "application/json" else route.answers
    schema = RESPONSES.get(key, OBJECT if media == "application/json" else {"type": "string"})
    op: dict[str, Any] = {
        "summary": route.summary, "operationId": f"{method}_{route.path.strip('/').replace('/', '_')}",
        "x-phase1-auth": route.auth, "x-phase1-flags": list(route.flags),
        "responses": {success: {"description": "success", "content": {media: {"schema": schema}}},
                      **{code: {"description": "see the error body", "content": {"application/json": {
                          "schema": ERROR}}} for code in _statuses(route, method)}},
    }
    if route.answers == "text/html" and method == "get":
        op["responses"][success] = {"description": "an HTML page", "content": {"text/html": {
            "schema": {"type": "string"}}}}
    if route.auth == "session":
        op["security"] = [{"session": []}]
    elif route.auth == "ops_token":
        op["security"] = [{"adminToken": []}]
    else:
        op["security"] = []
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in _path_params(route.path)]
    if route.path.endswith("/export/{rank}"):
        params.append({"name": "format", "in": "query", "schema": {"enum": ["xlsx", "json"]}})
    if params:
        op["parameters"] = params
    if method == "post":
        if route.form:
            props = FORMS[route.path]
            op["requestBody"] = {"content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": props, "required": list(props)}}}}
        elif route.body:
            op["requestBody"] = {"required": route.body != "empty",
                                 "content": {"application/json": {"schema": bodies()[route.body]}}}
    return op


def _path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def document(base_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`~phase1lib.server.routes.ROUTES`."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        methods = [m.lower() for m in implemented_methods(route.handler) if m in ("GET", "POST")]
        if route.path == "/api/phase1/{anything}":
            methods = ["get"]
        if methods:
            paths[route.path] = {m: _operation(route, m) for m in methods}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Phase-1 Workbench API", "version": __version__,
                 "description": "Structuring securitisations of data-centre leases. Business routes need an "
                                "elevated session: POST /auth/login (username, password), then POST /auth/mfa "
                                "(code) with the same cookie jar; ops routes the X-Admin-Token header."},
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "components": {"securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME,
                        "description": "the signed session cookie set by /auth/mfa after password + TOTP"},
            "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"}},
            "schemas": {"Error": ERROR}},
        "paths": paths,
    }

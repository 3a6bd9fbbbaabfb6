"""The OpenAPI 3.1 document of the routes (GET /api/phase1/openapi.json), derived from the route table, and a
schemathesis run against a real prod server on loopback: no 5xx and no response that breaks its schema."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from http.cookiejar import MozillaCookieJar
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as st_checks
from server_fixtures import CURL, Server, secret, server_env, start_server, stop_server

from phase1lib.server.openapi import document
from phase1lib.server.routes import ROUTES, handlers

pytestmark = [pytest.mark.skipif(CURL is None, reason="curl is not installed (Debian package curl)"),
              pytest.mark.timeout(600)]

# Operations the fuzzer leaves alone: logging out would end its own session; pages and files are not JSON.
SKIP = {("POST", "/auth/logout"), ("GET", "/logout"), ("POST", "/logout"), ("GET", "/login"), ("GET", "/phase1"),
        ("GET", "/auth/login"), ("GET", "/auth/mfa"), ("GET", "/phase1/static/{path}"),
        ("GET", "/phase1/assets/{path}"), ("GET", "/api/phase1/securitisation/export/{rank}")}
EXAMPLES = 12


def test_the_document_lists_every_route_with_its_auth_and_flags():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    handlers()  # attaches each route to its handler
    for route in ROUTES:
        assert route.path in doc["paths"], route.path
        for op in doc["paths"][route.path].values():
            assert op["x-phase1-auth"] == route.auth and op["x-phase1-flags"] == list(route.flags)
            security = {"session": [{"session": []}], "ops_token": [{"adminToken": []}], "public": []}
            assert op["security"] == security[route.auth]
            for code, response in op["responses"].items():
                if code[0] in "45":
                    assert response["content"]["application/json"]["schema"]["required"] == ["error", "message"]
    run = doc["paths"]["/api/phase1/run"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(run["properties"]) == {"ranges", "preset", "project", "seed", "topn", "sample", "ruleset"}
    project = run["properties"]["project"]
    assert project["properties"]["pue"]["minimum"] == 1.0 and "title" in project["required"]
    assert project["properties"]["cap_rate"]["anyOf"][0]["maximum"] == 0.2  # section 11's optional field
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["info"]["version"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("openapi")
    env = server_env(workdir / "home", "prod", PHASE1_ADMIN_TOKEN=secret(), PHASE1_COOKIE_SECRET=secret(),
                     PHASE1_MAX_PERMUTATIONS="2000")
    srv = start_server(workdir, env, admins=["fuzz"])
    try:
        yield srv
    finally:
        stop_server(srv.proc)


def session_cookie(jar: Path) -> str:
    cookies = MozillaCookieJar(str(jar))
    cookies.load(ignore_discard=True, ignore_expires=True)
    return "; ".join(f"{c.name}={c.value}" for c in cookies)


def test_the_live_document_is_the_route_tables(server: Server):
    r = server.curl()("/api/phase1/openapi.json")
    assert r.status == 200 and r.json() == json.loads(json.dumps(document()))


def fuzz_operation(operation, headers: dict[str, str], checks: list) -> None:
    """Hypothesis-generated requests of one operation, each answer checked against the document."""

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def fuzz(case):
        case.call_and_validate(headers=headers, checks=checks, timeout=60)

    fuzz()


def test_schemathesis_finds_no_server_error_and_no_schema_break(server: Server, tmp_path: Path):
    server.login("fuzz")
    headers = {"Cookie": session_cookie(server.workdir / "fuzz.jar"), "X-Admin-Token": server.ops_token}
    schema = schemathesis.openapi.from_url(f"{server.url.rstrip('/')}/api/phase1/openapi.json")
    checks = [st_checks.not_a_server_error, st_checks.status_code_conformance,
              st_checks.content_type_conformance, st_checks.response_schema_conformance]
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        tested.append(f"{operation.method.upper()} {operation.path}")
        fuzz_operation(operation, headers, checks)
    assert len(tested) >= 20, tested
    assert "Traceback" not in server.log_tail(200_000)
    health = server.curl()("/api/phase1/health")
    assert health.status == 200 and health.json() == {"status": "ok"}

"""`phase1 serve`: the real server process in APP_ENV=prod, driven with real curl and a cookie jar.

One server per module (start-up is a few seconds: Jupyter Server, JupyterLab, Voila). Each test logs in
with its own admin: a TOTP code is accepted once per user, and lockout counters are per user and per
client address, so the failing logins come from another loopback address (127.0.0.2).
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixtures import (
    CURL,
    GUIDE_RANGES,
    PHASE1,
    ROOT,
    Server,
    external_origins,
    secret,
    server_env,
    start_server,
    stop_server,
)

from phase1lib.store import SQLiteStore

pytestmark = [pytest.mark.skipif(CURL is None, reason="curl is not installed (Debian package curl)"),
              pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
GUARDRAIL = 5000
GUIDE_BODY = {"seed": 424242, "topn": 20, "ranges": GUIDE_RANGES}
ADMINS = ["admin", "bob", "carol", "dave", "erin", "frank", "grace"]
OTHER_ADDR = "127.0.0.2"  # failing logins come from here, so 127.0.0.1 is never locked out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("server")
    home = workdir / "home"
    env = server_env(home, "prod", PHASE1_ADMIN_TOKEN=secret(), PHASE1_COOKIE_SECRET=secret(),
                     PHASE1_MAX_PERMUTATIONS=str(GUARDRAIL))
    # A job "running" when the previous server process died: the new one must show it failed.
    home.mkdir(parents=True)
    store = SQLiteStore(home / "phase1.db")
    store.create_job("bob", "running before the restart", job_id="deadbeef00000001")
    store.update_job("deadbeef00000001", state="running", progress=0.4)
    store.close()
    # The London sample has no viable structure in the guide's narrow ranges (every one fails a gate), so
    # this server's default project is the Ashburn sample: the guide's flow then has a Top-20 to export.
    srv = start_server(workdir, env, ["--default-project", str(ROOT / "examples" / "ashburn_dc_gamma.json")],
                       admins=ADMINS)
    try:
        yield srv
    finally:
        stop_server(srv.proc)


@pytest.fixture(scope="module")
def bob(server: Server):
    """An elevated session (password + TOTP) shared by the read-mostly tests."""
    return server.login("bob")


def assert_error(r, status: int, kind: str | None = None) -> dict:
    assert r.status == status, (r.status, r.text)
    body = r.json()
    assert set(body) >= {"error", "message", "request_id"}, body
    assert body["request_id"] == r.headers["x-request-id"]
    if kind:
        assert body["error"] == kind, body
    return body


# ---- the operations guide's CLI flow --------------------------------------------------------------------


def test_guide_cli_flow_with_curl(server: Server, tmp_path: Path):
    admin = server.admins["admin"]
    curl = server.curl("guide")
    # REM Login + MFA
    r = curl("/auth/login", "-X", "POST", data=f"username=admin&password={admin.password}")
    assert r.status == 200 and r.json()["state"] == "pending", r.text
    pending = next(c for c in r.set_cookies if c.startswith("phase1_session="))
    assert "HttpOnly" in pending and "SameSite=Strict" in pending
    r = curl("/auth/mfa", "-X", "POST", data=f"code={admin.code()}")
    assert r.status == 200 and r.json()["state"] == "elevated", r.text
    elevated = next(c for c in r.set_cookies if c.startswith("phase1_session="))
    assert elevated.split(";")[0] != pending.split(";")[0], "MFA must hand out a new session id"
    # REM Run engine
    r = curl("/api/phase1/run", "-H", "Content-Type: application/json", "-X", "POST", data=json.dumps(GUIDE_BODY))
    assert r.status == 200, r.text
    run = r.json()
    assert run["seed"] == 424242 and run["cardinality"] == 180 and run["evaluated"] == 180
    assert run["project"] == {"title": "Ashburn DC Gamma", "source": "default"}
    # REM Get results
    r = curl("/api/phase1/securitisation/top20")
    assert r.status == 200, r.text
    top20 = r.json()
    assert top20["run_id"] == run["run_id"] and 1 <= len(top20["top"]) <= 20
    assert [row["rank"] for row in top20["top"]] == list(range(1, len(top20["top"]) + 1))
    # The same request twice gives the same Top-20.
    again = curl("/api/phase1/run", "-H", "Content-Type: application/json", "-X", "POST",
                 data=json.dumps(GUIDE_BODY)).json()
    assert again["run_id"] == run["run_id"]
    assert curl("/api/phase1/securitisation/top20").json() == top20
    r = curl("/api/phase1/securitisation/export/1")
    assert r.status == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert "attachment" in r.headers["content-disposition"] and ".xlsx" in r.headers["content-disposition"]
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(r.body))
    assert book.sheetnames
    r = curl("/api/phase1/securitisation/export/1?format=json")
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    r = curl("/api/phase1/securitisation/export/999")
    assert_error(r, 404, "not_found")


def test_validate_remembers_the_project_and_business_routes(server: Server):
    curl = server.login("frank")
    london = json.loads((ROOT / "examples" / "london_dc_alpha.json").read_text())
    r = curl("/api/phase1/projects/validate", method="POST", json_body=london)
    assert r.status == 200, r.text
    body = r.json()
    assert body["valid"] is True and body["derived"]["net_it_load_mw"] == pytest.approx(60)
    r = curl("/api/phase1/run", method="POST", json_body=GUIDE_BODY)
    assert r.status == 200 and r.json()["project"] == {"title": "London DC Alpha", "source": "session"}, r.text
    # a bad project: every problem, each naming its field
    r = curl("/api/phase1/projects/validate", method="POST", json_body={**london, "pue": 9, "lease_years": 2})
    body = assert_error(r, 400, "invalid_input")
    assert body["valid"] is False and {e["field"] for e in body["errors"]} >= {"pue", "lease_years"}
    # presets, cardinality, calc
    presets = curl("/api/phase1/permutations/presets").json()["presets"]
    assert {"current_1920", "phase2_10k"} <= {p["name"] for p in presets}
    r = curl("/api/phase1/permutations/cardinality", method="POST", json_body={"preset": "phase2_10k"})
    assert r.status == 200 and r.json()["cardinality"] == 9568, r.text
    structure = json.loads((ROOT / "examples" / "structure_rank1.json").read_text())
    r = curl("/api/phase1/calc", method="POST", json_body={"structure": structure})
    assert r.status == 200, r.text
    assert r.json()["project"]["title"] == "London DC Alpha"
    assert_error(curl("/api/phase1/calc", method="POST", json_body={"structur": {}}), 400, "invalid_input")


def test_background_run_progress_and_result(server: Server):
    curl = server.login("erin")
    r = curl("/api/phase1/run/submit", method="POST", json_body={"preset": "current_1920", "seed": 7})
    assert r.status == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 120
    while True:
        job = curl(f"/api/phase1/run/progress/{job_id}").json()
        assert job["state"] in ("queued", "running", "done"), job
        if job["state"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["state"] == "done" and job["progress"] == 1.0 and job["run_id"]
    result = curl(f"/api/phase1/run/result/{job_id}")
    assert result.status == 200 and result.json()["run_id"] == job["run_id"] and result.json()["cardinality"] == 1920
    assert curl("/api/phase1/securitisation/top20").json()["run_id"] == job["run_id"]
    assert_error(curl("/api/phase1/run/progress/0123456789abcdef"), 404, "not_found")
    # another admin does not see erin's job
    assert_error(server.login("bob", "bob-jobs")(f"/api/phase1/run/progress/{job_id}"), 404)


def test_a_job_interrupted_by_a_restart_shows_failed(server: Server, bob):
    r = bob("/api/phase1/run/progress/deadbeef00000001")
    assert r.status == 200, r.text
    job = r.json()
    assert job["state"] == "failed" and "interrupted by restart" in job["error"]
    assert_error(bob("/api/phase1/run/result/deadbeef00000001"), 409, "conflict")


def test_logout_ends_the_session(server: Server):
    curl = server.login("erin", "erin-logout")
    assert curl("/api/phase1/securitisation/top20").status in (200, 404)
    r = curl("/auth/logout", method="POST")
    assert r.status == 200 and r.json()["logged_out"] is True
    assert_error(curl("/api/phase1/securitisation/top20"), 401, "unauthorized")


# ---- refusals ------------------------------------------------------------------------------------------


def test_refusals(server: Server, bob):
    anon = server.curl("anon")
    # business without a session: 401
    assert_error(anon("/api/phase1/run", method="POST", json_body=GUIDE_BODY), 401, "unauthorized")
    assert_error(anon("/api/phase1/securitisation/top20"), 401, "unauthorized")
    # password only: 403
    carol = server.admins["carol"]
    half = server.curl("carol")
    assert half("/auth/login", method="POST", data=f"username=carol&password={carol.password}").status == 200
    body = assert_error(half("/api/phase1/run", method="POST", json_body=GUIDE_BODY), 403, "forbidden")
    assert "MFA" in body["message"]
    # ops token missing or wrong: 403
    assert_error(anon("/api/phase1/status/full"), 403, "forbidden")
    assert_error(anon("/api/phase1/status/full", headers={"X-Admin-Token": "phase1-admin-secure-token"}), 403)
    assert_error(anon("/api/phase1/rollback", method="POST", headers={"X-Admin-Token": server.ops_token[:-1]},
                      json_body={"target_percentage": 0, "reason": "x"}), 403)
    # over the guardrail: 413 with both numbers
    body = assert_error(bob("/api/phase1/run", method="POST", json_body={"preset": "phase2_10k"}), 413, "guardrail")
    assert "9,568" in body["message"] and f"{GUARDRAIL:,}" in body["message"]
    assert body["cardinality"] == 9568 and body["max_permutations"] == GUARDRAIL
    # malformed JSON: 400 naming the problem
    r = bob("/api/phase1/run", "-H", "Content-Type: application/json", method="POST", data='{"seed": 1,}')
    body = assert_error(r, 400, "invalid_input")
    assert "malformed JSON" in body["message"] and "line 1 column" in body["message"]
    assert body["errors"][0]["field"] == "body"
    body = assert_error(bob("/api/phase1/run", method="POST", json_body={"seed": "x", "topn": 0, "rangez": {}}), 400)
    assert {e["field"] for e in body["errors"]} == {"seed", "topn", "rangez", "ranges"}
    # CSRF: a state-changing business request that is neither JSON nor carries the XSRF token
    assert_error(bob("/api/phase1/run", method="POST", data="seed=1"), 403, "forbidden")
    # a cross-site browser POST (Origin of another site) is refused even as JSON
    r = bob("/api/phase1/run", method="POST", json_body=GUIDE_BODY, headers={"Origin": "https://evil.example"})
    assert_error(r, 403, "forbidden")
    # unknown API route, wrong method
    assert_error(anon("/api/phase1/nope"), 404, "not_found")
    assert_error(anon("/api/phase1/health", method="POST", json_body={}), 405)


def test_the_xsrf_token_is_the_alternative_to_json(server: Server, bob):
    """A state-changing request that is not application/json passes with Jupyter's _xsrf token (cookie + header)."""
    assert bob("/phase1").status == 200  # pages set the _xsrf cookie
    token = next(line.split("\t")[-1].strip() for line in bob.jar.read_text().splitlines() if "\t_xsrf\t" in line)
    body = json.dumps({"preset": "current_1920"})
    r = bob("/api/phase1/run", "-H", "Content-Type: text/plain", method="POST", data=body,
            headers={"X-XSRFToken": token})
    assert r.status == 200, r.text
    r = bob("/api/phase1/run", "-H", "Content-Type: text/plain", method="POST", data=body,
            headers={"X-XSRFToken": "2|00000000|" + "0" * 32 + "|1"})
    assert_error(r, 403, "forbidden")


def test_lockout_after_five_bad_passwords(server: Server):
    dave = server.admins["dave"]
    curl = server.curl("dave", interface=OTHER_ADDR)
    statuses = [curl("/auth/login", method="POST", data="username=dave&password=wrong-password-123").status
                for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    r = curl("/auth/login", method="POST", data=f"username=dave&password={dave.password}")
    body = assert_error(r, 429, "locked")
    assert int(r.headers["retry-after"]) > 0 and body["retry_after_s"] > 0
    # the browser form answers the same status, as a page
    r = curl("/auth/login", method="POST", data=f"username=dave&password={dave.password}",
             headers={"Accept": "text/html"})
    assert r.status == 429 and "too many failed attempts" in r.text


# ---- ops -----------------------------------------------------------------------------------------------


def test_ops_flow_over_http(server: Server, tmp_path: Path, bob):
    anon, h = server.curl(), server.ops_headers
    status = anon("/api/phase1/status/full", headers=h)
    assert status.status == 200 and status.json()["decision"] in ("GO", "NO-GO")
    assert status.json()["metrics"]["requests"] > 0  # every request is measured
    # a candidate ruleset, so the canary has something to expand
    v1 = json.loads((ROOT / "phase1lib" / "rulesets" / "v1.json").read_text())
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({**v1, "version": "v2-http-test", "description": "test candidate"}))
    out = server.cli("ops", "ruleset", "register", str(candidate))
    assert out.returncode == 0, out.stderr
    for pct, state in ((0, "STABLE"), (25, "EXPANDING"), (100, "EXPANDING")):
        r = anon("/api/phase1/canary/update", method="POST", headers=h,
                 json_body={"percentage": pct, "reason": f"step to {pct}"})
        assert r.status == 200 and r.json()["percentage"] == pct and r.json()["state"] == state, r.text
    r = anon("/api/phase1/rollback", method="POST", headers=h,
             json_body={"target_percentage": 0, "reason": "emergency rollback"})
    assert r.status == 200, r.text
    rolled = r.json()
    assert rolled["state"] == "ROLLED_BACK" and rolled["percentage"] == 0 and rolled["previous_percentage"] == 100
    assert rolled["duration_ms"] >= 0 and rolled["reason"] == "emergency rollback"
    # flags: update with the version read, a stale version is a conflict, the guide's old body is explained
    flags = anon("/api/phase1/flags", headers=h).json()
    version = flags["version"]
    r = anon("/api/phase1/flags", method="POST", headers=h,
             json_body={"version": version, "changes": {"reverse_dscr_engine": False}})
    assert r.status == 200 and r.json()["version"] == version + 1 and not r.json()["flags"]["reverse_dscr_engine"]
    body = assert_error(anon("/api/phase1/flags", method="POST", headers=h,
                             json_body={"version": version, "changes": {"reverse_dscr_engine": True}}),
                        409, "conflict")
    assert body["current_version"] == version + 1
    # the operations guide's body, without a version: accepted (last writer wins)
    r = anon("/api/phase1/flags", method="POST", headers=h, json_body={"reverse_dscr_engine": False})
    assert r.status == 200 and r.json()["version"] == version + 2, r.text
    assert_error(bob("/api/phase1/calc", method="POST", json_body={"structure": {"senior_tenor": 10}}), 503,
                 "disabled")
    # phase1_core off: every business action answers "Phase-1 disabled"
    version += 1
    r = anon("/api/phase1/flags", method="POST", headers=h,
             json_body={"version": version + 1, "changes": {"reverse_dscr_engine": True, "phase1_core": False}})
    assert r.status == 200, r.text
    try:
        body = assert_error(bob("/api/phase1/run", method="POST", json_body=GUIDE_BODY), 503, "disabled")
        assert body["message"] == "Phase-1 disabled"
        assert_error(bob("/api/phase1/permutations/presets"), 503, "disabled")
    finally:
        r = anon("/api/phase1/flags", method="POST", headers=h,
                 json_body={"version": version + 2, "changes": {"phase1_core": True}})
        assert r.status == 200, r.text
    # health and the route list are public
    health = anon("/api/phase1/health")
    assert health.status == 200 and health.json() == {"status": "ok"}
    assert status.json()["health"]["store"]["reachable"] is True  # the detail is behind the ops token


def test_the_canary_rolls_runs_out_to_v2_and_back(server: Server):
    """METHODOLOGY section 11: v2 reaches users through the canary; a request may name its ruleset."""
    anon, h = server.curl(), server.ops_headers
    carol = server.login("carol")
    out = server.cli("ops", "ruleset", "register", "v2")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["version"] == "v2"
    try:
        r = anon("/api/phase1/canary/update", method="POST", headers=h,
                 json_body={"percentage": 100, "reason": "v2 to everyone"})
        assert r.status == 200, r.text
        body = {**GUIDE_BODY, "seed": 77}
        first = carol("/api/phase1/run", method="POST", json_body=body)
        assert first.status == 200 and first.json()["ruleset"] == "v2", first.text
        assert carol("/api/phase1/securitisation/top20").json()["ruleset"] == "v2"
        recent = anon("/api/phase1/status/full", headers=h).json()["recent_runs"]
        assert recent[0]["run_id"] == first.json()["run_id"] and recent[0]["ruleset"] == "v2"
    finally:
        r = anon("/api/phase1/rollback", method="POST", headers=h,
                 json_body={"target_percentage": 0, "reason": "back to v1"})
        assert r.status == 200, r.text
    second = carol("/api/phase1/run", method="POST", json_body=body)
    assert second.status == 200 and second.json()["ruleset"] == "v1", second.text
    named = carol("/api/phase1/run", method="POST", json_body={**body, "seed": 78, "ruleset": "v2"})
    assert named.status == 200 and named.json()["ruleset"] == "v2", named.text
    audit = json.loads(server.cli("ops", "audit", "--n", "20").stdout)["entries"]
    runs = {e["target"]: e for e in audit if e["action"] == "run.ruleset"}
    # a canary-decided run is nobody's action: its ruleset is in its record; a request that names one is audited
    assert first.json()["run_id"] not in runs and second.json()["run_id"] not in runs
    assert runs[named.json()["run_id"]]["source"] == "request" and runs[named.json()["run_id"]]["actor"] == "carol"
    recent = {r["run_id"]: r for r in anon("/api/phase1/status/full", headers=h).json()["recent_runs"]}
    assert recent[first.json()["run_id"]]["ruleset"] == "v2" and recent[second.json()["run_id"]]["ruleset"] == "v1"
    actions = [e["action"] for e in audit]
    assert "canary.update" in actions and "canary.rollback" in actions and "ruleset.register" in actions
    bad = carol("/api/phase1/run", method="POST", json_body={**body, "ruleset": "v9"})
    assert_error(bad, 400, "invalid_input")
    assert [e["field"] for e in bad.json()["errors"]] == ["ruleset"]
    market = carol("/api/phase1/run", method="POST", json_body={**body, "ranges": {**GUIDE_RANGES,
                                                                                 "senior_coupon": "market"}})
    assert_error(market, 400, "invalid_input")
    assert [e["field"] for e in market.json()["errors"]] == ["senior_coupon"]


def test_route_list_comes_from_the_routing_table(server: Server):
    routes = server.curl()("/api/phase1/route-list").json()
    assert all(set(r) >= {"method", "path", "auth", "flags"} for r in routes)
    table = {(r["method"], r["path"]): r for r in routes}
    expected = {
        ("GET", "/auth/login"): "public", ("POST", "/auth/login"): "public", ("GET", "/auth/mfa"): "public",
        ("POST", "/auth/mfa"): "public", ("POST", "/auth/logout"): "public",
        ("POST", "/api/phase1/projects/validate"): "session", ("GET", "/api/phase1/permutations/presets"): "session",
        ("POST", "/api/phase1/permutations/cardinality"): "session", ("POST", "/api/phase1/run"): "session",
        ("POST", "/api/phase1/run/submit"): "session", ("GET", "/api/phase1/run/progress/{job_id}"): "session",
        ("GET", "/api/phase1/run/result/{job_id}"): "session",
        ("GET", "/api/phase1/securitisation/top20"): "session",
        ("GET", "/api/phase1/securitisation/export/{rank}"): "session", ("POST", "/api/phase1/calc"): "session",
        ("GET", "/api/phase1/status/full"): "ops_token", ("POST", "/api/phase1/canary/update"): "ops_token",
        ("POST", "/api/phase1/rollback"): "ops_token", ("GET", "/api/phase1/flags"): "ops_token",
        ("POST", "/api/phase1/flags"): "ops_token", ("GET", "/api/phase1/health"): "public",
        ("GET", "/api/phase1/route-list"): "public",
    }
    for key, auth in expected.items():
        assert key in table, key
        assert table[key]["auth"] == auth, (key, table[key])
    assert table[("POST", "/api/phase1/run")]["flags"] == ["phase1_core"]
    assert "docs_exports" in table[("GET", "/api/phase1/securitisation/export/{rank}")]["flags"]
    everything = server.curl()("/api/phase1/route-list?all=1").json()
    assert not [r for r in everything if r["auth"] == "unprotected"], "every route is public by design or gated"
    paths = {r["path"] for r in everything}
    assert any(p.startswith("/voila/files") for p in paths) and any(p.startswith("/lab") for p in paths)


# ---- JupyterLab and Voila behind the same login --------------------------------------------------------

DASHBOARD = "/voila/render/dashboards/hello.ipynb"
PAGES_BEHIND_LOGIN = ["/", "/lab", "/lab/tree/dashboards", DASHBOARD, "/voila/tree", "/voila/tree/dashboards",
                      "/voila/files/dashboards/pixel.png", "/files/dashboards/pixel.png", "/phase1", "/tree",
                      "/phase1/assets/fontawesome/css/all.min.css", "/static/favicons/favicon.ico",
                      "/voila/static/voila.js", "/nbconvert/html/dashboards/hello.ipynb"]
APIS_BEHIND_LOGIN = ["/api/contents", "/api/contents/dashboards/hello.ipynb", "/api/kernels", "/api/sessions",
                     "/api/terminals", "/api/me", "/api", "/voila/api/contents/dashboards", "/lab/api/settings",
                     "/api/kernelspecs"]


def test_jupyter_and_voila_refuse_without_a_session(server: Server):
    anon = server.curl("anon-pages")
    for path in PAGES_BEHIND_LOGIN:
        r = anon(path)
        assert r.status == 302, (path, r.status, r.text[:200])
        assert r.headers["location"].startswith("/auth/login?next="), (path, r.headers)
        assert "x-request-id" in r.headers
    for path in APIS_BEHIND_LOGIN:
        r = anon(path)
        assert r.status in (401, 403), (path, r.status, r.text[:200])
    assert_error(anon("/api/contents/dashboards/x.ipynb", method="PUT", json_body={"type": "file"}), 401)
    assert anon("/api/kernels/00000000-0000-0000-0000-000000000000/channels",
                headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}).status in (401, 403)
    # password only: pages go to the MFA step
    carol = server.admins["carol"]
    half = server.curl("carol-pages")
    half("/auth/login", method="POST", data=f"username=carol&password={carol.password}")
    r = half("/lab")
    assert r.status == 302 and r.headers["location"].startswith("/auth/mfa?next="), r.headers
    assert half("/api/contents").status == 403


def test_jupyter_and_voila_work_after_login(server: Server, bob):
    r = bob("/lab")
    assert r.status == 200 and "jupyter-config-data" in r.text
    r = bob("/api/contents/dashboards")
    assert r.status == 200 and "hello.ipynb" in {c["name"] for c in r.json()["content"]}
    r = bob(DASHBOARD)
    assert r.status == 200 and "hello from a phase1 test dashboard" in r.text, r.text[-2000:]
    r = bob("/voila/files/dashboards/pixel.png")
    assert r.status == 200 and r.headers["content-type"] == "image/png"
    r = bob("/phase1/assets/fontawesome/css/all.min.css")
    assert r.status == 200 and "Font Awesome Free 5.15.4" in r.text
    assert bob("/phase1/assets/fontawesome/webfonts/fa-solid-900.woff2").status == 200
    r = bob("/phase1")
    assert r.status == 200 and DASHBOARD in r.text and "/lab" in r.text


def test_dashboard_kernels_know_the_session_user_and_the_header_cannot_be_spoofed(server: Server, bob):
    r = bob("/voila/render/dashboards/whoami.ipynb", headers={"X-Phase1-User": "mallory"})
    assert r.status == 200 and "kernel user: bob" in r.text, r.text[-1500:]


def test_pages_carry_security_headers_and_load_nothing_from_outside(server: Server, bob):
    own = server.url.rstrip("/")
    pages = {"/auth/login": server.curl()("/auth/login"), "/phase1": bob("/phase1"), "/lab": bob("/lab"),
             DASHBOARD: bob(DASHBOARD), "/voila/tree/dashboards": bob("/voila/tree/dashboards")}
    for path, r in pages.items():
        assert r.status == 200, (path, r.status)
        assert r.headers["content-type"].startswith("text/html"), path
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, (path, csp)
        sources = {s for directive in csp.split(";") for s in directive.split()[1:]}
        assert sources <= {"'self'", "'none'", "'unsafe-inline'", "'unsafe-eval'", "data:", "blob:"}, (path, csp)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])
        assert external_origins(r.text, own) == set(), (path, external_origins(r.text, own))
    assert "phase1/assets/fontawesome/css/all.min.css" in pages[DASHBOARD].text
    for css in ("all.min.css", "v4-shims.min.css"):
        text = bob(f"/phase1/assets/fontawesome/css/{css}").text
        assert not re.search(r"url\(\s*['\"]?https?:", text) and "@import" not in text
    # an API answer and a static file carry the request id too; an incoming one is kept
    r = server.curl()("/api/phase1/health", headers={"X-Request-ID": "proxy-request-0001"})
    assert r.headers["x-request-id"] == "proxy-request-0001"
    assert "x-request-id" in server.curl()("/phase1/static/phase1.css").headers


def test_browser_form_login_redirects_through_mfa(server: Server):
    """The login and MFA forms as a browser sends them (Accept: text/html): redirects, not JSON."""
    admin = server.admins["admin"]
    curl = server.curl("browser")
    html = {"Accept": "text/html"}
    r = curl("/auth/login?next=/lab", headers=html)
    assert r.status == 200 and 'name="password"' in r.text
    r = curl("/auth/login?next=/lab", method="POST", headers=html,
             data=f"username=admin&password={admin.password}")
    assert r.status == 303 and r.headers["location"] == "/auth/mfa?next=%2Flab", r.headers
    assert curl("/auth/mfa?next=/lab", headers=html).status == 200
    r = curl("/auth/mfa?next=/lab", method="POST", headers=html, data="code=000000")
    assert r.status == 401 and "invalid or expired code" in r.text  # the page again, with the error
    r = curl("/auth/mfa?next=/lab", method="POST", headers=html, data=f"code={admin.code()}")
    assert r.status == 303 and r.headers["location"] == "/lab", r.headers
    assert curl("/lab").status == 200
    r = curl("/auth/mfa?next=//evil.example/", method="POST", headers=html, data="code=1")
    assert r.status in (302, 401)  # no pending login now; never a redirect off the server
    assert "evil.example" not in r.headers.get("location", "")


# ---- start-up rules ------------------------------------------------------------------------------------


def test_prod_refuses_to_start_without_good_secrets(tmp_path: Path):
    env = server_env(tmp_path / "home", "prod", PHASE1_ADMIN_TOKEN="phase1-admin-secure-token",
                     PHASE1_COOKIE_SECRET="short")
    out = subprocess.run([PHASE1, "serve", "--port", "1"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    assert "refusing to start" in out.stderr and "PHASE1_ADMIN_TOKEN" in out.stderr
    assert "PHASE1_COOKIE_SECRET" in out.stderr and "phase1-admin-secure-token" not in out.stderr


def test_dev_mode_loopback_is_the_dev_admin_and_the_ops_token_is_printed_once(tmp_path: Path):
    env = server_env(tmp_path / "home", "dev", PHASE1_MAX_PENDING_RUNS="1")
    srv = start_server(tmp_path, env)
    try:
        assert srv.ops_token and srv.log_tail(20000).count(srv.ops_token) == 1
        assert "dev: open" in srv.log_tail(20000)
        curl = srv.curl("dev")
        r = curl("/api/phase1/run", method="POST", json_body={"preset": "current_1920"})
        assert r.status == 200 and r.json()["cardinality"] == 1920, r.text
        assert curl("/api/phase1/securitisation/top20").json()["run_id"] == r.json()["run_id"]
        assert curl("/lab").status == 200  # JupyterLab too, without a login
        assert curl("/api/phase1/status/full", headers={"X-Admin-Token": srv.ops_token}).status == 200
        # one run at a time here: a second one while a big background run goes is a 429; cancel stops the job
        r = curl("/api/phase1/run/submit", method="POST", json_body={"preset": "maximum_250k", "seed": 11})
        assert r.status == 202, r.text
        job_id = r.json()["job_id"]
        busy = curl("/api/phase1/run", method="POST", json_body={"preset": "current_1920", "seed": 12})
        assert_error(busy, 429, "busy")
        assert busy.headers["retry-after"]
        cancel = curl(f"/api/phase1/run/cancel/{job_id}", method="POST", json_body={})
        assert cancel.status in (202, 409), cancel.text
        deadline = time.monotonic() + 120
        while (job := curl(f"/api/phase1/run/progress/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        if cancel.status == 202:
            assert job["state"] == "failed" and job["error"] == "cancelled by the user", job
        else:  # the run was already over
            assert job["state"] == "done", job
        assert curl("/api/phase1/run", method="POST", json_body={"preset": "current_1920", "seed": 12}).status == 200
    finally:
        stop_server(srv.proc)


def test_a_browser_loads_nothing_from_outside(server: Server):
    """Chromium logs in through the forms, opens JupyterLab and a dashboard: every request stays on the server."""
    if importlib.util.find_spec("playwright") is None or not Path(CHROMIUM).exists():
        pytest.skip(f"needs playwright and Debian's chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    grace = server.admins["grace"]
    requests, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda req: requests.append(req.url))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(server.url + "lab")
            assert "/auth/login" in page.url
            page.fill("#username", "grace")
            page.fill("#password", grace.password)
            page.click("button[type=submit]")
            page.wait_for_url("**/auth/mfa**")
            page.fill("#code", grace.code())
            page.click("button[type=submit]")
            page.wait_for_url("**/lab**")
            page.wait_for_selector(".jp-LabShell", timeout=60_000)
            page.goto(server.url + DASHBOARD.lstrip("/"))
            page.wait_for_selector("text=hello from a phase1 test dashboard", timeout=60_000)
            page.goto(server.url + "phase1")
            page.wait_for_selector("text=Dashboards")
        finally:
            browser.close()
    outside = sorted({u for u in requests if not u.startswith(server.url) and not u.startswith(("data:", "blob:"))})
    assert outside == []
    assert not [e for e in errors if "Content Security Policy" in e], errors

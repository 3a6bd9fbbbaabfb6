"""Issue 14 against the real ``phase1 serve`` in prod on loopback: the operations guide's every curl command as
written, hostile bodies built as raw bytes, a grid that used to freeze the server, the prod lock-down
(terminals, shutdown, kernels, Host allow-list), what health and headers leak, and a hypothesis fuzz pass
over project, range and auth bodies (no 5xx, no traceback, health answering throughout).

This server has no ``--default-project``: a run without a project uses the shipped default sample.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_fixtures import CURL, GUIDE_RANGES, ROOT, Server, secret, server_env, start_server, stop_server

pytestmark = [pytest.mark.skipif(CURL is None, reason="curl is not installed (Debian package curl)"),
              pytest.mark.timeout(600)]

ADMINS = ["admin", "bob", "kim", "lee"]
MAX_KERNELS = 2
SAMPLE = json.loads((ROOT / "examples" / "slough_dc_delta.json").read_text())
GUIDE = ROOT.parent / "shared" / "operations-guide.md"

# The operations guide's commands, verbatim (its Windows cmd syntax); to_bash() makes the equivalent bash.
GUIDE_CLI = r'''set JAR=%TEMP%\phase1.jar
set LIVE=https://atlasnexus.co.uk

REM Login + MFA
curl -sS -c %JAR% -b %JAR% -X POST %LIVE%/auth/login -d "username=admin&password=***"
curl -sS -c %JAR% -b %JAR% -X POST %LIVE%/auth/mfa -d "code=123456"

REM Run engine
curl -sS -c %JAR% -b %JAR% -H "Content-Type: application/json" ^
  -X POST %LIVE%/api/phase1/run ^
  -d "{\"seed\":424242,\"topn\":20,\"ranges\":{
    \"senior_tenor\":[10,12,15,20],
    \"senior_coupon\":{\"min\":0.04,\"max\":0.06,\"step\":0.0025},
    \"senior_dscr\":{\"min\":1.25,\"max\":1.45,\"step\":0.05}
  }}"

REM Get results
curl -sS -c %JAR% -b %JAR% %LIVE%/api/phase1/securitisation/top20
curl -sS -c %JAR% -b %JAR% %LIVE%/api/phase1/securitisation/export/1'''
GUIDE_OPS = [r'''curl -sS -H "X-Admin-Token: phase1-admin-secure-token" ^
  https://atlasnexus.co.uk/api/phase1/status/full''', r'''curl -sS -H "X-Admin-Token: phase1-admin-secure-token" ^
  -H "Content-Type: application/json" ^
  -X POST https://atlasnexus.co.uk/api/phase1/rollback ^
  -d "{\"target_percentage\":0,\"reason\":\"emergency rollback\"}"''',
             r'''curl -sS -H "X-Admin-Token: phase1-admin-secure-token" ^
  -H "Content-Type: application/json" ^
  -X POST https://atlasnexus.co.uk/api/phase1/flags ^
  -d "{\"reverse_dscr_engine\":true}"''', "curl -sS https://atlasnexus.co.uk/api/phase1/health",
             "curl -sS https://atlasnexus.co.uk/api/phase1/route-list"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("harden")
    env = server_env(workdir / "home", "prod", PHASE1_ADMIN_TOKEN=secret(), PHASE1_COOKIE_SECRET=secret(),
                     PHASE1_MAX_KERNELS_PER_USER=str(MAX_KERNELS), PHASE1_ALLOWED_HOSTS="workbench.example")
    srv = start_server(workdir, env, admins=ADMINS)
    try:
        yield srv
    finally:
        stop_server(srv.proc)


@pytest.fixture(scope="module")
def bob(server: Server):
    return server.login("bob")


def assert_no_traceback(server: Server) -> None:
    log = server.log_path.read_bytes()
    assert b"Traceback" not in log and b"RecursionError" not in log, log[-3000:].decode(errors="replace")
    assert b"\x00" not in log


# ---- the operations guide, verbatim -------------------------------------------------------------------------


def to_bash(block: str) -> list[str]:
    """The guide's cmd lines as single-line bash: ``^`` continuations joined, a quoted string spanning lines
    joined with spaces, ``set X=Y`` as ``X=Y``, ``%X%`` as ``$X``, REM and blank lines dropped."""
    lines, current = [], ""
    for raw in block.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("REM ")):
            continue
        current = f"{current} {line}" if current else line
        if current.endswith("^"):
            current = current[:-1].rstrip()
            continue
        if len(re.findall(r'(?<!\\)"', current)) % 2:  # inside a quoted string that goes on
            continue
        lines.append(current)
        current = ""
    out = []
    for line in lines:
        line = re.sub(r"%(\w+)%", r"$\1", line)
        out.append(re.sub(r"^set (\w+)=", r"\1=", line))
    return out


def test_the_guides_commands_as_written_end_with_an_xlsx_term_sheet(server: Server, tmp_path: Path):
    if GUIDE.is_file():  # the copies above are the guide's text, character for character
        guide = GUIDE.read_text(encoding="utf-8")
        for block in (GUIDE_CLI, *GUIDE_OPS):
            assert block in guide, block[:80]
    admin = server.admins["admin"]
    live = server.url.rstrip("/")
    swaps = {"%TEMP%\\phase1.jar": str(tmp_path / "phase1.jar"), "https://atlasnexus.co.uk": live,
             "password=***": f"password={quote(admin.password)}", "code=123456": f"code={admin.code()}",
             "phase1-admin-secure-token": server.ops_token}

    def swapped(block: str) -> str:  # hosts, password, TOTP code and token: nothing else changes
        for old, new in swaps.items():
            block = block.replace(old, new)
        return block

    commands = to_bash(swapped(GUIDE_CLI)) + [c for block in GUIDE_OPS for c in to_bash(swapped(block))]
    assert len(commands) == 12 and sum(c.startswith("curl ") for c in commands) == 10
    script = []
    for i, command in enumerate(commands):
        if command.startswith("curl "):  # the harness only records where the answer went and its status
            command += f" -o {tmp_path}/body{i} -w '%{{http_code}}\\n' >> {tmp_path}/statuses"
        script.append(command)
    done = subprocess.run(["bash", "-euc", "\n".join(script)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    statuses = (tmp_path / "statuses").read_text().split()
    bodies = [tmp_path / f"body{i}" for i, c in enumerate(commands) if c.startswith("curl ")]
    answered = list(zip(statuses, [c for c in commands if c.startswith("curl ")], strict=False))
    assert len(statuses) == 10 and all(s.startswith("2") for s in statuses), answered
    run = json.loads(bodies[2].read_text())
    assert run["project"] == {"title": "Slough DC Delta", "source": "default"}
    assert run["cardinality"] == 180 and run["evaluated"] == 180
    top = json.loads(bodies[3].read_text())["top"]
    assert len(top) == 20 and top[0]["rank"] == 1
    book = openpyxl.load_workbook(io.BytesIO(bodies[4].read_bytes()))  # the flow ends with an xlsx term sheet
    assert book["Term Sheet"]["A1"].value == "Indicative term sheet — Slough DC Delta"
    flags = json.loads(bodies[7].read_text())
    assert flags["flags"]["reverse_dscr_engine"] is True
    audit = server.cli("ops", "audit", "--n", "10")
    entries = json.loads(audit.stdout)["entries"]
    assert any(e["action"] == "flags.update" and e["target"] == "reverse_dscr_engine"
               and e["actor"].startswith("ops-token@") for e in entries), entries
    assert json.loads(bodies[8].read_text()) == {"status": "ok"}


def test_the_default_sample_is_viable_on_the_guides_ranges():
    """Every viable structure of the guide's ranges with a coupon of 5.5-6 % and DSCR 1.35-1.45 at 10-15 years,
    its senior amount below the coming ruleset v2's LTV limit (0.70 x min(market value, NOI / 5.75 %))."""
    from phase1lib.engine import run
    from phase1lib.project import derive, load_project
    from phase1lib.server.context import SAMPLE_PROJECT

    project = load_project(SAMPLE_PROJECT)
    assert SAMPLE_PROJECT.name == "slough_dc_delta.json" and project.tenant_rating == "AA"
    result = run(project, GUIDE_RANGES)
    derived = derive(project)
    ltv_limit = 0.70 * min(derived.market_value, derived.noi_annual / 0.0575)
    rows = {(r["senior_tenor"], r["senior_coupon"], r["senior_dscr"]): r
            for r in result.frame.iter_rows(named=True)}
    for tenor in (10, 12, 15):
        for coupon in (0.0575, 0.06):
            for dscr in (1.35, 1.4, 1.45):
                row = rows[(tenor, coupon, dscr)]
                assert row["tier"] in ("Diamond", "Gold", "Silver"), (tenor, coupon, dscr, row["tier"])
                assert row["senior_amount"] < ltv_limit
                assert row["min_dscr"] >= dscr - 1e-9
    for dscr in (1.35, 1.4, 1.45):  # at 10 years the DSCR sizes the note: 5.5 % is viable too
        assert rows[(10, 0.055, dscr)]["binding_constraint"] == "dscr"
        assert rows[(10, 0.055, dscr)]["tier"] in ("Diamond", "Gold", "Silver")
    from phase1lib.ruleset import available_versions, load_ruleset

    if "v2" in available_versions():  # ruleset v2 (priced coupons, the LTV limit) once it ships
        v2 = run(project, GUIDE_RANGES, ruleset=load_ruleset("v2"))
        assert len(v2.top) == 20
        for row in v2.top:
            assert row["kpis"]["senior_amount"] < ltv_limit


# ---- 2. hostile titles over HTTP ----------------------------------------------------------------------------


def test_validate_and_run_refuse_a_title_with_a_lone_surrogate_or_a_nul(server: Server, bob):
    for title in ("\\ud800 lone", "nul\\u0000here", "vt\\u000bhere", "tab\\there"):  # JSON escapes, as sent
        body = json.dumps({**SAMPLE, "title": "TITLE"}).replace('"TITLE"', f'"{title}"')
        r = bob("/api/phase1/projects/validate", "-H", "Content-Type: application/json", method="POST", data=body)
        assert r.status == 400, (title, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["title"], r.text
        run_body = '{"preset": "current_1920", "project": ' + body + "}"
        r = bob("/api/phase1/run", "-H", "Content-Type: application/json", method="POST", data=run_body)
        assert r.status == 400 and r.json()["errors"][0]["field"] == "project.title", r.text
    assert_no_traceback(server)


def test_runs_delete_over_http_is_audited(server: Server):
    lee = server.login("lee")
    r = lee("/api/phase1/run", method="POST", json_body={"seed": 99, "ranges": GUIDE_RANGES})
    assert r.status == 200, r.text
    run_id = r.json()["run_id"]
    anon = server.curl()
    assert anon("/api/phase1/runs/delete", method="POST", json_body={"run_id": run_id}).status == 403
    r = anon("/api/phase1/runs/delete", method="POST", headers=server.ops_headers,
             json_body={"run_id": run_id, "reason": "test clean-up"})
    assert r.status == 200 and r.json() == {"run_id": run_id, "deleted": True, "files": True, "index_entry": True}
    assert not (server.home / "runs" / run_id).exists()
    assert anon("/api/phase1/runs/delete", method="POST", headers=server.ops_headers,
                json_body={"run_id": run_id}).status == 404
    assert anon("/api/phase1/runs/delete", method="POST", headers=server.ops_headers,
                json_body={"run_id": "../../etc"}).status == 400
    assert lee("/api/phase1/securitisation/top20").status == 404
    entries = json.loads(server.cli("ops", "audit", "--n", "5").stdout)["entries"]
    assert any(e["action"] == "run.delete" and e["target"] == run_id and e["reason"] == "test clean-up"
               for e in entries)


# ---- 3. a grid that used to freeze the server ---------------------------------------------------------------


def test_an_over_limit_key_is_refused_at_once(server: Server, bob):
    body = {"ranges": {"senior_tenor": [10], "senior_coupon": {"min": 1e-7, "max": 0.9999999, "step": 1e-7},
                       "senior_dscr": [1.35]}}
    for path in ("/api/phase1/permutations/cardinality", "/api/phase1/run", "/api/phase1/run/submit"):
        r = bob(path, method="POST", json_body=body, timeout=30)
        assert r.status in (400, 413), (path, r.status, r.text[:300])
        message = r.json()["message"]
        assert "senior_coupon" in message and "9,999,999" in message and "250,000" in message, message
        assert len(r.body) < 10_000


def _health_while(server: Server, busy: threading.Event, latencies: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    while busy.is_set():
        started = time.monotonic()
        conn.request("GET", "/api/phase1/health")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    conn.close()


def test_health_answers_while_a_big_request_is_processed(server: Server):
    """A big but legal cardinality request (9 keys of 250,000 values each, counted, built and answered as
    ~30 MB of JSON) runs in the work pool: health keeps answering meanwhile."""
    kim = server.login("kim", "kim-big")
    many = 250_000
    body = {"ranges": {
        "senior_tenor": {"min": 1, "max": many, "step": 1},
        "senior_coupon": {"min": 4e-6, "max": 0.999996, "step": 4e-6},
        "senior_dscr": {"min": 1, "max": 1 + (many - 1) * 1e-4, "step": 1e-4},
        "zcis_tenor_years": {"min": 0, "max": many - 1, "step": 1}, "io_months": {"min": 0, "max": many - 1, "step": 1},
        "sidecar_haircut_pct": {"min": 0, "max": 0.999996, "step": 4e-6}, "mezz_on": [True],
        "mezz_coupon": {"min": 0, "max": 0.999996, "step": 4e-6},
        "mezz_dscr": {"min": 1, "max": 1 + (many - 1) * 1e-4, "step": 1e-4},
        "mezz_tenor": {"min": 1, "max": many, "step": 1}}}
    busy, latencies, answer = threading.Event(), [], {}
    busy.set()
    watcher = threading.Thread(target=_health_while, args=(server, busy, latencies))

    def big() -> None:
        try:
            answer["r"] = kim("/api/phase1/permutations/cardinality", method="POST", json_body=body, timeout=300)
        finally:
            busy.clear()

    worker = threading.Thread(target=big)
    worker.start()
    time.sleep(0.2)
    watcher.start()
    worker.join(300)
    watcher.join(60)
    r = answer["r"]
    assert r.status == 200, r.text[:300]
    values = r.json()["values"]
    assert r.json()["exceeds_guardrail"] is True and len(values["senior_tenor"]) == many
    assert all(len(values[k]) >= many - 1 for k in body["ranges"] if k != "mezz_on")
    assert len(latencies) >= 3, f"health answered {len(latencies)} times during the request"
    assert max(latencies) < 2.0, latencies


# ---- 4. malformed JSON -------------------------------------------------------------------------------------


DEEP = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def raw(server: Server, path: str, body: bytes, content_type: str = "application/json",
        cookie: str | None = None, addr: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60, source_address=(addr, 0))
    headers = {"Content-Type": content_type}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    out = response.status, response.read()
    conn.close()
    return out


def session_cookie(curl) -> str:
    for line in curl.jar.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 7 and parts[5] == "phase1_session":
            return f"phase1_session={parts[6].strip()}"
    raise AssertionError("no session cookie in the jar")


def test_deep_nesting_and_duplicate_keys_are_400s_naming_the_problem(server: Server, bob):
    cookie = session_cookie(bob)
    for path in ("/auth/login", "/auth/mfa", "/api/phase1/run"):
        status, body = raw(server, path, DEEP, cookie=cookie if path.startswith("/api") else None)
        assert status == 400, (path, status, body[:300])
        assert b"nested deeper than" in body and b"Traceback" not in body
    status, body = raw(server, "/api/phase1/run", b'{"preset": "current_1920", "preset": "phase2_10k"}',
                       cookie=cookie)
    assert status == 400 and b'duplicate key \\"preset\\"' in body, body
    status, body = raw(server, "/auth/login", b'{"username": "a", "username": "admin", "password": "x"}',
                       addr="127.0.0.4")
    assert status == 400 and b"duplicate key" in body, body
    status, body = raw(server, "/auth/login", b"username=a&username=admin&password=x",
                       "application/x-www-form-urlencoded", addr="127.0.0.4")
    assert status == 400 and b"username" in body and b"more than once" in body, body
    assert_no_traceback(server)


# ---- 6. status/full counts server faults only ----------------------------------------------------------------


def test_refused_inputs_do_not_count_as_failures(server: Server, bob):
    bad = {"ranges": {"senior_tenor": [10], "senior_coupon": {"min": 0.05, "max": 0.04, "step": 0.01},
                      "senior_dscr": [1.3]}}
    for _ in range(10):
        assert bob("/api/phase1/run", method="POST", json_body=bad).status == 400
    time.sleep(0.5)  # request metrics are written off the event loop
    status = server.curl()("/api/phase1/status/full", headers=server.ops_headers).json()
    metrics = status["metrics"]
    assert metrics["failures"] == 0 and metrics["error_rate"] == 0 and metrics["refused"] >= 10, metrics
    checks = {c["name"]: c for c in status["checks"]}
    assert checks["error_rate"]["ok"] is True


# ---- 7. prod lock-down ------------------------------------------------------------------------------------


def test_prod_has_no_terminals_and_refuses_shutdown(server: Server, bob):
    r = bob("/api/terminals")
    assert r.status == 404, r.text[:300]
    r = bob("/api/terminals", method="POST", json_body={})
    assert r.status in (403, 404, 405), r.text[:300]
    r = bob("/api/shutdown", method="POST", json_body={})
    assert r.status == 403 and "off in prod" in r.json()["message"], r.text[:300]
    time.sleep(0.5)
    assert server.proc.poll() is None and server.curl()("/api/phase1/health").status == 200


def test_kernels_are_capped_per_user_with_a_clear_message(server: Server):
    kim = server.login("kim", "kim-kernels")
    dashboard = "/voila/render/dashboards/hello.ipynb"
    for _ in range(MAX_KERNELS):
        r = kim(dashboard)
        assert r.status == 200 and "hello from a phase1 test dashboard" in r.text, r.text[-500:]
    r = kim(dashboard)
    assert r.status == 429, (r.status, r.text[-800:])
    assert f"limit per user (PHASE1_MAX_KERNELS_PER_USER is {MAX_KERNELS})" in r.text
    r = kim("/api/sessions", method="POST", json_body={"path": "x.ipynb", "type": "notebook", "name": "x",
                                                       "kernel": {"name": "python3"}},
            headers={"X-XSRFToken": _xsrf(kim)})
    # JupyterLab's sessions API answers a refused kernel as a conflict (409), with the same message
    assert r.status in (409, 429) and "Kernel > Shut Down Kernel" in r.text, (r.status, r.text[:500])
    other = server.login("lee", "lee-kernels")  # the cap is per user
    assert other(dashboard).status == 200


def _xsrf(curl) -> str:
    curl("/phase1")  # pages set the _xsrf cookie
    return next(line.split("\t")[-1].strip() for line in curl.jar.read_text().splitlines() if "\t_xsrf\t" in line)


def test_the_host_allow_list_covers_phase1_routes(server: Server, bob):
    evil = {"Host": "evil.example"}
    assert bob("/api/phase1/securitisation/top20", headers=evil).status == 403
    assert server.curl()("/api/phase1/health", headers=evil).status == 403
    assert server.curl()("/auth/login", headers=evil).status == 403
    assert server.curl()("/api/phase1/health", headers={"Host": f"localhost:{server.port}"}).status == 200
    # PHASE1_ALLOWED_HOSTS: the public name a reverse proxy forwards, for Jupyter's routes and ours alike
    public = {"Host": "workbench.example"}
    assert server.curl()("/api/phase1/health", headers=public).status == 200
    assert server.curl()("/auth/login", headers=public).status == 200
    assert server.curl()("/lab", headers=public).status == 302  # to the login page
    assert server.curl()("/lab", headers=evil).status == 403


def test_dev_mode_refuses_a_foreign_host_too(tmp_path: Path):
    srv = start_server(tmp_path, server_env(tmp_path / "home", "dev"))
    try:
        curl = srv.curl("dev")
        body = {"preset": "current_1920"}
        r = curl("/api/phase1/run", method="POST", json_body=body, headers={"Host": "evil.example"})
        assert r.status == 403 and "Host" in r.json()["message"], r.text[:300]
        assert curl("/lab", headers={"Host": "evil.example"}).status == 403  # as Jupyter's own routes
        assert curl("/api/phase1/run", method="POST", json_body=body).status == 200  # the dev bridge still works
        assert curl("/api/terminals").status == 200  # dev keeps its terminals
    finally:
        stop_server(srv.proc)


# ---- 8. leaks ---------------------------------------------------------------------------------------------


def test_health_is_minimal_and_no_server_header(server: Server, bob):
    anon = server.curl()
    r = anon("/api/phase1/health")
    assert r.status == 200 and r.json() == {"status": "ok"}
    assert str(server.home) not in r.text
    for response in (r, anon("/auth/login"), anon("/phase1/static/phase1.css"), anon("/api/phase1/nope"),
                     bob("/lab"), bob("/api/contents"), anon("/lab")):
        assert "server" not in response.headers, response.headers
    status = anon("/api/phase1/status/full", headers=server.ops_headers).json()
    assert status["health"]["store"]["reachable"] is True and status["server"]["kernels"]["max_per_user"] == 2


def test_run_files_over_http_are_private(server: Server, bob):
    r = bob("/api/phase1/run", method="POST", json_body={"seed": 5, "ranges": GUIDE_RANGES})
    assert r.status == 200, r.text
    folder = server.home / "runs" / r.json()["run_id"]
    assert stat.S_IMODE((server.home / "runs").stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}


# ---- the fuzz pass ---------------------------------------------------------------------------------------

FIELDS = [*sorted(SAMPLE), "indexation_basis", "base_cpi", "mezz_tenor", "periods_per_year", "closing_date"]
KEYS = ["senior_tenor", "senior_coupon", "senior_dscr", "senior_amort", "indexation_mode", "zcis_tenor_years",
        "io_months", "wrap", "mezz_on", "mezz_coupon", "tenor_years", "haircut_pct"]
NASTY = st.sampled_from(["\ud800", "\udfff", "\x00", "\x0b", "\t", "\n", "\u202e", "\ufffe", "=HYPERLINK(\"x\")",
                         "admin", "bob", "123456", "%00", "\u00e9", "\U0001f600", "x" * 300, ""])
ANY_TEXT = (NASTY | st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates, controls too
            | st.builds(str.__add__, NASTY, st.text(max_size=6)))
NUMBERS = (st.integers(-10**30, 10**30) | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from([0, 1, -1, 1e-300, 5e-324, 1e308, 0.04, 1.35, 10, 2**63]))
SCALARS = st.none() | st.booleans() | NUMBERS | ANY_TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
                      max_leaves=6)
PROJECTS = st.builds(lambda drop, changes: {**{k: v for k, v in SAMPLE.items() if k not in drop}, **changes},
                     st.sets(st.sampled_from(sorted(SAMPLE)), max_size=3),
                     st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, VALUES, max_size=3))
STEPS = st.fixed_dictionaries({"min": NUMBERS | SCALARS, "max": NUMBERS | SCALARS, "step": NUMBERS | SCALARS})
RANGE_VALUES = STEPS | st.lists(SCALARS, max_size=4) | SCALARS | VALUES
RANGES = st.dictionaries(st.sampled_from(KEYS) | ANY_TEXT, RANGE_VALUES, max_size=5)
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_SENT = [0]


def _send(server: Server, path: str, body: bytes, content_type: str, cookie: str | None) -> tuple[int, bytes]:
    """POST from a new loopback address each time: the lockout (5 failures per address) would otherwise answer
    every later login with 429 before the password is even looked at."""
    _SENT[0] += 1
    addr = f"127.0.{3 + _SENT[0] // 250}.{1 + _SENT[0] % 250}"
    status, answer = raw(server, path, body, content_type, cookie, addr=addr)
    assert status < 500, (path, status, body[:200], answer[:300])
    assert b"Traceback" not in answer
    return status, answer


def _health(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/api/phase1/health")
    assert conn.getresponse().status == 200
    conn.close()


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes


def test_fuzz_project_range_and_auth_bodies(server: Server):
    curl = server.login("bob", "bob-fuzz")
    cookie = session_cookie(curl)

    @FUZZ
    @given(PROJECTS)
    def projects(project: dict[str, Any]) -> None:
        _send(server, "/api/phase1/projects/validate", _json(project), "application/json", cookie)
        _health(server)

    @FUZZ
    @given(RANGES, st.sampled_from(["ranges", "preset"]))
    def range_bodies(ranges: dict[str, Any], how: str) -> None:
        body = {"ranges": ranges} if how == "ranges" else {"preset": next(iter(ranges), "current_1920")}
        _send(server, "/api/phase1/permutations/cardinality", _json(body), "application/json", cookie)
        small = {k: (v[:2] if isinstance(v, list) else v) for k, v in list(ranges.items())[:3]}
        _send(server, "/api/phase1/run", _json({"ranges": {**GUIDE_RANGES, **small}, "topn": 3, "sample": 20}),
              "application/json", cookie)
        _health(server)

    field = NASTY | ANY_TEXT | SCALARS | VALUES
    forms = st.builds(lambda known, extra: {**extra, **known},
                      st.fixed_dictionaries({}, optional={"username": field, "password": field, "code": field}),
                      st.dictionaries(ANY_TEXT, field, max_size=2))

    @FUZZ
    @given(forms, st.binary(max_size=40), st.booleans())
    def auth_forms(fields: dict[str, Any], junk: bytes, as_json: bool) -> None:
        if as_json:
            body, kind = _json(fields), "application/json"
        else:
            body = "&".join(f"{quote(str(k), safe='', errors='surrogatepass')}="
                            f"{quote(str(v), safe='', errors='surrogatepass')}" for k, v in fields.items()).encode()
            body, kind = body + b"&x=" + junk, "application/x-www-form-urlencoded"
        for path in ("/auth/login", "/auth/mfa"):
            _send(server, path, body, kind, None)
        _health(server)

    projects()
    range_bodies()
    auth_forms()
    assert_no_traceback(server)

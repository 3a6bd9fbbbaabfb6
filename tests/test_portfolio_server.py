"""POST /api/phase1/portfolio on the real ``phase1 serve`` process (prod): an elevated admin session, a background
job with progress and result, the runs equal to single runs, every bad project named before anything is queued."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixtures import CURL, ROOT, Server, secret, server_env, start_server, stop_server

from phase1lib import service
from phase1lib.portfolio import parse_portfolio
from phase1lib.store import SQLiteStore

pytestmark = [pytest.mark.skipif(CURL is None, reason="curl is not installed (Debian package curl)"),
              pytest.mark.timeout(300)]
EXAMPLES = ROOT / "examples"


def project(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("portfolio-server")
    env = server_env(workdir / "home", "prod", PHASE1_ADMIN_TOKEN=secret(), PHASE1_COOKIE_SECRET=secret(),
                     PHASE1_MAX_PORTFOLIO_PERMUTATIONS="5000")
    srv = start_server(workdir, env, admins=["admin", "bob"])
    try:
        yield srv
    finally:
        stop_server(srv.proc)


def test_a_portfolio_job_runs_every_project_like_a_single_run(server: Server, tmp_path: Path):
    curl = server.login("admin")
    body = {"title": "Q4 pipeline", "defaults": {"preset": "current_1920", "seed": 424242, "topn": 5},
            "projects": [{"project": project("london_dc_alpha")}, {"project": project("ashburn_dc_gamma"),
                                                                    "seed": 7}]}
    submitted = curl("/api/phase1/portfolio", method="POST", json_body=body)
    assert submitted.status == 202, submitted.text
    job_id = submitted.json()["job_id"]
    planned = submitted.json()["projects"]
    assert submitted.json()["permutations"] == 3840
    assert [p["title"] for p in planned] == ["London DC Alpha", "Ashburn DC Gamma"]
    deadline = time.monotonic() + 120
    while True:
        job = curl(f"/api/phase1/portfolio/progress/{job_id}").json()
        assert job["state"] in ("queued", "running", "done"), job
        if job["state"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["state"] == "done" and job["progress"] == 1.0
    result = curl(f"/api/phase1/portfolio/result/{job_id}")
    assert result.status == 200, result.text
    answer = result.json()
    assert answer["portfolio_id"] == job["portfolio_id"] and answer["title"] == "Q4 pipeline"
    assert [run["run_id"] for run in answer["runs"]] == [p["run_id"] for p in planned]
    pf = parse_portfolio(body)
    store = SQLiteStore(tmp_path / "single.db")
    try:
        for entry, run in zip(pf.projects, answer["runs"], strict=True):
            one = service.execute_run(store, entry.project, entry.ranges, seed=entry.seed, topn=entry.topn,
                                      home=tmp_path / "single")
            assert (one.run_id, one.counts, one.top) == (run["run_id"], run["counts"], run["top"])
    finally:
        store.close()
    assert answer["summary"]["totals"]["financeable"] == 2
    # each run is an ordinary run of the server: its Top-N is there for `phase1 top` and the term sheets
    assert server.cli("top", answer["runs"][1]["run_id"]).returncode == 0
    assert curl(f"/api/phase1/portfolio/result/{job_id}").json()["summary"] == answer["summary"]
    # another admin does not see it
    r = server.login("bob")(f"/api/phase1/portfolio/progress/{job_id}")
    assert r.status == 404


def test_bad_portfolios_are_refused_before_anything_is_queued(server: Server):
    curl = server.login("admin", "admin-bad")
    broken = dict(project("london_dc_alpha"), pue=9)
    r = curl("/api/phase1/portfolio", method="POST", json_body={
        "defaults": {"preset": "current_1920"},
        "projects": [{"project": project("london_dc_alpha")}, {"project": broken},
                     {"project": project("frankfurt_dc_beta"), "ranges": {"senior_tenor": [0], "senior_coupon": 0.05,
                                                                          "senior_dscr": 1.3}},
                     "ashburn_dc_gamma.json"]})
    assert r.status == 400, r.text
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == ["projects[1].project.pue", "projects[2].ranges.senior_tenor", "projects[3].project"]
    r = curl("/api/phase1/portfolio", method="POST", json_body={
        "defaults": {"preset": "current_1920"}, "projects": [{"project": project(n)} for n in
                                                             ("london_dc_alpha", "frankfurt_dc_beta",
                                                              "ashburn_dc_gamma")]})
    assert r.status == 413 and "5,760" in r.json()["message"] and "5,000" in r.json()["message"]
    assert server.curl()("/api/phase1/portfolio", method="POST", json_body={"projects": []}).status == 401
    routes = {(x["method"], x["path"]): x["auth"] for x in server.curl()("/api/phase1/route-list").json()}
    assert routes[("POST", "/api/phase1/portfolio")] == "session"
    assert routes[("GET", "/api/phase1/portfolio/result/{job_id}")] == "session"

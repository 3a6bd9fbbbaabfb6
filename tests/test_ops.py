"""Ops on both stores: flags, candidate rulesets and the canary, rollback, metrics and status/full, health,
and the ``phase1 admin`` / ``phase1 ops`` commands."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import subprocess
import sys

import pyotp
import pytest

from phase1lib import ops
from phase1lib.auth import Auth
from phase1lib.cli import main
from phase1lib.errors import ConflictError, DisabledError, InputError, NotFoundError
from phase1lib.ruleset import load_ruleset
from phase1lib.store import RedisStore, SQLiteStore, open_store

ACTOR = "tester"


def candidate_bytes(version: str = "v2-test", **tweaks) -> bytes:
    data = copy.deepcopy(load_ruleset("v1").data)
    data["version"] = version
    data["description"] = "candidate for tests"
    data["spread_bps"]["AAA"] = 75
    for path, value in tweaks.items():
        node = data
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return json.dumps(data, indent=1).encode()


# ---- flags --------------------------------------------------------------------------------------------


def test_flag_defaults(store):
    state = ops.get_flags(store)
    assert state["version"] == 0
    assert state["flags"] == {"phase1_core": True, "deterministic_seed": True, "perm_chunking": True,
                              "reverse_dscr_engine": True, "gates_ab": True, "docs_exports": True}
    assert set(state["descriptions"]) == set(state["flags"])
    assert ops.flag(store, "phase1_core") is True
    with pytest.raises(InputError):
        ops.flag(store, "nope")


def test_flag_update_and_audit(store, clock):
    state = ops.update_flags(store, 0, {"gates_ab": False, "docs_exports": False}, ACTOR, "req-1")
    assert state["version"] == 1 and state["flags"]["gates_ab"] is False and state["updated_by"] == ACTOR
    entries = store.list_audit(2)
    assert {e["target"] for e in entries} == {"gates_ab", "docs_exports"}
    for entry in entries:
        assert (entry["action"], entry["actor"], entry["request_id"]) == ("flags.update", ACTOR, "req-1")
        assert entry["at"] == clock() and entry["old"] is True and entry["new"] is False
    ops.update_flags(store, 1, {"gates_ab": True}, ACTOR, "req-2")
    assert store.list_audit(1)[0]["old"] is False and store.list_audit(1)[0]["new"] is True


def test_flag_update_stale_version_is_409(store):
    ops.update_flags(store, 0, {"gates_ab": False}, ACTOR)
    with pytest.raises(ConflictError) as caught:
        ops.update_flags(store, 0, {"gates_ab": True}, ACTOR)
    assert caught.value.status == 409 and caught.value.to_dict()["current_version"] == 1
    assert ops.get_flags(store)["flags"]["gates_ab"] is False


@pytest.mark.parametrize(("version", "changes", "field", "rule"), [
    (0, {"warp_drive": True}, "changes.warp_drive", "unknown flag"),
    (0, {"Bad-Name!": True}, "changes.Bad-Name!", "malformed flag name"),
    (0, {"gates_ab": "off"}, "changes.gates_ab", "must be true or false"),
    (0, {"gates_ab": 1}, "changes.gates_ab", "must be true or false"),
    (0, {}, "changes", "non-empty"),
    (True, {"gates_ab": False}, "version", "non-negative integer"),
    (-1, {"gates_ab": False}, "version", "non-negative integer"),
])
def test_flag_update_input_errors_are_400(store, version, changes, field, rule):
    with pytest.raises(InputError) as caught:
        ops.update_flags(store, version, changes, ACTOR)
    assert caught.value.status == 400
    assert any(e.field == field and rule in e.message for e in caught.value.errors)
    assert ops.get_flags(store)["version"] == 0 and store.list_audit(5) == []


def test_require_flag_and_seed(store):
    ops.require_flag(store, "phase1_core")
    assert ops.resolve_seed(store, None) == 424242 and ops.resolve_seed(store, 7) == 7
    ops.update_flags(store, 0, {"phase1_core": False, "deterministic_seed": False}, ACTOR)
    with pytest.raises(DisabledError, match="Phase-1 disabled") as caught:
        ops.require_flag(store, "phase1_core")
    assert caught.value.status == 503
    assert 1 <= ops.resolve_seed(store, None) < 2**31


# ---- canary cohort ------------------------------------------------------------------------------------


def test_cohort_bucket_formula():
    for key in ("run-1", "abc", "λ-unicode"):
        expected = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10_000
        assert ops.cohort_bucket(key) == expected
        assert ops.in_canary(key, 100) and not ops.in_canary(key, 0)
        assert ops.in_canary(key, 37.5) == (expected < 3750)


@pytest.mark.parametrize("percentage", [2.5, 25, 50, 90])
def test_canary_share_is_binomially_close(percentage):
    n = 10_000
    p = percentage / 100
    hits = sum(ops.in_canary(f"run-{i:05d}", percentage) for i in range(n))
    tolerance = 4.5 * math.sqrt(n * p * (1 - p))  # 4.5 standard deviations of Binomial(n, p)
    assert abs(hits - n * p) <= tolerance


def test_ruleset_for_run_is_deterministic(store):
    keys = [f"run-{i}" for i in range(300)]
    assert {ops.ruleset_for_run(store, k) for k in keys} == {"v1"}  # no candidate: always stable
    ops.register_candidate(store, candidate_bytes(), ACTOR)
    assert {ops.ruleset_for_run(store, k) for k in keys} == {"v1"}  # registered at 0 %: still stable
    ops.update_canary(store, 30, "try the new spreads", ACTOR)
    first = [ops.ruleset_for_run(store, k) for k in keys]
    assert first == [ops.ruleset_for_run(store, k) for k in keys]
    assert set(first) == {"v1", "v2-test"}
    assert all((r == "v2-test") == ops.in_canary(k, 30) for k, r in zip(keys, first, strict=True))


# ---- candidate rulesets -------------------------------------------------------------------------------


def test_register_and_load_candidate(store):
    raw = candidate_bytes()
    info = ops.register_candidate(store, raw, ACTOR, "req-r")
    assert info["version"] == "v2-test" and info["sha256"] == hashlib.sha256(raw).hexdigest()
    loaded = ops.load_ruleset_version(store, "v2-test")
    assert loaded.sha256 == info["sha256"] and loaded.spread_bps("AAA") == 75
    assert ops.load_ruleset_version(store, "v1").version == "v1"
    with pytest.raises(NotFoundError):
        ops.load_ruleset_version(store, "v9")
    assert ops.register_candidate(store, raw, ACTOR)["sha256"] == info["sha256"]  # same bytes: idempotent
    with pytest.raises(ConflictError, match="other content"):
        ops.register_candidate(store, candidate_bytes(spread_bps__AA=95), ACTOR)
    listed = ops.list_rulesets(store)
    assert listed["stable"]["version"] == "v1" and listed["candidate"]["version"] == "v2-test"
    assert "raw_b64" not in json.dumps(listed)
    assert store.list_audit(1)[0]["action"] == "ruleset.register"


def test_only_one_live_candidate(store):
    ops.register_candidate(store, candidate_bytes(), ACTOR)
    ops.update_canary(store, 10, "start", ACTOR)
    with pytest.raises(ConflictError, match="roll the canary back"):
        ops.register_candidate(store, candidate_bytes("v3-test"), ACTOR)
    ops.rollback(store, 0, "make room", ACTOR)
    assert ops.register_candidate(store, candidate_bytes("v3-test"), ACTOR)["version"] == "v3-test"
    assert ops.get_canary(store)["candidate"] == "v3-test"


@pytest.mark.parametrize(("raw", "field", "rule"), [
    (b"{not json", "ruleset", "must be a JSON file"),
    (b"[1, 2]", "ruleset", "must be a JSON object"),
    (candidate_bytes("v1"), "version", "shipped ruleset"),
    (candidate_bytes("bad version!"), "version", "1-32 characters"),
    (candidate_bytes(spread_bps__AAA="seventy"), "spread_bps.AAA", "finite number"),
    (candidate_bytes(tenants__AAA__rating_cap="ZZZ"), "tenants.AAA.rating_cap", "rating grade"),
    (candidate_bytes(stress_scenarios__cpi_0__kind="weird"), "stress_scenarios.cpi_0.kind", 'must be "cpi"'),
    (candidate_bytes(gates={"near_miss_band": 0.05}), "gates", "missing keys"),
    (candidate_bytes(extra_table={}), "ruleset", "unexpected keys: extra_table"),
])
def test_candidate_validation(store, raw, field, rule):
    with pytest.raises(InputError) as caught:
        ops.register_candidate(store, raw, ACTOR)
    assert any(e.field == field and rule in e.message for e in caught.value.errors), caught.value.errors
    assert ops.get_canary(store)["candidate"] is None


# ---- canary state machine and rollback ----------------------------------------------------------------


def test_canary_needs_a_candidate(store):
    with pytest.raises(ConflictError, match="no candidate"):
        ops.update_canary(store, 10, "too early", ACTOR)
    assert ops.update_canary(store, 0, "noop", ACTOR)["state"] == "STABLE"


@pytest.mark.parametrize(("percentage", "reason", "fields"), [
    (101, "r", ["percentage"]), (-1, "r", ["percentage"]), ("10", "r", ["percentage"]),
    (float("nan"), "r", ["percentage"]), (True, "r", ["percentage"]), (10, "", ["reason"]),
    (10, "   ", ["reason"]), (10, None, ["reason"]), (200, "", ["percentage", "reason"]),
])
def test_canary_input_errors(store, percentage, reason, fields):
    ops.register_candidate(store, candidate_bytes(), ACTOR)
    with pytest.raises(InputError) as caught:
        ops.update_canary(store, percentage, reason, ACTOR)
    assert [e.field for e in caught.value.errors] == fields
    with pytest.raises(InputError):
        ops.rollback(store, percentage if fields != ["reason"] else 0, reason if "reason" in fields else "ok",
                     ACTOR)


def test_canary_states_history_and_rollback_audit(store, clock):
    assert ops.get_canary(store)["state"] == "STABLE"
    ops.register_candidate(store, candidate_bytes(), ACTOR)
    expanded = ops.update_canary(store, 20, "first slice", ACTOR, "req-1")
    assert (expanded["state"], expanded["percentage"]) == ("EXPANDING", 20.0)
    ops.update_canary(store, 50, "looks fine", ACTOR, "req-2")
    with pytest.raises(InputError, match="must not exceed the current share 50"):
        ops.rollback(store, 60, "not a rollback", ACTOR)
    clock.advance(5)
    result = ops.rollback(store, 0, "error rate up", ACTOR, "req-3")
    assert result["state"] == "ROLLED_BACK" and result["percentage"] == 0.0
    assert result["previous_percentage"] == 50.0
    assert isinstance(result["duration_ms"], float) and 0 <= result["duration_ms"] < 5000
    history = ops.canary_history(store, 10)
    assert [(h["action"], h["to_state"]) for h in history[:2]] == [("rollback_done", "ROLLED_BACK"),
                                                                   ("rollback_started", "ROLLING_BACK")]
    assert history[1]["from_state"] == "EXPANDING" and history[0]["duration_ms"] == result["duration_ms"]
    audit = store.list_audit(1)[0]
    assert audit["action"] == "canary.rollback" and audit["actor"] == ACTOR and audit["request_id"] == "req-3"
    assert audit["old"] == {"state": "EXPANDING", "percentage": 50.0}
    assert audit["new"] == {"state": "ROLLED_BACK", "percentage": 0.0}
    assert audit["reason"] == "error rate up" and audit["duration_ms"] == result["duration_ms"]
    assert audit["at"] == clock()
    assert ops.ruleset_for_run(store, "any") == "v1"
    assert ops.update_canary(store, 10, "retry", ACTOR)["state"] == "EXPANDING"
    partial = ops.rollback(store, 5, "halve it", ACTOR)
    assert (partial["state"], partial["percentage"]) == ("ROLLED_BACK", 5.0)
    assert ops.update_canary(store, 0, "done with it", ACTOR)["state"] == "STABLE"


# ---- metrics, status and health -----------------------------------------------------------------------


def _run(store, duration, ok=True, perms=1000, rss=100_000_000):
    return ops.record_metric(store, "run", duration, ok, perms, rss_bytes=rss)


def test_record_metric(store, clock):
    sample = ops.record_metric(store, "request", 0.25, True)
    assert sample["kind"] == "request" and sample["permutations"] is None
    assert sample["rss_bytes"] > 1_000_000 and sample["at"] == clock()  # this process's real RSS
    assert store.list_metrics() == [sample]
    with pytest.raises(InputError) as caught:
        ops.record_metric(store, "job", -1, "yes", -5)
    assert [e.field for e in caught.value.errors] == ["kind", "duration_s", "ok", "permutations"]


def test_percentiles_hand_computed(store):
    for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10):
        _run(store, d)
    m = ops.metrics_summary(store.list_metrics())
    # linear: rank = q/100 * (n-1); p50: rank 4.5 -> 5 + 0.5 * (6 - 5); p95: rank 8.55 -> 9 + 0.55 * (10 - 9)
    assert m["latency"]["p50_s"] == pytest.approx(5.5)
    assert m["latency"]["p95_s"] == pytest.approx(9.55)
    assert ops.percentile([0.5, 1.5, 4.0, 6.0], 50) == pytest.approx(2.75)  # rank 1.5
    assert ops.percentile([0.5, 1.5, 4.0, 6.0], 95) == pytest.approx(5.7)  # rank 2.85: 4 + 0.85 * 2
    assert ops.percentile([3.0], 95) == 3.0 and ops.percentile([], 50) is None


def test_run_band_latency_only_counts_1_to_10k(store):
    _run(store, 100.0, perms=0)
    _run(store, 100.0, perms=10_001)
    ops.record_metric(store, "request", 100.0, True)
    for d, perms in ((1.0, 1), (2.0, 5000), (3.0, 10_000)):
        _run(store, d, perms=perms)
    band = ops.metrics_summary(store.list_metrics())["latency_runs_1_10k"]
    assert band["samples"] == 3
    assert band["p50_s"] == pytest.approx(2.0) and band["p95_s"] == pytest.approx(2.9)  # rank 1.9


def test_memory_drift_is_measured_after_the_warm_up():
    w, k = ops.WARMUP_SAMPLES, ops.DRIFT_WINDOW
    assert (w, k) == (50, 10)
    assert ops.memory_summary([100] * (w + 2 * k - 1))["drift"] is None  # 69 samples: still unknown
    # start-up at 100, the dashboards load during the warm-up (RSS 150): the baseline is taken after it
    steady = ops.memory_summary([100] * 10 + [150] * (w - 10) + [150] * k + [160] * k)
    assert steady["baseline_mean_bytes"] == 150 and steady["last10_mean_bytes"] == 160
    assert steady["drift"] is False and steady["drift_ratio"] == pytest.approx(160 / 150)
    grown = ops.memory_summary([100] * w + [100] * k + [500] * 5 + [121] * k)
    assert grown["drift"] is True and grown["peak_rss_bytes"] == 500
    assert grown["baseline_mean_bytes"] == 100 and grown["last10_mean_bytes"] == 121


def test_status_full_go(store, clock):
    for i in range(2000):
        _run(store, 0.5 + (i % 10) * 0.1)
    status = ops.status_full(store, started_at=clock() - 3600)
    assert status["decision"] == "GO" and status["reasons"] == []
    assert status["metrics"]["error_rate"] == 0 and status["metrics"]["success_rate"] == 1
    assert status["uptime_s"] == 3600
    assert status["canary"]["state"] == "STABLE" and status["flags"]["version"] == 0
    stable = status["rulesets"]["stable"]
    assert stable["version"] == "v1" and stable["sha256"] == load_ruleset("v1").sha256
    assert status["metrics"]["memory"]["peak_rss_bytes"] == 100_000_000
    json.dumps(status, allow_nan=False)


def test_status_full_no_go_reasons(store):
    empty = ops.status_full(store)
    assert empty["decision"] == "NO-GO" and len(empty["reasons"]) == 4
    assert any("no runs of 1-10k permutations" in r for r in empty["reasons"])
    for i in range(999):
        _run(store, 6.0, rss=100 if i < ops.WARMUP_SAMPLES + ops.DRIFT_WINDOW else 200)
    _run(store, 6.0, ok=False, rss=200)
    status = ops.status_full(store)
    assert status["metrics"]["error_rate"] == pytest.approx(0.001)  # exactly 0.1 %: not below it
    assert status["decision"] == "NO-GO"
    reasons = " | ".join(status["reasons"])
    assert "error rate 0.1 % is not below 0.1 %" in reasons
    assert "p95 latency of 1-10k permutation runs 6 s is not below 5 s" in reasons
    assert "memory drift" in reasons
    assert "success rate 99.9 % is not above 99.9 %" in reasons
    assert {c["name"]: c["ok"] for c in status["checks"]} == {
        "error_rate": False, "p95_runs_1_10k_s": False, "memory_drift": False, "success_rate": False}


def test_health(store, store_spec):
    result = ops.health(store)
    assert result["status"] == "ok" and result["store"]["reachable"] is True
    assert result["store"]["backend"] == store_spec.backend
    assert result["versions"]["phase1lib"] and result["versions"]["engine"]
    assert result["versions"]["rulesets"]["stable"] == "v1"


def test_health_never_raises_on_a_dead_store():
    result = ops.health(RedisStore("redis://127.0.0.1:1/0"))
    assert result["status"] == "degraded" and result["store"]["reachable"] is False
    assert "store unreachable" in result["problems"]


def test_list_audit_rule(store):
    with pytest.raises(InputError, match="n: must be a whole number"):
        ops.list_audit(store, 0)


# ---- CLI ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASE1_HOME", str(tmp_path))
    monkeypatch.delenv("PHASE1_REDIS_URL", raising=False)
    monkeypatch.setenv("APP_ENV", "dev")
    return tmp_path


def run_cli(capsys, monkeypatch, *argv, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, monkeypatch, *argv, stdin=""):
    code, out, err = run_cli(capsys, monkeypatch, *argv, stdin=stdin)
    return code, json.loads(out), err


PASSWORD = "correct horse battery staple"


def test_cli_create_user_json_and_login(cli_home, capsys, monkeypatch):
    code, out, _ = run_json(capsys, monkeypatch, "admin", "create-user", "alice", "--json",
                            stdin=PASSWORD + "\n")
    assert code == 0 and set(out) == {"username", "totp_secret", "otpauth_uri"}
    store = open_store()
    auth = Auth(store, app_env="dev")
    pending = auth.login_password("alice", PASSWORD, "10.0.0.1")  # the trailing newline was not kept
    assert auth.verify_mfa(pending.session_id, pyotp.TOTP(out["totp_secret"]).now(), "10.0.0.1").elevated
    code, out, _ = run_json(capsys, monkeypatch, "admin", "create-user", "alice", "--json", stdin=PASSWORD)
    assert code == 5 and out["error"] == "conflict"
    code, out, err = run_json(capsys, monkeypatch, "admin", "create-user", "bob", "--json", stdin="short\n")
    assert code == 2 and out["errors"][0]["field"] == "password" and "short" not in json.dumps(out) + err


def test_cli_create_user_prints_uri(cli_home, capsys, monkeypatch):
    code, out, err = run_cli(capsys, monkeypatch, "admin", "create-user", "carol", stdin=PASSWORD + "\n")
    assert code == 0 and out.startswith("otpauth://totp/") and out.count("\n") == 1
    assert "authenticator" in err and PASSWORD not in out + err


def test_cli_admin_list_disable_reset(cli_home, capsys, monkeypatch):
    _, enrolment, _ = run_json(capsys, monkeypatch, "admin", "create-user", "alice", "--json", stdin=PASSWORD)
    code, out, _ = run_cli(capsys, monkeypatch, "admin", "list")
    users = json.loads(out)["users"]
    assert code == 0 and [u["username"] for u in users] == ["alice"]
    assert enrolment["totp_secret"] not in out and "argon2" not in out and "password_hash" not in out
    code, out, _ = run_json(capsys, monkeypatch, "admin", "disable", "alice")
    assert code == 0 and out["disabled"] is True
    code, out, _ = run_json(capsys, monkeypatch, "admin", "enable", "alice")
    assert code == 0 and out["disabled"] is False
    code, out, _ = run_json(capsys, monkeypatch, "admin", "reset-mfa", "alice", "--json")
    assert code == 0 and out["totp_secret"] != enrolment["totp_secret"]
    code, out, _ = run_json(capsys, monkeypatch, "admin", "disable", "nobody")
    assert code == 4 and out["error"] == "not_found"
    actors = {e["actor"] for e in open_store().list_audit(10)}
    assert len(actors) == 1 and actors.pop().startswith("cli:")


def test_cli_flags(cli_home, capsys, monkeypatch):
    code, out, _ = run_json(capsys, monkeypatch, "ops", "flags")
    assert code == 0 and out["version"] == 0 and out["flags"]["gates_ab"] is True
    code, out, _ = run_json(capsys, monkeypatch, "ops", "flags", "--set", "gates_ab=off", "--set",
                            "docs_exports=off", "--version", "0")
    assert code == 0 and out["version"] == 1 and out["flags"]["gates_ab"] is False
    code, out, _ = run_json(capsys, monkeypatch, "ops", "flags", "--set", "gates_ab=on", "--version", "0")
    assert code == 5 and out["error"] == "conflict" and out["current_version"] == 1
    code, out, _ = run_json(capsys, monkeypatch, "ops", "flags", "--set", "gates_ab=on")
    assert code == 2 and out["errors"][0]["field"] == "--version"
    code, out, _ = run_json(capsys, monkeypatch, "ops", "flags", "--set", "warp=on", "--version", "1")
    assert code == 2 and out["errors"][0]["field"] == "changes.warp"
    code, out, _ = run_json(capsys, monkeypatch, "ops", "flags", "--set", "gates_ab=maybe", "--version", "1")
    assert code == 2 and out["errors"][0]["field"] == "--set"


def test_cli_canary_rollback_audit_status(cli_home, tmp_path, capsys, monkeypatch):
    code, out, _ = run_json(capsys, monkeypatch, "ops", "canary", "10", "--reason", "try")
    assert code == 5 and "no candidate" in out["message"]
    ruleset_file = tmp_path / "candidate.json"
    ruleset_file.write_bytes(candidate_bytes())
    code, out, _ = run_json(capsys, monkeypatch, "ops", "ruleset", "register", str(ruleset_file))
    assert code == 0 and out["version"] == "v2-test"
    code, out, _ = run_json(capsys, monkeypatch, "ops", "ruleset", "register", str(tmp_path / "missing.json"))
    assert code == 2 and out["errors"][0]["field"] == "FILE"
    code, out, _ = run_json(capsys, monkeypatch, "ops", "canary", "25", "--reason", "first slice")
    assert code == 0 and out["state"] == "EXPANDING" and out["percentage"] == 25
    code, out, _ = run_json(capsys, monkeypatch, "ops", "canary", "250", "--reason", "too much")
    assert code == 2 and out["errors"][0]["field"] == "percentage"
    code, out, _ = run_json(capsys, monkeypatch, "ops", "rollback", "--reason", "errors up")
    assert code == 0 and out["state"] == "ROLLED_BACK" and out["percentage"] == 0 and out["duration_ms"] >= 0
    code, out, _ = run_json(capsys, monkeypatch, "ops", "audit", "--n", "3")
    assert code == 0 and [e["action"] for e in out["entries"]] == ["canary.rollback", "canary.update",
                                                                   "ruleset.register"]
    assert all(e["actor"].startswith("cli:") and e["request_id"].startswith("cli-") for e in out["entries"])
    code, out, _ = run_json(capsys, monkeypatch, "ops", "status")
    assert code == 0 and out["decision"] == "NO-GO" and out["canary"]["state"] == "ROLLED_BACK"
    code, out, _ = run_json(capsys, monkeypatch, "ops", "health")
    assert code == 0 and out["status"] == "ok" and out["store"]["backend"] == "sqlite"
    code, out, _ = run_json(capsys, monkeypatch, "ops", "ruleset", "list")
    assert code == 0 and out["candidate"]["version"] == "v2-test"


def test_cli_on_redis(cli_home, redis_url, capsys, monkeypatch):
    monkeypatch.setenv("PHASE1_REDIS_URL", redis_url)
    monkeypatch.setenv("PHASE1_REDIS_PREFIX", "cli-test:")
    code, out, _ = run_json(capsys, monkeypatch, "ops", "flags", "--set", "perm_chunking=off",
                            "--version", "0")
    assert code == 0 and out["version"] == 1
    assert ops.flag(RedisStore(redis_url, prefix="cli-test:"), "perm_chunking") is False
    assert not (cli_home / "phase1.db").exists()


def test_cli_subprocess_password_on_stdin(cli_home):
    entry = "import sys; from phase1lib.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", entry, "admin", "create-user", "dora", "--json"],
                          input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["username"] == "dora"
    assert isinstance(open_store(), SQLiteStore) and open_store().get_user("dora") is not None

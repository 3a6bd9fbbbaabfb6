"""The store, on both backends: users, sessions, lockout counters, audit, run index, metrics, jobs, and
several processes writing at once without losing an update."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import stat

import pytest

from phase1lib import ops
from phase1lib.auth import Auth
from phase1lib.errors import AuthError, ConflictError, InputError, LockedError, NotFoundError
from phase1lib.store import (
    KEEP,
    NS_META,
    STREAM_AUDIT,
    RedisStore,
    SQLiteStore,
    Write,
    open_store,
)

# ---- primitives ---------------------------------------------------------------------------------------


def test_transact_aborts_without_writing(store):
    store.transact(NS_META, "x", lambda doc: Write(doc={"n": 1}))

    def boom(doc):
        doc["n"] = 2
        raise ConflictError("no")

    with pytest.raises(ConflictError):
        store.transact(NS_META, "x", lambda doc: Write(doc={"n": 3}, appends=[(STREAM_AUDIT, boom(doc))]))
    assert store.read(NS_META, "x") == {"n": 1}
    assert store.stream_length(STREAM_AUDIT) == 0


def test_transact_keep_delete_and_appends(store):
    assert store.transact(NS_META, "k", lambda doc: Write(doc={"a": 1}, result="made",
                                                           appends=[(STREAM_AUDIT, {"e": 1})])) == "made"
    assert store.transact(NS_META, "k", lambda doc: Write(doc=KEEP, result=doc)) == {"a": 1}
    assert store.scan(NS_META) == {"k": {"a": 1}}
    store.transact(NS_META, "k", lambda doc: Write(doc=None))
    assert store.read(NS_META, "k") is None and store.scan(NS_META) == {}
    assert store.tail(STREAM_AUDIT) == [{"e": 1}]


def test_streams_tail_and_cap(store):
    for i in range(7):
        store.append("s", {"i": i}, cap=5)
    assert [r["i"] for r in store.tail("s")] == [2, 3, 4, 5, 6]
    assert [r["i"] for r in store.tail("s", 2)] == [5, 6]
    assert store.tail("s", 0) == []
    assert store.stream_length("s") == 5


def test_ping_and_describe(store, store_spec):
    assert store.ping() is True
    assert store.describe()["backend"] == store_spec.backend


def test_open_store_defaults_to_sqlite(tmp_path):
    sqlite = open_store({"PHASE1_HOME": str(tmp_path)})
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == tmp_path / "phase1.db"
    assert stat.S_IMODE(os.stat(sqlite.path).st_mode) == 0o600  # holds hashes and TOTP secrets
    assert sqlite._query("PRAGMA journal_mode", ())[0][0] == "wal"
    sqlite.close()


def test_open_store_picks_redis_when_configured(redis_url):
    shared = open_store({"PHASE1_REDIS_URL": redis_url, "PHASE1_REDIS_PREFIX": "pick:"})
    assert isinstance(shared, RedisStore) and shared.prefix == "pick:" and shared.ping()
    shared.close()


def test_redis_url_password_is_redacted():
    store = RedisStore("redis://user:s3cret-pass@127.0.0.1:1/0")
    assert "s3cret-pass" not in str(store.describe())
    assert store.ping() is False  # nothing listens on port 1; ping never raises


# ---- users --------------------------------------------------------------------------------------------


def test_users(store):
    created = store.create_user("alice", "HASH", "SECRET")
    assert "password_hash" not in created and "totp_secret" not in created
    with pytest.raises(ConflictError):
        store.create_user("alice", "H2", "S2")
    assert store.get_user("alice")["password_hash"] == "HASH"
    store.create_user("bob", "HASH", "SECRET")
    listed = store.list_users()
    assert [u["username"] for u in listed] == ["alice", "bob"]
    assert all(set(u).isdisjoint({"password_hash", "totp_secret", "last_totp_step"}) for u in listed)
    assert store.update_user("bob", {"disabled": True})["disabled"] is True
    with pytest.raises(NotFoundError):
        store.update_user("carol", {"disabled": True})


def test_totp_step_is_consumed_once(store):
    store.create_user("alice", "HASH", "SECRET")
    assert store.consume_totp_step("alice", 100) is True
    assert store.consume_totp_step("alice", 100) is False  # replay
    assert store.consume_totp_step("alice", 99) is False  # older step
    assert store.consume_totp_step("alice", 101) is True
    assert store.consume_totp_step("nobody", 5) is False


# ---- sessions -----------------------------------------------------------------------------------------


def _session(now, idle=1800, absolute=43200, username="alice"):
    return {"username": username, "elevated": True, "created_at": now, "last_seen": now,
            "absolute_expires_at": now + absolute, "idle_timeout_s": idle, "data": {}}


def test_session_touch_and_idle_expiry(store, clock):
    store.create_session("k1", _session(clock()))
    clock.advance(1700)
    assert store.get_session("k1")["last_seen"] == clock()  # touched
    clock.advance(1700)
    assert store.get_session("k1") is not None  # idle measured from the last touch
    clock.advance(1800)
    assert store.get_session("k1") is None
    assert store.read("sessions", "k1") is None  # expired sessions are deleted when seen


def test_session_absolute_expiry(store, clock):
    store.create_session("k1", _session(clock(), idle=1800, absolute=3600))
    for _ in range(3):
        clock.advance(1000)
        assert store.get_session("k1") is not None
    clock.advance(600)
    assert store.get_session("k1") is None


def test_session_data(store, clock):
    store.create_session("k1", _session(clock()))
    assert store.update_session_data("k1", {"project": "london", "last_run_id": "r1"}) == {
        "project": "london", "last_run_id": "r1"}
    assert store.update_session_data("k1", {"last_run_id": None}) == {"project": "london"}
    assert store.get_session_data("k1") == {"project": "london"}
    with pytest.raises(InputError, match=r"session\.data"):
        store.update_session_data("k1", {"blob": "x" * 20_000})
    assert store.update_session_data("nope", {"a": 1}) is None
    assert store.get_session_data("nope") is None


def test_delete_and_purge_sessions(store, clock):
    store.create_session("a1", _session(clock()))
    store.create_session("a2", _session(clock()))
    store.create_session("b1", _session(clock(), username="bob", idle=10))
    with pytest.raises(ConflictError):
        store.create_session("a1", _session(clock()))
    assert store.delete_user_sessions("alice") == 2
    assert store.delete_session("a1") is False
    clock.advance(11)
    assert store.purge_expired_sessions() == 1
    assert store.scan("sessions") == {}


# ---- lockout counters ---------------------------------------------------------------------------------


def test_record_failure_locks_and_expires(store, clock):
    for i in range(1, 5):
        assert store.record_failure("user:alice", 5, 900, 900) == {"failures": i, "locked_until": None,
                                                                     "total": i}
    fifth = store.record_failure("user:alice", 5, 900, 900)
    assert fifth["locked_until"] == clock() + 900
    assert store.locked_until("user:alice") == clock() + 900
    clock.advance(899)
    assert store.locked_until("user:alice") is not None
    clock.advance(1)
    assert store.locked_until("user:alice") is None
    after = store.record_failure("user:alice", 5, 900, 900)
    assert after["failures"] == 1 and after["total"] == 6  # a fresh window after the lock


def test_failures_outside_window_are_forgotten(store, clock):
    for _ in range(4):
        store.record_failure("addr:1.2.3.4", 5, 900, 900)
    clock.advance(901)
    assert store.record_failure("addr:1.2.3.4", 5, 900, 900)["failures"] == 1
    store.clear_failures("addr:1.2.3.4")
    assert store.attempts("addr:1.2.3.4")["failures"] == 0


# ---- audit, run index, metrics ------------------------------------------------------------------------


def test_audit_newest_first(store, clock):
    for i in range(3):
        clock.advance(1)
        store.add_audit("thing", "tester", f"req-{i}", target=i)
    entries = store.list_audit(2)
    assert [e["target"] for e in entries] == [2, 1]
    assert entries[0] == {"at": clock(), "action": "thing", "actor": "tester", "request_id": "req-2",
                          "target": 2}


def test_run_index(store):
    base = {"title": "London", "cardinality": 1920, "evaluated": 1920, "elapsed_s": 1.5, "ruleset": "v1",
            "counts": {"viable": 10}, "seed": 424242}
    store.index_run({**base, "run_id": "r-old", "created_at": "2025-01-01T00:00:00+00:00"})
    store.index_run({**base, "run_id": "r-new", "created_at": "2025-02-01T00:00:00Z"})
    store.index_run({**base, "run_id": "r-mid", "created_at": 1737000000.0})
    assert [r["run_id"] for r in store.list_runs(10)] == ["r-new", "r-mid", "r-old"]
    assert [r["run_id"] for r in store.list_runs(1)] == ["r-new"]
    store.index_run({**base, "run_id": "r-old", "created_at": "2025-01-01T00:00:00+00:00", "title": "again"})
    assert store.get_run("r-old")["title"] == "again" and len(store.list_runs(10)) == 3
    assert store.get_run("missing") is None
    with pytest.raises(InputError, match="run_id"):
        store.index_run({"title": "no id"})


def test_metrics_kept(store):
    for i in range(5):
        store.add_metric({"kind": "run", "duration_s": i, "ok": True, "permutations": 10, "rss_bytes": 1,
                          "at": 0})
    assert store.metric_count() == 5
    assert [m["duration_s"] for m in store.list_metrics()] == [0, 1, 2, 3, 4]


# ---- jobs ---------------------------------------------------------------------------------------------


def test_job_lifecycle(store, clock):
    job = store.create_job("owner-1", "queued for run")
    assert job["state"] == "queued" and job["progress"] == 0.0 and job["owner"] == "owner-1"
    clock.advance(1)
    job = store.update_job(job["job_id"], state="running", progress=0.25, message="chunk 1/4")
    assert job["started_at"] == clock() and job["progress"] == 0.25
    job = store.update_job(job["job_id"], progress=0.5)
    job = store.update_job(job["job_id"], state="done", run_id="run-123")
    assert job["state"] == "done" and job["progress"] == 1.0 and job["run_id"] == "run-123"
    assert job["finished_at"] == clock()
    with pytest.raises(ConflictError):
        store.update_job(job["job_id"], state="running")
    with pytest.raises(ConflictError):
        store.update_job(job["job_id"], progress=0.1)
    with pytest.raises(InputError, match="progress"):
        store.update_job(job["job_id"], progress=1.5)
    with pytest.raises(InputError, match="state"):
        store.update_job(job["job_id"], state="paused")
    with pytest.raises(NotFoundError):
        store.update_job("missing", state="running")
    assert store.get_job("missing") is None
    assert store.get_job(job["job_id"]) == job


def test_fail_interrupted_jobs(store, clock):
    queued = store.create_job("a")
    running = store.create_job("a")
    store.update_job(running["job_id"], state="running")
    done = store.create_job("b")
    store.update_job(done["job_id"], state="done", run_id="r")
    assert store.fail_interrupted_jobs() == sorted([queued["job_id"], running["job_id"]])
    for job_id in (queued["job_id"], running["job_id"]):
        job = store.get_job(job_id)
        assert job["state"] == "failed" and job["error"] == "interrupted by restart"
    assert store.get_job(done["job_id"])["state"] == "done"
    assert store.fail_interrupted_jobs() == []
    assert [j["job_id"] for j in store.list_jobs(owner="b")] == [done["job_id"]]
    with pytest.raises(ConflictError):
        store.create_job("a", job_id=done["job_id"])


# ---- several processes at once ------------------------------------------------------------------------

N_UPDATES, N_METRICS, N_LOGINS = 200, 200, 100


def _flag_worker(spec, n, out, start):
    store = spec.open()
    start.wait(30)
    conflicts = 0
    done = 0
    while done < n:
        state = ops.get_flags(store)
        try:
            ops.update_flags(store, state["version"], {"gates_ab": not state["flags"]["gates_ab"]},
                             f"proc-{os.getpid()}", None)
            done += 1
        except ConflictError:
            conflicts += 1
    out.put(conflicts)


def _metric_worker(spec, n, out, start):
    store = spec.open()
    start.wait(30)
    for i in range(n):
        ops.record_metric(store, "run" if i % 2 else "request", 0.01, True, 100 if i % 2 else None)
    out.put(0)


def _login_worker(spec, n, out, start):
    from argon2 import PasswordHasher

    auth = Auth(spec.open(), hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
                max_failures=10**6, app_env="dev")
    start.wait(30)
    for _ in range(n):
        with contextlib.suppress(AuthError, LockedError):
            auth.login_password("alice", "wrong password!", "10.1.1.1")
    out.put(0)


def _run_two(worker, spec, n):
    ctx = mp.get_context("fork")
    out, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(spec, n, out, start)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()  # both go at once
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_two_processes_flag_updates_lose_nothing(store, store_spec):
    _run_two(_flag_worker, store_spec, N_UPDATES)
    state = ops.get_flags(store)
    assert state["version"] == 2 * N_UPDATES
    assert state["flags"]["gates_ab"] is True  # toggled an even number of times
    updates = [e for e in store.list_audit(10_000) if e["action"] == "flags.update"]
    assert len(updates) == 2 * N_UPDATES
    assert sorted(e["version"] for e in updates) == list(range(1, 2 * N_UPDATES + 1))


def test_two_processes_metrics_lose_nothing(store, store_spec):
    _run_two(_metric_worker, store_spec, N_METRICS)
    assert store.metric_count() == 2 * N_METRICS


def test_two_processes_failed_logins_lose_nothing(store, store_spec, fast_hasher):
    Auth(store, hasher=fast_hasher, app_env="dev").create_user("alice", "correct horse battery")
    _run_two(_login_worker, store_spec, N_LOGINS)
    assert store.attempts("user:alice")["total"] == 2 * N_LOGINS
    assert store.attempts("user:alice")["failures"] == 2 * N_LOGINS
    assert store.attempts("addr:10.1.1.1")["total"] == 2 * N_LOGINS

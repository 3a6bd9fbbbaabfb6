"""The store: admin users, sessions, lockouts, flags, canary, audit log, run index, ops metrics and jobs.

One interface, :class:`Store`, with two backends: :class:`SQLiteStore` (embedded default, a file under
PHASE1_HOME) and :class:`RedisStore` (PHASE1_REDIS_URL, shared by several processes or hosts). The
domain methods live in the base class and are written over a handful of atomic primitives -- a
read-modify-write of one JSON document (optionally appending to streams in the same transaction) and
append-only streams -- so both backends behave identically and one test suite covers both.

Every method takes and returns plain JSON data. Time comes from an injectable ``clock`` (epoch seconds)
so tests can fast-forward lockouts, session expiry and job timestamps without sleeping.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import settings
from .errors import ConflictError, FieldError, InputError, NotFoundError

Clock = Callable[[], float]

#: Namespaces of documents and names of streams used by the library.
NS_USERS, NS_SESSIONS, NS_ATTEMPTS, NS_META, NS_RULESETS, NS_RUNS, NS_JOBS = (
    "users", "sessions", "attempts", "meta", "rulesets", "runs", "jobs")
STREAM_AUDIT, STREAM_METRICS, STREAM_CANARY = "audit", "metrics", "canary_history"

#: Metric samples kept (oldest dropped first); audit and canary history are never trimmed.
METRICS_RETENTION = 20_000
#: Largest session data dict, as compact JSON, so a session stays "small".
SESSION_DATA_MAX_BYTES = 16_384
JOB_STATES = ("queued", "running", "done", "failed")
_JOB_NEXT = {"queued": {"running", "failed", "done"}, "running": {"running", "done", "failed"}}
_USER_PRIVATE = ("password_hash", "totp_secret", "last_totp_step")
_USER_FIELDS = {"password_hash", "totp_secret", "disabled", "last_totp_step", "mfa_reset_at", "last_login_at"}


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: Marker for :class:`Write`: leave the document as it is.
KEEP: Any = _Keep()


@dataclass
class Write:
    """What a :meth:`Store.transact` function decides: the new document (None deletes, KEEP leaves it),
    the value to return, and records to append to streams in the same transaction."""

    doc: Any = KEEP
    result: Any = None
    appends: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, sort_keys=True)


def audit_entry(action: str, actor: str, request_id: str | None, at: float, **details: Any) -> dict[str, Any]:
    """One audit record: who did what, when, under which request id, with old and new values in details."""
    return {"at": at, "action": action, "actor": actor, "request_id": request_id, **details}


class Store(ABC):
    """The interface every backend implements; domain methods are shared, primitives are per backend."""

    backend = "abstract"

    def __init__(self, clock: Clock | None = None):
        self.clock: Clock = clock or time.time

    def now(self) -> float:
        """Current time in epoch seconds, from the injected clock."""
        return float(self.clock())

    # ---- primitives (per backend) -------------------------------------------------------------------

    @abstractmethod
    def read(self, ns: str, key: str) -> dict[str, Any] | None:
        """One document, or None."""

    @abstractmethod
    def scan(self, ns: str) -> dict[str, dict[str, Any]]:
        """Every document of a namespace by key, in no particular order."""

    @abstractmethod
    def transact(self, ns: str, key: str, fn: Callable[[dict[str, Any] | None], Write]) -> Any:
        """Atomically read one document, let ``fn`` decide a :class:`Write`, apply it, return its result.

        ``fn`` may run more than once (optimistic retry) so it must have no side effects; raising in
        ``fn`` aborts the transaction with nothing written.
        """

    @abstractmethod
    def append(self, stream: str, record: dict[str, Any], cap: int | None = None) -> None:
        """Append one record to a stream atomically, keeping at most ``cap`` records if given."""

    @abstractmethod
    def tail(self, stream: str, n: int | None = None) -> list[dict[str, Any]]:
        """The last ``n`` records of a stream (all when None), oldest first."""

    @abstractmethod
    def stream_length(self, stream: str) -> int:
        """Number of records in a stream."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the backend answers; never raises."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless the backend holds connections
        """Release connections."""

    def describe(self) -> dict[str, Any]:
        """Backend name and location, without credentials."""
        return {"backend": self.backend}

    # ---- users --------------------------------------------------------------------------------------

    @staticmethod
    def public_user(doc: dict[str, Any]) -> dict[str, Any]:
        """A user record without its password hash, TOTP secret or replay counter."""
        return {k: v for k, v in doc.items() if k not in _USER_PRIVATE}

    def create_user(self, username: str, password_hash: str, totp_secret: str) -> dict[str, Any]:
        """Add an admin user; ConflictError if the name is taken. Returns the public record."""
        now = self.now()

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is not None:
                raise ConflictError(f"user {username!r} already exists", field="username")
            new = {"username": username, "password_hash": password_hash, "totp_secret": totp_secret,
                   "disabled": False, "created_at": now, "last_totp_step": -1, "last_login_at": None}
            return Write(doc=new, result=self.public_user(new))

        return self.transact(NS_USERS, username, fn)

    def get_user(self, username: str) -> dict[str, Any] | None:
        """The full user record including its secrets, for the auth module only; None if absent."""
        return self.read(NS_USERS, username)

    def list_users(self) -> list[dict[str, Any]]:
        """Public records of all users, sorted by name."""
        users = (self.public_user(d) for d in self.scan(NS_USERS).values())
        return sorted(users, key=lambda d: d["username"])

    def update_user(self, username: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change stored fields of a user (hash, secret, disabled...); NotFoundError if absent."""
        unknown = set(changes) - _USER_FIELDS
        if unknown:
            raise ValueError(f"not user fields: {sorted(unknown)}")

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is None:
                raise NotFoundError(f"no user {username!r}")
            doc.update(changes)
            return Write(doc=doc, result=self.public_user(doc))

        return self.transact(NS_USERS, username, fn)

    def consume_totp_step(self, username: str, step: int, now: float | None = None) -> bool:
        """Accept a TOTP time step once: True and remembered if newer than the last accepted step."""
        now = self.now() if now is None else now

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is None or doc.get("disabled") or step <= int(doc.get("last_totp_step", -1)):
                return Write(result=False)
            doc["last_totp_step"] = int(step)
            doc["last_login_at"] = now
            return Write(doc=doc, result=True)

        return bool(self.transact(NS_USERS, username, fn))

    # ---- sessions -----------------------------------------------------------------------------------
    # A session record holds: username, elevated, created_at, last_seen, absolute_expires_at,
    # idle_timeout_s and data. Keys are hashes of the session ids, never the ids themselves.

    @staticmethod
    def session_expired(doc: dict[str, Any], now: float) -> bool:
        """Past its absolute expiry, or idle for its idle timeout or longer."""
        return now >= float(doc["absolute_expires_at"]) or now - float(doc["last_seen"]) >= float(
            doc["idle_timeout_s"])

    def create_session(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store a new session under ``key`` (a hash of its id)."""

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is not None:
                raise ConflictError("session key collision")
            return Write(doc=dict(record), result=dict(record))

        return self.transact(NS_SESSIONS, key, fn)

    def get_session(self, key: str, touch: bool = True, now: float | None = None) -> dict[str, Any] | None:
        """A live session (deleting it if expired); ``touch`` restarts its idle timer."""
        now = self.now() if now is None else now

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is None:
                return Write(result=None)
            if self.session_expired(doc, now):
                return Write(doc=None, result=None)
            if not touch:
                return Write(result=doc)
            doc["last_seen"] = now
            return Write(doc=doc, result=doc)

        return self.transact(NS_SESSIONS, key, fn)

    def delete_session(self, key: str) -> bool:
        """End a session; True if it existed."""
        return bool(self.transact(NS_SESSIONS, key, lambda doc: Write(doc=None, result=doc is not None)))

    def get_session_data(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The data dict of a live session (without touching it), or None."""
        doc = self.get_session(key, touch=False, now=now)
        return None if doc is None else dict(doc.get("data") or {})

    def update_session_data(self, key: str, updates: Mapping[str, Any],
                            now: float | None = None) -> dict[str, Any] | None:
        """Merge ``updates`` into a live session's data (a None value removes the key); None if no session."""
        now = self.now() if now is None else now

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is None or self.session_expired(doc, now):
                return Write(result=None)
            data = dict(doc.get("data") or {})
            for k, v in updates.items():
                if v is None:
                    data.pop(k, None)
                else:
                    data[str(k)] = v
            size = len(_dumps(data).encode())
            if size > SESSION_DATA_MAX_BYTES:
                rule = f"must be at most {SESSION_DATA_MAX_BYTES} bytes as JSON (got {size})"
                raise InputError([FieldError("session.data", rule)], "session data")
            doc["data"] = data
            return Write(doc=doc, result=data)

        return self.transact(NS_SESSIONS, key, fn)

    def delete_user_sessions(self, username: str) -> int:
        """End every session of a user (on disable or MFA reset); returns how many ended."""
        keys = [k for k, d in self.scan(NS_SESSIONS).items() if d.get("username") == username]
        return sum(self.delete_session(k) for k in keys)

    def purge_expired_sessions(self, now: float | None = None) -> int:
        """Delete expired sessions; returns how many."""
        now = self.now() if now is None else now
        expired = [k for k, d in self.scan(NS_SESSIONS).items() if self.session_expired(d, now)]
        for key in expired:
            self.transact(NS_SESSIONS, key,
                          lambda doc: Write(doc=None if doc and self.session_expired(doc, now) else KEEP))
        return len(expired)

    # ---- login attempts (lockout) -------------------------------------------------------------------

    def record_failure(self, key: str, threshold: int, window_s: float, lock_s: float,
                       now: float | None = None) -> dict[str, Any]:
        """Count one failed attempt for ``key`` (e.g. ``user:alice`` or ``addr:10.0.0.1``).

        Failures older than ``window_s`` are forgotten; reaching ``threshold`` locks the key for
        ``lock_s``. Returns {"failures", "locked_until", "total"} where total never resets.
        """
        now = self.now() if now is None else now

        def fn(doc: dict[str, Any] | None) -> Write:
            doc = doc or {"key": key, "failures": 0, "first_at": now, "locked_until": None, "total": 0}
            locked_until = doc.get("locked_until")
            if (locked_until is not None and now >= locked_until) or now - doc["first_at"] > window_s:
                doc.update(failures=0, first_at=now, locked_until=None)
            doc["failures"] += 1
            doc["total"] = doc.get("total", 0) + 1
            doc["last_at"] = now
            if doc["failures"] >= threshold and doc["locked_until"] is None:
                doc["locked_until"] = now + lock_s
            return Write(doc=doc, result={k: doc[k] for k in ("failures", "locked_until", "total")})

        return self.transact(NS_ATTEMPTS, key, fn)

    def locked_until(self, key: str, now: float | None = None) -> float | None:
        """When the lock on ``key`` ends, or None if it is not locked now."""
        now = self.now() if now is None else now
        doc = self.read(NS_ATTEMPTS, key)
        until = doc.get("locked_until") if doc else None
        return float(until) if until is not None and now < until else None

    def attempts(self, key: str) -> dict[str, Any] | None:
        """The raw attempt record of ``key``, for tests and operators."""
        return self.read(NS_ATTEMPTS, key)

    def clear_failures(self, key: str, now: float | None = None) -> None:
        """Forget the recent failures of ``key`` (after a successful login); keeps the total."""
        now = self.now() if now is None else now

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is None or (doc["failures"] == 0 and doc.get("locked_until") is None):
                return Write()
            doc.update(failures=0, locked_until=None, first_at=now)
            return Write(doc=doc)

        self.transact(NS_ATTEMPTS, key, fn)

    # ---- audit --------------------------------------------------------------------------------------

    def add_audit(self, action: str, actor: str, request_id: str | None = None,
                  **details: Any) -> dict[str, Any]:
        """Append one audit entry stamped with the store's clock."""
        entry = audit_entry(action, actor, request_id, self.now(), **details)
        self.append(STREAM_AUDIT, entry)
        return entry

    def list_audit(self, n: int = 50) -> list[dict[str, Any]]:
        """The last ``n`` audit entries, newest first."""
        return list(reversed(self.tail(STREAM_AUDIT, max(0, int(n)))))

    # ---- run index ----------------------------------------------------------------------------------

    def index_run(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Record (or replace) a completed run: run_id, created_at, title, cardinality, evaluated, ..."""
        run_id = record.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise InputError([FieldError("run_id", "must be a non-empty string")], "run record")
        doc = dict(record)
        doc.setdefault("created_at", self.now())
        _dumps(doc)  # plain JSON data only, refused early
        return self.transact(NS_RUNS, run_id, lambda _old: Write(doc=doc, result=doc))

    def unindex_run(self, run_id: str) -> bool:
        """Remove a run's index entry; False when there was none."""
        return self.transact(NS_RUNS, run_id, lambda old: Write(doc=None if old is not None else KEEP,
                                                                result=old is not None))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run record, or None."""
        return self.read(NS_RUNS, run_id)

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent ``limit`` run records, newest first (by created_at, then run_id)."""
        runs = sorted(self.scan(NS_RUNS).values(), key=lambda d: (_as_time(d.get("created_at")), d["run_id"]),
                      reverse=True)
        return runs[: max(0, int(limit))]

    # ---- ops metrics --------------------------------------------------------------------------------

    def add_metric(self, sample: Mapping[str, Any]) -> None:
        """Append one metric sample (kind, duration_s, ok, permutations, rss_bytes, at)."""
        self.append(STREAM_METRICS, dict(sample), cap=METRICS_RETENTION)

    def list_metrics(self, n: int | None = None) -> list[dict[str, Any]]:
        """The last ``n`` metric samples (all kept when None), oldest first."""
        return self.tail(STREAM_METRICS, n)

    def metric_count(self) -> int:
        return self.stream_length(STREAM_METRICS)

    # ---- background jobs ----------------------------------------------------------------------------

    def create_job(self, owner: str | None, message: str = "", job_id: str | None = None) -> dict[str, Any]:
        """A new queued job owned by a session id (or None); returns its record."""
        job_id = job_id or secrets.token_hex(12)
        now = self.now()
        job = {"job_id": job_id, "state": "queued", "progress": 0.0, "message": message, "run_id": None,
               "error": None, "owner": owner, "created_at": now, "updated_at": now,
               "started_at": None, "finished_at": None}

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is not None:
                raise ConflictError(f"job {job_id!r} already exists")
            return Write(doc=job, result=job)

        return self.transact(NS_JOBS, job_id, fn)

    def update_job(self, job_id: str, *, state: str | None = None, progress: float | None = None,
                   message: str | None = None, run_id: str | None = None,
                   error: str | None = None) -> dict[str, Any]:
        """Advance a job: queued -> running -> done | failed; finished jobs do not change (409)."""
        _check_job_update(state, progress)
        now = self.now()

        def fn(doc: dict[str, Any] | None) -> Write:
            if doc is None:
                raise NotFoundError(f"no job {job_id!r}")
            if state is not None and state not in _JOB_NEXT.get(doc["state"], set()):
                raise ConflictError(f"job {job_id} is {doc['state']}; it cannot become {state}",
                                    state=doc["state"])
            if state is None and doc["state"] in ("done", "failed"):
                raise ConflictError(f"job {job_id} is {doc['state']} and cannot change", state=doc["state"])
            _apply_job_update(doc, now, state, progress, message, run_id, error)
            return Write(doc=doc, result=doc)

        return self.transact(NS_JOBS, job_id, fn)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """One job record, or None."""
        return self.read(NS_JOBS, job_id)

    def list_jobs(self, owner: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Jobs (of one owner when given), newest first."""
        jobs = [j for j in self.scan(NS_JOBS).values() if owner is None or j.get("owner") == owner]
        jobs.sort(key=lambda j: (j["created_at"], j["job_id"]), reverse=True)
        return jobs[: max(0, int(limit))]

    def fail_interrupted_jobs(self, message: str = "interrupted by restart") -> list[str]:
        """Mark every queued or running job failed (called once at server start); returns their ids."""
        failed = []
        for job in self.scan(NS_JOBS).values():
            if job["state"] in ("queued", "running"):
                try:
                    self.update_job(job["job_id"], state="failed", error=message)
                    failed.append(job["job_id"])
                except ConflictError:  # finished meanwhile by another process
                    pass
        return sorted(failed)


def _as_time(value: Any) -> float:
    """created_at as a sortable number: epoch seconds as is, ISO strings parsed, anything else 0."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _check_job_update(state: str | None, progress: float | None) -> None:
    errors = []
    if state is not None and state not in JOB_STATES:
        errors.append(FieldError("state", f"must be one of {', '.join(JOB_STATES)} (got {state!r})"))
    if progress is not None and (isinstance(progress, bool) or not isinstance(progress, int | float)
                                 or not 0.0 <= progress <= 1.0):
        errors.append(FieldError("progress", f"must be a number from 0 to 1 (got {progress!r})"))
    if errors:
        raise InputError(errors, "job update")


def _apply_job_update(doc: dict[str, Any], now: float, state: str | None, progress: float | None,
                      message: str | None, run_id: str | None, error: str | None) -> None:
    if state == "running" and doc["started_at"] is None:
        doc["started_at"] = now
    if state in ("done", "failed"):
        doc["finished_at"] = now
    if state is not None:
        doc["state"] = state
    if progress is not None:
        doc["progress"] = float(progress)
    if state == "done":
        doc["progress"] = 1.0
    for name, value in (("message", message), ("run_id", run_id), ("error", error)):
        if value is not None:
            doc[name] = value
    doc["updated_at"] = now


# ---- SQLite ---------------------------------------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS docs (ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (ns, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS streams (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,"
    " value TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS streams_by_name ON streams (stream, seq)",
)


class SQLiteStore(Store):
    """Embedded store: one SQLite file in WAL mode; each write is one BEGIN IMMEDIATE transaction, so
    several processes on one host can share it without losing updates."""

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str], clock: Clock | None = None,
                 busy_timeout_s: float = 30.0):
        super().__init__(clock)
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn_obj: sqlite3.Connection | None = None
        self._stale: list[sqlite3.Connection] = []
        self._pid = -1
        self._connect()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "path": str(self.path)}

    def _connect(self) -> sqlite3.Connection:
        """The connection of this process (reopened after a fork), with WAL and the schema in place."""
        if self._conn_obj is not None and self._pid == os.getpid():
            return self._conn_obj
        if self._conn_obj is not None:  # inherited across fork: never use or close it here
            self._stale.append(self._conn_obj)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # holds password hashes and TOTP secrets: owner-only
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._conn_obj, self._pid = conn, os.getpid()
        self._write(lambda c: [c.execute(s) for s in _SCHEMA])
        return conn

    def _write(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``body`` in one BEGIN IMMEDIATE transaction (the write lock is taken up front)."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connect().execute(sql, params).fetchall()

    def read(self, ns: str, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT value FROM docs WHERE ns = ? AND key = ?", (ns, key))
        return json.loads(rows[0][0]) if rows else None

    def scan(self, ns: str) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT key, value FROM docs WHERE ns = ?", (ns,))
        return {key: json.loads(value) for key, value in rows}

    def transact(self, ns: str, key: str, fn: Callable[[dict[str, Any] | None], Write]) -> Any:
        def body(conn: sqlite3.Connection) -> Any:
            row = conn.execute("SELECT value FROM docs WHERE ns = ? AND key = ?", (ns, key)).fetchone()
            write = fn(json.loads(row[0]) if row else None)
            if write.doc is None:
                conn.execute("DELETE FROM docs WHERE ns = ? AND key = ?", (ns, key))
            elif write.doc is not KEEP:
                conn.execute("INSERT OR REPLACE INTO docs (ns, key, value) VALUES (?, ?, ?)",
                             (ns, key, _dumps(write.doc)))
            for stream, record in write.appends:
                self._insert(conn, stream, record, None)
            return write.result

        return self._write(body)

    @staticmethod
    def _insert(conn: sqlite3.Connection, stream: str, record: dict[str, Any], cap: int | None) -> None:
        conn.execute("INSERT INTO streams (stream, value) VALUES (?, ?)", (stream, _dumps(record)))
        if cap is not None:
            conn.execute(
                "DELETE FROM streams WHERE stream = ? AND seq <= (SELECT seq FROM streams WHERE stream = ?"
                " ORDER BY seq DESC LIMIT 1 OFFSET ?)", (stream, stream, int(cap)))

    def append(self, stream: str, record: dict[str, Any], cap: int | None = None) -> None:
        self._write(lambda conn: self._insert(conn, stream, record, cap))

    def tail(self, stream: str, n: int | None = None) -> list[dict[str, Any]]:
        limit = -1 if n is None else int(n)
        sql = "SELECT value FROM streams WHERE stream = ? ORDER BY seq DESC LIMIT ?"
        rows = self._query(sql, (stream, limit))
        return [json.loads(r[0]) for r in reversed(rows)]

    def stream_length(self, stream: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM streams WHERE stream = ?", (stream,))[0][0])

    def ping(self) -> bool:
        try:
            self._query("SELECT 1", ())
            return True
        except Exception:
            return False

    def close(self) -> None:
        with self._lock:
            if self._conn_obj is not None and self._pid == os.getpid():
                self._conn_obj.close()
            self._conn_obj = None


# ---- Redis ----------------------------------------------------------------------------------------------


class RedisStore(Store):
    """Shared store on Redis: one JSON string per document plus a set per namespace, lists for streams;
    read-modify-write uses WATCH/MULTI with retry, so concurrent processes lose no update."""

    backend = "redis"

    def __init__(self, url: str, prefix: str = "phase1:", clock: Clock | None = None):
        import redis

        super().__init__(clock)
        self.prefix = prefix
        self._redis_mod = redis
        self._r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10,
                                       socket_connect_timeout=5)
        self._where = _redact_url(url)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": self._where, "prefix": self.prefix}

    def _doc_key(self, ns: str, key: str) -> str:
        return f"{self.prefix}doc:{ns}:{key}"

    def _index_key(self, ns: str) -> str:
        return f"{self.prefix}index:{ns}"

    def _stream_key(self, stream: str) -> str:
        return f"{self.prefix}stream:{stream}"

    def read(self, ns: str, key: str) -> dict[str, Any] | None:
        raw = self._r.get(self._doc_key(ns, key))
        return None if raw is None else json.loads(raw)

    def scan(self, ns: str) -> dict[str, dict[str, Any]]:
        keys = sorted(self._r.smembers(self._index_key(ns)))
        if not keys:
            return {}
        values = self._r.mget([self._doc_key(ns, k) for k in keys])
        return {k: json.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def transact(self, ns: str, key: str, fn: Callable[[dict[str, Any] | None], Write]) -> Any:
        doc_key = self._doc_key(ns, key)
        with self._r.pipeline() as pipe:
            for attempt in range(10_000):
                try:
                    pipe.watch(doc_key)
                    raw = pipe.get(doc_key)
                    write = fn(None if raw is None else json.loads(raw))
                    if write.doc is KEEP and not write.appends:
                        pipe.unwatch()
                        return write.result
                    pipe.multi()
                    if write.doc is None:
                        pipe.delete(doc_key)
                        pipe.srem(self._index_key(ns), key)
                    elif write.doc is not KEEP:
                        pipe.set(doc_key, _dumps(write.doc))
                        pipe.sadd(self._index_key(ns), key)
                    for stream, record in write.appends:
                        pipe.rpush(self._stream_key(stream), _dumps(record))
                    pipe.execute()
                    return write.result
                except self._redis_mod.WatchError:
                    if attempt > 3:  # heavy contention: back off a little, randomly
                        time.sleep(random.uniform(0, min(0.05, 0.001 * attempt)))
        raise ConflictError(f"could not update {ns}/{key}: too much contention")  # pragma: no cover

    def append(self, stream: str, record: dict[str, Any], cap: int | None = None) -> None:
        with self._r.pipeline(transaction=True) as pipe:
            pipe.rpush(self._stream_key(stream), _dumps(record))
            if cap is not None:
                pipe.ltrim(self._stream_key(stream), -int(cap), -1)
            pipe.execute()

    def tail(self, stream: str, n: int | None = None) -> list[dict[str, Any]]:
        if n is not None and n <= 0:
            return []
        start = 0 if n is None else -int(n)
        return [json.loads(v) for v in self._r.lrange(self._stream_key(stream), start, -1)]

    def stream_length(self, stream: str) -> int:
        return int(self._r.llen(self._stream_key(stream)))

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._r.close()


def _redact_url(url: str) -> str:
    """A Redis URL without its password, for status output."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_store(env: Mapping[str, str] | None = None, clock: Clock | None = None) -> Store:
    """The configured store: Redis when PHASE1_REDIS_URL is set, else SQLite at PHASE1_HOME/phase1.db."""
    config = settings.get(env)
    if config.redis_url:
        return RedisStore(config.redis_url, prefix=config.redis_prefix, clock=clock)
    return SQLiteStore(config.home / "phase1.db", clock=clock)

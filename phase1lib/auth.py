"""Admin authentication: argon2 password hashes, TOTP MFA, two-step login, sessions, lockout, ops token.

Login is two steps. :meth:`Auth.login_password` gives a *pending* session that can do nothing but the
MFA step; :meth:`Auth.verify_mfa` with a TOTP code (±1 step, each step accepted once) replaces it by an
*elevated* session under a new id. Sessions end after an idle time and an absolute time. Five failures
for a username, or from one client address, lock it for 15 minutes; the counters live in the store,
so restarts and other processes see them. Passwords, codes, TOTP secrets and session ids never reach a
log or an error message; the store keeps only argon2 hashes of passwords and sha256 hashes of session ids.

APP_ENV=dev adds the "dev bridge": requests from a loopback address act as a local dev admin without
MFA. In prod the bridge is off and :func:`check_prod_config` lists what stops the server from starting.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import settings
from .errors import AuthError, ConfigError, FieldError, ForbiddenError, InputError, LockedError, NotFoundError
from .store import Clock, Store

log = logging.getLogger("phase1lib.auth")

ISSUER = "Phase-1 Workbench"
#: The token printed in the operations guide: public, so never acceptable in prod.
PUBLISHED_EXAMPLE_TOKEN = "phase1-admin-secure-token"
MIN_SECRET_CHARS = 32
DEFAULT_IDLE_S = 30 * 60
DEFAULT_ABSOLUTE_S = 12 * 3600
#: A pending session (password given, MFA not yet) lives at most this long.
PENDING_TTL_S = 5 * 60
MAX_FAILURES = 5
LOCK_S = 15 * 60
USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{3,64}")
USERNAME_RULE = "must be 3-64 characters from A-Z a-z 0-9 _ . @ -"
PASSWORD_MIN, PASSWORD_MAX = 12, 1024
TOTP_DIGITS_RE = re.compile(r"\d{6}")
DEV_ADMIN = "dev-admin"
_BAD_LOGIN = "invalid username or password"
_BAD_CODE = "invalid or expired code"


def session_key(session_id: str) -> str:
    """The store key of a session: sha256 of its id, so a store dump holds no usable session."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    """A live session. ``session_id`` is the cookie value: keep it out of logs (it is not in repr)."""

    username: str
    elevated: bool
    created_at: float
    last_seen: float
    expires_at: float
    data: dict[str, Any]
    dev_bridge: bool = False
    session_id: str = field(default="", repr=False)

    @property
    def state(self) -> str:
        """``pending`` until the MFA step, then ``elevated``."""
        return "elevated" if self.elevated else "pending"

    def to_dict(self) -> dict[str, Any]:
        """Public view, without the session id."""
        return {"username": self.username, "state": self.state, "created_at": self.created_at,
                "last_seen": self.last_seen, "expires_at": self.expires_at, "dev_bridge": self.dev_bridge,
                "data": dict(self.data)}


# ---- configuration --------------------------------------------------------------------------------------


def _settings(env: Mapping[str, str] | None) -> settings.Settings:
    return settings.get(env)


def session_timeouts(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(idle_s, absolute_s) from PHASE1_SESSION_IDLE_MINUTES (30) and PHASE1_SESSION_ABSOLUTE_HOURS (12)."""
    config = _settings(env)
    return config.session_idle_s, config.session_absolute_s


def _secret_problems(name: str, value: str | None) -> list[str]:
    """Problems of a prod secret, never quoting it."""
    if not value:
        return [f"{name} is not set (prod needs at least {MIN_SECRET_CHARS} characters)"]
    problems = []
    if len(value) < MIN_SECRET_CHARS:
        problems.append(f"{name} must be at least {MIN_SECRET_CHARS} characters (got {len(value)})")
    if value.strip() == PUBLISHED_EXAMPLE_TOKEN:
        problems.append(f"{name} is the example token published in the operations guide; choose a secret one")
    return problems


def check_prod_config(env: Mapping[str, str] | None = None) -> list[str]:
    """What stops a server from starting: an unusable environment, and in prod the ops token and cookie secret
    rules."""
    try:
        config = _settings(env)
    except ConfigError as error:
        return str(error).split("; ")
    if not config.prod:
        return []
    return (_secret_problems("PHASE1_ADMIN_TOKEN", config.admin_token)
            + _secret_problems("PHASE1_COOKIE_SECRET", config.cookie_secret))


def _configured_secret(name: str, env: Mapping[str, str] | None) -> tuple[str, bool]:
    """(value, generated): the configured secret; in dev a random one when unset; ConfigError in prod."""
    config = _settings(env)
    value = (config.admin_token if name == "PHASE1_ADMIN_TOKEN" else config.cookie_secret) or ""
    if config.prod:
        problems = _secret_problems(name, value)
        if problems:
            raise ConfigError("; ".join(problems))
        return value, False
    if value:
        return value, False
    return secrets.token_urlsafe(32), True


def ops_token(env: Mapping[str, str] | None = None) -> str:
    """The X-Admin-Token to accept: PHASE1_ADMIN_TOKEN, or in dev a random one when unset.

    A generated token is new on every call: the caller keeps it and prints it once (see
    :func:`ops_token_generated`).
    """
    return _configured_secret("PHASE1_ADMIN_TOKEN", env)[0]


def ops_token_generated(env: Mapping[str, str] | None = None) -> bool:
    """True when :func:`ops_token` would generate the token (dev without PHASE1_ADMIN_TOKEN)."""
    return not _settings(env).admin_token


def cookie_secret(env: Mapping[str, str] | None = None) -> str:
    """The cookie signing secret: PHASE1_COOKIE_SECRET, or in dev a random one (sessions end on restart)."""
    return _configured_secret("PHASE1_COOKIE_SECRET", env)[0]


def check_ops_token(presented: str | bytes | None, expected: str | bytes | None) -> bool:
    """Compare an X-Admin-Token in constant time; False when either side is missing."""
    if not presented or not expected:
        return False
    a = presented.encode("utf-8") if isinstance(presented, str) else presented
    b = expected.encode("utf-8") if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def is_loopback(client_addr: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped, bracketed or with a zone); False for anything else."""
    if not client_addr:
        return False
    text = client_addr.strip().strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


# ---- input rules ----------------------------------------------------------------------------------------


def validate_username(username: Any) -> list[FieldError]:
    """The username rule, without echoing the value (it may be a mistyped password)."""
    if not isinstance(username, str):
        return [FieldError("username", f"{USERNAME_RULE} (got {type(username).__name__})")]
    if not USERNAME_RE.fullmatch(username):
        return [FieldError("username", f"{USERNAME_RULE} (got {len(username)} characters)")]
    return []


def validate_password(password: Any) -> list[FieldError]:
    """The password rule: 12 to 1024 characters; the value is never echoed."""
    if not isinstance(password, str):
        return [FieldError("password", "must be a string")]
    if len(password) < PASSWORD_MIN:
        return [FieldError("password", f"must be at least {PASSWORD_MIN} characters (got {len(password)})")]
    if len(password) > PASSWORD_MAX:
        return [FieldError("password", f"must be at most {PASSWORD_MAX} characters (got {len(password)})")]
    if not _utf8_encodable(password):
        return [FieldError("password", "must be valid Unicode text (it holds a lone surrogate)")]
    return []


def _utf8_encodable(text: str) -> bool:
    """False for text holding a lone surrogate (argon2 hashes the UTF-8 bytes, which such text has not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _enrolment(username: str, secret: str) -> dict[str, str]:
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)
    return {"username": username, "totp_secret": secret, "otpauth_uri": uri}


# ---- the auth service -----------------------------------------------------------------------------------


class Auth:
    """Users, two-step login, sessions and lockout over a :class:`~phase1lib.store.Store`."""

    def __init__(self, store: Store, clock: Clock | None = None, *, app_env: str | None = None,
                 idle_s: float | None = None, absolute_s: float | None = None,
                 hasher: PasswordHasher | None = None, max_failures: int = MAX_FAILURES,
                 lock_s: float = LOCK_S, env: Mapping[str, str] | None = None):
        self.store = store
        self.clock: Clock = clock or store.clock
        self.app_env = app_env or _settings(env).app_env
        if self.app_env not in settings.APP_ENVS:
            raise ConfigError(f"APP_ENV must be dev or prod (got {self.app_env!r})")
        env_idle, env_absolute = session_timeouts(env)
        self.idle_s = float(idle_s or env_idle)
        self.absolute_s = float(absolute_s or env_absolute)
        self.hasher = hasher or PasswordHasher()
        self.max_failures = int(max_failures)
        self.lock_s = float(lock_s)
        self._dummy_hash: str | None = None

    def now(self) -> float:
        return float(self.clock())

    # ---- users ----------------------------------------------------------------------------------------

    def create_user(self, username: str, password: str, actor: str = "system",
                    request_id: str | None = None) -> dict[str, str]:
        """Add an admin: argon2 hash of the password and a new TOTP secret.

        Returns {"username", "totp_secret", "otpauth_uri"} -- the only time the secret is shown.
        """
        errors = validate_username(username) + validate_password(password)
        if errors:
            raise InputError(errors, "user")
        secret = pyotp.random_base32()
        self.store.create_user(username, self.hasher.hash(password), secret)
        self.store.add_audit("admin.create_user", actor, request_id, target=username)
        log.info("admin user created: %s (by %s)", username, actor)
        return _enrolment(username, secret)

    def list_users(self) -> list[dict[str, Any]]:
        """Users without secrets: username, created_at, disabled, last_login_at..."""
        return self.store.list_users()

    def _set_disabled(self, username: str, disabled: bool, actor: str,
                      request_id: str | None) -> dict[str, Any]:
        before = self._require_user(username)
        user = self.store.update_user(username, {"disabled": disabled})
        ended = self.store.delete_user_sessions(username) if disabled else 0
        self.store.add_audit("admin.disable_user" if disabled else "admin.enable_user", actor, request_id,
                             target=username, old=before["disabled"], new=disabled, sessions_ended=ended)
        return user

    def disable_user(self, username: str, actor: str = "system",
                     request_id: str | None = None) -> dict[str, Any]:
        """Refuse all further logins of a user and end their sessions."""
        return self._set_disabled(username, True, actor, request_id)

    def enable_user(self, username: str, actor: str = "system",
                    request_id: str | None = None) -> dict[str, Any]:
        """Allow a disabled user to log in again."""
        return self._set_disabled(username, False, actor, request_id)

    def reset_mfa(self, username: str, actor: str = "system",
                  request_id: str | None = None) -> dict[str, str]:
        """A new TOTP secret for a user (lost device); ends their sessions. Returns the new enrolment."""
        self._require_user(username)
        secret = pyotp.random_base32()
        self.store.update_user(username, {"totp_secret": secret, "last_totp_step": -1,
                                          "mfa_reset_at": self.now()})
        ended = self.store.delete_user_sessions(username)
        self.store.add_audit("admin.reset_mfa", actor, request_id, target=username, sessions_ended=ended)
        return _enrolment(username, secret)

    def _require_user(self, username: str) -> dict[str, Any]:
        user = self.store.get_user(username) if isinstance(username, str) else None
        if user is None:
            raise NotFoundError(f"no admin user named {username!r}")
        return user

    # ---- lockout --------------------------------------------------------------------------------------

    @staticmethod
    def _lock_keys(username: Any, client_addr: str | None) -> list[str]:
        """Attempt counters: the address always, the username when it is well-formed."""
        keys = [f"addr:{(client_addr or 'unknown').strip()[:64]}"]
        if not validate_username(username):
            keys.insert(0, f"user:{username}")
        return keys

    def _refuse_if_locked(self, keys: list[str], now: float) -> None:
        locks = [u for u in (self.store.locked_until(k, now=now) for k in keys) if u is not None]
        if locks:
            raise LockedError(max(locks) - now)

    def _fail(self, keys: list[str], now: float, step: str, user_label: str, client_addr: str | None,
              message: str) -> None:
        """Count a failure against every key; raise LockedError if that locks one, else AuthError."""
        locked = []
        for key in keys:
            result = self.store.record_failure(key, self.max_failures, self.lock_s, self.lock_s, now=now)
            if result["locked_until"] is not None:
                locked.append((key, result))
        log.info("%s refused (user=%s, addr=%s)", step, user_label, client_addr)
        if locked:
            for key, result in locked:
                if result["failures"] == self.max_failures:  # the failure that set the lock
                    log.warning("locked %s for %d s after %d failures", key.split(":")[0], self.lock_s,
                                result["failures"])
                    self.store.add_audit("auth.lockout", "auth", None, target=key.split(":")[0],
                                         user=user_label, client_addr=client_addr, lock_s=self.lock_s)
            raise LockedError(max(r["locked_until"] for _, r in locked) - now)
        raise AuthError(message)

    # ---- login ----------------------------------------------------------------------------------------

    def _verify_password(self, user: dict[str, Any] | None, password: Any) -> bool:
        """argon2 check; an unknown user is checked against a dummy hash so timing does not tell."""
        if not isinstance(password, str) or not password or len(password) > PASSWORD_MAX \
                or not _utf8_encodable(password):
            return False
        if user is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
            target = self._dummy_hash
        else:
            target = user["password_hash"]
        try:
            return bool(self.hasher.verify(target, password)) and user is not None
        except (VerificationError, InvalidHashError):
            return False

    def login_password(self, username: str, password: str, client_addr: str | None) -> Session:
        """Step 1: check the password; returns a pending session (only the MFA step is open to it).

        AuthError (401) on any bad credential, without saying whether the user exists; LockedError (429)
        while the username or the address is locked.
        """
        now = self.now()
        keys = self._lock_keys(username, client_addr)
        self._refuse_if_locked(keys, now)
        user = self.store.get_user(username) if not validate_username(username) else None
        ok = self._verify_password(user, password)
        if user is None or not ok or user.get("disabled"):
            label = username if user is not None else "<unknown>"
            self._fail(keys, now, "password", label, client_addr, _BAD_LOGIN)
        assert user is not None
        # The username's counter is cleared only after the MFA step: knowing the password must not
        # reset the count of wrong TOTP codes.
        self._maybe_rehash(user, password)
        log.info("password accepted, MFA pending (user=%s, addr=%s)", username, client_addr)
        return self._new_session(username, False, now, now, client_addr)

    def _maybe_rehash(self, user: dict[str, Any], password: str) -> None:
        """Upgrade a hash made with older argon2 parameters, after a successful check."""
        try:
            if self.hasher.check_needs_rehash(user["password_hash"]):
                self.store.update_user(user["username"], {"password_hash": self.hasher.hash(password)})
        except InvalidHashError:  # pragma: no cover - a hash we wrote ourselves
            pass

    def _totp_step(self, secret: str, code: Any, now: float) -> int | None:
        """The time step (now, one before or one after) whose code matches, or None."""
        if not isinstance(code, str):
            return None
        code = code.replace(" ", "").strip()
        if not TOTP_DIGITS_RE.fullmatch(code):
            return None
        totp = pyotp.TOTP(secret)
        current = int(now // totp.interval)
        for step in (current, current - 1, current + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None

    def verify_mfa(self, session_id: str, code: str, client_addr: str | None) -> Session:
        """Step 2: a TOTP code elevates a pending session. Returns a NEW session (new id: set the cookie).

        A code is accepted once: its time step must be newer than the last accepted one.
        """
        now = self.now()
        key = session_key(session_id) if isinstance(session_id, str) and session_id else None
        doc = self.store.get_session(key, touch=False, now=now) if key else None
        if doc is None or doc.get("elevated") or doc.get("dev_bridge"):
            raise AuthError("no pending login for this session; log in again")
        username = doc["username"]
        keys = self._lock_keys(username, client_addr)
        try:
            self._refuse_if_locked(keys, now)
            user = self.store.get_user(username)
            usable = user is not None and not user.get("disabled")
            step = self._totp_step(user["totp_secret"], code, now) if usable and user else None
            if step is None or not self.store.consume_totp_step(username, step, now=now):
                self._fail(keys, now, "MFA code", username, client_addr, _BAD_CODE)
        except LockedError:
            self.store.delete_session(key)
            raise
        self.store.clear_failures(keys[0], now=now)
        self.store.delete_session(key)
        session = self._new_session(username, True, float(doc["created_at"]), now, client_addr)
        self.store.add_audit("auth.login", username, None, client_addr=client_addr)
        log.info("MFA accepted, session elevated (user=%s, addr=%s)", username, client_addr)
        return session

    # ---- sessions -------------------------------------------------------------------------------------

    def _new_session(self, username: str, elevated: bool, created_at: float, now: float,
                     client_addr: str | None, dev_bridge: bool = False) -> Session:
        if elevated:
            absolute, idle = created_at + self.absolute_s, self.idle_s
        else:
            absolute, idle = min(now + PENDING_TTL_S, created_at + self.absolute_s), PENDING_TTL_S
        record = {"username": username, "elevated": elevated, "dev_bridge": dev_bridge,
                  "created_at": created_at, "last_seen": now, "absolute_expires_at": absolute,
                  "idle_timeout_s": idle, "client_addr": client_addr, "data": {}}
        session_id = secrets.token_urlsafe(32)
        self.store.create_session(session_key(session_id), record)
        return self._session(session_id, record)

    @staticmethod
    def _session(session_id: str, doc: dict[str, Any]) -> Session:
        last_seen = float(doc["last_seen"])
        expires = min(float(doc["absolute_expires_at"]), last_seen + float(doc["idle_timeout_s"]))
        return Session(username=doc["username"], elevated=bool(doc["elevated"]),
                       created_at=float(doc["created_at"]), last_seen=last_seen, expires_at=expires,
                       data=dict(doc.get("data") or {}), dev_bridge=bool(doc.get("dev_bridge")),
                       session_id=session_id)

    def get_session(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value (pending or elevated), touching its idle timer; else None.

        Sessions of a user disabled since are ended here.
        """
        if not isinstance(session_id, str) or not session_id:
            return None
        key = session_key(session_id)
        doc = self.store.get_session(key, touch=True, now=self.now())
        if doc is None:
            return None
        if doc.get("dev_bridge") and self.app_env != "dev":  # a dev session never outlives a switch to prod
            self.store.delete_session(key)
            return None
        if not doc.get("dev_bridge"):
            user = self.store.get_user(doc["username"])
            if user is None or user.get("disabled"):
                self.store.delete_session(key)
                return None
        return self._session(session_id, doc)

    def logout(self, session_id: str | None) -> bool:
        """End a session; True if there was one."""
        if not isinstance(session_id, str) or not session_id:
            return False
        ended = self.store.delete_session(session_key(session_id))
        if ended:
            log.info("session ended by logout")
        return ended

    def dev_admin_allowed(self, client_addr: str | None) -> bool:
        """The dev bridge: True only with APP_ENV=dev and a loopback client address."""
        return self.app_env == "dev" and is_loopback(client_addr)

    def dev_session(self, client_addr: str | None) -> Session:
        """A new elevated session for the local dev admin (dev bridge); ForbiddenError elsewhere."""
        if not self.dev_admin_allowed(client_addr):
            raise ForbiddenError("the dev bridge is only open in dev to loopback clients")
        now = self.now()
        return self._new_session(DEV_ADMIN, True, now, now, client_addr, dev_bridge=True)

    def require_admin(self, session_id: str | None, client_addr: str | None) -> Session:
        """The session allowed to take business actions: elevated, or (dev, loopback) a dev-bridge session.

        A returned session whose ``session_id`` differs from the one presented is new: set the cookie.
        AuthError (401) without a live session, ForbiddenError (403) for a pending one.
        """
        session = self.get_session(session_id)
        if session is not None and session.dev_bridge and not self.dev_admin_allowed(client_addr):
            session = None  # a dev-bridge cookie only works from loopback
        if session is not None and session.elevated:
            return session
        if self.dev_admin_allowed(client_addr):
            return self.dev_session(client_addr)
        if session is not None:
            raise ForbiddenError("complete the MFA step first")
        raise AuthError("log in first")

    def get_session_data(self, session_id: str) -> dict[str, Any]:
        """The data dict of a live session (e.g. "project", "last_run_id"); AuthError if none."""
        data = self.store.get_session_data(session_key(session_id), now=self.now()) if session_id else None
        if data is None:
            raise AuthError("no live session")
        return data

    def set_session_data(self, session_id: str, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into a live session's data (None removes a key); returns the new data."""
        data = self.store.update_session_data(session_key(session_id), updates, now=self.now()) \
            if session_id else None
        if data is None:
            raise AuthError("no live session")
        return data

    def purge_expired_sessions(self) -> int:
        """Delete expired sessions from the store (e.g. from a periodic callback)."""
        return self.store.purge_expired_sessions(now=self.now())

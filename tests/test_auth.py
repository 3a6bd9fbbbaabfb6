"""Admin auth on both stores: two-step login, TOTP replay and window, lockout, session expiry, dev vs prod,
and no secret in logs or error messages. Time is injected, never slept."""

from __future__ import annotations

import logging

import pyotp
import pytest
from argon2 import PasswordHasher

from phase1lib.auth import (
    DEV_ADMIN,
    ISSUER,
    PUBLISHED_EXAMPLE_TOKEN,
    Auth,
    check_ops_token,
    check_prod_config,
    cookie_secret,
    is_loopback,
    ops_token,
    session_key,
    session_timeouts,
)
from phase1lib.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    InputError,
    LockedError,
    NotFoundError,
)

PASSWORD = "correct horse battery staple"
ADDR = "10.0.0.7"


@pytest.fixture
def auth(store, fast_hasher):
    return Auth(store, hasher=fast_hasher, app_env="dev")


@pytest.fixture
def alice(auth):
    return auth.create_user("alice", PASSWORD)


def code_at(enrolment, t, offset_steps=0):
    return pyotp.TOTP(enrolment["totp_secret"]).at(int(t) + 30 * offset_steps)


def full_login(auth, enrolment, clock, addr=ADDR):
    pending = auth.login_password(enrolment["username"], PASSWORD, addr)
    return auth.verify_mfa(pending.session_id, code_at(enrolment, clock()), addr)


# ---- users --------------------------------------------------------------------------------------------


def test_create_user_enrolment(auth, alice):
    assert alice["username"] == "alice"
    assert alice["otpauth_uri"].startswith("otpauth://totp/")
    parsed = pyotp.parse_uri(alice["otpauth_uri"])
    assert parsed.issuer == ISSUER and parsed.secret == alice["totp_secret"]
    with pytest.raises(ConflictError):
        auth.create_user("alice", PASSWORD)
    assert [u["username"] for u in auth.list_users()] == ["alice"]
    assert "totp_secret" not in auth.list_users()[0] and "password_hash" not in auth.list_users()[0]
    assert auth.store.get_user("alice")["password_hash"].startswith("$argon2id$")


@pytest.mark.parametrize(("username", "password", "field", "rule"), [
    ("al", PASSWORD, "username", "3-64 characters"),
    ("a" * 65, PASSWORD, "username", "3-64 characters"),
    ("bad name", PASSWORD, "username", "A-Z a-z 0-9 _ . @ -"),
    ("alice", "short-pw", "password", "at least 12 characters (got 8)"),
])
def test_create_user_rules(auth, username, password, field, rule):
    with pytest.raises(InputError) as caught:
        auth.create_user(username, password)
    assert [e.field for e in caught.value.errors] == [field]
    assert rule in str(caught.value)
    assert password not in str(caught.value)


# ---- two-step login -----------------------------------------------------------------------------------


def test_login_two_steps(auth, alice, clock):
    pending = auth.login_password("alice", PASSWORD, ADDR)
    assert pending.state == "pending" and not pending.elevated
    assert auth.get_session(pending.session_id).state == "pending"
    elevated = auth.verify_mfa(pending.session_id, code_at(alice, clock()), ADDR)
    assert elevated.elevated and elevated.username == "alice"
    assert elevated.session_id != pending.session_id  # new id after elevation
    assert auth.get_session(pending.session_id) is None
    assert auth.require_admin(elevated.session_id, ADDR).username == "alice"
    assert auth.store.list_users()[0]["last_login_at"] == clock()
    assert auth.store.list_audit(1)[0]["action"] == "auth.login"


def test_session_ids_are_hashed_in_the_store(auth, alice, clock):
    session = full_login(auth, alice, clock)
    keys = auth.store.scan("sessions")
    assert list(keys) == [session_key(session.session_id)]
    assert session.session_id not in repr(session) and session.session_id not in str(session.to_dict())


def test_wrong_password_and_unknown_user_look_alike(auth, alice):
    with pytest.raises(AuthError) as wrong:
        auth.login_password("alice", "not the password", ADDR)
    with pytest.raises(AuthError) as unknown:
        auth.login_password("mallory", "not the password", ADDR)
    assert str(wrong.value) == str(unknown.value) == "invalid username or password"
    assert wrong.value.status == 401


def test_pending_session_cannot_do_business(store, fast_hasher, clock):
    for env in ("dev", "prod"):
        auth = Auth(store, hasher=fast_hasher, app_env=env)
        if env == "dev":
            auth.create_user("alice", PASSWORD)
        pending = auth.login_password("alice", PASSWORD, ADDR)
        with pytest.raises(ForbiddenError, match="MFA"):
            auth.require_admin(pending.session_id, ADDR)
        with pytest.raises(AuthError):
            auth.require_admin(None, ADDR)


def test_pending_session_expires_after_five_minutes(auth, alice, clock):
    pending = auth.login_password("alice", PASSWORD, ADDR)
    clock.advance(301)
    with pytest.raises(AuthError, match="log in again"):
        auth.verify_mfa(pending.session_id, code_at(alice, clock()), ADDR)


def test_elevated_session_cannot_verify_again(auth, alice, clock):
    session = full_login(auth, alice, clock)
    clock.advance(30)
    with pytest.raises(AuthError):
        auth.verify_mfa(session.session_id, code_at(alice, clock()), ADDR)


# ---- TOTP ---------------------------------------------------------------------------------------------


def test_totp_replay_refused(auth, alice, clock):
    code = code_at(alice, clock())
    first = auth.login_password("alice", PASSWORD, ADDR)
    auth.verify_mfa(first.session_id, code, ADDR)
    second = auth.login_password("alice", PASSWORD, ADDR)
    with pytest.raises(AuthError, match="invalid or expired code"):
        auth.verify_mfa(second.session_id, code, ADDR)


@pytest.mark.parametrize(("offset", "accepted"), [(-1, True), (1, True), (-2, False), (2, False)])
def test_totp_window_one_step(auth, alice, clock, offset, accepted):
    pending = auth.login_password("alice", PASSWORD, ADDR)
    code = code_at(alice, clock(), offset)
    if accepted:
        assert auth.verify_mfa(pending.session_id, code, ADDR).elevated
    else:
        with pytest.raises(AuthError):
            auth.verify_mfa(pending.session_id, code, ADDR)


def test_malformed_codes_refused(auth, alice):
    for code in ("12345", "abcdef", None, 123456):  # four: a fifth failure would lock alice
        pending = auth.login_password("alice", PASSWORD, ADDR)
        with pytest.raises(AuthError, match="invalid or expired code"):
            auth.verify_mfa(pending.session_id, code, ADDR)


# ---- lockout ------------------------------------------------------------------------------------------


def test_lockout_after_five_failures_and_expiry(auth, alice, clock):
    for _ in range(4):
        with pytest.raises(AuthError):
            auth.login_password("alice", "wrong password 1", ADDR)
    with pytest.raises(LockedError) as fifth:
        auth.login_password("alice", "wrong password 1", ADDR)
    assert fifth.value.status == 429 and fifth.value.retry_after_s == 900
    with pytest.raises(LockedError):  # even the right password, from another address
        auth.login_password("alice", PASSWORD, "10.0.0.99")
    assert any(e["action"] == "auth.lockout" for e in auth.store.list_audit(10))
    clock.advance(14 * 60)
    with pytest.raises(LockedError) as later:
        auth.login_password("alice", PASSWORD, "10.0.0.99")
    assert later.value.retry_after_s == 60
    clock.advance(60)
    assert auth.login_password("alice", PASSWORD, "10.0.0.99").state == "pending"


def test_lockout_per_client_address(auth, alice, clock):
    for i in range(5):
        with pytest.raises((AuthError, LockedError)):
            auth.login_password(f"user{i}", "some wrong password", "192.0.2.1")
    with pytest.raises(LockedError):
        auth.login_password("alice", PASSWORD, "192.0.2.1")
    assert auth.login_password("alice", PASSWORD, "192.0.2.2").state == "pending"


def test_wrong_codes_count_and_lock(auth, alice, clock):
    pending = auth.login_password("alice", PASSWORD, ADDR)
    bad = "000000" if code_at(alice, clock()) != "000000" else "111111"
    for _ in range(4):
        with pytest.raises(AuthError):
            auth.verify_mfa(pending.session_id, bad, ADDR)
    with pytest.raises(LockedError):
        auth.verify_mfa(pending.session_id, bad, ADDR)
    assert auth.get_session(pending.session_id) is None  # the pending session ends with the lock
    with pytest.raises(LockedError):
        auth.login_password("alice", PASSWORD, ADDR)


def test_only_a_full_login_clears_the_username_counter(auth, alice, clock):
    for _ in range(4):
        with pytest.raises(AuthError):
            auth.login_password("alice", "wrong password 1", "10.0.0.1")
    auth.login_password("alice", PASSWORD, "10.0.0.2")  # the password alone does not clear it
    with pytest.raises(LockedError):
        auth.login_password("alice", "wrong password 1", "10.0.0.3")
    clock.advance(15 * 60 + 1)  # every lock and window has passed
    for _ in range(4):
        with pytest.raises(AuthError):
            auth.login_password("alice", "wrong password 1", "10.0.0.1")
    full_login(auth, alice, clock, addr="10.0.0.2")  # password and code: cleared
    for _ in range(4):
        with pytest.raises(AuthError):
            auth.login_password("alice", "wrong password 1", "10.0.0.3")
    assert auth.login_password("alice", PASSWORD, "10.0.0.4").state == "pending"


# ---- session expiry and logout ------------------------------------------------------------------------


def test_idle_expiry(auth, alice, clock):
    session = full_login(auth, alice, clock)
    clock.advance(29 * 60)
    assert auth.get_session(session.session_id) is not None
    clock.advance(29 * 60)
    assert auth.get_session(session.session_id) is not None  # the previous call touched it
    clock.advance(30 * 60)
    assert auth.get_session(session.session_id) is None


def test_absolute_expiry(auth, alice, clock):
    session = full_login(auth, alice, clock)
    for _ in range(12 * 3):  # active every 20 minutes for 12 hours
        assert auth.get_session(session.session_id) is not None
        clock.advance(20 * 60)
    assert auth.get_session(session.session_id) is None


def test_timeouts_from_environment(store, fast_hasher, clock):
    assert session_timeouts({}) == (1800, 43200)
    auth = Auth(store, hasher=fast_hasher, app_env="dev",
                env={"PHASE1_SESSION_IDLE_MINUTES": "5", "PHASE1_SESSION_ABSOLUTE_HOURS": "1"})
    assert (auth.idle_s, auth.absolute_s) == (300, 3600)
    with pytest.raises(ConfigError, match="PHASE1_SESSION_IDLE_MINUTES"):
        session_timeouts({"PHASE1_SESSION_IDLE_MINUTES": "-1"})


def test_logout(auth, alice, clock):
    session = full_login(auth, alice, clock)
    assert auth.logout(session.session_id) is True
    assert auth.get_session(session.session_id) is None
    assert auth.logout(session.session_id) is False
    assert auth.logout(None) is False


def test_session_data(auth, alice, clock):
    session = full_login(auth, alice, clock)
    assert auth.set_session_data(session.session_id, {"project": "london", "last_run_id": "r1"}) == {
        "project": "london", "last_run_id": "r1"}
    assert auth.get_session_data(session.session_id)["last_run_id"] == "r1"
    assert auth.get_session(session.session_id).data["project"] == "london"
    auth.logout(session.session_id)
    with pytest.raises(AuthError):
        auth.get_session_data(session.session_id)
    with pytest.raises(AuthError):
        auth.set_session_data(session.session_id, {"x": 1})


# ---- user administration ------------------------------------------------------------------------------


def test_disable_user_ends_sessions_and_refuses_login(auth, alice, clock):
    session = full_login(auth, alice, clock)
    auth.disable_user("alice", actor="cli:test")
    assert auth.get_session(session.session_id) is None
    with pytest.raises(AuthError, match="invalid username or password"):
        auth.login_password("alice", PASSWORD, ADDR)
    assert auth.list_users()[0]["disabled"] is True
    auth.enable_user("alice", actor="cli:test")
    clock.advance(30)
    assert full_login(auth, alice, clock).elevated
    with pytest.raises(NotFoundError):
        auth.disable_user("nobody")


def test_reset_mfa(auth, alice, clock):
    session = full_login(auth, alice, clock)
    fresh = auth.reset_mfa("alice", actor="cli:test")
    assert fresh["totp_secret"] != alice["totp_secret"]
    assert auth.get_session(session.session_id) is None
    clock.advance(30)
    pending = auth.login_password("alice", PASSWORD, ADDR)
    with pytest.raises(AuthError):
        auth.verify_mfa(pending.session_id, code_at(alice, clock()), ADDR)
    pending = auth.login_password("alice", PASSWORD, ADDR)
    assert auth.verify_mfa(pending.session_id, code_at(fresh, clock()), ADDR).elevated
    assert any(e["action"] == "admin.reset_mfa" and e["target"] == "alice" for e in auth.store.list_audit(10))


def test_password_hash_upgraded_after_login(store, fast_hasher):
    Auth(store, hasher=fast_hasher, app_env="dev").create_user("alice", PASSWORD)
    old = store.get_user("alice")["password_hash"]
    stronger = Auth(store, hasher=PasswordHasher(time_cost=2, memory_cost=16, parallelism=1), app_env="dev")
    stronger.login_password("alice", PASSWORD, ADDR)
    new = store.get_user("alice")["password_hash"]
    assert new != old and "t=2" in new


# ---- dev vs prod --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("addr", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("192.168.1.1", False), ("::2", False), ("localhost", False), ("", False),
    (None, False),
])
def test_is_loopback(addr, loopback):
    assert is_loopback(addr) is loopback


def test_dev_bridge_only_in_dev_from_loopback(store, fast_hasher):
    dev = Auth(store, hasher=fast_hasher, app_env="dev")
    prod = Auth(store, hasher=fast_hasher, app_env="prod")
    assert dev.dev_admin_allowed("127.0.0.1") and dev.dev_admin_allowed("::1")
    assert not dev.dev_admin_allowed("10.0.0.1")
    assert not prod.dev_admin_allowed("127.0.0.1")
    session = dev.require_admin(None, "127.0.0.1")
    assert session.dev_bridge and session.elevated and session.username == DEV_ADMIN
    assert dev.require_admin(session.session_id, "127.0.0.1").session_id == session.session_id  # reused
    dev.set_session_data(session.session_id, {"project": "p"})
    with pytest.raises(AuthError):
        dev.require_admin(None, "10.0.0.1")
    with pytest.raises(AuthError):
        prod.require_admin(None, "127.0.0.1")
    with pytest.raises(ForbiddenError):
        prod.dev_session("127.0.0.1")
    with pytest.raises(AuthError):  # the dev cookie does not work from elsewhere...
        dev.require_admin(session.session_id, "10.0.0.1")
    assert prod.get_session(session.session_id) is None  # ...nor after a switch to prod


GOOD_TOKEN = "t" * 40


def test_prod_config_checks():
    assert check_prod_config({"APP_ENV": "dev"}) == []
    problems = check_prod_config({"APP_ENV": "prod"})
    assert len(problems) == 2
    assert any("PHASE1_ADMIN_TOKEN is not set" in p for p in problems)
    assert any("PHASE1_COOKIE_SECRET is not set" in p for p in problems)
    short = check_prod_config({"APP_ENV": "prod", "PHASE1_ADMIN_TOKEN": "short",
                               "PHASE1_COOKIE_SECRET": "c" * 32})
    assert short == ["PHASE1_ADMIN_TOKEN must be at least 32 characters (got 5)"]
    example = check_prod_config({"APP_ENV": "prod", "PHASE1_ADMIN_TOKEN": PUBLISHED_EXAMPLE_TOKEN,
                                 "PHASE1_COOKIE_SECRET": "c" * 32})
    assert any("example token published in the operations guide" in p for p in example)
    assert all(PUBLISHED_EXAMPLE_TOKEN not in p for p in example)
    assert check_prod_config({"APP_ENV": "prod", "PHASE1_ADMIN_TOKEN": GOOD_TOKEN,
                              "PHASE1_COOKIE_SECRET": "c" * 32}) == []
    assert check_prod_config({"APP_ENV": "staging"}) == ["APP_ENV must be dev or prod (got 'staging')"]


def test_ops_token_and_cookie_secret():
    generated = ops_token({"APP_ENV": "dev"})
    assert len(generated) >= 32 and generated != ops_token({"APP_ENV": "dev"})
    assert ops_token({"APP_ENV": "dev", "PHASE1_ADMIN_TOKEN": "mine"}) == "mine"
    assert ops_token({"APP_ENV": "prod", "PHASE1_ADMIN_TOKEN": GOOD_TOKEN}) == GOOD_TOKEN
    with pytest.raises(ConfigError, match="published") as refused:
        ops_token({"APP_ENV": "prod", "PHASE1_ADMIN_TOKEN": PUBLISHED_EXAMPLE_TOKEN})
    assert PUBLISHED_EXAMPLE_TOKEN not in str(refused.value)
    with pytest.raises(ConfigError):
        cookie_secret({"APP_ENV": "prod"})
    assert len(cookie_secret({"APP_ENV": "dev"})) >= 32


def test_check_ops_token():
    assert check_ops_token(GOOD_TOKEN, GOOD_TOKEN)
    assert not check_ops_token(GOOD_TOKEN[:-1] + "x", GOOD_TOKEN)
    assert not check_ops_token("", GOOD_TOKEN) and not check_ops_token(None, GOOD_TOKEN)
    assert not check_ops_token(GOOD_TOKEN, "") and not check_ops_token(GOOD_TOKEN, None)
    assert check_ops_token(GOOD_TOKEN.encode(), GOOD_TOKEN)


# ---- no secret in logs or error messages --------------------------------------------------------------


def test_no_secret_in_logs_or_errors(auth, alice, clock, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    wrong_password = "Sup3r-Secret-Wrong-Pass"
    good_code = code_at(alice, clock())
    bad_code = "482915" if good_code != "482915" else "593817"  # digits that appear in no timestamp here

    def attempt(fn, *args):
        try:
            fn(*args)
        except (AuthError, LockedError, ForbiddenError) as error:
            texts.extend([str(error), repr(error), str(error.to_dict())])

    attempt(auth.login_password, "alice", wrong_password, ADDR)
    attempt(auth.login_password, PASSWORD, PASSWORD, ADDR)  # password typed as username
    pending = auth.login_password("alice", PASSWORD, ADDR)
    attempt(auth.verify_mfa, pending.session_id, bad_code, ADDR)
    session = auth.verify_mfa(pending.session_id, good_code, ADDR)
    attempt(auth.verify_mfa, session.session_id, good_code, ADDR)  # replayed
    for _ in range(6):
        attempt(auth.login_password, "alice", wrong_password, ADDR)
    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(str(auth.store.list_audit(100)))
    texts.append(repr(session))
    assert caplog.records and texts
    blob = "\n".join(texts)
    for secret in (PASSWORD, wrong_password, good_code, bad_code, alice["totp_secret"], session.session_id,
                   pending.session_id):
        assert secret not in blob

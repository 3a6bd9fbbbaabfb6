"""Ops Monitor dashboard: admins only, status figures, canary with a reason, rollback, flags, candidates."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_helpers import ADMIN, candidate_ruleset, make_context

from phase1lib import ops
from phase1lib.auth import DEV_ADMIN
from phase1lib.ui import AppContext, OpsMonitorDashboard
from phase1lib.ui.components import plain_text as text


def test_refused_without_a_logged_in_admin(tmp_path: Path) -> None:
    dash = OpsMonitorDashboard(make_context(tmp_path, user=None))
    assert dash.problem and "no logged-in admin" in dash.notice.text and dash.notice.kind == "error"
    assert "phase1 serve" in dash.notice.text and dash.status == {}


def test_refused_for_unknown_or_disabled_users(tmp_path: Path) -> None:
    assert "not an admin user" in OpsMonitorDashboard(make_context(tmp_path, user="mallory", admin=False)).problem
    ctx = make_context(tmp_path)
    ctx.store.update_user(ADMIN, {"disabled": True})
    assert "disabled" in OpsMonitorDashboard(ctx).problem


def test_dev_admin_only_in_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context(tmp_path, user=DEV_ADMIN, admin=False)
    monkeypatch.setenv("APP_ENV", "dev")
    assert ctx.admin_problem() is None
    monkeypatch.setenv("APP_ENV", "prod")
    assert "APP_ENV=dev" in ctx.admin_problem()


def test_user_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHASE1_REDIS_URL", raising=False)
    ctx = AppContext.from_env({"PHASE1_HOME": str(tmp_path), "PHASE1_USER": " bob "})
    assert ctx.user == "bob" and ctx.home == tmp_path.resolve()
    assert AppContext.from_env({"PHASE1_HOME": str(tmp_path)}).user is None
    served = {"PHASE1_HOME": str(tmp_path), "PHASE1_USER": "bob", "HTTP_X_PHASE1_USER": "carol"}
    assert AppContext.from_env(served).user == "carol"  # the session user passed by the server wins


def test_status_figures_and_verdict(tmp_path: Path) -> None:
    dash = OpsMonitorDashboard(make_context(tmp_path))
    assert "NO-GO" in dash.decision.value and "no samples yet" in text(dash.decision.value)
    for label in ("Samples", "Error rate", "p95 latency", "Peak RSS"):
        assert label in dash.figures.value
    assert "Error rate" in dash.checks.value and "&lt; 0.1 %" in dash.checks.value
    assert set(dash.flag_boxes) == set(ops.FLAGS)


def test_canary_needs_a_reason_and_a_candidate(tmp_path: Path) -> None:
    dash = OpsMonitorDashboard(make_context(tmp_path))
    dash.canary_slider.value = 5
    dash.canary_button.click()
    assert dash.notice.kind == "error" and "reason" in dash.notice.text
    dash.canary_reason.value = "try"
    dash.canary_button.click()
    assert dash.notice.kind == "error" and "no candidate ruleset" in dash.notice.text
    assert dash.register_ruleset(candidate_ruleset()) is not None and "v2-ui" in dash.canary_state.value
    dash.canary_slider.value = 25
    dash.canary_reason.value = "first quarter"
    assert dash.apply_canary()["percentage"] == 25
    assert ops.get_canary(dash.ctx.store)["updated_by"] == ADMIN
    assert dash.canary_reason.value == "" and "EXPANDING" in dash.canary_state.value


def test_rollback_and_audit(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ops.register_candidate(ctx.store, candidate_ruleset(), ADMIN)
    ops.update_canary(ctx.store, 40, "before", ADMIN)
    dash = OpsMonitorDashboard(ctx)
    dash.rollback_target.value = 10
    dash.rollback_reason.value = "partial"
    state = dash.roll_back()
    assert state["percentage"] == 10 and state["previous_percentage"] == 40
    assert "Rolled back from 40 % to 10 %" in dash.notice.text
    assert "ROLLED_BACK" in dash.canary_state.value and "partial" in dash.audit.value


def test_flags_save_with_the_version_read(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    dash = OpsMonitorDashboard(ctx)
    assert dash.save_flags() is None and dash.notice.kind == "info"
    dash.flag_boxes["docs_exports"].value = False
    flags = dash.save_flags()
    assert flags is not None and flags["flags"]["docs_exports"] is False and flags["version"] == 1
    ops.update_flags(ctx.store, 1, {"gates_ab": False}, "someone-else")  # a concurrent change
    dash.flag_boxes["docs_exports"].value = True
    assert dash.save_flags() is None and "version" in dash.notice.text and dash.notice.kind == "error"
    assert dash.flag_boxes["gates_ab"].value is False  # reloaded
    assert "flags.update" in dash.audit.value


def test_actions_refused_once_the_admin_is_disabled(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    dash = OpsMonitorDashboard(ctx)
    ctx.store.update_user(ADMIN, {"disabled": True})
    dash.canary_reason.value = "x"
    assert dash.apply_canary() is None and "Refused" in dash.notice.text and "disabled" in dash.notice.text
    assert dash.register_ruleset(candidate_ruleset()) is None


def test_audit_rows_of_a_lockout_name_the_user_and_the_address(tmp_path) -> None:
    from phase1lib.ui.ops_monitor import audit_rows

    ctx = make_context(tmp_path)
    ctx.store.add_audit("auth.lockout", "auth", None, target="user", user="eve<script>", client_addr="10.0.0.9",
                        lock_s=900.0)
    ctx.store.add_audit("auth.lockout", "auth", None, target="addr", user="(unknown)", client_addr="10.0.0.9",
                        lock_s=900.0)
    by_addr, by_user = audit_rows(ctx.store.list_audit(2))
    assert by_user[3] == "user eve&lt;script&gt;" and by_addr[3] == "address 10.0.0.9"
    assert by_user[7] == "user eve&lt;script&gt; · address 10.0.0.9 · locked for 15 min"

"""Ops Monitor dashboard (admins): status/full figures and GO / NO-GO, the canary slider with a reason,
rollback, candidate ruleset registration, flag toggles, the audit trail and recent runs with their latency.

Every action goes through :mod:`phase1lib.ops` with the logged-in admin as the actor, exactly as the CLI
and the REST API do, so the audit trail names who did what from which tool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from .. import ops
from ..errors import ConflictError, Phase1Error
from ..runs import run_problem
from .components import Notice, figure_card, grid_table, heading, kv_table, page
from .context import AppContext, request_id
from .format import DASH, esc, megabytes, number, pct, seconds, timestamp

CHECK_LABELS = {"error_rate": "Error rate", "p95_runs_1_10k_s": "p95 latency, runs of 1-10k",
                "memory_drift": "Memory drift", "success_rate": "Success rate"}
#: Audit entries and runs listed.
AUDIT_ROWS, RUN_ROWS = 25, 15


def _short(value: Any) -> str:
    """An audit old / new value in one short line."""
    if value is None:
        return DASH
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


#: Audit fields shown in their own columns; any other field of an entry is listed under Details.
_AUDIT_COLUMNS = ("at", "actor", "action", "target", "old", "new", "reason", "request_id")
_DETAIL_LABELS = {"user": "user", "client_addr": "address", "lock_s": "locked for", "sha256": "sha256",
                  "source": "chosen by"}


def _detail(name: str, value: Any) -> str:
    if name == "lock_s" and isinstance(value, int | float):
        return f"locked for {value / 60:g} min"
    if name == "sha256" and isinstance(value, str):
        return f"sha256 {value[:12]}…"
    return f"{_DETAIL_LABELS.get(name, name)} {_short(value)}"


def audit_target(e: Mapping[str, Any]) -> str:
    """The target as a reader needs it: a lockout names the user or the address it locked."""
    target = e.get("target")
    if e.get("action") == "auth.lockout":
        if target == "user":
            return f"user {_short(e.get('user'))}"
        if target == "addr":
            return f"address {_short(e.get('client_addr'))}"
    return _short(target) if target else DASH


def audit_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    """One row per audit entry; fields beyond the columns (a lockout's user, address and duration) as Details."""
    rows = []
    for e in entries:
        extra = [k for k in e if k not in _AUDIT_COLUMNS and e[k] is not None]
        ordered = [k for k in _DETAIL_LABELS if k in extra] + sorted(k for k in extra if k not in _DETAIL_LABELS)
        details = " · ".join(_detail(k, e[k]) for k in ordered)
        rows.append([timestamp(e.get("at")), esc(e.get("actor", "")), esc(e.get("action", "")), esc(audit_target(e)),
                     esc(_short(e.get("old"))), esc(_short(e.get("new"))), esc(e.get("reason") or DASH),
                     esc(details or DASH)])
    return rows


def run_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """One row per index entry; a bad record (see runs.run_problem) is a row naming it as bad, not an error."""
    rows = []
    for r in runs:
        problem = run_problem(r)
        if problem is not None:
            rows.append([esc(timestamp(r.get("created_at"))) if isinstance(r, dict) else DASH,
                         f'<span class="p1-bad">bad record: {esc(problem)}</span>', DASH, DASH, DASH,
                         f"<code>{esc(r.get('run_id', '?') if isinstance(r, dict) else '?')}</code>"])
            continue
        rows.append([esc(timestamp(r.get("created_at"))), esc(r.get("title", "")), number(r.get("evaluated")),
                     seconds(r.get("elapsed_s")), esc(r.get("ruleset", "")), f"<code>{esc(r.get('run_id'))}</code>"])
    return rows


class OpsMonitorDashboard:
    """The Ops Monitor page; ``widget`` is what Voila displays (a refusal for non-admins)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.notice = Notice()
        self.problem = ctx.admin_problem()
        self.status: dict[str, Any] = {}
        self.decision = widgets.HTML()
        self.figures = widgets.HTML()
        self.checks = widgets.HTML()
        self.canary_state = widgets.HTML()
        self.canary_slider = widgets.FloatSlider(value=0, min=0, max=100, step=1, description="Share %",
                                                 readout_format=".0f", continuous_update=False,
                                                 layout=widgets.Layout(width="420px"))
        self.canary_reason = widgets.Text(placeholder="why (required, goes to the audit trail)",
                                          description="Reason", layout=widgets.Layout(width="420px"))
        self.canary_button = widgets.Button(description="Apply canary", button_style="primary", icon="sliders",
                                            layout=widgets.Layout(width="150px"))
        self.rollback_target = widgets.BoundedFloatText(value=0, min=0, max=100, description="Back to %",
                                                        layout=widgets.Layout(width="200px"))
        self.rollback_reason = widgets.Text(placeholder="why (required)", description="Reason",
                                            layout=widgets.Layout(width="420px"))
        self.rollback_button = widgets.Button(description="Roll back", button_style="danger", icon="undo",
                                              layout=widgets.Layout(width="150px"))
        self.ruleset_upload = widgets.FileUpload(accept=".json", multiple=False, description="Register ruleset",
                                                 layout=widgets.Layout(width="200px"))
        self.flag_boxes: dict[str, widgets.Checkbox] = {}
        self.flags_version = 0
        self.flags_button = widgets.Button(description="Save flags", icon="save", layout=widgets.Layout(width="150px"))
        self.flags_panel = widgets.VBox()
        self.audit = widgets.HTML()
        self.runs = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh",
                                             layout=widgets.Layout(width="120px"))
        self.canary_button.on_click(lambda _b: self.apply_canary())
        self.rollback_button.on_click(lambda _b: self.roll_back())
        self.flags_button.on_click(lambda _b: self.save_flags())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.ruleset_upload.observe(self._on_ruleset, names="value")
        self.widget = self._layout()
        if self.problem is None:
            self.refresh()

    def _layout(self) -> widgets.Widget:
        if self.problem is not None:
            self.notice.error(f"Ops Monitor is for admins only: {self.problem}.")
            return page("Ops Monitor", self.ctx.user, self.notice)
        canary = widgets.VBox([
            heading("Canary"), self.canary_state,
            widgets.HBox([self.canary_slider]), widgets.HBox([self.canary_reason, self.canary_button]),
            heading("Rollback", 3), widgets.HBox([self.rollback_target]),
            widgets.HBox([self.rollback_reason, self.rollback_button]),
            heading("Candidate ruleset", 3),
            widgets.HTML('<span class="p1-muted">A JSON file with v1\'s tables and a new version name.</span>'),
            self.ruleset_upload], layout=widgets.Layout(width="600px"))
        flags = widgets.VBox([heading("Feature flags"), self.flags_panel, self.flags_button],
                             layout=widgets.Layout(width="620px", margin="0 0 0 16px"))
        top = widgets.HBox([self.decision, self.refresh_button], layout=widgets.Layout(align_items="center",
                                                                                     grid_gap="16px"))
        return page("Ops Monitor", self.ctx.user, top, self.notice, self.figures, self.checks,
                    widgets.HBox([canary, flags]), heading("Audit trail"), self.audit,
                    heading("Recent runs"), self.runs)

    # ---- reading -------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read status/full, flags, audit trail and runs from the store."""
        self.status = ops.status_full(self.ctx.store)
        st = self.status
        reasons = "".join(f"<li>{esc(r)}</li>" for r in st["reasons"])
        self.decision.value = (f'<span class="p1-go p1-go-{esc(st["decision"])}">{esc(st["decision"])}</span>'
                               + (f'<ul class="p1-msg">{reasons}</ul>' if reasons else ""))
        self.figures.value = self._figures_html(st)
        self.checks.value = grid_table(["Check", "Value", "Rule", "Verdict"], [
            [esc(CHECK_LABELS.get(c["name"], c["name"])), esc(_check_value(c)), esc(c["rule"]), _verdict(c["ok"])]
            for c in st["checks"]], left=(0, 2, 3))
        self._show_canary(st["canary"])
        self._show_flags(ops.get_flags(self.ctx.store))
        self.audit.value = grid_table(["When", "Actor", "Action", "Target", "Old", "New", "Reason", "Details"],
                                      audit_rows(ops.list_audit(self.ctx.store, AUDIT_ROWS)), left=range(8),
                                      empty="No audit entries yet.")
        self.runs.value = grid_table(["Created", "Project", "Permutations", "Latency", "Ruleset", "Run"],
                                     run_rows(self.ctx.store.list_runs(RUN_ROWS)), left=(0, 1, 4, 5),
                                     empty="No runs yet.")

    @staticmethod
    def _figures_html(st: Mapping[str, Any]) -> str:
        m = st["metrics"]
        cards = [("Samples", number(m["samples"])), ("Runs", number(m["runs"])),
                 ("Error rate", pct(m["error_rate"], 2)), ("Success rate", pct(m["success_rate"], 2)),
                 ("p50 latency", seconds(m["latency"]["p50_s"])), ("p95 latency", seconds(m["latency"]["p95_s"])),
                 ("p95 runs 1-10k", seconds(m["latency_runs_1_10k"]["p95_s"])),
                 ("Peak RSS", megabytes(m["memory"]["peak_rss_bytes"]))]
        return '<div style="display:flex;flex-wrap:wrap">' + "".join(figure_card(k, v) for k, v in cards) + "</div>"

    def _show_canary(self, canary: Mapping[str, Any]) -> None:
        rows = [("State", f"<b>{esc(canary['state'])}</b>"), ("Share on candidate", f"{canary['percentage']:g} %"),
                ("Candidate", esc(canary["candidate"] or "none registered")),
                ("Last change", f"{timestamp(canary['updated_at'])} by {esc(canary['updated_by'] or DASH)}"),
                ("Reason", esc(canary["reason"] or DASH))]
        self.canary_state.value = kv_table(rows, numeric=False)
        self.canary_slider.value = float(canary["percentage"])
        self.rollback_target.max = max(float(canary["percentage"]), 0.0) or 100.0

    def _show_flags(self, flags: Mapping[str, Any]) -> None:
        self.flags_version = flags["version"]
        rows = []
        for name, value in flags["flags"].items():
            box = self.flag_boxes.get(name)
            if box is None:
                box = self.flag_boxes[name] = widgets.Checkbox(description=name, indent=False,
                                                               layout=widgets.Layout(width="190px"))
            box.value = bool(value)
            text = esc(flags["descriptions"][name])
            rows.append(widgets.HBox([box, widgets.HTML(f'<span class="p1-muted">{text}</span>',
                                                        layout=widgets.Layout(width="420px"))]))
        self.flags_panel.children = rows

    # ---- actions -------------------------------------------------------------------------------------------
    def _actor(self) -> str | None:
        try:
            return self.ctx.require_admin()
        except Phase1Error as error:
            self.notice.error(f"Refused: {error}")
            return None

    def apply_canary(self) -> dict[str, Any] | None:
        """Move the canary to the slider's share, with the reason, as the logged-in admin."""
        actor = self._actor()
        if actor is None:
            return None
        try:
            state = ops.update_canary(self.ctx.store, float(self.canary_slider.value), self.canary_reason.value,
                                      actor, request_id())
        except Phase1Error as error:
            self.notice.failure("move the canary", error)
            return None
        self.canary_reason.value = ""
        self.refresh()
        self.notice.ok(f"Canary now {state['state']} at {state['percentage']:g} % (by {actor}).")
        return state

    def roll_back(self) -> dict[str, Any] | None:
        """Roll the canary back to the target share (0 by default), with the reason."""
        actor = self._actor()
        if actor is None:
            return None
        try:
            state = ops.rollback(self.ctx.store, float(self.rollback_target.value), self.rollback_reason.value,
                                 actor, request_id())
        except Phase1Error as error:
            self.notice.failure("roll back", error)
            return None
        self.rollback_reason.value = ""
        self.refresh()
        self.notice.ok(f"Rolled back from {state['previous_percentage']:g} % to {state['percentage']:g} % in "
                       f"{state['duration_ms']:.1f} ms (by {actor}).")
        return state

    def save_flags(self) -> dict[str, Any] | None:
        """Save the flags that changed, with the version read (a concurrent change is refused and reloaded)."""
        actor = self._actor()
        if actor is None:
            return None
        current = ops.get_flags(self.ctx.store)["flags"]
        changes = {n: box.value for n, box in self.flag_boxes.items() if box.value != current.get(n)}
        if not changes:
            self.notice.info("No flag changed.")
            return None
        try:
            flags = ops.update_flags(self.ctx.store, self.flags_version, changes, actor, request_id())
        except ConflictError as error:
            self.refresh()
            self.notice.error(f"Not saved: {error}. The flags were reloaded; make your change again.")
            return None
        except Phase1Error as error:
            self.notice.failure("save the flags", error)
            return None
        self.refresh()
        shown = ", ".join(f"{n} {'on' if v else 'off'}" for n, v in changes.items())
        self.notice.ok(f"Flags saved (version {flags['version']}): {shown}.")
        return flags

    def register_ruleset(self, raw: bytes, name: str = "ruleset.json") -> dict[str, Any] | None:
        """Register a candidate ruleset file as the canary's candidate."""
        actor = self._actor()
        if actor is None:
            return None
        try:
            record = ops.register_candidate(self.ctx.store, raw, actor, request_id())
        except Phase1Error as error:
            self.notice.failure(f"register {name}", error)
            return None
        self.refresh()
        self.notice.ok(f"Registered candidate {record['version']} (sha256 {record['sha256'][:12]}…).")
        return record

    def _on_ruleset(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if files:
            self.register_ruleset(bytes(files[0]["content"]), files[0].get("name", "ruleset.json"))


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return '<span class="p1-muted">unknown</span>'
    return '<span class="p1-ok">✓ pass</span>' if ok else '<span class="p1-bad">✗ fail</span>'


def _check_value(check: Mapping[str, Any]) -> str:
    value = check["value"]
    if value is None:
        return DASH
    if check["name"] in ("error_rate", "success_rate"):
        return pct(value, 3)
    if check["name"].endswith("_s"):
        return seconds(value)
    return json.dumps(value) if isinstance(value, bool) else str(value)


def ops_monitor_dashboard(ctx: AppContext | None = None) -> widgets.Widget:
    """The Ops Monitor page for Voila (``ctx`` defaults to the served context)."""
    return OpsMonitorDashboard(ctx or AppContext.from_env(warm=OpsMonitorDashboard)).widget

"""Permutations dashboard: preset picker, an editor per range key (a list, or min / max / step), the live
cardinality with the guardrail warning, and the sample option.

Every check is the library's ``parse_ranges`` (with the workspace project, so project-dependent rules such
as "ZCIS tenor below the lease" apply); the ranges chosen here go to the Run dashboard via the workspace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from .. import ops, service
from ..errors import InputError, Phase1Error
from ..presets import list_presets, preset_ranges
from ..pricing import MARKET
from ..project import Project, validate_project
from ..ranges import ALIASES, KEY_SPECS, Grid, KeySpec, check_guardrail, max_permutations, parse_ranges
from ..ruleset import STABLE_VERSION, Ruleset
from .components import Notice, heading, page, shared_layout
from .context import AppContext
from .format import esc, number, pct, ratio

LABELS = {"senior_tenor": "Senior tenor", "senior_coupon": "Senior coupon", "senior_dscr": "Senior DSCR target",
          "senior_amort": "Senior amortisation", "indexation_mode": "Indexation mode",
          "zcis_tenor_years": "ZCIS tenor", "io_months": "Interest-only months", "wrap": "Wrap",
          "mezz_on": "Mezzanine", "mezz_coupon": "Mezz coupon", "mezz_dscr": "Mezz DSCR (combined)",
          "mezz_tenor": "Mezz tenor", "mezz_amort": "Mezz amortisation", "sidecar_haircut_pct": "Sidecar haircut"}
_RATE_KEYS = ("senior_coupon", "mezz_coupon", "sidecar_haircut_pct")
_EMPTY = object()
#: Sample size offered by default when a grid exceeds the guardrail.
DEFAULT_SAMPLE = 10_000


def value_text(key: str, value: Any) -> str:
    """One range value as the analyst reads it (4.00%, 1.35x, 20 yrs, sculpted, market)."""
    if value == MARKET:
        return "market"
    if value is None:
        return "= senior tenor" if key == "mezz_tenor" else "–"
    if isinstance(value, bool):
        return "on" if value else "off"
    if key in _RATE_KEYS:
        return pct(value)
    if key in ("senior_dscr", "mezz_dscr"):
        return ratio(value)
    if key in ("senior_tenor", "zcis_tenor_years", "mezz_tenor"):
        return f"{value} yrs"
    if key == "io_months":
        return f"{value} months"
    return str(value)


def values_summary(key: str, values: tuple[Any, ...]) -> str:
    """'10 values: 4.00% … 6.25%' or the values themselves when few."""
    n = len(values)
    if n <= 5:
        return f"{n} value{'s' if n != 1 else ''}: " + ", ".join(value_text(key, v) for v in values)
    return f"{n} values: {value_text(key, values[0])} … {value_text(key, values[-1])}"


def parse_token(token: str, key: str) -> Any:
    """A typed list item: a number (``4%`` = 0.04 for rate keys), else the text for the library to judge."""
    text = token.strip()
    scale = 1.0
    if text.endswith("%") and key in _RATE_KEYS:
        text, scale = text[:-1], 0.01
    try:
        value = float(text.replace("_", "")) * scale
    except ValueError:
        return token.strip()
    return int(value) if value.is_integer() and scale == 1.0 and re.fullmatch(r"-?\d+", text) else value


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True is not 1)."""
    return a == b and type(a) is type(b)


def _plain(value: Any) -> str:
    return str(value) if not isinstance(value, float) else (str(int(value)) if value.is_integer() else repr(value))


class KeyEditor:
    """The editor of one range key: a list or min / max / step for numbers, check boxes for choices."""

    def __init__(self, spec: KeySpec, project: Project | None):
        self.spec = spec
        self.key = spec.name
        label = LABELS.get(self.key, self.key) + (" *" if spec.default is None else "")
        hint = " · mezz on" if spec.mezz and self.key != "mezz_dscr" else ""
        self.label = widgets.HTML(f'<span title="{esc(self.key)}">{esc(label)}</span>'
                                  f'<span class="p1-muted">{esc(hint)}</span>', layout=shared_layout(width="170px"))
        self.message = widgets.HTML(layout=shared_layout(width="300px"))
        self.default_text = self._default_text(project)
        self.numeric = spec.kind in ("int", "float")
        if self.numeric:
            self.mode = widgets.ToggleButtons(options=[("list", "list"), ("range", "range")], value="list",
                                              tooltips=["values separated by commas", "min, max and step"],
                                              style={"button_width": "58px"}, layout=widgets.Layout(width="130px"))
            self.list_text = widgets.Text(placeholder=self.default_text, layout=widgets.Layout(width="300px"))
            self.list_text.add_class(f"p1-key-{self.key}")  # stable handles for browser tests
            self.mode.add_class(f"p1-mode-{self.key}")
            self.bounds = [widgets.Text(placeholder=p, layout=shared_layout(width="62px"))
                           for p in ("min", "max", "step")]
            parts: list[widgets.Widget] = []
            for word, box in zip(("from", "to", "step"), self.bounds, strict=True):
                parts += [widgets.HTML(f'<span class="p1-muted">{word}</span>',
                                       layout=shared_layout(margin="0 3px 0 4px")), box]
            self.range_box = widgets.HBox(parts, layout=widgets.Layout(width="300px", display="none",
                                                                       align_items="center"))
            self.input = widgets.HBox([self.list_text, self.range_box])
            self.mode.observe(self._on_mode, names="value")
            self.checks: list[widgets.Checkbox] = []
        else:
            self.mode = widgets.HTML(f'<span class="p1-muted">{esc(self.default_text)}</span>',
                                     layout=widgets.Layout(width="130px"))
            choices = (True, False) if spec.kind == "bool" else spec.choices
            self.checks = [widgets.Checkbox(value=False, description=value_text(self.key, c), indent=False,
                                            layout=shared_layout(width="auto", margin="0 8px 0 0"))
                           for c in choices]
            self.choices = list(choices)
            self._order = list(choices)
            self.input = widgets.HBox(self.checks, layout=widgets.Layout(width="300px"))

    def _has(self, value: Any) -> bool:
        return any(_same(c, value) for c in self.choices)

    def _index(self, value: Any) -> int:
        return next(i for i, c in enumerate(self.choices) if _same(c, value))

    def _default_text(self, project: Project | None) -> str:
        d = self.spec.default
        if d is None:
            return "required"
        if isinstance(d, tuple):
            value = getattr(project, d[1]) if project is not None else None
            return f"project's {value_text(self.key, value)}" if project is not None else "project's value"
        return f"default {value_text(self.key, d)}"

    def _on_mode(self, change: dict[str, Any]) -> None:
        is_range = change["new"] == "range"
        self.range_box.layout.display = "flex" if is_range else "none"
        self.list_text.layout.display = "none" if is_range else "flex"

    def widgets(self) -> list[widgets.Widget]:
        return [self.label, self.mode, self.input, self.message]

    def value_widgets(self) -> list[widgets.Widget]:
        """Widgets whose changes re-check the ranges."""
        return [self.mode, self.list_text, *self.bounds] if self.numeric else list(self.checks)

    def request_value(self) -> Any:
        """The key's part of the range request, or ``_EMPTY`` (the default applies)."""
        if not self.numeric:
            ticked = [c for c in self._order if self.checks[self._index(c)].value]
            return ticked if ticked else _EMPTY
        if self.mode.value == "range":
            texts = [b.value.strip() for b in self.bounds]
            if not any(texts):
                return _EMPTY
            return {name: parse_token(t, self.key) if t else None for name, t in zip(("min", "max", "step"),
                                                                                     texts, strict=True)}
        tokens = [t for t in re.split(r"[,;\s]+", self.list_text.value) if t.strip()]
        if not tokens:
            return _EMPTY
        values = [parse_token(t, self.key) for t in tokens]
        return values

    def set(self, value: Any) -> None:
        """Show a request value (None clears it)."""
        if not self.numeric:
            wanted = value if isinstance(value, list) else ([] if value is None else [value])
            known = [w for w in wanted if self._has(w)]
            self._order = [self.choices[self._index(w)] for w in known] + [c for c in self.choices
                                                                             if not any(_same(c, w) for w in known)]
            for c, box in zip(self.choices, self.checks, strict=True):
                box.value = any(_same(c, w) for w in known)
            return
        if isinstance(value, Mapping):
            self.mode.value = "range"
            for name, box in zip(("min", "max", "step"), self.bounds, strict=True):
                box.value = _plain(value.get(name, ""))
            self.list_text.value = ""
        else:
            self.mode.value = "list"
            items = value if isinstance(value, list) else ([] if value is None else [value])
            self.list_text.value = ", ".join(_plain(v) for v in items)
            for box in self.bounds:
                box.value = ""

    def show(self, error: str | None, values: tuple[Any, ...] | None) -> None:
        if error:
            self.message.value = f'<span class="p1-msg p1-msg-error">{esc(error)}</span>'
        elif values is not None:
            self.message.value = f'<span class="p1-msg p1-muted">{esc(values_summary(self.key, values))}</span>'
        else:
            self.message.value = ""


def _local_problem(value: Any) -> str | None:
    """Problems the form sees before the library: an incomplete min / max / step."""
    if isinstance(value, dict) and any(v is None for v in value.values()):
        return "fill in min, max and step (or switch to list)"
    return None


class PermutationsDashboard:
    """The Permutations page; ``widget`` is what Voila displays."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        ws = ctx.workspace.get()
        self.project = self._workspace_project(ws)
        self.editors = {spec.name: KeyEditor(spec, self.project) for spec in KEY_SPECS}
        self.presets = {p["name"]: p for p in list_presets(self.project)}
        options = [("— custom ranges —", "")] + [(f"{name} · {p['cardinality']:,}", name)
                                                 for name, p in self.presets.items()]
        self.preset = widgets.Dropdown(options=options, value="", description="Preset",
                                       layout=widgets.Layout(width="420px"))
        self.preset_text = widgets.HTML()
        self.preset.observe(self._on_preset, names="value")
        self.ruleset = widgets.Dropdown(options=ruleset_options(ctx), value="", description="Ruleset",
                                        layout=widgets.Layout(width="420px"),
                                        tooltip="v2 prices every note (\"market\" coupons); the canary chooses "
                                                "when no ruleset is named")
        self.ruleset.observe(self._on_change, names="value")
        self.cardinality = widgets.HTML()
        self.guardrail = Notice()
        self.sample_on = widgets.Checkbox(value=False, description="Evaluate a random sample of", indent=False,
                                          layout=widgets.Layout(width="auto"))
        self.sample_size = widgets.BoundedIntText(value=DEFAULT_SAMPLE, min=1, max=max_permutations(),
                                                  layout=widgets.Layout(width="110px"))
        self.sample_note = widgets.HTML('<span class="p1-muted">permutations (drawn with the run seed)</span>')
        self.notice = Notice()
        self.use_button = widgets.Button(description="Use these ranges", button_style="primary", icon="check",
                                         layout=widgets.Layout(width="170px"))
        self.use_button.on_click(lambda _b: self.use())
        self.clear_button = widgets.Button(description="Clear keys", icon="eraser", tooltip="empty every key (each "
                                           "takes its default) and start from custom ranges",
                                           layout=widgets.Layout(width="130px"))
        self.clear_button.on_click(lambda _b: self.clear())
        self.grid: Grid | None = None
        self.errors: dict[str, str] = {}
        self._filling = False
        self._preset_grid: dict[str, Any] | None = None  # the chosen preset's grid, to notice an edit
        for editor in self.editors.values():
            for w in editor.value_widgets():
                w.observe(self._on_change, names="value")
        for w in (self.sample_on, self.sample_size):
            w.observe(self._on_change, names="value")
        self.widget = self._layout()
        self._restore(ws)

    @staticmethod
    def _workspace_project(ws: Mapping[str, Any]) -> Project | None:
        project, _errors = validate_project(ws.get("project")) if ws.get("project") else (None, [])
        return project

    def _layout(self) -> widgets.Widget:
        cells = [w for e in self.editors.values() for w in e.widgets()]
        grid = widgets.GridBox(cells, layout=widgets.Layout(grid_template_columns="170px 130px 300px 300px",
                                                            grid_gap="3px 10px", align_items="center"))
        who = (f"Project: <b>{esc(self.project.title)}</b> ({esc(self.project.lease_years)}-year lease, "
               f"{esc(self.project.tenant_rating)} tenant)" if self.project else
               "No project chosen yet: ranges are checked without the project's own limits. "
               '<a href="Projects.ipynb">Choose one in Projects</a>.')
        sample = widgets.VBox([widgets.HBox([self.sample_on, self.sample_size],
                                            layout=widgets.Layout(align_items="center")), self.sample_note])
        side = widgets.VBox([heading("Cardinality"), self.cardinality, self.guardrail, sample,
                             widgets.HBox([self.use_button, self.clear_button],
                                          layout=widgets.Layout(margin="8px 0 0 0", grid_gap="8px"))],
                            layout=widgets.Layout(width="340px", margin="0 0 0 24px"))
        left = widgets.VBox([widgets.HTML(f'<span class="p1-muted">{who}</span>'),
                             widgets.HBox([self.preset], layout=widgets.Layout(margin="6px 0 0 0")),
                             widgets.HBox([self.ruleset]),
                             self.preset_text, heading("Range keys", 3),
                             widgets.HTML('<span class="p1-muted">A list (10, 12, 15) or min / max / step; '
                                          "rates as decimals or with % (4%). Empty keys take the default shown. "
                                          "* required.</span>"), grid])
        return page("Permutations", self.ctx.user, self.notice, widgets.HBox([left, side]))

    def _restore(self, ws: Mapping[str, Any]) -> None:
        if ws.get("ruleset") in [v for _label, v in self.ruleset.options]:
            self.ruleset.value = ws["ruleset"]
        ranges = ws.get("ranges")
        if isinstance(ranges, dict):
            self.fill(ranges)
            if ws.get("preset") in self.presets:
                self._filling = True
                self.preset.value = ws["preset"]
                self._filling = False
                self._describe_preset()
                self._preset_grid = self._grid_of_preset(ws["preset"])
            if ws.get("sample"):
                self.sample_on.value, self.sample_size.value = True, int(ws["sample"])
        self.check()

    # ---- request ----------------------------------------------------------------------------------------------
    def request(self) -> dict[str, Any]:
        """The range request as entered (keys left empty are omitted)."""
        return {k: v for k, e in self.editors.items() if (v := e.request_value()) is not _EMPTY}

    def fill(self, ranges: Mapping[str, Any]) -> None:
        """Show a range request in the editors (aliases accepted; unknown keys are reported)."""
        canonical = {ALIASES.get(k, k): v for k, v in ranges.items()}
        unknown = sorted(k for k in canonical if k not in self.editors)
        self._filling = True
        try:
            for key, editor in self.editors.items():
                editor.set(canonical.get(key))
        finally:
            self._filling = False
        if unknown:
            self.notice.warn(f"Ignored unknown range keys: {', '.join(unknown)}")
        self.check()

    def clear(self) -> None:
        """Empty every key (the defaults apply) and forget the preset: custom ranges from scratch."""
        self._forget_preset()
        self._describe_preset()
        self.fill({})

    def choose_preset(self, name: str) -> None:
        """Pick a preset: its ranges fill the editors."""
        self.preset.value = name

    def _on_preset(self, change: dict[str, Any]) -> None:
        if self._filling:
            return
        self._describe_preset()
        self._preset_grid = None
        if change["new"]:
            written_for = self.presets[change["new"]].get("ruleset")
            if written_for and written_for in [v for _label, v in self.ruleset.options]:
                self.ruleset.value = written_for  # a market-coupon preset is a v2 preset
            elif written_for:
                self.notice.warn(f"Preset {change['new']} is written for ruleset {written_for}, which is not live "
                                 "in the dashboards (the canary has not rolled it out): its ranges are shown, "
                                 "but they need that ruleset.")
            self.fill(preset_ranges(change["new"]))
            self._preset_grid = self._grid_of_preset(change["new"])

    def _grid_of_preset(self, name: str) -> dict[str, Any] | None:
        try:
            return parse_ranges(preset_ranges(name), self.project, self.chosen_ruleset()).to_dict()
        except Phase1Error:
            return None

    def _forget_preset(self) -> None:
        """The picker shows no preset, without filling its ranges (the ranges stay as they are)."""
        self._filling = True
        try:
            self.preset.value = ""
        finally:
            self._filling = False
        self._preset_grid = None

    def _sync_preset(self) -> None:
        """Once the ranges no longer are the chosen preset's, the picker says "custom" (naming the preset they
        came from), so that choosing the preset again resets them."""
        name = self.preset.value
        if not name or self._preset_grid is None:
            return
        if self.grid is not None and self.grid.to_dict() == self._preset_grid:
            return
        self._forget_preset()
        self.preset_text.value = (f'<span class="p1-muted">Edited from preset {esc(name)}: custom ranges now; '
                                  f"choose {esc(name)} again to reset them.</span>")

    def _describe_preset(self) -> None:
        p = self.presets.get(self.preset.value)
        self.preset_text.value = f'<span class="p1-muted">{esc(p["description"])}</span>' if p else ""

    def _on_change(self, _change: dict[str, Any]) -> None:
        if not self._filling:
            self.check()
            self._sync_preset()

    def sample(self) -> int | None:
        return int(self.sample_size.value) if self.sample_on.value else None

    # ---- checks -----------------------------------------------------------------------------------------------
    def check(self) -> Grid | None:
        """Check the ranges: messages beside the keys, the cardinality and the guardrail verdict."""
        request = self.request()
        local = {k: p for k, v in request.items() if (p := _local_problem(v))}
        self.errors, self.grid = dict(local), None
        try:
            if local:
                raise InputError([], "ranges")
            self.grid = parse_ranges(request, self.project, self.chosen_ruleset())
        except InputError as error:
            for e in error.errors:
                self.errors.setdefault(ALIASES.get(e.field, e.field), e.message)
        for key, editor in self.editors.items():
            values = self.grid.values[key] if self.grid is not None else None
            editor.show(self.errors.get(key), values)
        self._show_cardinality()
        return self.grid

    def chosen_ruleset(self) -> Ruleset:
        """The ruleset the ranges are checked under: the one chosen, else the stable one (the canary may still
        send the run to its candidate)."""
        return service.ruleset_named(self.ctx.store, self.ruleset.value or None)

    def _show_cardinality(self) -> None:
        limit = max_permutations()
        if self.grid is None:
            n = len(self.errors)
            self.cardinality.value = (f'<span class="p1-msg p1-msg-error">{n} key{"s" if n != 1 else ""} to fix '
                                      "before the grid can be counted</span>")
            self.guardrail.clear()
            return
        card = self.grid.cardinality
        sizes = [len(self.grid.values[s.name]) for s in KEY_SPECS if not s.mezz]
        mezz = f" (mezz sub-grid {self.grid.mezz_size:,})" if self.grid.mezz_size > 1 else ""
        formula = " × ".join(str(s) for s in sizes if s > 1) or "1"
        self.cardinality.value = (f'<div class="p1-figure">{number(card)}</div>'
                                  f'<div class="p1-muted">permutations = {esc(formula)}{esc(mezz)}; '
                                  f"guardrail {number(limit)}</div>")
        sample = self.sample()
        if card > limit and sample is None:
            self.guardrail.warn(f"{card:,} permutations exceed the guardrail of {limit:,}: narrow the ranges, "
                                "or tick the sample option to evaluate a random sample.")
        elif sample is not None and sample > min(card, limit):
            self.guardrail.error(f"The sample must be at most {min(card, limit):,} "
                                 f"({'the guardrail' if limit < card else 'the cardinality'}).")
        elif sample is not None:
            self.guardrail.info(f"A random sample of {sample:,} of the {card:,} permutations will be evaluated "
                                f"({sample / card:.1%}).")
        else:
            self.guardrail.ok(f"Within the guardrail ({card / limit:.1%} of {limit:,}).")

    def use(self) -> bool:
        """Check through the service (flags apply) and hand ranges, preset and sample to the Run dashboard."""
        request = self.request()
        if self.check() is None:
            self.notice.error("Fix the range keys marked in red first.")
            return False
        sample = self.sample()
        try:
            summary = service.cardinality(self.ctx.store, request, self.project, self.ruleset.value or None)
            check_guardrail(summary["cardinality"], sample)
        except Phase1Error as error:
            self.notice.failure("use these ranges", error)
            return False
        preset = self.preset.value or None
        if preset and parse_ranges(preset_ranges(preset), self.project,
                                   self.chosen_ruleset()).to_dict() != self.grid.to_dict():
            preset = None  # edited after picking: custom ranges
        self.ctx.workspace.update(ranges=request, preset=preset, sample=sample, ruleset=self.ruleset.value or None)
        what = f"preset {preset}" if preset else "custom ranges"
        count = sample or summary["cardinality"]
        self.notice.ok(f"Ranges saved ({what}, {count:,} permutations to evaluate): open Run to start.")
        return True


def ruleset_options(ctx: AppContext) -> list[tuple[str, str]]:
    """The rulesets a dashboard may pin: in the dashboards the canary decides, so beside "as the canary decides"
    only the stable ruleset and, while the canary rolls it out (above 0 %), the candidate; a rollback to 0 %
    removes the candidate from every dashboard at once (the API and CLI may still name a ruleset: audited)."""
    options = [("as the canary decides", ""), (f"{STABLE_VERSION} (stable)", STABLE_VERSION)]
    canary = ops.get_canary(ctx.store)
    if canary["candidate"] and canary["percentage"] > 0:
        priced = " market-priced notes," if load_ruleset_priced(ctx, canary["candidate"]) else ""
        options.append((f"{canary['candidate']} (candidate,{priced} live for {canary['percentage']:g} %)",
                        canary["candidate"]))
    return options


def pinned_ruleset(ctx: AppContext) -> str | None:
    """The ruleset the workspace pins, while the dashboards may still offer it (else None: the canary decides)."""
    wanted = ctx.workspace.get().get("ruleset")
    return wanted if wanted and wanted in {v for _label, v in ruleset_options(ctx)} else None


def load_ruleset_priced(ctx: AppContext, version: str) -> bool:
    try:
        return service.ruleset_named(ctx.store, version).priced
    except Phase1Error:
        return False


def permutations_dashboard(ctx: AppContext | None = None) -> widgets.Widget:
    """The Permutations page for Voila (``ctx`` defaults to the served context)."""
    return PermutationsDashboard(ctx or AppContext.from_env(warm=PermutationsDashboard)).widget


"""Projects dashboard: a form for every project field with units, defaults and live validation, the derived
preview, load / save project JSON and the sample projects one click away.

Validation runs on every keystroke with the library's own rules (``validate_project``), so a message
beside a field is exactly what the engine, the CLI and the API would say.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .. import service
from ..errors import Phase1Error
from ..project import COUNTRY_CURRENCY, SPECS, Derived, Project, derive, field_spec, validate_project
from ..ruleset import load_ruleset
from ..samples import project_samples
from .components import DownloadLink, Notice, heading, kv_table, page, shared_layout
from .context import AppContext
from .format import esc, field_value, money, number, pct, ratio

#: The priced ruleset whose lending value the preview shows beside v1's figures.
PRICED_PREVIEW = "v2"

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Site and lease", ("title", "country", "currency", "gross_it_load_mw", "pue", "lease_years",
                        "tenant_rating", "periods_per_year", "closing_date")),
    ("Rent, costs and value", ("gross_monthly_rent", "rent_per_kwh_month", "opex_pct", "capex_cost_per_mw",
                               "capex_market_per_mw", "land_fees_total", "residual_value_pct")),
    ("Indexation and hedge", ("indexation_basis", "base_cpi", "cpi_floor", "cpi_cap", "zcis_rate",
                              "zcis_basis_bps")),
    ("Fees and wrap", ("arranger_fee_pct", "legal_fee_pct", "rating_fee_pct", "admin_bps", "wrap_premium_bps",
                       "wrap_dscr_relief")),
    ("Mezzanine and sidecar", ("mezz_coupon", "mezz_dscr", "mezz_tenor", "mezz_amort", "sidecar_haircut_pct")),
    ("Pricing and lending value (ruleset v2)", ("cap_rate", "benchmark_curve")),
)
#: What an empty optional field means, shown as its placeholder.
DERIVED_DEFAULTS = {"capex_market_per_mw": "= capex cost per MW", "zcis_rate": "= base CPI",
                    "mezz_tenor": "= senior tenor", "closing_date": "run date",
                    "gross_monthly_rent": "or rent per kWh", "rent_per_kwh_month": "or monthly rent",
                    "cap_rate": "ruleset's, by country", "benchmark_curve": "ruleset's, by currency"}
UNIT_TEXT = {"rate": "rate (0.02 = 2%)", "ratio": "", "text": "", "ISO date": "YYYY-MM-DD", "MW": "MW",
             "[years, rate] points": "years: rate, ..."}
#: Fields whose typed value already reads as it should (no formatted echo beside them).
NO_ECHO = frozenset({"pue", "gross_it_load_mw"})
PERIOD_NAMES = {1: "annual", 2: "semi-annual", 4: "quarterly", 12: "monthly"}
_PERCENT_UNITS = ("rate", "share")


def parse_number_text(text: str, unit: str) -> Any:
    """A typed number: commas, spaces and underscores ignored; ``2%`` is 0.02 for rates and shares.

    Text that is not a number is returned as typed, so the library names the rule it breaks.
    """
    cleaned = re.sub(r"[,_\s]", "", text)
    scale = 1.0
    if cleaned.endswith("%") and unit.startswith(_PERCENT_UNITS):
        cleaned, scale = cleaned[:-1], 0.01
    try:
        value = float(cleaned) * scale
    except ValueError:
        return text
    return int(value) if value.is_integer() and scale == 1.0 and "." not in cleaned and "e" not in cleaned.lower() \
        else value


def parse_curve_text(text: str) -> Any:
    """A typed benchmark curve: "1: 4%, 5: 3.75%, 10: 0.039" (or JSON [[1, 0.04], ...]) as [[years, rate], ...].

    Text that does not read as points is returned as typed, so the library names the rule it breaks.
    """
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    points = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        tenor, sep, rate = part.partition(":")
        if not sep:
            return text
        points.append([parse_number_text(tenor.strip(), "years"), parse_number_text(rate.strip(), "rate")])
    return points


def curve_text(points: Any) -> str:
    """A benchmark curve as the form shows it: "1: 0.04, 5: 0.0375"."""
    return ", ".join(f"{t:g}: {r:g}" for t, r in points)


def number_text(value: Any, unit: str) -> str:
    """A number as the form shows it: thousands separators for money, plain digits otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if unit.startswith("currency") and float(value).is_integer():
        return f"{int(value):,}"
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else repr(float(value))


class FieldRow:
    """One project field: label, input, unit and the message beside it (error, or the formatted value)."""

    def __init__(self, name: str):
        self.name = name
        self.spec = field_spec(name)
        self.input = self._make_input()
        self.unit = widgets.HTML(layout=shared_layout(width="140px"))
        self.show_unit(None)
        self.message = widgets.HTML(layout=shared_layout(width="300px"))
        required = " *" if self.spec["required"] else ""
        self.label = widgets.HTML(f'<span title="{esc(name)}">{esc(self.spec["label"])}{required}</span>',
                                  layout=shared_layout(width="170px"))
        self.error: str | None = None

    def _make_input(self) -> widgets.Widget:
        spec, layout = self.spec, shared_layout(width="160px")
        if spec["choices"]:
            options: list[Any] = [(str(c) if not isinstance(c, int) else f"{c} ({PERIOD_NAMES.get(c, '')})", c)
                                  for c in spec["choices"]]
            if spec["required"]:
                options = [("— choose —", None), *options]
            return widgets.Dropdown(options=options, value=spec["default"], layout=layout)
        if spec["required"]:
            placeholder = "required"
        elif self.name in DERIVED_DEFAULTS:
            placeholder = DERIVED_DEFAULTS[self.name]
        else:
            placeholder = f"default {number_text(spec['default'], spec['unit'])}"
        box = widgets.Text(placeholder=placeholder, layout=layout, continuous_update=True)
        box.add_class(f"p1-field-{self.name}")  # a stable handle for browser tests
        return box

    def widgets(self) -> list[widgets.Widget]:
        return [self.label, self.input, self.unit, self.message]

    def show_unit(self, currency: str | None) -> None:
        """The unit beside the input, naming the project currency once it is known (GBP / month)."""
        unit = UNIT_TEXT.get(self.spec["unit"], self.spec["unit"])
        if currency and unit.startswith("currency"):
            unit = currency + unit.removeprefix("currency")
        self.unit.value = f'<span class="p1-muted">{esc(unit)}</span>' if unit else ""

    def raw(self) -> Any:
        """The field's value for validation; a missing value is ``_EMPTY``."""
        value = self.input.value
        if isinstance(self.input, widgets.Dropdown):
            return _EMPTY if value is None else value
        text = (value or "").strip()
        if not text:
            return _EMPTY
        if self.spec["kind"] in ("number", "integer"):
            return parse_number_text(text, self.spec["unit"])
        if self.spec["kind"] == "curve":
            return parse_curve_text(text)
        return text

    def set(self, value: Any) -> None:
        """Show ``value`` (None clears the field, or resets a choice to its default)."""
        if isinstance(self.input, widgets.Dropdown):
            allowed = [v for _label, v in self.input.options]
            self.input.value = value if value in allowed else self.spec["default"]
        elif self.spec["kind"] in ("number", "integer"):
            self.input.value = number_text(value, self.spec["unit"])
        elif self.spec["kind"] == "curve":
            self.input.value = "" if value is None else curve_text(value)
        else:
            self.input.value = "" if value is None else str(value)

    def show(self, error: str | None, currency: str | None) -> None:
        """The message beside the field: the rule it breaks, or the value as the analyst will read it."""
        self.error = error
        self.show_unit(currency)
        if error:
            self.message.value = f'<span class="p1-msg p1-msg-error">{esc(error)}</span>'
            return
        raw = self.raw()
        plain = raw is _EMPTY or isinstance(raw, str | list) or self.name in NO_ECHO
        echo = "" if plain else field_value(raw, self.spec["unit"], currency)
        self.message.value = f'<span class="p1-msg p1-muted">{esc(echo)}</span>' if echo else ""


_EMPTY = object()


def sample_projects() -> dict[str, Path]:
    """Sample project files by title (shipped inside the package: phase1lib.samples)."""
    return project_samples()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "project"


def derived_rows(project: Project, d: Derived) -> list[tuple[str, str]]:
    """The derived preview: figures an analyst checks before running anything."""
    ccy = project.currency
    repo = d.repo_jurisdiction or f"none ({project.country} has no repo rules)"
    return [
        ("Net IT load", f"{number(d.net_it_load_mw, 2)} MW"),
        ("Gross income / yr", money(d.gross_income_annual, ccy)),
        ("Opex / yr", money(d.opex_annual, ccy)),
        ("NOI / yr", f"<b>{money(d.noi_annual, ccy)}</b>"),
        ("Project capex", money(d.project_capex, ccy)),
        ("Upfront fees", money(d.upfront_fees, ccy)),
        ("Funding need", f"<b>{money(d.funding_need, ccy)}</b>"),
        ("Market value", money(d.market_value, ccy)),
        ("Admin / yr", money(d.admin_annual, ccy)),
        ("Tenor cap", f"{d.tenor_cap} yrs"),
        ("DSCR floor", ratio(d.dscr_floor)),
        ("Advance factor band", f"{pct(d.af_min, 0)} – {pct(d.af_max, 0)}"),
        ("DSRA", f"{d.dsra_months} months of senior service"),
        ("Rating cap", esc(d.rating_cap)),
        ("ZCIS locked rate", pct(d.locked_rate)),
        ("Repo jurisdiction", esc(repo)),
        ("Periods", f"{d.n_periods} ({PERIOD_NAMES.get(project.periods_per_year, '')})"),
        *priced_rows(project),
    ]


def priced_rows(project: Project) -> list[tuple[str, str]]:
    """Section 11.2 under the shipped v2: the lending value and the LTV limit the v2 senior is sized against."""
    d = derive(project, load_ruleset(PRICED_PREVIEW))
    ccy = project.currency
    assert d.lending_value is not None and d.ltv_limit is not None and d.cap_rate is not None
    return [
        ("Income value (v2)", f"{money(d.income_value or 0.0, ccy)} (NOI / cap rate {pct(d.cap_rate)})"),
        ("Lending value (v2)", f"<b>{money(d.lending_value, ccy)}</b> (lower of market and income value)"),
        ("LTV limit (v2)", f"{money(d.ltv_limit, ccy)} ({pct(d.max_ltv or 0.0, 0)} of lending value)"),
    ]


class ProjectsDashboard:
    """The Projects page; ``widget`` is what Voila displays."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.rows = {name: FieldRow(name) for _s, names in SECTIONS for name in names}
        missing = set(SPECS) - set(self.rows)
        assert not missing, f"fields without a form row: {missing}"
        self.project: Project | None = None
        self.errors: dict[str, str] = {}
        self.notice = Notice()
        self.status = widgets.HTML()
        self.preview = widgets.HTML()
        self.save_link = DownloadLink()
        self.use_button = widgets.Button(description="Validate and use", button_style="primary", icon="check",
                                         tooltip="Validate and hand this project to Permutations and Run",
                                         layout=widgets.Layout(width="170px"))
        self.use_button.on_click(lambda _b: self.use())
        self.upload = widgets.FileUpload(accept=".json", multiple=False, description="Load JSON",
                                         layout=widgets.Layout(width="170px"))
        self.upload.observe(self._on_upload, names="value")
        self.samples = sample_projects()
        self.sample_buttons = [self._sample_button(title) for title in self.samples]
        self.clear_button = widgets.Button(description="Clear form", icon="eraser",
                                           layout=widgets.Layout(width="120px"))
        self.clear_button.on_click(lambda _b: self.fill({}))
        self._filling = False
        for row in self.rows.values():
            row.input.observe(self._on_change, names="value")
        self.rows["country"].input.observe(self._on_country, names="value")
        self.widget = self._layout()
        saved = ctx.workspace.get().get("project")
        self.fill(saved if isinstance(saved, dict) else {})

    # ---- layout ---------------------------------------------------------------------------------------------
    def _sample_button(self, title: str) -> widgets.Button:
        button = widgets.Button(description=title, icon="file", tooltip=f"Fill the form with {title}",
                                layout=widgets.Layout(width="auto"))
        button.on_click(lambda _b, t=title: self.load_sample(t))
        return button

    def _layout(self) -> widgets.Widget:
        sections = []
        for title, names in SECTIONS:
            cells = [w for name in names for w in self.rows[name].widgets()]
            sections += [heading(title, 3), widgets.GridBox(cells, layout=widgets.Layout(
                grid_template_columns="170px 160px 140px 300px", grid_gap="2px 8px", align_items="center"))]
        samples = widgets.HBox([widgets.HTML('<span class="p1-muted">Samples:</span>'), *self.sample_buttons],
                               layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        form = widgets.VBox([samples, *sections], layout=widgets.Layout(width="800px"))
        side = widgets.VBox([heading("Derived preview"), self.status, self.preview,
                             widgets.HBox([self.use_button, self.upload]),
                             widgets.HBox([self.save_link, self.clear_button],
                                          layout=widgets.Layout(align_items="center", margin="6px 0 0 0"))],
                            layout=widgets.Layout(width="420px", margin="0 0 0 16px"))
        intro = widgets.HTML('<span class="p1-muted">Enter the data-centre lease. Fields marked * are required; '
                             "empty optional fields take the default shown. Rates are decimals "
                             "(0.02 = 2%) or typed with a % sign.</span>")
        return page("Projects", self.ctx.user, intro, self.notice, widgets.HBox([form, side]))

    # ---- form <-> data --------------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        """The project as entered: the fields that have a value."""
        return {name: raw for name, row in self.rows.items() if (raw := row.raw()) is not _EMPTY}

    def fill(self, data: Mapping[str, Any]) -> None:
        """Show a project (a mapping of fields); fields it lacks are cleared."""
        self._filling = True
        try:
            for name, row in self.rows.items():
                row.set(data.get(name))
        finally:
            self._filling = False
        self.validate()

    def load_sample(self, title: str) -> None:
        """Fill the form with a sample project (one click)."""
        self.load_json_text(self.samples[title].read_text(encoding="utf-8"), self.samples[title].name)

    def load_json_text(self, text: str, name: str = "project.json") -> None:
        """Fill the form from project JSON; fields the form does not know are reported, not dropped silently."""
        try:
            data = json.loads(text)
        except ValueError as error:
            self.notice.error(f"{name} is not valid JSON: {error}")
            return
        if not isinstance(data, dict):
            self.notice.error(f"{name} must hold a JSON object of project fields")
            return
        unknown = sorted(set(data) - set(self.rows))
        self.fill(data)
        if unknown:
            self.notice.warn(f"Loaded {name}; ignored unknown fields: {', '.join(unknown)}")
        else:
            self.notice.info(f"Loaded {name}.")

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        try:
            text = bytes(item["content"]).decode("utf-8")
        except UnicodeDecodeError:
            self.notice.error(f"{item.get('name', 'the file')} is not UTF-8 text")
            return
        self.load_json_text(text, item.get("name", "project.json"))

    def _on_country(self, change: dict[str, Any]) -> None:
        if not self._filling and change["new"] in COUNTRY_CURRENCY:
            self.rows["currency"].input.value = COUNTRY_CURRENCY[change["new"]]

    def _on_change(self, _change: dict[str, Any]) -> None:
        if not self._filling:
            self.validate()

    # ---- validation -----------------------------------------------------------------------------------------
    def validate(self) -> Project | None:
        """Validate the form: messages beside the fields, the derived preview, the save link."""
        project, errors = validate_project(self.data())
        self.project = project
        self.errors = {}
        for e in errors:
            self.errors.setdefault(e.field, e.message)
        currency = self.rows["currency"].raw()
        currency = currency if isinstance(currency, str) else None
        for name, row in self.rows.items():
            row.show(self.errors.get(name), currency)
        if project is None:
            n = len(errors)
            self.status.value = (f'<span class="p1-msg p1-msg-error">{n} problem{"s" if n != 1 else ""} to fix '
                                 "before the derived figures can be shown</span>")
            self.preview.value = ""
            self.save_link.clear()
            return None
        self.status.value = f'<span class="p1-msg p1-msg-ok">✓ Valid: {esc(project.title)}</span>'
        self.preview.value = kv_table(derived_rows(project, derive(project)))
        content = (json.dumps(self.data(), indent=2) + "\n").encode()
        self.save_link.offer(content, f"{slug(project.title)}.json", "application/json", "Save project JSON")
        return project

    def use(self) -> Project | None:
        """Validate through the service (flags apply) and hand the project to the other dashboards."""
        data = self.data()
        try:
            project, _derived = service.validate_project(self.ctx.store, data)
        except Phase1Error as error:
            self.validate()
            self.notice.failure("use this project", error)
            return None
        self.ctx.workspace.update(project=data)
        self.notice.ok(f"{project.title} is valid and is now the project for Permutations and Run.")
        return project


def projects_dashboard(ctx: AppContext | None = None) -> widgets.Widget:
    """The Projects page for Voila (``ctx`` defaults to the served context)."""
    return ProjectsDashboard(ctx or AppContext.from_env(warm=ProjectsDashboard)).widget

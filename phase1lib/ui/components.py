"""Shared widgets: the page style and navigation, notices, a sortable table, chart images, downloads.

All of them are plain ipywidgets (no extension JavaScript beyond what ipywidgets ships), so they work
offline in Voila and can be built, filled and clicked by plain pytest without a browser.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from ..errors import InputError, Phase1Error
from .format import TIER_COLOURS, esc, tier_slug

PAGES = (("Projects", "Projects.ipynb"), ("Permutations", "Permutations.ipynb"), ("Run", "Run.ipynb"),
         ("Securitisation", "Securitisation.ipynb"), ("Ops Monitor", "Ops_Monitor.ipynb"))

_TIER_CSS = "\n".join(
    f".p1-tier-{tier_slug(t)} {{ background: {c}; color: {'#333' if t in ('Not viable', 'Gold') else '#fff'}; }}"
    for t, c in TIER_COLOURS.items())

STYLE_CSS = """
.p1-app { font-family: -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; color: #1f2933;
          max-width: 1880px; }
.p1-app .p1-chart .bqplot { overflow: visible; }
.p1-tip { font-size: 12px; line-height: 1.35; padding: 4px 6px; background: #fff; border: 1px solid #cbd2d9;
          border-radius: 4px; }
.p1-nm { font-size: 12px; line-height: 1.5; }
.p1-near .p1-card { padding: 4px 10px; }
.p1-grid.p1-compare td, .p1-grid.p1-compare th { text-align: left; }
.p1-grid.p1-compare tr.p1-diff td { background: #fff8db; }
.p1-grid.p1-compare td.p1-diff-cell { font-weight: 700; color: #7a4a00; }
.p1-grid.p1-compare tr.p1-section td { font-weight: 600; color: #334e68; background: #f0f4f8; text-transform: uppercase;
           letter-spacing: 0.04em; font-size: 11px; }
.p1-chip { background: #e8f1fa; color: #1f4e79; border-radius: 12px; }
.p1-legend { font-size: 12px; color: #334e68; display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 2px 0 0 8px; }
.p1-legend-item { display: inline-flex; align-items: center; gap: 5px; white-space: nowrap; }
.p1-swatch { display: inline-block; width: 10px; height: 10px; }
.p1-nav { display: flex; gap: 4px; align-items: center; border-bottom: 2px solid #1f4e79; padding: 4px 0 6px 0;
          margin-bottom: 8px; }
.p1-nav a { padding: 4px 10px; border-radius: 4px; text-decoration: none; color: #1f4e79; font-weight: 500; }
.p1-nav a.p1-current { background: #1f4e79; color: #fff; }
.p1-nav .p1-brand { font-weight: 700; color: #1f4e79; margin-right: 12px; font-size: 15px; }
.p1-nav .p1-user { margin-left: auto; color: #52606d; font-size: 12px; }
.p1-h2 { font-size: 16px; font-weight: 600; color: #1f4e79; margin: 10px 0 4px 0; }
.p1-h3 { font-size: 13px; font-weight: 600; color: #334e68; margin: 8px 0 2px 0; text-transform: uppercase;
         letter-spacing: 0.04em; }
.p1-muted { color: #7b8794; font-size: 12px; }
.p1-msg { font-size: 12px; line-height: 1.3; }
.p1-msg-error { color: #b42318; }
.p1-msg-ok { color: #1e7b34; }
.p1-notice { padding: 6px 10px; border-radius: 4px; font-size: 13px; margin: 4px 0; }
.p1-notice-error { background: #fdecea; color: #8a1c12; border-left: 4px solid #b42318; }
.p1-notice-ok { background: #e8f5e9; color: #1b5e20; border-left: 4px solid #2e7d32; }
.p1-notice-info { background: #e8f1fa; color: #1f4e79; border-left: 4px solid #2b7bb9; }
.p1-notice-warn { background: #fff4e5; color: #7a4a00; border-left: 4px solid #e69500; }
.p1-notice ul { margin: 2px 0 0 0; padding-left: 18px; }
.p1-tier { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11px; font-weight: 600;
           white-space: nowrap; }
%TIERS%
.p1-kv { border-collapse: collapse; font-size: 13px; }
.p1-kv td { padding: 2px 10px 2px 0; vertical-align: top; }
.p1-kv td.p1-k { color: #52606d; white-space: nowrap; }
.p1-kv td.p1-v { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
.p1-kv.p1-kv-text td.p1-v { text-align: left; }
.p1-app a:not(.p1-nav a) { color: #1f4e79; text-decoration: underline; }
.p1-ok { color: #1e7b34; font-weight: 600; }
.p1-bad { color: #b42318; font-weight: 600; }
.p1-grid { border-collapse: collapse; font-size: 12px; }
.p1-grid th { text-align: right; color: #52606d; font-weight: 600; padding: 3px 8px;
              border-bottom: 1px solid #cbd2d9; white-space: nowrap; }
.p1-grid td { text-align: right; padding: 3px 8px; border-bottom: 1px solid #eef0f2;
              font-variant-numeric: tabular-nums; white-space: nowrap; }
.p1-grid th.p1-left, .p1-grid td.p1-left { text-align: left; }
.p1-grid td.p1-bad { color: #b42318; font-weight: 600; }
.p1-table .p1-th button, .p1-table button.p1-th { font-weight: 600; color: #334e68; background: #f0f4f8;
           font-size: 12px; }
.p1-row { display: grid; align-items: center; height: 28px; }
.p1-cell { font-size: 12px; font-variant-numeric: tabular-nums; border-bottom: 1px solid #eef0f2;
           padding: 0 6px; white-space: nowrap; overflow: hidden; line-height: 27px; }
.p1-cell.p1-right { text-align: right; }
.p1-rowbox .widget-html-content { display: block; line-height: normal; }
.p1-selected .p1-cell { background: #fff8db; }
.p1-figure { font-size: 26px; font-weight: 600; color: #1f2933; font-variant-numeric: tabular-nums; }
.p1-figure-label { font-size: 11px; color: #7b8794; text-transform: uppercase; letter-spacing: 0.04em; }
.p1-card { border: 1px solid #e4e7eb; border-radius: 6px; padding: 6px 12px; margin: 0 8px 8px 0;
           background: #fff; }
.p1-go { font-size: 22px; font-weight: 700; padding: 4px 14px; border-radius: 6px; color: #fff;
         display: inline-block; }
.p1-go-GO { background: #2e7d32; }
.p1-go-NO-GO { background: #b42318; }
.p1-download a, a.p1-download { display: inline-block; padding: 5px 12px; border-radius: 4px;
           background: #1f4e79; color: #fff !important; text-decoration: none; font-size: 13px; }
""".replace("%TIERS%", _TIER_CSS)


_SHARED_LAYOUTS: dict[tuple[tuple[str, str], ...], widgets.Layout] = {}


def shared_layout(**kwargs: str) -> widgets.Layout:
    """One Layout model for every widget laid out the same way (a form's labels, units, messages): a page of
    200 fields sends and draws 200 fewer models. Only for layouts nobody changes afterwards."""
    key = tuple(sorted(kwargs.items()))
    layout = _SHARED_LAYOUTS.get(key)
    if layout is None or getattr(layout, "comm", None) is None:
        layout = _SHARED_LAYOUTS[key] = widgets.Layout(**kwargs)
    return layout


def style() -> widgets.HTML:
    """The shared CSS, as an HTML widget placed once at the top of every dashboard."""
    return widgets.HTML(f"<style>{STYLE_CSS}</style>", layout=widgets.Layout(height="0px", margin="0"))


def nav_bar(current: str, user: str | None) -> widgets.HTML:
    """Links to the five dashboards (relative, so they work under ``phase1 serve`` and plain Voila)."""
    links = "".join(
        f'<a href="{esc(href)}" class="{"p1-current" if name == current else ""}">{esc(name)}</a>'
        for name, href in PAGES)
    who = f"Signed in as <b>{esc(user)}</b>" if user else "Not signed in"
    return widgets.HTML(f'<div class="p1-nav"><span class="p1-brand">Phase-1 Workbench</span>{links}'
                        f'<span class="p1-user">{who}</span></div>')


def page(current: str, user: str | None, *children: widgets.Widget) -> widgets.VBox:
    """A dashboard page: style, navigation, then the content."""
    box = widgets.VBox([style(), nav_bar(current, user), *children])
    box.add_class("p1-app")
    return box


def heading(text: str, level: int = 2) -> widgets.HTML:
    return widgets.HTML(f'<div class="p1-h{level}">{esc(text)}</div>')


def plain_text(markup: str) -> str:
    """Widget HTML as the reader sees it: tags removed, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def error_text(error: BaseException) -> str:
    """A user-facing message for an error: every field problem of an InputError, else its message."""
    if isinstance(error, InputError):
        return "; ".join(f"{e.field}: {e.message}" for e in error.errors)
    if isinstance(error, Phase1Error):
        return str(error)
    return f"unexpected error ({type(error).__name__}): {error}"


class Notice(widgets.HTML):
    """A one-line (or listed) status message: ok, info, warn or error; empty when cleared."""

    kind = ""

    def show(self, kind: str, text: str, items: Sequence[str] = ()) -> None:
        self.kind = kind
        listed = "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>" if items else ""
        self.value = f'<div class="p1-notice p1-notice-{kind}">{esc(text)}{listed}</div>'

    def markup(self, kind: str, html_text: str) -> None:
        """Show already-escaped HTML (built with :func:`~phase1lib.ui.format.esc` by the caller)."""
        self.kind = kind
        self.value = f'<div class="p1-notice p1-notice-{kind}">{html_text}</div>'

    def ok(self, text: str, items: Sequence[str] = ()) -> None:
        self.show("ok", text, items)

    def info(self, text: str, items: Sequence[str] = ()) -> None:
        self.show("info", text, items)

    def warn(self, text: str, items: Sequence[str] = ()) -> None:
        self.show("warn", text, items)

    def error(self, text: str, items: Sequence[str] = ()) -> None:
        self.show("error", text, items)

    def failure(self, what: str, error: BaseException) -> None:
        """Show an error of an action: 'Could not <what>: ...' listing every field problem."""
        if isinstance(error, InputError):
            self.error(f"Could not {what}:", [f"{e.field}: {e.message}" for e in error.errors])
        else:
            self.error(f"Could not {what}: {error_text(error)}")

    def clear(self) -> None:
        self.kind = ""
        self.value = ""

    @property
    def text(self) -> str:
        """The message without markup (for tests and logs)."""
        return plain_text(self.value)


class BadRecords(widgets.HTML):
    """Stored runs that cannot be shown, each named with what is wrong and how to remove it (a warning box;
    empty when there are none), so that one bad record never takes a dashboard down with it."""

    def show(self, bad: Sequence[Mapping[str, Any]]) -> None:
        if not bad:
            self.value = ""
            return
        items = "".join(f"<li><code>{esc(b.get('run_id', '?'))}</code>: {esc(b.get('problem', 'unreadable'))} "
                        f"(remove it with <code>phase1 runs delete {esc(b.get('run_id', '?'))}</code>)</li>"
                        for b in bad)
        self.value = (f'<div class="p1-notice p1-notice-warn">{len(bad)} stored run(s) cannot be shown:'
                      f"<ul>{items}</ul></div>")

    @property
    def text(self) -> str:
        return plain_text(self.value)


def kv_table(rows: Sequence[tuple[str, str]], css: str = "p1-kv", numeric: bool = True) -> str:
    """Label / value pairs as an HTML table (values are already-formatted HTML).

    Figures are right-aligned so digits line up; ``numeric=False`` left-aligns text such as states and names.
    """
    cls = css if numeric else f"{css} p1-kv-text"
    body = "".join(f'<tr><td class="p1-k">{esc(k)}</td><td class="p1-v">{v}</td></tr>' for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def grid_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,),
               empty: str = "Nothing yet.") -> str:
    """A compact HTML table; cells are HTML; columns in ``left`` are left-aligned, the rest right."""
    if not rows:
        return f'<div class="p1-muted">{esc(empty)}</div>'

    def cls(i: int) -> str:
        return ' class="p1-left"' if i in left else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="p1-grid"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def figure_card(label: str, value: str) -> str:
    """A headline figure with its label (status tiles)."""
    return (f'<div class="p1-card"><div class="p1-figure-label">{esc(label)}</div>'
            f'<div class="p1-figure">{value}</div></div>')


# ---- sortable table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One table column: header label, cell HTML, sort value (None sorts last) and layout."""

    key: str
    label: str
    render: Callable[[dict[str, Any]], str]
    sort_value: Callable[[dict[str, Any]], Any]
    width: str = "90px"
    align: str = "right"


class SortableTable(widgets.VBox):
    """A table of rows with clickable headers (sort ascending / descending) and an Open button per row.

    ``rows`` are dicts; ``on_open(row)`` runs when a row's button is clicked; ``open_label(row)`` names it. Each
    row's cells are one HTML widget (a CSS grid with the header's column widths), so a Top-20 is 40 widgets
    rather than 340: the page reaches the browser and draws there in a fraction of the time.
    """

    def __init__(self, columns: Sequence[Column], on_open: Callable[[dict[str, Any]], None] | None = None,
                 open_label: Callable[[dict[str, Any]], str] = lambda row: "Open", open_width: str = "64px"):
        super().__init__()
        self.columns = list(columns)
        self.on_open = on_open
        self.open_label = open_label
        self.open_width = open_width
        self.rows: list[dict[str, Any]] = []
        self.sort_key: str | None = None
        self.descending = False
        self.selected: dict[str, Any] | None = None
        self.header = [self._header_button(c) for c in self.columns]
        self._open_buttons: list[widgets.Button] = []
        self._row_html: list[widgets.HTML] = []
        self.add_class("p1-table")
        self._render()

    @property
    def _template(self) -> str:
        return " ".join(c.width for c in self.columns)

    def _header_button(self, column: Column) -> widgets.Button:
        button = widgets.Button(description=column.label, tooltip=f"Sort by {column.label}",
                                layout=widgets.Layout(width="auto", height="28px", padding="0 4px"))
        button.add_class("p1-th")
        button.on_click(lambda _b, key=column.key: self.toggle_sort(key))
        return button

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Replace the columns (e.g. another currency); rows and sort are reset."""
        self.columns = list(columns)
        self.header = [self._header_button(c) for c in self.columns]
        self.rows, self.sort_key, self.selected = [], None, None
        self._render()

    def set_rows(self, rows: Sequence[dict[str, Any]], keep_sort: bool = True) -> None:
        """Replace the rows (keeping the current sort unless told otherwise)."""
        self.rows = list(rows)
        if not keep_sort:
            self.sort_key = None
        self.selected = None
        self._apply_sort()

    def toggle_sort(self, key: str) -> None:
        """Sort by ``key``; a second click on the same column reverses the order."""
        if self.sort_key == key:
            self.descending = not self.descending
        else:
            self.sort_key, self.descending = key, False
        self._apply_sort()

    def sort_by(self, key: str, descending: bool = False) -> None:
        self.sort_key, self.descending = key, descending
        self._apply_sort()

    def _apply_sort(self) -> None:
        """Order the rows by the sort column; rows without a value always come last."""
        if self.sort_key is not None:
            column = next(c for c in self.columns if c.key == self.sort_key)
            present = [r for r in self.rows if column.sort_value(r) is not None]
            missing = [r for r in self.rows if column.sort_value(r) is None]
            present.sort(key=column.sort_value, reverse=self.descending)
            self.rows = present + missing
        self._render()

    def select(self, row: dict[str, Any] | None) -> None:
        """Highlight ``row`` (the structure shown below the table)."""
        self.selected = row
        for r, html_row in zip(self.rows, self._row_html, strict=False):
            (html_row.add_class if r is row else html_row.remove_class)("p1-selected")

    def _row_markup(self, row: dict[str, Any]) -> str:
        cells = "".join(f'<div class="p1-cell{" p1-right" if c.align == "right" else ""}" data-key="{esc(c.key)}">'
                        f"{c.render(row)}</div>" for c in self.columns)
        return f'<div class="p1-row" style="grid-template-columns: {self._template}">{cells}</div>'

    def _render(self) -> None:
        for column, button in zip(self.columns, self.header, strict=True):
            arrow = (" ▼" if self.descending else " ▲") if column.key == self.sort_key else ""
            button.description = column.label + arrow
        while len(self._row_html) < len(self.rows):
            self._add_row_widgets()
        head = widgets.GridBox(self.header, layout=widgets.Layout(grid_template_columns=self._template,
                                                                  grid_gap="0px", width="auto"))
        children: list[widgets.Widget] = [widgets.HTML(""), head]
        for i, row in enumerate(self.rows):
            self._open_buttons[i].description = self.open_label(row)
            self._row_html[i].value = self._row_markup(row)
            (self._row_html[i].add_class if row is self.selected else self._row_html[i].remove_class)("p1-selected")
            children += [self._open_buttons[i], self._row_html[i]]
        self.children = [widgets.GridBox(children, layout=widgets.Layout(
            grid_template_columns=f"{self.open_width} auto", grid_gap="0px 0px", align_items="center",
            width="auto"))]

    def _add_row_widgets(self) -> None:
        index = len(self._row_html)
        button = widgets.Button(layout=shared_layout(width="58px", height="26px", margin="1px 4px 1px 0"))
        button.on_click(lambda _b, i=index: self._open(i))
        self._open_buttons.append(button)
        row = widgets.HTML(layout=shared_layout(height="28px"))
        row.add_class("p1-rowbox")
        self._row_html.append(row)

    def _open(self, index: int) -> None:
        if index < len(self.rows) and self.on_open is not None:
            self.on_open(self.rows[index])

    def open_row(self, index: int) -> None:
        """Click the Open button of the row at ``index`` (0-based, in the displayed order)."""
        self._open_buttons[index].click()

    def cell_html(self, row_index: int, key: str) -> str:
        """The markup of one displayed cell."""
        column = next(c for c in self.columns if c.key == key)
        return column.render(self.rows[row_index])

    def cell_text(self, row_index: int, key: str) -> str:
        """The text of one displayed cell (markup removed)."""
        return plain_text(self.cell_html(row_index, key))


# ---- charts and downloads ------------------------------------------------------------------------------------


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib Figure (Agg canvas: no display, no pyplot state, thread-safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


class Chart(widgets.Image):
    """A chart as a PNG image widget; ``data`` keeps what was plotted (for tests and tooltips)."""

    def __init__(self, width: str = "520px", **kwargs: Any):
        super().__init__(format="png", layout=widgets.Layout(width=width, height="auto"), **kwargs)
        self.data: dict[str, Any] = {}

    def show(self, fig: Any, data: dict[str, Any] | None = None) -> None:
        self.value = figure_png(fig)
        self.data = data or {}

    def clear(self) -> None:
        self.value = b""
        self.data = {}


def data_url(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def decode_data_url(html_text: str) -> tuple[bytes, str, str]:
    """(content, file name, mime) of the first ``<a download href="data:...">`` in a widget's HTML."""
    m = re.search(r'href="data:([^;"]+);base64,([^"]+)"[^>]*download="([^"]+)"', html_text)
    if not m:
        raise ValueError("no data-URL download link in this HTML")
    return base64.b64decode(m.group(2)), m.group(3), m.group(1)


def _size(n: int) -> str:
    """A file size as people read it: 812 bytes, 2.5 KB, 24 KB, 1.3 MB."""
    if n < 1024:
        return f"{n} bytes"
    if n < 10 * 1024:
        return f"{n / 1024:.1f} KB"
    if n < 1024 * 1024:
        return f"{n / 1024:,.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


class DownloadLink(widgets.HTML):
    """Hands a file to the browser through the widget connection: a ``data:`` URL link, nothing on disk."""

    def offer(self, content: bytes, filename: str, mime: str, label: str | None = None) -> None:
        size = _size(len(content))
        text = esc(label or f"Save {filename}")
        self.value = (f'<span class="p1-download"><a href="{data_url(content, mime)}" download="{esc(filename)}" '
                      f'title="{esc(filename)}">⤓ {text}</a> <span class="p1-muted">{size}</span></span>')

    def clear(self) -> None:
        self.value = ""

    def payload(self) -> tuple[bytes, str, str]:
        """(content, file name, mime) decoded back from the link, as a browser would save it."""
        return decode_data_url(self.value)

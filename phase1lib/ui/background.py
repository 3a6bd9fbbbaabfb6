"""One engine task in the background of a page (a run, a portfolio): its start and cancel buttons, its progress
bar fed by the engine's chunk progress, and the thread it runs on, so the page stays live while it runs; and
:func:`on_kernel_loop`, which brings a task's result back to the thread that handles the page's events.

The engine checks the cancel event between chunks; widget updates from the thread reach the browser as they
happen. A page composes one :class:`BackgroundTask` and keeps what the task means (its inputs, its answer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from IPython import get_ipython

#: Seconds between two progress-bar updates (the last one always shows).
PROGRESS_EVERY_S = 0.1
MUTED_START = '<span class="p1-muted">Not started</span>'


def on_kernel_loop(fn: Callable[[], Any]) -> None:
    """Call ``fn`` on the IO loop of the kernel this code runs in (where widget events are handled), so that a
    background thread's result never changes a page's state while the page handles a click or a hover; at once
    outside a kernel (tests, scripts)."""
    loop = getattr(getattr(get_ipython(), "kernel", None), "io_loop", None)
    if loop is None:
        fn()
    else:
        loop.add_callback(fn)


class BackgroundTask:
    """Start / Cancel buttons, a progress bar and its text, over one thread at a time."""

    def __init__(self, label: str, on_start: Callable[[], Any], width: str = "110px"):
        self.run_button = widgets.Button(description=label, button_style="primary", icon="play",
                                         layout=widgets.Layout(width=width))
        self.cancel_button = widgets.Button(description="Cancel", button_style="warning", icon="stop",
                                            disabled=True, layout=widgets.Layout(width="110px"))
        self.run_button.on_click(lambda _b: on_start())
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="",
                                              layout=widgets.Layout(width="420px"))
        self.progress_text = widgets.HTML(MUTED_START)
        self.cancel_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def launch(self, work: Callable[..., None], *args: Any, name: str) -> None:
        """Run ``work(*args)`` on a fresh thread with a fresh cancel event; the buttons come back when it ends."""
        self.cancel_event = threading.Event()
        self.progress.value, self.progress.bar_style = 0.0, "info"
        self.progress_text.value = '<span class="p1-muted">Starting…</span>'
        self.run_button.disabled, self.cancel_button.disabled = True, False

        def body() -> None:
            try:
                work(*args)
            finally:
                self.run_button.disabled, self.cancel_button.disabled = False, True

        self._thread = threading.Thread(target=body, name=name, daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the engine to stop at the next chunk."""
        if self.running:
            self.cancel_event.set()
            self.cancel_button.disabled = True
            self.progress_text.value = '<span class="p1-muted">Cancelling…</span>'

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task ends (tests, notebooks); True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def on_progress(self, done: int, total: int) -> None:
        """The engine's progress callback: at most one update per :data:`PROGRESS_EVERY_S`, the last always."""
        now = time.monotonic()
        if done < total and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        share = done / total if total else 1.0
        self.progress.value = share
        self.progress_text.value = f"{done:,} / {total:,} permutations ({share:.0%})"

    def finished(self, text: str) -> None:
        self.progress.value, self.progress.bar_style = 1.0, "success"
        self.progress_text.value = text

    def stopped(self, style: str) -> None:
        """A cancelled ("warning") or failed ("danger") task."""
        self.progress.bar_style = style

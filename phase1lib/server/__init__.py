"""The Phase-1 server: one Jupyter Server with JupyterLab, Voila and the Phase-1 routes behind one login.

``phase1 serve`` (:func:`phase1lib.server.app.serve`) starts it. This package is also the jupyter_server
extension that adds the Phase-1 routes, the request-id and security headers, and the login gate in
front of every other route (see :mod:`phase1lib.server.security`).
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "phase1lib.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .extension import load

    load(serverapp)

"""Jupyter's identity provider backed by phase1lib.auth: JupyterLab and Voila see the Phase-1 session.

A request is a Jupyter user only with an elevated Phase-1 session (password and TOTP), or in dev from
loopback through the dev bridge. Jupyter's token and password logins are off; its ``/login`` and
``/logout`` URLs are Phase-1 routes that lead to ``/auth/login``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web
from traitlets import default

from .handlers.auth import JupyterLoginRedirect, JupyterLogout


class Phase1IdentityProvider(IdentityProvider):
    """get_user from the Phase-1 session cookie; no Jupyter token."""

    @default("token")
    def _token_default(self) -> str:
        self.token_generated = False
        return ""

    @default("login_handler_class")
    def _default_login_handler_class(self) -> type:
        return JupyterLoginRedirect

    @default("logout_handler_class")
    def _default_logout_handler_class(self) -> type:
        return JupyterLogout

    need_token = False

    def get_handlers(self) -> list[tuple[str, Any]]:
        return []  # /login and /logout are registered by the Phase-1 extension

    def get_user(self, handler: web.RequestHandler) -> User | None:
        ctx = handler.settings.get("phase1")
        if ctx is None:
            return None
        session = ctx.admin_or_none(handler)
        if session is None:
            return None
        name = session.username
        return User(username=name, name=name, display_name=name, initials=name[:2].upper())

    def is_token_authenticated(self, handler: web.RequestHandler) -> bool:
        return False

    def should_check_origin(self, handler: web.RequestHandler) -> bool:
        return True

    @property
    def auth_enabled(self) -> bool:
        return True

    @property
    def login_available(self) -> bool:
        return True

    def validate_security(self, app: Any, ssl_options: dict[str, Any] | None = None) -> None:
        """Jupyter's warnings about tokens and passwords do not apply: Phase-1 auth guards every route."""

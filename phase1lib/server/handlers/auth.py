"""Login with password and TOTP, logout, Jupyter's own login and logout URLs, and the landing page."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from ...errors import AuthError, ForbiddenError, LockedError
from ..security import FORM_CSP, deny
from .base import Phase1Handler

#: The home page lists the dashboards in the analyst's order; other notebooks follow alphabetically.
FLOW_ORDER = ("Projects", "Permutations", "Run", "Securitisation", "Ops_Monitor")


# ---- login, MFA, logout --------------------------------------------------------------------------------


class LoginHandler(Phase1Handler):
    csp = FORM_CSP

    def get(self) -> None:
        sid = self.ctx.session_id(self)
        session = self.ctx.auth.get_session(sid) if sid else None
        if session is not None and session.elevated and not self.get_argument("again", ""):
            self.redirect(self.safe_next(f"{self.settings.get('base_url', '/')}phase1"))
            return
        self.render_page("login.html", next=self.safe_next(""), error=None, username="",
                         logged_out=bool(self.get_argument("logged_out", "")), dev=self.dev_hint())

    def dev_hint(self) -> bool:
        return self.ctx.auth.dev_admin_allowed(self.request.remote_ip)

    async def post(self) -> None:
        data = await self.in_worker(self.form_or_json)
        username, password = data.get("username"), data.get("password")
        old = self.ctx.session_id(self)
        if old:
            self.ctx.auth.logout(old)  # a new login never reuses an earlier session id
        try:
            session = await self.in_auth_pool(self.ctx.auth.login_password, username, password,
                                              self.request.remote_ip)
        except (AuthError, LockedError) as error:
            self.ctx.clear_session_cookie(self)
            if self.wants_html():
                if isinstance(error, LockedError):
                    self.set_header("Retry-After", str(error.retry_after_s))
                self.render_page("login.html", status=error.status, next=self.safe_next(""), error=str(error),
                                 username=username if isinstance(username, str) else "", logged_out=False,
                                 dev=self.dev_hint())
                return
            raise
        self.ctx.set_session_cookie(self, session.session_id)
        nxt = self.safe_next("")
        if self.wants_html():
            self.redirect(f"{self.settings.get('base_url', '/')}auth/mfa"
                          + (f"?{urlencode({'next': nxt})}" if nxt else ""), status=303)
            return
        self.write_json({"state": session.state, "username": session.username, "mfa": "/auth/mfa",
                         "expires_at": session.expires_at,
                         "message": "password accepted: POST the 6-digit code of your authenticator app to "
                                    "/auth/mfa (form field code) within 5 minutes"})


class MfaHandler(Phase1Handler):
    csp = FORM_CSP

    def _pending(self) -> bool:
        sid = self.ctx.session_id(self)
        session = self.ctx.auth.get_session(sid) if sid else None
        return session is not None and not session.elevated and not session.dev_bridge

    def get(self) -> None:
        if not self._pending():
            nxt = self.safe_next("")
            self.redirect(f"{self.settings.get('base_url', '/')}auth/login"
                          + (f"?{urlencode({'next': nxt})}" if nxt else ""))
            return
        self.render_page("mfa.html", next=self.safe_next(""), error=None)

    async def post(self) -> None:
        code = (await self.in_worker(self.form_or_json)).get("code")
        sid = self.ctx.session_id(self)
        try:
            session = await self.in_auth_pool(self.ctx.auth.verify_mfa, sid or "",
                                              code if isinstance(code, str) else "", self.request.remote_ip)
        except (AuthError, LockedError) as error:
            pending = self._pending()
            if not pending:
                self.ctx.clear_session_cookie(self)
            if self.wants_html():
                if isinstance(error, LockedError):
                    self.set_header("Retry-After", str(error.retry_after_s))
                page = "mfa.html" if pending else "login.html"
                self.render_page(page, status=error.status, next=self.safe_next(""), error=str(error),
                                 username="", logged_out=False, dev=False)
                return
            raise
        self.ctx.set_session_cookie(self, session.session_id)
        if self.wants_html():
            self.redirect(self.safe_next(f"{self.settings.get('base_url', '/')}phase1"), status=303)
            return
        self.write_json({"state": session.state, "username": session.username, "expires_at": session.expires_at,
                         "message": "logged in"})


class LogoutHandler(Phase1Handler):
    csp = FORM_CSP

    def post(self) -> None:
        sid = self.ctx.session_id(self)
        ended = self.ctx.auth.logout(sid) if sid else False
        self.ctx.clear_session_cookie(self)
        if self.wants_html():
            self.redirect(f"{self.settings.get('base_url', '/')}auth/login?logged_out=1", status=303)
            return
        self.write_json({"logged_out": ended})


class JupyterLoginRedirect(Phase1Handler):
    def get(self) -> None:
        nxt = self.safe_next("")
        self.redirect(f"{self.settings.get('base_url', '/')}auth/login" + (f"?{urlencode({'next': nxt})}"
                                                                           if nxt else ""))


class JupyterLogout(Phase1Handler):
    def get(self) -> None:
        sid = self.ctx.session_id(self)
        if sid:
            self.ctx.auth.logout(sid)
        self.ctx.clear_session_cookie(self)
        self.redirect(f"{self.settings.get('base_url', '/')}auth/login?logged_out=1")

    def post(self) -> None:
        self.get()


# ---- landing page --------------------------------------------------------------------------------------


class HomeHandler(Phase1Handler):
    csp = FORM_CSP

    def authorise(self) -> None:
        """A browser without a session is sent to the login page (not answered JSON)."""
        try:
            super().authorise()
        except (AuthError, ForbiddenError) as error:
            deny(self, error)

    def get(self) -> None:
        session = self.session
        settings = self.ctx.settings
        folder = settings.dashboards_dir
        prefix = settings.dashboards_url_path
        base = self.settings.get("base_url", "/")
        dashboards = []
        found = folder.glob("*.ipynb") if folder.is_dir() else []
        for path in sorted(found, key=lambda p: (FLOW_ORDER.index(p.stem) if p.stem in FLOW_ORDER else 99, p.stem)):
            rel = f"{prefix}/{path.name}" if prefix else path.name
            dashboards.append({"name": path.stem.replace("_", " ").strip().title(),
                               "url": f"{base}voila/render/{quote(rel)}"})
        self.render_page("home.html", user=session.username, dev_bridge=session.dev_bridge,
                         dashboards=dashboards, dashboards_dir=str(folder), xsrf=self.xsrf_token.decode())


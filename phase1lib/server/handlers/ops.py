"""The operators' API (X-Admin-Token): status/full, canary, rollback, flags, run removal; and the public routes:
health, the route list, the OpenAPI document, the JSON 404 of unknown API paths, static files."""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import web

from ... import ops, service
from ...errors import FieldError, InputError, NotFoundError
from ...text import safe_display
from ..security import GateMixin, route_table
from .base import Phase1Handler

# ---- ops routes ----------------------------------------------------------------------------------------


class OpsHandler(Phase1Handler):
    """Routes for operators (the route table gives them auth "ops_token": X-Admin-Token, constant-time)."""

    @property
    def actor(self) -> str:
        return f"ops-token@{self.request.remote_ip}"


class StatusHandler(OpsHandler):
    async def get(self) -> None:
        await self.answer(self.status)

    def status(self) -> dict[str, Any]:
        status = ops.status_full(self.ctx.store, started_at=self.ctx.settings.started_at, process=ops.PROCESS_ID)
        status["server"] = {"app_env": self.ctx.settings.app_env, "runs_in_flight": self.ctx.runs_in_flight,
                            "max_pending_runs": self.ctx.settings.max_pending_runs,
                            "kernels": self.ctx.kernel_limits.describe()}
        return status


class CanaryHandler(OpsHandler):
    async def post(self) -> None:
        await self.answer(self.update)

    def update(self) -> dict[str, Any]:
        body = self.body_fields(("percentage", "reason"))
        return ops.update_canary(self.ctx.store, body.get("percentage"), body.get("reason"), self.actor,
                                 self.request_id)


class RollbackHandler(OpsHandler):
    async def post(self) -> None:
        await self.answer(self.roll_back)

    def roll_back(self) -> dict[str, Any]:
        body = self.body_fields(("target_percentage", "reason"))
        return ops.rollback(self.ctx.store, body.get("target_percentage", 0), body.get("reason"), self.actor,
                            self.request_id)


class FlagsHandler(OpsHandler):
    async def get(self) -> None:
        await self.answer(ops.get_flags, self.ctx.store)

    async def post(self) -> None:
        await self.answer(self.update)

    def update(self) -> dict[str, Any]:
        """The operations guide's body {"reverse_dscr_engine": true} (last writer wins), or the optimistic
        {"version": N, "changes": {...}} (a stale N is a 409); both audited."""
        body = self.json_body()
        if "version" not in body and "changes" not in body:
            return ops.update_flags(self.ctx.store, None, body, self.actor, self.request_id, field_prefix="")
        unknown = [FieldError(safe_display(k)[:64], "unknown field next to version / changes; send either "
                                                    "{\"flag\": true, ...} or {\"version\": N, \"changes\": {...}}")
                   for k in body if k not in ("version", "changes")]
        if unknown:
            raise InputError(unknown, "flag update")
        return ops.update_flags(self.ctx.store, body.get("version"), body.get("changes"), self.actor,
                                self.request_id)


class RunsDeleteHandler(OpsHandler):
    async def post(self) -> None:
        await self.answer(self.delete)

    def delete(self) -> dict[str, Any]:
        body = self.body_fields(("run_id", "reason"))
        return service.delete_run(self.ctx.store, body.get("run_id"), self.actor, self.request_id,
                                  body.get("reason"))


# ---- public routes -------------------------------------------------------------------------------------


class HealthHandler(Phase1Handler):
    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.ctx.health_executor, ops.public_health, self.ctx.store)
        self.write_json(result, status=200 if result["status"] == "ok" else 503)


class RouteListHandler(Phase1Handler):
    def get(self) -> None:
        everything = self.get_argument("all", "").lower() in ("1", "true", "yes")
        self.write_json(route_table(self.application, everything=everything))


class OpenAPIHandler(Phase1Handler):
    """The OpenAPI 3.1 document of the Phase-1 routes, built from the route table."""

    async def get(self) -> None:
        from ..openapi import document

        await self.answer(document, self.settings.get("base_url", "/"))


class ApiNotFoundHandler(Phase1Handler):
    def prepare(self) -> None:
        raise NotFoundError(f"no route {self.request.method} {self.request.path}; see /api/phase1/route-list")


# ---- static files --------------------------------------------------------------------------------------


class PublicStaticHandler(web.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


class AssetsHandler(GateMixin, web.StaticFileHandler):
    """Vendored assets (Font Awesome for the Voila template), for logged-in sessions only (the gate)."""


"""The business REST API of an elevated admin session: validate a project, presets and cardinality, run, the
session's Top-20 and its term sheets, and the single-structure calculator. Every action goes through
:mod:`phase1lib.service`, as the CLI and the dashboards do."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ... import service
from ...defaults import DEFAULT_TOPN, MAX_SEED
from ...engine.runner import RunResult
from ...errors import BusyError, FieldError, InputError, NotFoundError, unknown_fields
from ...presets import preset_ranges, preset_ruleset
from ...project import Project, parse_project
from ...ranges import precheck_guardrail
from ...workspace import Workspace
from .base import Phase1Handler

RUN_FIELDS = ("seed", "topn", "ranges", "preset", "project", "sample", "ruleset")


class BusinessHandler(Phase1Handler):
    """Routes of an elevated admin session (or, in dev from loopback, the dev bridge): the session's data, its
    validated project and last run (the route table gives them auth "session")."""

    @property
    def store(self):
        return self.ctx.store

    @property
    def workspace(self) -> Workspace:
        """The user's workspace: the same hand-over (project, last run) as the dashboards'."""
        return Workspace(self.ctx.store, self.session.username)

    def session_data(self) -> dict[str, Any]:
        return self.workspace.get()

    def remember(self, **updates: Any) -> None:
        self.workspace.update(**updates)

    def resolve_project(self, raw: Any) -> tuple[Project, str]:
        """The request's project, else the session's validated one, else the configured default sample."""
        if raw is not None:
            return _parse_project_field(raw), "request"
        stored = self.session_data().get("project")
        if stored:
            return parse_project(stored), "session"
        default = self.ctx.default_project()
        if default is not None:
            return default, "default"
        raise InputError([FieldError("project", "no project: send \"project\", or validate one first with POST "
                                                "/api/phase1/projects/validate")], "request")

    def optional_project(self) -> Project | None:
        stored = self.session_data().get("project")
        return parse_project(stored) if stored else None

    def last_run_id(self) -> str:
        run_id = self.session_data().get("last_run_id")
        if not run_id:
            raise NotFoundError("no run in this session yet: POST /api/phase1/run first")
        return str(run_id)

    def reserve_run(self) -> None:
        if not self.ctx.try_reserve_run():
            raise BusyError(f"{self.ctx.runs_in_flight} runs are in progress (the limit is "
                            f"{self.ctx.settings.max_pending_runs}); retry in a few seconds")


def _parse_project_field(raw: Any) -> Project:
    if not isinstance(raw, Mapping):
        raise InputError([FieldError("project", "must be a JSON object of project fields")], "request")
    try:
        return parse_project(raw)
    except InputError as error:
        raise InputError([FieldError(f"project.{e.field}", e.message) for e in error.errors], "project") from None


def _whole(value: Any, name: str, lo: int, hi: int, errors: list[FieldError], *, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value, ok = int(value), True
    if not ok or not lo <= value <= hi:
        what = "a whole number" + (" or null" if allow_none else "")
        errors.append(FieldError(name, f"must be {what} from {lo:,} to {hi:,} (got {value!r})"))
        return None
    return value


def parse_run_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """{"seed", "topn", "ranges" | "preset", "project", "sample"} checked, every problem at once."""
    errors = unknown_fields(body, RUN_FIELDS)
    seed = _whole(body.get("seed"), "seed", 0, MAX_SEED, errors, allow_none=True)
    topn = _whole(body.get("topn", DEFAULT_TOPN), "topn", 1, 1000, errors, allow_none=False)
    sample = _whole(body.get("sample"), "sample", 1, 10**9, errors, allow_none=True)
    ranges: Any = None
    has_ranges, has_preset = body.get("ranges") is not None, body.get("preset") is not None
    if has_ranges and has_preset:
        errors.append(FieldError("preset", "send either ranges or preset, not both"))
    elif has_preset:
        if not isinstance(body["preset"], str):
            errors.append(FieldError("preset", "must be a preset name (GET /api/phase1/permutations/presets)"))
        else:
            try:
                ranges = preset_ranges(body["preset"])
            except InputError as error:
                errors.extend(error.errors)
    elif has_ranges:
        if not isinstance(body["ranges"], Mapping):
            errors.append(FieldError("ranges", "must be a JSON object of range keys"))
        else:
            ranges = dict(body["ranges"])
    else:
        errors.append(FieldError("ranges", "required: ranges (an object of range keys) or preset (a name)"))
    ruleset = body.get("ruleset")
    if ruleset is not None and not isinstance(ruleset, str):
        errors.append(FieldError("ruleset", f"must be a ruleset version such as \"v2\" (got {ruleset!r})"))
    if errors:
        raise InputError(errors, "run request")
    preset = body["preset"] if has_preset and not has_ranges else None  # a v2 preset names its ruleset (D45)
    return {"seed": seed, "topn": topn, "sample": sample, "ranges": ranges, "project": body.get("project"),
            "ruleset": ruleset, "preset": preset}


def run_answer(result: RunResult, project: Project, source: str) -> dict[str, Any]:
    return {**result.summary(), "project": {"title": project.title, "source": source},
            "links": {"top20": "/api/phase1/securitisation/top20",
                      "export": "/api/phase1/securitisation/export/1"}}


class ValidateHandler(BusinessHandler):
    async def post(self) -> None:
        await self.answer(self.validate)

    def validate(self) -> tuple[dict[str, Any], int]:
        body = self.json_body()
        wrapped = set(body) in ({"project"}, {"project", "ruleset"}) and isinstance(body["project"], Mapping)
        data = body["project"] if wrapped else body
        try:
            project, derived = service.validate_project(self.store, data, body.get("ruleset") if wrapped else None)
        except InputError as error:
            return {**error.to_dict(), "valid": False, "request_id": self.request_id}, 400
        self.remember(project=project.to_dict())
        return {"valid": True, "project": project.to_dict(), "derived": derived}, 200


class PresetsHandler(BusinessHandler):
    async def get(self) -> None:
        await self.answer(lambda: {"presets": service.presets(self.store, self.optional_project())})


class CardinalityHandler(BusinessHandler):
    async def post(self) -> None:
        await self.answer(self.cardinality)

    def cardinality(self) -> dict[str, Any]:
        request = parse_run_request(self.body_fields(("ranges", "preset", "project", "ruleset"),
                                                     "cardinality request"))
        request["ruleset"] = request["ruleset"] or (preset_ruleset(request["preset"]) if request["preset"] else None)
        project = _parse_project_field(request["project"]) if request["project"] is not None \
            else self.optional_project()
        return service.cardinality(self.store, request["ranges"], project, request["ruleset"])


class RunHandler(BusinessHandler):
    async def post(self) -> None:
        request, project, source = await self.in_worker(self.run_request)
        self.reserve_run()
        try:
            result = await self.in_pool(service.execute_run, self.store, project, request["ranges"],
                                        seed=request["seed"], topn=request["topn"], sample=request["sample"],
                                        cancel=self.ctx.shutting_down, ruleset=request["ruleset"],
                                        preset=request["preset"], actor=self.session.username,
                                        request_id=self.request_id, compute=self.ctx.compute)
        finally:
            self.ctx.release_run()
        await self.answer(self.finish_run, result, project, source)

    def run_request(self) -> tuple[dict[str, Any], Project, str]:
        """The checked run body and its project; over-limit keys and grids are refused here, by counting."""
        request = parse_run_request(self.json_body())
        project, source = self.resolve_project(request["project"])
        precheck_guardrail(request["ranges"], request["sample"])
        return request, project, source

    def finish_run(self, result: RunResult, project: Project, source: str) -> dict[str, Any]:
        self.remember(last_run_id=result.run_id)
        return run_answer(result, project, source)


class Top20Handler(BusinessHandler):
    async def get(self) -> None:
        await self.answer(self.top20)

    def top20(self) -> dict[str, Any]:
        return service.run_top(self.store, self.last_run_id(), 20)


class ExportHandler(BusinessHandler):
    async def get(self, rank_text: str) -> None:
        fmt = self.get_argument("format", "xlsx").strip().lower()
        try:
            rank = int(rank_text)
        except ValueError:
            rank = 0
        if rank < 1:
            raise InputError([FieldError("rank", f"must be a whole number from 1 (got {rank_text!r})")], "export")
        run_id = await self.in_worker(self.last_run_id)
        content, filename, media_type = await self.in_pool(service.export_term_sheet, self.store, run_id, rank, fmt)
        self.set_header("Content-Type", media_type)
        disposition = "inline" if fmt == "json" else "attachment"
        self.set_header("Content-Disposition", f"{disposition}; filename=\"{filename}\"")
        self.finish(content)


class CalcHandler(BusinessHandler):
    async def post(self) -> None:
        body, project, source = await self.in_worker(self.calc_request)
        out = await self.in_pool(service.evaluate, self.store, project, body["structure"], body.get("seed"),
                                 body.get("ruleset"))
        await self.answer(lambda: {**out, "project": {"title": project.title, "source": source}})

    def calc_request(self) -> tuple[dict[str, Any], Project, str]:
        body = self.json_body()
        errors = unknown_fields(body, ("structure", "project", "seed", "ruleset"))
        seed = _whole(body.get("seed"), "seed", 0, MAX_SEED, errors, allow_none=True)
        if not isinstance(body.get("structure"), Mapping):
            errors.append(FieldError("structure", "required: an object with one value per range key"))
        if errors:
            raise InputError(errors, "calc request")
        project, source = self.resolve_project(body.get("project"))
        return {**body, "seed": seed}, project, source



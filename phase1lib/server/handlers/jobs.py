"""Background runs of the business API: submit, progress, result, cancel (jobs live in the store)."""

from __future__ import annotations

from typing import Any

from ... import service
from ...engine.runner import RunResult
from ...errors import ConflictError, NotFoundError
from ..jobs import public_job
from .api import BusinessHandler, parse_run_request


class SubmitHandler(BusinessHandler):
    async def post(self) -> None:
        await self.answer(self.submit, status=202)

    def submit(self) -> dict[str, Any]:
        request = parse_run_request(self.json_body())
        project, source = self.resolve_project(request["project"])
        plan = service.plan_run(self.store, project, request["ranges"], request["seed"], request["topn"],
                                request["sample"], request["ruleset"], request["preset"])
        permutations = plan.count
        self.reserve_run()
        try:  # the job runs this plan: planned once, so the run_id, seed and ruleset are the ones answered here
            job = self.ctx.jobs.submit(self.session.username, project, request["ranges"], seed=request["seed"],
                                       topn=request["topn"], sample=request["sample"], permutations=permutations,
                                       request_id=self.request_id, plan=plan)
        except BaseException:
            self.ctx.release_run()
            raise
        job_id = job["job_id"]
        return {"job_id": job_id, "state": job["state"], "permutations": permutations,
                "project": {"title": project.title, "source": source},
                "progress": f"/api/phase1/run/progress/{job_id}", "result": f"/api/phase1/run/result/{job_id}"}


class JobHandler(BusinessHandler):
    def job(self, job_id: str) -> dict[str, Any]:
        job = self.store.get_job(job_id)
        if job is None or job.get("owner") != self.session.username:
            raise NotFoundError(f"no job {job_id!r} of yours")
        return job


class ProgressHandler(JobHandler):
    async def get(self, job_id: str) -> None:
        await self.answer(lambda: public_job(self.job(job_id)))


class ResultHandler(JobHandler):
    async def get(self, job_id: str) -> None:
        job = await self.in_worker(self.job, job_id)
        if job["state"] != "done":
            detail = f": {job['error']}" if job.get("error") else f" ({job['progress'] * 100:.0f} %)"
            raise ConflictError(f"job {job_id} is {job['state']}{detail}", state=job["state"],
                                progress=job["progress"], job_error=job.get("error"))
        result = await self.in_pool(service.open_run, self.store, job["run_id"], frame=False)
        await self.answer(self.result_answer, result, job_id)

    def result_answer(self, result: RunResult, job_id: str) -> dict[str, Any]:
        self.remember(last_run_id=result.run_id)
        return {**result.summary(), "job_id": job_id, "project": {"title": result.meta["project"]["title"]}}


class CancelHandler(JobHandler):
    async def post(self, job_id: str) -> None:
        await self.answer(self.cancel, job_id, status=202)

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        if job["state"] in ("done", "failed"):
            raise ConflictError(f"job {job_id} is {job['state']} already", state=job["state"])
        if not self.ctx.jobs.cancel(job_id):
            raise ConflictError(f"job {job_id} is not running in this server process", state=job["state"])
        return {"job_id": job_id, "cancelling": True}



"""Portfolios of the business API: ``POST /api/phase1/portfolio`` starts a background portfolio (an elevated admin
session, like ``/run/submit``), ``GET .../portfolio/progress/{job_id}`` and ``.../portfolio/result/{job_id}``
follow it (paths, auth and flags are declared in :mod:`phase1lib.server.routes`).

The body is a portfolio (phase1lib.portfolio.spec) with inline projects only: the server reads no file a client
names, and a client cannot point the server at a Dask cluster: the operator does (PHASE1_DASK_SCHEDULER in the
server's environment). Every problem of every project is named and the guardrails checked before the job is
queued (400 / 413 at once). A portfolio job's ``run_id`` field holds its portfolio_id.
"""

from __future__ import annotations

from typing import Any

from ... import ops, service
from ...errors import ConflictError
from ...portfolio import load_portfolio_answer, parse_portfolio
from ..jobs import public_job
from .jobs import JobHandler


class PortfolioSubmitHandler(JobHandler):
    async def post(self) -> None:
        await self.answer(self.submit, status=202)

    def submit(self) -> dict[str, Any]:
        portfolio = parse_portfolio(self.json_body(), base=None, strict=False)  # inline projects only
        plans = service.plan_portfolio(self.store, portfolio)  # every problem named, guardrails, before queueing
        permutations = sum(plan.count for plan in plans)
        self.reserve_run()
        store, home, actor, request_id = self.store, None, self.session.username, self.request_id

        def task(progress: Any, cancel: Any) -> tuple[str, str]:
            result = service.execute_portfolio(store, portfolio, progress=progress, cancel=cancel, home=home,
                                               actor=actor, request_id=request_id)
            totals = result.summary["totals"]
            return result.portfolio_id, (f"{totals['projects']} projects, {totals['financeable']} financeable, "
                                         f"{totals['evaluated']:,} permutations")

        try:
            job = self.ctx.jobs.submit_task(actor, f"queued: portfolio of {len(plans)} projects, {permutations:,} "
                                                   "permutations", task, request_id)
        except BaseException:
            self.ctx.release_run()
            raise
        job_id = job["job_id"]
        return {"job_id": job_id, "state": job["state"], "permutations": permutations,
                "projects": [{"title": e.title, "run_id": p.run_id} for e, p in zip(portfolio.projects, plans,
                                                                                    strict=True)],
                "progress": f"/api/phase1/portfolio/progress/{job_id}",
                "result": f"/api/phase1/portfolio/result/{job_id}"}


class PortfolioProgressHandler(JobHandler):
    async def get(self, job_id: str) -> None:
        await self.answer(self.progress, job_id)

    def progress(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        return {**public_job(job), "portfolio_id": job["run_id"]}


class PortfolioResultHandler(JobHandler):
    async def get(self, job_id: str) -> None:
        await self.answer(self.result, job_id)

    def result(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        if job["state"] != "done":
            detail = f": {job['error']}" if job.get("error") else f" ({job['progress'] * 100:.0f} %)"
            raise ConflictError(f"job {job_id} is {job['state']}{detail}", state=job["state"],
                                progress=job["progress"], job_error=job.get("error"))
        ops.require_flag(self.store, "phase1_core")
        return {**load_portfolio_answer(job["run_id"]), "job_id": job_id}

"""Background runs: ``run/submit`` answers a job id at once; a pool thread runs it (in an engine process,
server/engine_pool.py) and records progress.

Job records live in the store (``create_job`` / ``update_job`` / ``get_job``), so another process sees
them and a restart does not lose them: at start-up the server marks every job still queued or running
as failed ("interrupted by restart"). Cancellation is an in-process event per job; the engine checks it
between chunks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import service
from ..engine.runner import RunCancelled
from ..errors import ConflictError, NotFoundError, Phase1Error
from ..project import Project

if TYPE_CHECKING:
    from .context import Phase1Context

log = logging.getLogger("phase1lib.server.jobs")

#: Least time between two progress writes of one job (the engine reports every chunk).
PROGRESS_EVERY_S = 0.25
_PUBLIC = ("job_id", "state", "progress", "message", "run_id", "error", "created_at", "updated_at",
           "started_at", "finished_at")


def public_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A job record without its owner."""
    return {k: job.get(k) for k in _PUBLIC}


class JobRunner:
    """Submits runs to the context's pool and keeps a cancel event per running job."""

    def __init__(self, ctx: Phase1Context):
        self.ctx = ctx
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def submit(self, owner: str, project: Project, ranges: Mapping[str, Any], *, seed: int | None, topn: int,
               sample: int | None, permutations: int, request_id: str, plan: Any = None) -> dict[str, Any]:
        """Queue a run; the caller has reserved a run slot (released when the job ends)."""
        store = self.ctx.store
        job = store.create_job(owner, message=f"queued: {permutations:,} permutations")
        cancel = threading.Event()
        with self._lock:
            self._cancels[job["job_id"]] = cancel
        try:
            self.ctx.executor.submit(self._run, job["job_id"], project, dict(ranges), seed, topn, sample, cancel,
                                     request_id, plan, owner)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._finish(job["job_id"], "failed", error="the server is shutting down")
            raise
        return job

    def _progress(self, job_id: str) -> Any:
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = now
            with contextlib.suppress(ConflictError, NotFoundError):  # finished or removed meanwhile
                self.ctx.store.update_job(job_id, progress=min(1.0, done / max(total, 1)),
                                          message=f"{done:,} of {total:,} permutations")

        return report

    def _run(self, job_id: str, project: Project, ranges: dict[str, Any], seed: int | None, topn: int,
             sample: int | None, cancel: threading.Event, request_id: str, plan: Any = None,
             owner: str | None = None) -> None:
        store = self.ctx.store
        try:
            if cancel.is_set():
                raise RunCancelled("run cancelled before it started")
            store.update_job(job_id, state="running", message="running")
            result = service.execute_run(store, project, ranges, seed=seed, topn=topn, sample=sample,
                                         progress=self._progress(job_id), cancel=cancel, plan=plan,
                                         actor=owner, request_id=request_id, compute=self.ctx.compute)
        except RunCancelled:
            self._finish(job_id, "failed", error=getattr(cancel, "reason", None) or "cancelled")
        except Phase1Error as error:
            self._finish(job_id, "failed", error=str(error))
        except Exception:
            log.exception("background run %s failed (request %s)", job_id, request_id)
            self._finish(job_id, "failed", error=f"internal error; quote request id {request_id}")
        else:
            summary = result.summary()
            counts = ", ".join(f"{k} {v:,}" for k, v in summary["counts"].items())
            self._finish(job_id, "done", run_id=result.run_id,
                         message=f"{summary['evaluated']:,} permutations evaluated ({counts})")
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)
            self.ctx.release_run()

    def submit_task(self, owner: str, message: str, task: Callable[[Any, threading.Event], tuple[str, str]],
                    request_id: str) -> dict[str, Any]:
        """Queue another engine task as a job (a portfolio): ``task(progress, cancel)`` returns (result id,
        message); the result id goes to the job's run_id field. The caller has reserved a run slot."""
        job = self.ctx.store.create_job(owner, message=message)
        cancel = threading.Event()
        with self._lock:
            self._cancels[job["job_id"]] = cancel
        try:
            self.ctx.executor.submit(self._run_task, job["job_id"], task, cancel, request_id)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._finish(job["job_id"], "failed", error="the server is shutting down")
            raise
        return job

    def _run_task(self, job_id: str, task: Callable[[Any, threading.Event], tuple[str, str]],
                  cancel: threading.Event, request_id: str) -> None:
        try:
            if cancel.is_set():
                raise RunCancelled("cancelled before it started")
            self.ctx.store.update_job(job_id, state="running", message="running")
            result_id, message = task(self._progress(job_id), cancel)
        except RunCancelled:
            self._finish(job_id, "failed", error=getattr(cancel, "reason", None) or "cancelled")
        except Phase1Error as error:
            self._finish(job_id, "failed", error=str(error))
        except Exception:
            log.exception("background job %s failed (request %s)", job_id, request_id)
            self._finish(job_id, "failed", error=f"internal error; quote request id {request_id}")
        else:
            self._finish(job_id, "done", run_id=result_id, message=message)
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)
            self.ctx.release_run()

    def _finish(self, job_id: str, state: str, **fields: Any) -> None:
        try:
            self.ctx.store.update_job(job_id, state=state, **fields)
        except (ConflictError, NotFoundError) as error:  # pragma: no cover - a racing process finished it
            log.warning("job %s: %s", job_id, error)

    def cancel(self, job_id: str, reason: str = "cancelled by the user") -> bool:
        """Ask a queued or running job of this process to stop; False if it is not running here."""
        with self._lock:
            event = self._cancels.get(job_id)
        if event is None:
            return False
        event.reason = reason  # type: ignore[attr-defined]
        event.set()
        return True

    def cancel_all(self, reason: str) -> int:
        with self._lock:
            ids = list(self._cancels)
        return sum(self.cancel(job_id, reason) for job_id in ids)

    def shutdown(self, reason: str) -> None:
        """Cancel every job, let running ones stop at their next chunk, fail the ones that never started."""
        self.cancel_all(reason)
        self.ctx.executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            never_started = list(self._cancels)
            self._cancels.clear()
        for job_id in never_started:
            self._finish(job_id, "failed", error=reason)

"""Evaluating the chunks of many runs: on local threads (as ``phase1 run`` does), or as tasks on a Dask cluster.

Both go through the runner's stages (phase1lib.engine.runner): a Dask task is ``evaluate_job_chunk(job, (a, b))``
with ``job`` the small, picklable :class:`~phase1lib.engine.runner.GridJob` (project, ruleset, grid, seed and
options: a few kilobytes); each worker builds the job's context (the flows of every case) once and keeps it for
its next chunks, so the per-case arrays never travel. The chunks come back to this process, which assembles
them in bound order, ranks and finishes each run exactly as the local path does: the numbers are bit-identical
whatever the chunking, the worker count or whether a worker has the compiled kernels.

A worker lost mid-run is Dask's to handle: the scheduler reruns its tasks elsewhere (up to
``distributed.scheduler.allowed-failures`` deaths per task, then :class:`ClusterError`). A scheduler that cannot
be reached, has no workers, or finishes no chunk for ``PHASE1_DASK_TASK_TIMEOUT`` seconds is a
:class:`ClusterError` naming its address, never a silent local run.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .. import settings
from ..engine.runner import (
    Bound,
    Chunk,
    GridJob,
    RunCancelled,
    RunResult,
    assemble,
    build_context,
    chunk_rows,
    evaluate_job_chunk,
    finish,
    run_job,
)
from ..errors import FieldError, InputError, Phase1Error

Progress = Callable[[int, int], None]
#: Fewest rows a task evaluates (below, Dask's per-task cost outweighs the work), and tasks per worker thread
#: a run is split into at least (so that one large project still spreads over the cluster).
MIN_TASK_ROWS = 1024
TASKS_PER_THREAD = 2
ADDRESS = re.compile(r"(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


class ClusterError(Phase1Error):
    """The Dask cluster cannot do the work: unreachable scheduler, no workers, hung or failing tasks (HTTP 503;
    ``phase1 portfolio`` exits 6)."""

    status = 503
    kind = "cluster_unavailable"

    def __init__(self, message: str, address: str):
        self.address = address
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "scheduler": self.address}


def connect_timeout() -> float:
    """PHASE1_DASK_CONNECT_TIMEOUT (phase1lib.settings)."""
    return settings.get().dask_connect_timeout_s


def task_timeout() -> float:
    """PHASE1_DASK_TASK_TIMEOUT (phase1lib.settings)."""
    return settings.get().dask_task_timeout_s


def scheduler_address(given: str | None = None) -> str | None:
    """The scheduler to use: ``given`` (``--scheduler``), else PHASE1_DASK_SCHEDULER, else None (local).
    InputError for anything but ``tcp://HOST:PORT`` (or ``tls://``)."""
    address = given if given is not None else settings.get().dask_scheduler
    if address is None:
        return None
    name = "scheduler" if given is not None else "PHASE1_DASK_SCHEDULER"
    if not isinstance(address, str) or not ADDRESS.fullmatch(address) or int(address.rsplit(":", 1)[1]) > 65535:
        raise InputError([FieldError(name, f"must be a Dask scheduler address tcp://HOST:PORT (got {address!r})")],
                         "scheduler")
    return address


@dataclass(frozen=True)
class Work:
    """One run to evaluate: its position in the portfolio, its job, and whether the local path chunks it."""

    index: int
    job: GridJob
    chunked: bool = True


def evaluate_local(work: Sequence[Work], *, workers: int = 1, progress: Progress | None = None,
                   cancel: threading.Event | None = None) -> Iterator[tuple[int, RunResult]]:
    """Each run on this machine's threads, one after the other (``phase1 run``'s path): (index, result)."""
    total = sum(w.job.count for w in work)
    base = 0
    for w in work:
        def report(done: int, _total: int, base: int = base) -> None:
            if progress:
                progress(base + done, total)

        yield w.index, run_job(w.job, workers=workers, chunked=w.chunked, progress=report, cancel=cancel)
        base += w.job.count


def task_rows(job: GridJob, threads: int) -> int:
    """Rows per Dask task: the local chunk at most, split so that a run has TASKS_PER_THREAD tasks per worker
    thread, never fewer than MIN_TASK_ROWS rows (results do not depend on it)."""
    local = chunk_rows(job.project.n_periods, None)
    share = math.ceil(job.count / max(1, TASKS_PER_THREAD * threads))
    return max(1, min(local, max(MIN_TASK_ROWS, share)))


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address`` with at least one worker, or ClusterError naming it."""
    from distributed import Client

    timeout = connect_timeout()
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                           f"({type(error).__name__}); start it (docs/operations.md) or run without --scheduler",
                           address) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise ClusterError(f"the Dask scheduler at {address} has no workers (waited {timeout:g} s); start "
                           f"`dask worker {address}` (docs/operations.md)", address) from None
    return client


def worker_threads(client: Any) -> int:
    """Threads across the cluster's workers."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def evaluate_dask(work: Sequence[Work], address: str, *, progress: Progress | None = None,
                  cancel: threading.Event | None = None, client: Any = None) -> Iterator[tuple[int, RunResult]]:
    """Every chunk of every run as a task on the cluster at ``address``, all submitted at once; each run is
    assembled, ranked and finished here as soon as its last chunk is back: (index, result), in finishing order.

    ``client``: an open Dask client to use (kept open); by default one is opened here and closed at the end.
    """
    from distributed import wait

    own = client is None
    client = connect(address) if own else client
    started = time.perf_counter()
    total = sum(w.job.count for w in work)
    futures: dict[Any, tuple[int, int, Bound]] = {}
    chunks: list[list[Chunk | None]] = []
    try:
        threads = worker_threads(client)
        token = secrets.token_hex(4)
        for n, w in enumerate(work):
            bounds = w.job.bounds(task_rows(w.job, threads))
            chunks.append([None] * len(bounds))
            for c, bound in enumerate(bounds):
                future = client.submit(evaluate_job_chunk, w.job, bound, pure=False, retries=0,
                                       key=f"phase1-chunk-{w.job.run_id}-{bound[0]}-{token}")
                futures[future] = (n, c, bound)
        pending = set(futures)
        remaining = [len(c) for c in chunks]
        done_rows, idle_since, limit = 0, time.monotonic(), task_timeout()
        while pending:
            if cancel is not None and cancel.is_set():
                raise RunCancelled("run cancelled")
            try:
                with client.as_current():  # wait() finds the client of the futures as the current one
                    finished, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                if time.monotonic() - idle_since > limit:
                    raise ClusterError(f"no chunk finished for {limit:g} s on the Dask cluster at {address} "
                                       f"({len(pending)} of {len(futures)} tasks pending); the cluster looks hung",
                                       address) from None
                continue
            idle_since = time.monotonic()
            for future in finished:
                n, c, bound = futures[future]
                chunks[n][c] = _result(future, work[n], address)
                future.release()
                remaining[n] -= 1
                done_rows += bound[1] - bound[0]
                if progress:
                    progress(done_rows, total)
                if remaining[n] == 0:
                    job = work[n].job
                    ctx = build_context(job)
                    parts = [part for part in chunks[n] if part is not None]
                    chunks[n] = []
                    yield work[n].index, finish(job, ctx, *assemble(ctx, parts), started=started)
    finally:
        leftover = [f for f in futures if f.status == "pending"]
        if leftover:
            client.cancel(leftover)
        if own:
            client.close()


def _result(future: Any, work: Work, address: str) -> Chunk:
    """A finished task's chunk; a task that failed raises its error (a library error as it is)."""
    if future.status != "error":
        return future.result()
    error = future.exception()
    if isinstance(error, Phase1Error):
        raise error
    from distributed.scheduler import KilledWorker

    if isinstance(error, KilledWorker):
        raise ClusterError(f"a chunk of projects[{work.index}] ({work.job.project.title}) killed every Dask worker "
                           f"that ran it (distributed.scheduler.allowed-failures) on the cluster at {address}",
                           address) from None
    raise error

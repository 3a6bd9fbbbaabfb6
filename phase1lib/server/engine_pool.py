"""Engine processes: the server's runs execute in worker processes, so throughput scales with cores.

The server's run threads (``PHASE1_RUN_WORKERS``) plan a run, hand the engine part
(:func:`phase1lib.service.compute_run`: engine and atomic save) to an idle engine process and wait for it;
indexing, metrics and the answer stay in the server. ``PHASE1_RUN_PROCESSES`` processes are started (spawned,
never forked from the threaded server) when the server starts, warm: the engine, polars and the C kernels are
loaded before the first run. Each process holds a cancel flag and a progress pair in shared memory, so a
job's cancel and progress work as they do in a thread. A process that dies mid-run (killed, out of memory) is
replaced and that run fails with an internal error; nothing half-written is left (saves are atomic).

Results are bit-identical to an in-process run: the same function runs on the same inputs, one chunk
sequence, one code path (the engine's determinism does not depend on the process).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import threading
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Phase1Error

if TYPE_CHECKING:  # the engine is imported in the engine processes, after their thread limits are set
    from ..engine.runner import GridJob, RunResult

log = logging.getLogger("phase1lib.server.engine_pool")

#: How often a waiting run thread relays progress and cancel between it and its engine process.
POLL_S = 0.05
#: How long start-up waits for an engine process to report ready before it is called broken.
READY_TIMEOUT_S = 120.0


class EngineProcessError(RuntimeError):
    """An engine process stopped or failed outside the engine's own errors (a server fault, logged)."""


class _SharedFlag:
    """The engine's cancel event (``is_set``) over a shared byte the server sets."""

    def __init__(self, flag: Any):
        self._flag = flag

    def is_set(self) -> bool:
        return bool(self._flag.value)


def _serve(conn: Connection, cancel: Any, progress: Any, threads: int) -> None:
    """An engine process's loop: limit its threads, warm up, then compute each request it receives until told
    to stop. ``threads``: polars' and BLAS's threads, so that the processes together do not oversubscribe the
    cores (set before the engine is imported)."""
    from ..settings import limit_threads

    limit_threads(threads)
    from .. import service
    from ..engine import kernels

    if kernels.ready():  # load the compiled kernels (built by `phase1 warmup`) before the first run
        kernels.library()
    conn.send(("ready", None))
    flag = _SharedFlag(cancel)

    def report(done: int, total: int) -> None:
        progress[0], progress[1] = done, total

    while True:
        try:
            request = conn.recv()
        except EOFError:  # the server went away
            return
        if request is None:
            return
        try:
            result = service.compute_run(**request, progress=report, cancel=flag)
            conn.send(("ok", result))
        except BaseException as error:  # every failure goes back to the waiting thread
            conn.send(_failure(error))


def _failure(error: BaseException) -> tuple[str, Any]:
    """("error", the exception) when it survives pickling intact, else ("fault", its traceback text)."""
    if isinstance(error, Phase1Error):
        try:
            clone = pickle.loads(pickle.dumps(error))
            if type(clone) is type(error) and str(clone) == str(error):
                return "error", error
        except Exception:  # an exception that cannot travel is reported as a fault
            pass
    return "fault", "".join(traceback.format_exception(error))


class EngineProcess:
    """One spawned engine process, its pipe, cancel flag and progress pair."""

    def __init__(self, context: multiprocessing.context.BaseContext, index: int, threads: int):
        self.index = index
        self.cancel = context.Value("b", 0, lock=False)
        self.progress = context.Array("q", 2, lock=False)
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.cancel, self.progress, threads),
                                       daemon=True,
                                       name=f"phase1-engine-{index}")
        self.process.start()
        child.close()
        self.ready = False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        if self.ready:
            return
        if not self.conn.poll(timeout):
            raise EngineProcessError(f"engine process {self.index} did not start in {timeout:.0f} s")
        kind, _ = self._receive()
        if kind != "ready":  # pragma: no cover - the loop sends ready first
            raise EngineProcessError(f"engine process {self.index} answered {kind!r} before ready")
        self.ready = True

    def _receive(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise EngineProcessError(f"engine process {self.index} stopped (exit code "
                                     f"{self.process.exitcode})") from None

    def compute(self, request: Mapping[str, Any], progress: Any, cancel: threading.Event | None) -> RunResult:
        """Run one request here; relay progress and cancel while waiting; raise what the engine raised."""
        self.wait_ready()
        self.cancel.value = int(cancel is not None and cancel.is_set())
        self.progress[0] = self.progress[1] = 0
        try:
            self.conn.send(dict(request))
        except (BrokenPipeError, OSError):
            raise EngineProcessError(f"engine process {self.index} stopped (exit code "
                                     f"{self.process.exitcode})") from None
        seen = (0, 0)
        while not self.conn.poll(POLL_S):
            if cancel is not None and cancel.is_set():
                self.cancel.value = 1
            now = (self.progress[0], self.progress[1])
            if progress is not None and now != seen and now[1]:
                seen = now
                progress(*now)
            if not self.process.is_alive() and not self.conn.poll():
                raise EngineProcessError(f"engine process {self.index} stopped mid-run (exit code "
                                         f"{self.process.exitcode})")
        kind, payload = self._receive()
        if kind == "ok":
            return payload
        if kind == "error":
            raise payload
        raise EngineProcessError(f"engine process {self.index} failed:\n{payload}")

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.conn.close()


def _cancelled(message: str) -> Exception:
    from ..engine.runner import RunCancelled

    return RunCancelled(message)


class EnginePool:
    """``size`` engine processes shared by the server's run threads (each run takes an idle one)."""

    def __init__(self, size: int, home: Path):
        self.size = size
        self.home = home
        #: Threads per engine process: the cores shared out (at least one).
        self.threads = max(1, (os.cpu_count() or 1) // size)
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[EngineProcess] = queue.Queue()
        self._closed = threading.Event()
        self._started = 0
        self._lock = threading.Lock()
        for _ in range(size):
            self._idle.put(self._new())

    def _new(self) -> EngineProcess:
        with self._lock:
            self._started += 1
            return EngineProcess(self._context, self._started, self.threads)

    def wait_ready(self) -> None:
        """Block until every idle process has loaded the engine (start-up, tests)."""
        procs = []
        while True:
            try:
                procs.append(self._idle.get_nowait())
            except queue.Empty:
                break
        try:
            for proc in procs:
                proc.wait_ready()
        finally:
            for proc in procs:
                self._idle.put(proc)

    def compute(self, job: GridJob, *, progress: Any = None, cancel: threading.Event | None = None,
                home: Path | None = None, **options: Any) -> RunResult:
        """:func:`phase1lib.service.compute_run` of a planned job in an idle engine process (waits for one)."""
        while True:
            if self._closed.is_set():
                raise _cancelled("cancelled: the server is shutting down")
            if cancel is not None and cancel.is_set():
                raise _cancelled(getattr(cancel, "reason", None) or "run cancelled before it started")
            try:
                proc = self._idle.get(timeout=POLL_S * 4)
                break
            except queue.Empty:
                continue
        request = dict(options, job=job, home=home or self.home)
        try:
            return proc.compute(request, progress, cancel)
        except EngineProcessError:
            log.error("engine process %s lost; starting a new one", proc.index)
            proc.stop(timeout=1.0)
            proc = self._new()
            raise
        finally:
            if self._closed.is_set():
                proc.stop()
            else:
                self._idle.put(proc)

    def close(self) -> None:
        """Stop the idle processes; busy ones stop when their run ends (their runs were cancelled)."""
        self._closed.set()
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return

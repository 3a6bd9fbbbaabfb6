"""Pre-heated Voila kernels for ``phase1 serve``: a small pool per dashboard, refilled in the background.

Voila's own pool (``voila --preheat_kernel``) exists only in the standalone Voila app; under a Jupyter Server
its handler asks the server's kernel manager for ``notebook_data``, ``get_pool_size`` and
``get_rendered_notebook`` and falls back to a fresh kernel when they are missing. :func:`pooled` adds them to
the server's kernel manager, with the rules that make a kernel started before anyone logs in safe to hand out:

- **Only notebooks that wait for their user are pooled**: a dashboard says so in its notebook metadata
  (``{"phase1": {"preheat": true}}``) and builds nothing before the user is attached
  (:func:`phase1lib.ui.context.session_user` blocks until then). The pre-execution therefore stops inside
  the first cell, after the imports; nothing it rendered names or reads a user.
- **The user comes from the server-side session**: the login gate puts the session's user in
  :data:`~phase1lib.server.kernels.KERNEL_OWNER` for the request; when a pooled kernel is handed out, that
  name is written to the kernel's hand-off file (a random name in a 0700 folder, announced to the kernel in
  ``PHASE1_HANDOFF`` when it was started; both sides of the protocol: :mod:`phase1lib.handoff`). No header,
  query string or browser message reaches it. The folder keeps other OS users out, not other admins (every
  kernel runs as the server's OS user): what keeps admins apart is the server's side, below.
  A pooled kernel's environment carries no user at all (``PHASE1_USER`` and ``HTTP_X_PHASE1_USER`` removed).
- **One kernel, one request**: a pool entry is taken off its list before anything is awaited, so a kernel is
  handed out once; from then on it belongs to that user (the per-user cap counts it and
  :class:`~phase1lib.server.kernels.Phase1Authorizer` refuses it to anyone else), and nobody at all may connect
  to a kernel still in the pool.
- **Caps and culling**: pooled kernels have no owner, so they count against nobody's cap; the cap is checked
  when one is handed out (a refused kernel goes back to its pool, untouched). They are never culled while
  waiting (they are the pool); once handed out they are ordinary kernels, culled after the idle minutes
  without a tab like any other. A kernel the pool gives up on (it failed to heat, or died) is shut down at
  once, since nothing else would end it. The pool is bounded (``pool_size`` per dashboard) and refilled one
  kernel at a time, a few seconds after any request that took from it (whether it was served or refused), so
  the refill does not compete with the page being drawn.
- **Nothing usable in the pool**: a request heats a kernel for its user on the spot, handed over before its
  first cell runs, so it skips the warm-up build (:meth:`phase1lib.ui.context.AppContext.from_env`): as
  quick as a fresh kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..handoff import waiting_marker, write_handoff
from ..settings import DEFAULT_KERNEL_POOL, HANDOFF_ENV, kernel_environment

#: Notebook metadata a dashboard sets to be pre-heated: it waits for its user before building anything.
METADATA_KEY = "phase1"
#: Seconds between a hand-out and the refill of that dashboard's pool (the page being drawn comes first).
REFILL_DELAY_S = 3.0
#: Seconds a kernel may take to get there (start, imports) before the next one starts heating anyway.
HEAT_TIMEOUT_S = 120.0


def wants_preheat(notebook: Any) -> bool:
    """True when a notebook (nbformat node or dict) declares that it waits for its user before building."""
    meta = (notebook.get("metadata") or {}).get(METADATA_KEY) or {}
    return bool(isinstance(meta, dict) and meta.get("preheat") is True)


def preheat_notebooks(root_dir: Path, dashboards_dir: Path) -> list[str]:
    """The notebooks of ``dashboards_dir`` that ask to be pre-heated, as paths relative to ``root_dir``
    (the names Voila's handler uses), in the order they are heated: their ``phase1.order`` (the navigation
    order of the dashboards: the page an analyst opens first is ready first), then by name."""
    found: list[tuple[int, str]] = []
    for path in sorted(Path(dashboards_dir).glob("*.ipynb")):
        try:
            notebook = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(notebook, dict) and wants_preheat(notebook):
            order = notebook["metadata"][METADATA_KEY].get("order")
            found.append((order if isinstance(order, int) else 1000,
                          path.resolve().relative_to(Path(root_dir).resolve()).as_posix()))
    return [name for _order, name in sorted(found)]


@dataclass
class Heated:
    """A pool entry once its kernel runs: the pre-rendering task waits inside the notebook for its user."""

    kernel_id: str
    renderer: Any
    task: asyncio.Task
    handoff: Path


@dataclass
class PoolEntry:
    """One place in a pool: ``task`` gives the :class:`Heated` kernel; ``heating`` once it has begun (before
    that it waits for its refill delay or its turn)."""

    task: asyncio.Task
    heating: bool = False

    def ready(self) -> Heated | None:
        """The heated kernel when the task has finished well, else None."""
        task = self.task
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        return None


@dataclass
class PoolState:
    """The pools (notebook -> entries being heated or ready), what Voila needs to render from them, and the
    Voila configuration found in the server's routing table."""

    notebooks: list[str] = field(default_factory=list)
    pools: dict[str, list[PoolEntry]] = field(default_factory=dict)
    voila: dict[str, Any] | None = None
    handoff_dir: Path | None = None
    started: bool = False
    unowned: set[str] = field(default_factory=set)
    fill_lock: asyncio.Lock | None = None


def pooled(base: type) -> type:
    """A subclass of the (capped) kernel manager ``base`` that keeps pre-heated Voila kernels."""
    from traitlets import Integer

    from .kernels import KERNEL_OWNER

    class Pooled(base):  # type: ignore[misc, valid-type]
        pool_size = Integer(DEFAULT_KERNEL_POOL, config=True,
                            help="Pre-heated kernels kept ready per dashboard (0: none).")

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._pool = PoolState()
            self.notebook_data: dict[str, dict[str, Any]] = {}

        # ---- what Voila's handler asks -------------------------------------------------------------------
        def get_pool_size(self, notebook_name: str) -> int:
            """Entries of the notebook's pool; 0 without a session user (then Voila starts a fresh kernel)."""
            if KERNEL_OWNER.get() is None:
                return 0
            return len(self._pool.pools.get(notebook_name, ()))

        async def get_rendered_notebook(self, notebook_name: str, extra_kernel_env_variables: dict | None = None,
                                        **_kwargs: Any) -> tuple[asyncio.Task, list[str], str]:
            """Hand a pre-heated kernel of ``notebook_name`` to the session's user: (render task, the HTML
            rendered so far, kernel id). ``extra_kernel_env_variables`` (the request URL) is deliberately not
            passed on: Voila would put one request's URL into the next pooled kernel, another user's."""
            user = KERNEL_OWNER.get()
            if user is None:  # get_pool_size said 0: Voila does not come here without a user
                raise RuntimeError("a pre-heated kernel is handed out only to a logged-in user")
            self.refuse_if_capped(user)
            try:  # from the first pop on, whatever happens, the pool is refilled to its size
                pool = self._pool.pools.get(notebook_name) or []
                heated: Heated | None = None
                while pool and heated is None:
                    entry = pool.pop(0)  # taken before any await: no other request can get this kernel
                    if not entry.heating:  # still waiting for its turn: heating it now is as quick as it gets
                        entry.task.cancel()
                        break
                    heated = await self._usable(entry, notebook_name)
                if heated is None:  # nothing usable in the pool: a kernel heated for this user now (its cap is
                    # checked when it starts, and it skips the warm-up: it is handed over from the start)
                    heated = await self._heat(notebook_name, user)
                    self.log.info("kernel %s of %s heated for %s", heated.kernel_id, notebook_name, user)
                    return heated.task, heated.renderer.rendered_cache, heated.kernel_id
                try:
                    self.refuse_if_capped(user)  # again: the same user may have started another kernel meanwhile
                except Exception:
                    # Back to the front of its pool rather than shut down: nobody has touched it (no owner, no
                    # hand-off written, still waiting inside its first cell), so the pool stays full and the next
                    # request gets it at once; shutting it down would throw away a warm kernel and its heat.
                    self._put_back(notebook_name, entry, heated)
                    raise
                self.assign_owner(heated.kernel_id, user)
                self._pool.unowned.discard(heated.kernel_id)
                write_handoff(heated.handoff, user)
                heated.renderer.stop_generator = True
                self.log.info("pre-heated kernel %s of %s handed to %s", heated.kernel_id, notebook_name, user)
                return heated.task, heated.renderer.rendered_cache, heated.kernel_id
            finally:
                self._schedule_fill(notebook_name, REFILL_DELAY_S)

        async def _usable(self, entry: PoolEntry, notebook_name: str) -> Heated | None:
            """The heated kernel of a pool entry taken off its pool, or None when it is unusable (then its
            kernel, if one runs, is shut down: it would otherwise run forever, owned by nobody, never culled)."""
            try:
                candidate: Heated = await entry.task
            except Exception as error:  # it failed to heat (_heat has shut its kernel down): try the next one
                self.log.warning("pre-heated kernel for %s failed: %s", notebook_name, error)
                return None
            if candidate.kernel_id in self and not candidate.task.done():
                return candidate
            self.log.warning("pre-heated kernel %s for %s is gone", candidate.kernel_id, notebook_name)
            candidate.task.cancel()
            await self._discard(candidate.kernel_id)
            return None

        def _put_back(self, notebook: str, entry: PoolEntry, heated: Heated) -> None:
            """A ready entry back to the front of its pool (shut down instead when the pools are closing)."""
            if self._pool.started:
                self._pool.pools.setdefault(notebook, []).insert(0, entry)
                self.log.info("pre-heated kernel %s of %s kept in the pool", heated.kernel_id, notebook)
            else:
                heated.task.cancel()
                asyncio.get_event_loop().create_task(self._discard(heated.kernel_id))

        # ---- the pools -------------------------------------------------------------------------------------
        def start_pools(self, notebooks: Iterable[str], voila: dict[str, Any]) -> None:
            """Start heating ``notebooks`` (paths relative to the root), one kernel at a time in that order."""
            self._pool.notebooks = list(notebooks)
            self._pool.voila = voila
            self._pool.fill_lock = asyncio.Lock()
            if self.pool_size <= 0 or not self._pool.notebooks:
                return
            runtime = Path(getattr(self, "connection_dir", "") or tempfile.gettempdir())
            runtime.mkdir(parents=True, exist_ok=True)
            self._pool.handoff_dir = Path(tempfile.mkdtemp(prefix="phase1-handoff-", dir=runtime))
            os.chmod(self._pool.handoff_dir, 0o700)
            self._pool.started = True
            for notebook in self._pool.notebooks:
                self._schedule_fill(notebook, 0.0)
            self.log.info("pre-heating %d kernel(s) for each of %s", self.pool_size, ", ".join(self._pool.notebooks))

        def pool_kernel_ids(self) -> set[str]:
            """Kernels the pool started that have no owner yet (waiting, or being handed out)."""
            self._pool.unowned &= set(self.list_kernel_ids())
            return set(self._pool.unowned)

        def _schedule_fill(self, notebook: str, delay: float) -> None:
            if not self._pool.started:
                return
            pool = self._pool.pools.setdefault(notebook, [])
            for _ in range(self.pool_size - len(pool)):
                entry = PoolEntry(task=None)  # type: ignore[arg-type]
                # Heat in a clean context: the request that triggered a refill must not own the new kernel.
                entry.task = asyncio.get_event_loop().create_task(self._fill_one(notebook, delay, entry),
                                                                  context=_clean_context())
                pool.append(entry)

        async def _fill_one(self, notebook: str, delay: float, entry: PoolEntry) -> Heated:
            if delay:
                await asyncio.sleep(delay)
            assert self._pool.fill_lock is not None
            async with self._pool.fill_lock:  # one kernel heating at a time: the CPU is for the analysts
                entry.heating = True
                return await self._heat(notebook)

        async def _heat(self, notebook: str, user: str | None = None) -> Heated:
            """Start a kernel for ``notebook`` and pre-render it up to the point where it waits for its user
            (a pool's kernel: ``user`` None). With a ``user`` (a request that found nothing in the pool), the
            kernel is that user's from the start (cap checked, owner set by ``start_kernel``) and is handed
            its user before it runs a cell: it skips the warm-up and nothing waits for it here."""
            from voila.notebook_renderer import NotebookRenderer
            from voila.utils import ENV_VARIABLE, get_page_config

            token = KERNEL_OWNER.set(user)  # None: a pooled kernel has no owner until it is handed out
            try:
                v = self._pool.voila
                assert v is not None and self._pool.handoff_dir is not None
                page_config = get_page_config(base_url=v["base_url"], settings=v["settings"], log=self.log,
                                              voila_configuration=v["voila_configuration"])
                renderer = NotebookRenderer(
                    voila_configuration=v["voila_configuration"], traitlet_config=v["config"],
                    notebook_path=notebook, template_paths=v["template_paths"],
                    config_manager=v["settings"].get("config_manager"),
                    contents_manager=v["settings"]["contents_manager"], base_url=v["base_url"],
                    kernel_spec_manager=v["settings"]["kernel_spec_manager"], page_config=page_config,
                    mathjax_config=v["settings"].get("mathjax_config"), mathjax_url=v["settings"].get("mathjax_url"))
                await renderer.initialize()
                if not wants_preheat(renderer.notebook):
                    raise RuntimeError(f"{notebook} does not wait for its user (metadata phase1.preheat)")
                handoff = self._pool.handoff_dir / f"{secrets.token_hex(16)}.json"
                env = kernel_environment()  # no identity in a pooled kernel
                env.update({ENV_VARIABLE.VOILA_PREHEAT: "True", ENV_VARIABLE.VOILA_BASE_URL: v["base_url"],
                            ENV_VARIABLE.VOILA_SERVER_URL: v["settings"].get("server_url", "/"),
                            HANDOFF_ENV: str(handoff)})
                kernel_name = renderer.notebook.metadata.kernelspec.name
                kernel_id = await self.start_kernel(kernel_name=kernel_name, path=os.path.dirname(notebook), env=env)
                if user is None:
                    self._pool.unowned.add(kernel_id)
                task: asyncio.Task | None = None
                try:  # from here on a failure shuts the kernel down: nobody else would
                    if user is not None:
                        write_handoff(handoff, user)  # before its first cell: no warm-up, no waiting marker
                        renderer.stop_generator = True
                    data = self.notebook_data.setdefault(notebook, {
                        "notebook": renderer.notebook, "template": renderer.template_name, "theme": renderer.theme,
                        "kernel_name": kernel_name, "kernel_ids": set()})
                    data["kernel_ids"].add(kernel_id)
                    task = asyncio.get_event_loop().create_task(
                        renderer.generate_content_hybrid(kernel_id, self.get_kernel(kernel_id)))
                    if user is None:
                        await _until_waiting(handoff, task)
                        if task.done():  # an error in its first cell, or a notebook that does not wait
                            error = None if task.cancelled() else task.exception()
                            raise RuntimeError(f"{notebook} ended before it waited for its user ({error!r})")
                        self.log.info("pre-heated kernel %s of %s ready", kernel_id, notebook)
                except Exception:
                    if task is not None:
                        task.cancel()
                    await self._discard(kernel_id)
                    raise
                return Heated(kernel_id, renderer, task, handoff)
            finally:
                KERNEL_OWNER.reset(token)

        async def _discard(self, kernel_id: str) -> None:
            """Shut down a kernel the pool gives up on (failed or gone); it leaves the pool's books either way
            (:meth:`shutdown_kernel` forgets it before it stops it; a kernel already gone is only forgotten)."""
            if kernel_id not in self:
                self._forget(kernel_id)
                return
            try:
                await self.shutdown_kernel(kernel_id, now=True)
            except Exception as error:  # already on its way out: nothing left to do
                self.log.warning("could not shut down pre-heated kernel %s: %s", kernel_id, error)

        def _forget(self, kernel_id: str) -> None:
            for data in self.notebook_data.values():
                data["kernel_ids"].discard(kernel_id)
            _forget_request_info(kernel_id)
            self._pool.unowned.discard(kernel_id)

        # ---- kernels leaving ---------------------------------------------------------------------------------
        async def cull_kernel_if_idle(self, kernel_id: str) -> Any:
            if kernel_id in self.pool_kernel_ids():
                return None  # waiting in the pool for its user: that is its job
            return await super().cull_kernel_if_idle(kernel_id)

        async def shutdown_kernel(self, kernel_id: str, *args: Any, **kwargs: Any) -> Any:
            for notebook, pool in self._pool.pools.items():
                for entry in list(pool):
                    heated = entry.ready()
                    if heated is not None and heated.kernel_id == kernel_id:
                        pool.remove(entry)
                        self._schedule_fill(notebook, REFILL_DELAY_S)
            self._forget(kernel_id)
            return await super().shutdown_kernel(kernel_id, *args, **kwargs)

        async def shutdown_all(self, *args: Any, **kwargs: Any) -> Any:
            self._pool.started = False
            pools, self._pool.pools = self._pool.pools, {}
            for pool in pools.values():
                for entry in pool:
                    heated = entry.ready()
                    if heated is not None:
                        heated.task.cancel()  # its kernel goes with the others below
                    entry.task.cancel()
            result = await super().shutdown_all(*args, **kwargs)
            if self._pool.handoff_dir is not None:
                shutil.rmtree(self._pool.handoff_dir, ignore_errors=True)
            return result

    Pooled.__name__ = Pooled.__qualname__ = base.__name__
    return Pooled


async def _until_waiting(handoff: Path, task: asyncio.Task) -> None:
    """Return once the kernel waits for its user (its marker exists), its rendering ended, or after
    :data:`HEAT_TIMEOUT_S`: a pool heats one kernel at a time, start to finish."""
    marker = waiting_marker(handoff)  # the protocol, both sides: phase1lib.handoff
    loop = asyncio.get_event_loop()
    deadline = loop.time() + HEAT_TIMEOUT_S
    while not marker.exists() and not task.done() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    marker.unlink(missing_ok=True)


def _clean_context() -> Any:
    import contextvars

    from .kernels import KERNEL_OWNER

    ctx = contextvars.copy_context()
    ctx.run(KERNEL_OWNER.set, None)
    return ctx


def _forget_request_info(kernel_id: str) -> None:
    """Voila's handler parks each pre-heated request's info for a websocket only the standalone app serves:
    drop it with the kernel (it would otherwise stay in memory for the life of the server)."""
    with contextlib.suppress(ImportError):
        from voila.request_info_handler import RequestInfoSocketHandler

        RequestInfoSocketHandler._cache.pop(kernel_id, None)


def voila_settings(web_app: Any) -> dict[str, Any] | None:
    """What a NotebookRenderer needs, from the Voila handler's arguments in the server's routing table."""
    from voila.tornado.handler import TornadoVoilaHandler

    from .security import handler_rules, original_class

    for rule in handler_rules(web_app):
        target = original_class(rule.target)
        if isinstance(target, type) and issubclass(target, TornadoVoilaHandler):
            kwargs = rule.target_kwargs or {}
            return {"voila_configuration": kwargs["voila_configuration"], "template_paths": kwargs["template_paths"],
                    "config": kwargs["config"], "settings": web_app.settings,
                    "base_url": web_app.settings.get("base_url", "/")}
    return None

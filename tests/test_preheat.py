"""Pre-heated dashboard kernels (phase1lib.server.preheat): a kernel started before anyone logs in waits for its
user, learns it from the server-side session only, is handed to one request, belongs to that user from then on,
and counts against no one's cap while it waits in the pool."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from server_fixtures import HELLO_NOTEBOOK, Server, secret, server_env, start_server, stop_server

from phase1lib import handoff, settings
from phase1lib.server import preheat
from phase1lib.server.kernels import KernelLimits
from phase1lib.ui import context as ui_context

#: A dashboard that declares it waits for its user, and shows what its kernel knew before and after.
WAITING_NOTEBOOK = {**HELLO_NOTEBOOK, "metadata": {**HELLO_NOTEBOOK["metadata"], "phase1": {"preheat": True}},
                    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                               "source": ["import os\n",
                                          "before = (os.environ.get('HTTP_X_PHASE1_USER'),\n",
                                          "          os.environ.get('PHASE1_USER'))\n",
                                          "from phase1lib.ui.context import session_user\n",
                                          "print('before:', before, 'kernel user:', session_user())"]}]}
PAGE = "/voila/render/dashboards/waiting.ipynb"
MAX_KERNELS = 2


# ---- the kernel side -------------------------------------------------------------------------------------------


def test_a_preheated_kernel_waits_for_its_hand_off_and_ignores_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    env = {ui_context.HANDOFF_ENV: str(path), "PHASE1_USER": "mallory", "HTTP_X_PHASE1_USER": "mallory"}
    assert ui_context.session_user(env, timeout_s=0.05) is None  # nothing handed over yet: no user at all
    assert handoff.waiting_marker(path) == tmp_path / "h.json.waiting"
    assert handoff.waiting_marker(path).exists()  # it told the server it is ready

    def later() -> None:
        time.sleep(0.2)
        handoff.write_handoff(path, "bob")

    threading.Thread(target=later).start()
    started = time.monotonic()
    assert ui_context.session_user(env, timeout_s=10) == "bob"
    assert time.monotonic() - started >= 0.15  # it waited for the hand-off
    assert not path.exists()  # read once, then gone
    # a kernel started for a request (no hand-off) keeps reading its environment
    assert ui_context.session_user({"HTTP_X_PHASE1_USER": "carol", "PHASE1_USER": "x"}) == "carol"


def test_the_hand_off_file_is_written_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    handoff.write_handoff(path, "alice")
    assert json.loads(path.read_text()) == {"user": "alice"}
    assert handoff.read_handoff(path) == "alice"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temporary file left
    assert preheat.write_handoff is handoff.write_handoff  # one protocol: the server writes what the kernel reads


def test_a_kernel_handed_its_user_before_its_first_cell_skips_the_warm_up(tmp_path: Path) -> None:
    built: list[str | None] = []

    class Dashboard:
        def __init__(self, ctx: ui_context.AppContext) -> None:
            built.append(ctx.user)

    path = tmp_path / "h.json"
    env = {ui_context.HANDOFF_ENV: str(path), "PHASE1_HOME": str(tmp_path / "home")}
    handoff.write_handoff(path, "bob")  # heated for a waiting request: the user is there from the start
    ctx = ui_context.AppContext.from_env(env, warm=Dashboard)
    assert ctx.user == "bob" and built == []  # no throwaway build: its request would wait for it
    assert not handoff.waiting_marker(path).exists() and not path.exists()
    threading.Timer(0.2, handoff.write_handoff, (path, "alice")).start()  # a pool's kernel: warmed, then waits
    ctx = ui_context.AppContext.from_env(env, warm=Dashboard)
    assert ctx.user == "alice" and built == [None]


def test_only_notebooks_that_say_so_are_preheated(tmp_path: Path) -> None:
    folder = tmp_path / "dashboards"
    folder.mkdir()
    (folder / "waiting.ipynb").write_text(json.dumps(WAITING_NOTEBOOK))
    (folder / "hello.ipynb").write_text(json.dumps(HELLO_NOTEBOOK))
    (folder / "broken.ipynb").write_text("{not json")
    assert preheat.preheat_notebooks(tmp_path, folder) == ["dashboards/waiting.ipynb"]
    shipped = Path(__file__).resolve().parent.parent
    names = preheat.preheat_notebooks(shipped, shipped / "dashboards")
    assert names == [f"dashboards/{n}.ipynb" for n in ("Projects", "Permutations", "Run", "Securitisation",
                                                          "Ops_Monitor")]  # heated in the navigation order


def test_the_pool_size_is_configured_and_bounded() -> None:
    from phase1lib.server.kernels import Phase1KernelManager

    assert KernelLimits.from_env({}).pool_size == settings.DEFAULT_KERNEL_POOL == 1
    assert Phase1KernelManager().pool_size == KernelLimits().pool_size == settings.DEFAULT_KERNEL_POOL
    assert KernelLimits.from_env({"PHASE1_KERNEL_POOL": "0"}).pool_size == 0
    with pytest.raises(Exception, match="PHASE1_KERNEL_POOL must be a whole number from 0 to 4"):
        KernelLimits.from_env({"PHASE1_KERNEL_POOL": "9"})


# ---- the pool's books (a kernel manager without a server: kernels are entries of its table) --------------------

NB = "dashboards/waiting.ipynb"


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A pooled kernel manager whose kernels are fakes: start and shutdown only write its table (and record)."""
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    from phase1lib.server.kernels import Phase1KernelManager

    manager = Phase1KernelManager()
    manager.max_kernels_per_user = 1
    manager._pool.started = True
    manager._pool.handoff_dir = tmp_path
    manager.shut_down = []

    async def start_kernel(self: Any, *args: Any, kernel_id: str | None = None, **kwargs: Any) -> str:
        kernel_id = kernel_id or f"k-{len(self._kernels) + 1}"
        self._kernels[kernel_id] = object()
        return kernel_id

    async def shutdown_kernel(self: Any, kernel_id: str, now: bool = False, **kwargs: Any) -> None:
        self.shut_down.append((kernel_id, now))
        del self._kernels[kernel_id]

    monkeypatch.setattr(AsyncMappingKernelManager, "start_kernel", start_kernel)
    monkeypatch.setattr(AsyncMappingKernelManager, "shutdown_kernel", shutdown_kernel)
    return manager


def _done(result: Any = None, error: BaseException | None = None) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    return future


def _heated(manager: Any, kernel_id: str, tmp_path: Path, render: asyncio.Future | None = None) -> preheat.Heated:
    """A kernel heated into the pool: running, unowned, its rendering waiting inside the first cell."""
    manager._kernels[kernel_id] = object()
    manager._pool.unowned.add(kernel_id)
    renderer = SimpleNamespace(rendered_cache=[], stop_generator=False)
    render = render if render is not None else asyncio.get_running_loop().create_future()
    return preheat.Heated(kernel_id, renderer, render, tmp_path / f"{kernel_id}.json")


def _as(user: str, coro: Any) -> Any:
    from phase1lib.server.kernels import KERNEL_OWNER

    async def run() -> Any:
        token = KERNEL_OWNER.set(user)
        try:
            return await coro()
        finally:
            KERNEL_OWNER.reset(token)

    return asyncio.run(run())


def test_a_hand_out_refused_by_the_cap_keeps_the_kernel_in_the_pool(manager: Any, tmp_path: Path) -> None:
    from tornado.web import HTTPError

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        heating = loop.create_future()
        entry = preheat.PoolEntry(task=heating, heating=True)  # being heated when the request takes it
        manager._pool.pools[NB] = [entry]
        heated = _heated(manager, "pooled-1", tmp_path)

        def meanwhile() -> None:  # while the request waits for it, the same user starts another kernel
            manager._kernels["bobs-other"] = object()
            manager.assign_owner("bobs-other", "bob")
            heating.set_result(heated)

        loop.call_soon(meanwhile)
        with pytest.raises(HTTPError) as refused:
            await manager.get_rendered_notebook(NB)
        assert refused.value.status_code == 429
        assert manager._pool.pools[NB] == [entry] and manager.get_pool_size(NB) == 1  # still there, first
        assert manager.pool_kernel_ids() == {"pooled-1"} and manager.owner_of("pooled-1") is None
        assert not heated.handoff.exists() and not heated.renderer.stop_generator and not manager.shut_down

    _as("bob", scenario)


def test_a_hand_out_that_finds_nothing_and_fails_still_refills_the_pool(manager: Any, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing_heat(notebook: str, user: str | None = None) -> preheat.Heated:
        raise RuntimeError("no kernel today")

    monkeypatch.setattr(manager, "_heat", failing_heat)

    async def scenario() -> None:
        manager._pool.pools[NB] = [preheat.PoolEntry(task=_done(error=RuntimeError("failed")), heating=True)]
        with pytest.raises(RuntimeError, match="no kernel today"):
            await manager.get_rendered_notebook(NB)
        assert manager.get_pool_size(NB) == 1  # a refill is on its way (it would be 0 until a restart)
        assert not manager._pool.pools[NB][0].heating

    _as("bob", scenario)


def test_a_pooled_kernel_given_up_on_is_shut_down(manager: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def heat_for(notebook: str, user: str | None = None) -> preheat.Heated:
        assert user == "bob"
        return _heated(manager, "fresh-1", tmp_path)

    monkeypatch.setattr(manager, "_heat", heat_for)

    async def scenario() -> None:
        ended = _heated(manager, "ended-1", tmp_path, render=_done(error=RuntimeError("first cell failed")))
        manager._pool.pools[NB] = [preheat.PoolEntry(task=_done(ended), heating=True)]
        _task, _cache, kernel_id = await manager.get_rendered_notebook(NB)
        assert kernel_id == "fresh-1"
        assert manager.shut_down == [("ended-1", True)]  # not left running, owned by nobody, never culled
        assert "ended-1" not in manager._pool.unowned

    _as("bob", scenario)


@pytest.fixture
def voila_stub(monkeypatch: pytest.MonkeyPatch, manager: Any) -> dict[str, Any]:
    """Voila's renderer replaced by one whose rendering does what the test says (``seen`` records its start)."""
    import nbformat
    import voila.notebook_renderer
    import voila.utils

    behaviour: dict[str, Any] = {"render": None, "seen": []}

    class Renderer:
        def __init__(self, **kwargs: Any) -> None:
            self.notebook = nbformat.from_dict(WAITING_NOTEBOOK)
            self.template_name, self.theme = "lab", "light"
            self.rendered_cache: list[str] = []
            self.stop_generator = False

        async def initialize(self) -> None:
            pass

        async def generate_content_hybrid(self, kernel_id: str, kernel: Any) -> tuple[list[str], Any]:
            handoffs = sorted(manager._pool.handoff_dir.glob("*.json"))
            behaviour["seen"].append((kernel_id, [handoff.read_handoff(p) for p in handoffs], self.stop_generator))
            return await behaviour["render"]()

    monkeypatch.setattr(voila.notebook_renderer, "NotebookRenderer", Renderer)
    monkeypatch.setattr(voila.utils, "get_page_config", lambda **kwargs: {})
    manager._pool.voila = {"base_url": "/", "voila_configuration": None, "template_paths": [], "config": None,
                           "settings": {"contents_manager": None, "kernel_spec_manager": None}}
    return behaviour


def test_a_kernel_that_fails_while_heating_is_shut_down(manager: Any, voila_stub: dict[str, Any]) -> None:
    async def first_cell_fails() -> Any:
        raise RuntimeError("ImportError in the first cell")

    voila_stub["render"] = first_cell_fails

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="ended before it waited for its user"):
            await manager._heat(NB)
        assert manager.shut_down == [("k-1", True)] and not manager._pool.unowned and not manager._kernels

    asyncio.run(scenario())


def test_a_kernel_heated_for_a_waiting_request_is_handed_over_before_its_first_cell(
        manager: Any, voila_stub: dict[str, Any]) -> None:
    async def renders_on() -> Any:
        await asyncio.sleep(3600)  # the request's handler streams it; nobody waits for a marker

    voila_stub["render"] = renders_on

    async def scenario() -> None:
        heated = await asyncio.wait_for(manager._heat(NB, "bob"), 5)
        await asyncio.sleep(0)  # the rendering starts
        assert voila_stub["seen"] == [("k-1", ["bob"], True)]  # the user was there before anything ran
        assert manager.owner_of("k-1") == "bob" and not manager._pool.unowned  # bob's from the start
        assert not handoff.waiting_marker(heated.handoff).exists()
        heated.task.cancel()

    _as("bob", scenario)


# ---- a prod server with a pooled dashboard -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("preheat")
    root = work / "root"
    (root / "dashboards").mkdir(parents=True)
    (root / "dashboards" / "waiting.ipynb").write_text(json.dumps(WAITING_NOTEBOOK))
    env = server_env(work / "home", PHASE1_COOKIE_SECRET=secret(), PHASE1_ADMIN_TOKEN=secret(),
                     PHASE1_MAX_KERNELS_PER_USER=str(MAX_KERNELS), PHASE1_KERNEL_POOL="1",
                     PHASE1_USER="mallory")  # a server-wide identity must never reach a pooled kernel
    # one admin per test that runs kernels, so that no test depends on what another left running
    srv = start_server(work, env, admins=["bob", "alice", "dave", "carol", "erin"])
    try:
        yield srv
    finally:
        stop_server(srv.proc)


def _waiting_kernels(server: Server) -> list[str]:
    """Kernels of the pool waiting for their user now: logged ready and neither handed out nor given up on."""
    log = server.log_tail(10**7)
    ready = re.findall(r"pre-heated kernel (\S+) of dashboards/waiting.ipynb ready", log)
    gone = set(re.findall(r"pre-heated kernel (\S+) of dashboards/waiting.ipynb handed to", log))
    gone |= set(re.findall(r"pre-heated kernel (\S+) for dashboards/waiting.ipynb is gone", log))
    return [k for k in ready if k not in gone]


def _wait_waiting(server: Server, timeout_s: float = 120) -> str:
    """The kernel waiting in the pool (once one is): each test's own baseline, whatever ran before it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = _waiting_kernels(server)
        if waiting:
            return waiting[0]
        time.sleep(0.2)
    raise AssertionError(f"no pre-heated kernel waiting:\n{server.log_tail()}")


def _kernel_id(html: str) -> str:
    match = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', html)
    assert match, html[-1500:]
    return match.group(1)


def _xsrf(curl: Any) -> dict[str, str]:
    """Jupyter's XSRF header for a POST or DELETE of this curl's session (pages set the _xsrf cookie)."""
    curl("/phase1")
    token = next(line.split("\t")[-1].strip() for line in curl.jar.read_text().splitlines() if "\t_xsrf\t" in line)
    return {"X-XSRFToken": token}


def test_a_pooled_kernel_serves_the_session_user_and_the_header_cannot_be_spoofed(server: Server) -> None:
    pooled = _wait_waiting(server)
    bob = server.login("bob")
    # before it is handed out, nobody may reach a pooled kernel, not even a logged-in admin
    assert bob(f"/api/kernels/{pooled}").status == 403
    r = bob(PAGE, headers={"X-Phase1-User": "mallory"})
    assert r.status == 200 and "kernel user: bob" in r.text, r.text[-1500:]
    assert "before: (None, None)" in r.text  # no identity in its environment before the hand-off
    assert _kernel_id(r.text) == pooled
    assert f"pre-heated kernel {pooled} of dashboards/waiting.ipynb handed to bob" in server.log_tail(10**7)
    # from now on it is bob's kernel: alice is refused, bob is not
    alice = server.login("alice")
    assert alice(f"/api/kernels/{pooled}").status == 403
    assert bob(f"/api/kernels/{pooled}").status == 200


def test_the_pool_is_refilled_and_each_user_gets_a_kernel_of_their_own(server: Server) -> None:
    first = _wait_waiting(server)
    alice = server.login("alice", "alice-2")
    r = alice(PAGE)
    assert r.status == 200 and "kernel user: alice" in r.text, r.text[-1500:]
    assert _kernel_id(r.text) == first
    second = _wait_waiting(server)  # the refill after that hand-out
    assert second != first
    dave = server.login("dave")
    r = dave(PAGE)
    assert r.status == 200 and "kernel user: dave" in r.text, r.text[-1500:]
    assert _kernel_id(r.text) == second


def test_pooled_kernels_count_against_no_one_and_the_cap_still_holds(server: Server) -> None:
    carol = server.login("carol", "carol-cap")
    for _ in range(MAX_KERNELS):  # carol's own kernels, up to the cap, whatever the pool runs meanwhile
        r = carol(PAGE)
        assert r.status == 200 and "kernel user: carol" in r.text, r.text[-800:]
    pooled = _wait_waiting(server)  # a kernel waits in the pool: it runs, and it is nobody's
    running = [k["id"] for k in json.loads(carol("/api/kernels").body)]
    assert pooled in running and len(running) > MAX_KERNELS
    r = carol(PAGE)
    assert r.status == 429 and f"PHASE1_MAX_KERNELS_PER_USER is {MAX_KERNELS}" in r.text, (r.status, r.text[-800:])
    assert _waiting_kernels(server) == [pooled]  # refused: the kernel stays in the pool for the next one


def test_only_the_owner_shuts_a_kernel_down_and_nobody_a_pooled_one(server: Server) -> None:
    erin, alice = server.login("erin"), server.login("alice", "alice-intruder")
    erin_x, alice_x = _xsrf(erin), _xsrf(alice)
    pooled = _wait_waiting(server)
    # a pooled kernel: Voila's tab-close route, Jupyter's kernel and session routes all refuse it to everyone
    r = erin(f"/voila/api/shutdown/{pooled}", method="POST", headers=erin_x)
    assert r.status == 403 and "pre-heated pool" in r.json()["message"], (r.status, r.text[:300])
    assert erin(f"/api/kernels/{pooled}", method="DELETE", headers=erin_x).status == 403
    attach = {"path": "dashboards/waiting.ipynb", "type": "notebook", "name": "waiting.ipynb"}
    assert erin("/api/sessions", method="POST", headers=erin_x,
                json_body={**attach, "kernel": {"id": pooled}}).status == 403
    assert pooled in _waiting_kernels(server)
    # erin's kernel: another admin may neither shut it down nor reach it through a session
    r = erin(PAGE)
    assert r.status == 200 and "kernel user: erin" in r.text, r.text[-800:]
    kernel = _kernel_id(r.text)
    r = alice(f"/voila/api/shutdown/{kernel}", method="POST", headers=alice_x)
    assert r.status == 403 and "another user" in r.json()["message"], (r.status, r.text[:300])
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert alice(f"/api/kernels/{kernel}", method="DELETE", headers=alice_x).status == 403
    assert alice("/api/sessions", method="POST", headers=alice_x,
                 json_body={**attach, "kernel": {"id": kernel}}).status == 403
    r = erin("/api/sessions", method="POST", headers=erin_x, json_body={**attach, "kernel": {"id": kernel}})
    assert r.status == 201, (r.status, r.text[:300])
    session = r.json()["id"]
    assert alice(f"/api/sessions/{session}").status == 403
    assert alice(f"/api/sessions/{session}", method="DELETE", headers=alice_x).status == 403
    assert alice(f"/api/sessions/{session}", method="PATCH", headers=alice_x,
                 json_body={"kernel": {"name": "python3"}}).status == 403
    assert erin(f"/api/kernels/{kernel}").status == 200  # still running, still erin's
    assert "refused alice POST of kernel" in server.log_tail(10**7)
    # the owner may: her session, then (the tab-close beacon) her next kernel
    assert erin(f"/api/sessions/{session}", method="DELETE", headers=erin_x).status == 204
    assert erin(f"/api/kernels/{kernel}").status == 404
    r = erin(PAGE)
    assert r.status == 200, r.text[-800:]
    kernel = _kernel_id(r.text)
    assert erin(f"/voila/api/shutdown/{kernel}", method="POST", headers=erin_x).status == 204
    assert erin(f"/api/kernels/{kernel}").status == 404


def test_the_culler_skips_pooled_kernels_only_and_no_pool_is_offered_without_a_user(monkeypatch) -> None:
    import asyncio

    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    from phase1lib.server.kernels import KERNEL_OWNER, Phase1KernelManager

    manager = Phase1KernelManager()
    culled: list[str] = []

    async def base_cull(self, kernel_id: str) -> None:
        culled.append(kernel_id)

    monkeypatch.setattr(AsyncMappingKernelManager, "cull_kernel_if_idle", base_cull)
    monkeypatch.setattr(manager, "list_kernel_ids", lambda: ["pooled", "owned"])
    manager._pool.unowned = {"pooled"}
    asyncio.run(manager.cull_kernel_if_idle("pooled"))
    asyncio.run(manager.cull_kernel_if_idle("owned"))
    assert culled == ["owned"]
    manager._pool.unowned.clear()  # handed out: an ordinary kernel, culled like any other
    asyncio.run(manager.cull_kernel_if_idle("pooled"))
    assert culled == ["owned", "pooled"]
    # Voila asks for the pool size before using it: without a session user there is none to offer
    manager._pool.pools["dashboards/x.ipynb"] = [object()]  # type: ignore[list-item]
    assert manager.get_pool_size("dashboards/x.ipynb") == 0
    token = KERNEL_OWNER.set("bob")
    try:
        assert manager.get_pool_size("dashboards/x.ipynb") == 1
    finally:
        KERNEL_OWNER.reset(token)


def test_the_warm_up_builds_a_dashboard_without_a_user_and_leaves_no_widget(tmp_path: Path) -> None:
    from ipywidgets.widgets.widget import _instances

    from phase1lib.ui import ProjectsDashboard, SecuritisationDashboard

    before = set(_instances)
    for dashboard in (ProjectsDashboard, SecuritisationDashboard):
        ui_context.warm_up(dashboard)
    assert set(_instances) == before  # every widget it made is closed: nothing reaches a page

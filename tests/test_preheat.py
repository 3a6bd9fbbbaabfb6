"""Pre-heated dashboard kernels (phase1lib.server.preheat): a kernel started before anyone logs in waits for its
user, learns it from the server-side session only, is handed to one request, belongs to that user from then on,
and counts against no one's cap while it waits in the pool."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixtures import HELLO_NOTEBOOK, Server, secret, server_env, start_server, stop_server

from phase1lib import settings
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
    handoff = tmp_path / "h.json"
    env = {ui_context.HANDOFF_ENV: str(handoff), "PHASE1_USER": "mallory", "HTTP_X_PHASE1_USER": "mallory"}
    assert ui_context.session_user(env, timeout_s=0.05) is None  # nothing handed over yet: no user at all
    assert (tmp_path / "h.json.waiting").exists()  # it told the server it is ready

    def later() -> None:
        time.sleep(0.2)
        preheat.write_handoff(handoff, "bob")

    threading.Thread(target=later).start()
    started = time.monotonic()
    assert ui_context.session_user(env, timeout_s=10) == "bob"
    assert time.monotonic() - started >= 0.15  # it waited for the hand-off
    assert not handoff.exists()  # read once, then gone
    # a kernel started for a request (no hand-off) keeps reading its environment
    assert ui_context.session_user({"HTTP_X_PHASE1_USER": "carol", "PHASE1_USER": "x"}) == "carol"


def test_the_hand_off_file_is_written_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    preheat.write_handoff(path, "alice")
    assert json.loads(path.read_text()) == {"user": "alice"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temporary file left


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
    srv = start_server(work, env, admins=["bob", "alice"])
    try:
        yield srv
    finally:
        stop_server(srv.proc)


def _ready_kernels(server: Server, after: int = 0) -> list[str]:
    return re.findall(r"pre-heated kernel (\S+) of dashboards/waiting.ipynb ready", server.log_tail(10**7)[after:])


def _wait_ready(server: Server, count: int, timeout_s: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = _ready_kernels(server)
        if len(ready) >= count:
            return ready
        time.sleep(0.2)
    raise AssertionError(f"no pre-heated kernel ready:\n{server.log_tail()}")


def _kernel_id(html: str) -> str:
    match = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', html)
    assert match, html[-1500:]
    return match.group(1)


def test_a_pooled_kernel_serves_the_session_user_and_the_header_cannot_be_spoofed(server: Server) -> None:
    pooled = _wait_ready(server, 1)[0]
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
    ready = _wait_ready(server, 2)  # the refill after the first hand-out
    alice = server.login("alice", "alice-2")
    r = alice(PAGE)
    assert r.status == 200 and "kernel user: alice" in r.text, r.text[-1500:]
    assert _kernel_id(r.text) == ready[1]
    assert ready[1] != ready[0]


def test_pooled_kernels_count_against_no_one_and_the_cap_still_holds(server: Server) -> None:
    _wait_ready(server, 3)  # a kernel is waiting in the pool again
    bob = server.login("bob", "bob-cap")
    running = json.loads(bob("/api/kernels").body)
    assert len(running) >= 3  # bob's one, alice's one and the pooled one
    r = bob(PAGE)  # bob's second kernel: within the cap of 2 although three kernels run
    assert r.status == 200 and "kernel user: bob" in r.text, r.text[-800:]
    r = bob(PAGE)
    assert r.status == 429 and f"PHASE1_MAX_KERNELS_PER_USER is {MAX_KERNELS}" in r.text, (r.status, r.text[-800:])


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

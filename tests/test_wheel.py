"""From an installed wheel, outside any checkout: the samples, rulesets, presets and kernels are package data, so
`phase1 demo` runs and the server's default project loads (issue 16: things a wheel install loses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding only the built wheel; its dependencies are seen through the test venv's packages."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((work / "dist").glob("phase1_workbench-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # numpy, polars, ... not phase1lib
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    yield venv


def run_in(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHASE1_")}
    env.update(PHASE1_HOME=str(cwd / "home"), HOME=str(cwd))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path):
    out = run_in(installed, tmp_path, str(installed / "bin" / "python"), "-c",
                 "import phase1lib, json; print(json.dumps(phase1lib.__file__))")
    assert out.returncode == 0, out.stderr
    assert str(installed) in json.loads(out.stdout) and str(ROOT) not in json.loads(out.stdout)


def test_demo_runs_outside_any_checkout(installed: Path, tmp_path: Path):
    out = run_in(installed, tmp_path, str(installed / "bin" / "phase1"), "demo")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["cardinality"] == 1920 and summary["top"]
    assert "London DC Alpha" in out.stderr and not (tmp_path / ".phase1").exists()  # no stray .phase1/ in the cwd
    assert (tmp_path / "home" / "runs" / summary["run_id"]).is_dir()


def test_the_servers_default_project_and_the_v2_presets_ship(installed: Path, tmp_path: Path):
    code = ("from phase1lib.server.context import SAMPLE_PROJECT; from phase1lib.project import load_project; "
            "from phase1lib.presets import list_presets; from phase1lib.ruleset import load_ruleset; "
            "import json; p = load_project(SAMPLE_PROJECT); "
            "print(json.dumps([p.title, str(SAMPLE_PROJECT), load_ruleset('v2').version, "
            "sorted(x['name'] for x in list_presets())]))")
    out = run_in(installed, tmp_path, str(installed / "bin" / "python"), "-c", code)
    assert out.returncode == 0, out.stderr
    title, path, v2, presets = json.loads(out.stdout)
    assert title == "Slough DC Delta" and str(installed) in path and v2 == "v2" and "market_1920" in presets
    warm = run_in(installed, tmp_path, str(installed / "bin" / "phase1"), "warmup")
    assert warm.returncode == 0 and json.loads(warm.stdout)["kernels"] in ("ready", "unavailable"), warm.stderr

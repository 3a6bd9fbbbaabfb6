"""Every notebook and dashboard executes (nbval --nbval-lax, in a subprocess with a fresh PHASE1_HOME) and is
stored without outputs (nbstripout --verify)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIRS = ("notebooks", "dashboards")
EXPECTED = {"dashboards/Projects.ipynb", "dashboards/Permutations.ipynb", "dashboards/Run.ipynb",
            "dashboards/Securitisation.ipynb", "dashboards/Ops_Monitor.ipynb", "notebooks/quickstart.ipynb",
            "notebooks/sensitivity.ipynb", "notebooks/termsheet_walkthrough.ipynb",
            "notebooks/portfolio.ipynb"}


def notebooks() -> list[Path]:
    return sorted(p for d in NOTEBOOK_DIRS for p in (ROOT / d).glob("*.ipynb"))


def test_the_issue_notebooks_and_dashboards_exist() -> None:
    assert {p.relative_to(ROOT).as_posix() for p in notebooks()} >= EXPECTED


def test_notebooks_are_stored_without_outputs() -> None:
    nbstripout = Path(sys.executable).with_name("nbstripout")
    done = subprocess.run([str(nbstripout), "--verify", *map(str, notebooks())], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"run nbstripout on the notebooks: {done.stdout}{done.stderr}"


def test_every_notebook_and_dashboard_executes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PHASE1_REDIS_URL", "PHASE1_USER")}
    env.update(PHASE1_HOME=str(tmp_path / "home"), APP_ENV="dev", MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "--timeout", "600",
           *NOTEBOOK_DIRS]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= len(notebooks()), tail

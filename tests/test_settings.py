"""One Settings object: every environment variable parsed in phase1lib/settings.py, with its default and rule;
PHASE1_HOME's default does not depend on the working directory; nothing else reads the environment."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from phase1lib import settings
from phase1lib.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults():
    s = settings.Settings.from_env({})
    assert s.home == Path.home() / ".phase1" and s.app_env == "dev" and not s.prod
    assert s.max_permutations == 250_000 and s.max_portfolio_permutations == 5_000_000
    assert (s.session_idle_s, s.session_absolute_s) == (1800, 43200)
    assert s.redis_url is None and s.run_workers == 4 and s.terminals is True and s.kernels == "auto"
    assert settings.Settings.from_env({"APP_ENV": "prod"}).terminals is False  # a shell: off in prod


def test_the_home_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("PHASE1_HOME", raising=False)
    first = settings.get().home
    monkeypatch.chdir(tmp_path)
    assert settings.get().home == first == Path.home() / ".phase1"
    monkeypatch.setenv("PHASE1_HOME", "relative-home")
    assert settings.get().home == (tmp_path / "relative-home").resolve()


def test_every_problem_at_once_naming_the_variable():
    with pytest.raises(ConfigError) as info:
        settings.Settings.from_env({"APP_ENV": "staging", "PHASE1_MAX_PERMUTATIONS": "0",
                                    "PHASE1_RUN_WORKERS": "many", "PHASE1_TERMINALS": "perhaps",
                                    "PHASE1_SESSION_IDLE_MINUTES": "-1", "PHASE1_KERNELS": "gpu",
                                    "PHASE1_ALLOWED_HOSTS": "https://x.example"})
    text = str(info.value)
    for name in ("APP_ENV", "PHASE1_MAX_PERMUTATIONS", "PHASE1_RUN_WORKERS", "PHASE1_TERMINALS",
                 "PHASE1_SESSION_IDLE_MINUTES", "PHASE1_KERNELS", "PHASE1_ALLOWED_HOSTS"):
        assert name in text, name


def test_secrets_are_not_in_the_representation():
    s = settings.Settings.from_env({"PHASE1_ADMIN_TOKEN": "tok-" + "x" * 40, "PHASE1_COOKIE_SECRET": "c" * 40,
                                    "PHASE1_REDIS_URL": "redis://:pw@host:6379/0"})
    assert "tok-" not in repr(s) and "c" * 40 not in repr(s) and "pw@" not in repr(s)


def test_parsed_once_per_environment(monkeypatch):
    monkeypatch.setenv("PHASE1_MAX_PERMUTATIONS", "1234")
    a = settings.get()
    assert settings.get() is a and a.max_permutations == 1234
    monkeypatch.setenv("PHASE1_MAX_PERMUTATIONS", "4321")
    assert settings.get().max_permutations == 4321


def test_only_the_settings_module_reads_the_environment():
    reads = re.compile(r"os\.environ(?!\[\"JUPYTER_PATH\"\] =)|os\.getenv|environ\.get")
    offenders = []
    for path in (ROOT / "phase1lib").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if reads.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
    assert os.environ is not None  # the test itself may read it

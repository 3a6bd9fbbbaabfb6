"""Process configuration from the environment: PHASE1_HOME, APP_ENV and friends, read when asked."""

from __future__ import annotations

import os
from pathlib import Path

APP_ENVS = ("dev", "prod")


def phase1_home() -> Path:
    """Where runs and the embedded store live: PHASE1_HOME, default ``.phase1/`` in the working directory."""
    return Path(os.environ.get("PHASE1_HOME") or ".phase1").resolve()


def app_env() -> str:
    """APP_ENV: ``dev`` (default) or ``prod``; anything else is an error, never a silent dev."""
    value = (os.environ.get("APP_ENV") or "dev").strip().lower()
    if value not in APP_ENVS:
        raise ValueError(f"APP_ENV must be dev or prod (got {value!r})")
    return value

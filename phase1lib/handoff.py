"""The hand-off of a pre-heated kernel to its user, both sides in one place.

A pre-heated kernel is started before anyone logs in; its environment names a private file (``PHASE1_HANDOFF``,
:data:`phase1lib.settings.HANDOFF_ENV`) and nothing else about a user. The protocol on that path:

1. the kernel, once it waits for its user, writes the marker beside it (:func:`mark_waiting`; the server heats
   the next kernel when it sees it: :func:`waiting_marker`);
2. the server, when it hands the kernel to a request, writes ``{"user": <session user>}`` to the path, whole
   and private (:func:`write_handoff`);
3. the kernel reads it once and deletes it (:func:`wait_for_handoff`, :func:`read_handoff`).

The server may also write the file before the kernel gets there (a kernel heated for a known user): the
kernel then finds it at once, writes no marker and skips its warm-up (:func:`handed_over`).
This module reads no environment variable: the path comes from :class:`phase1lib.settings.Settings`.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

#: Suffix of the marker a pooled kernel writes beside its hand-off file once it waits for its user.
WAITING_SUFFIX = ".waiting"
#: Seconds between two looks at the hand-off file while a pre-heated kernel waits for its user.
POLL_S = 0.01


def waiting_marker(path: Path) -> Path:
    """The marker beside the hand-off file ``path`` that says its kernel waits for its user."""
    return path.with_name(path.name + WAITING_SUFFIX)


def mark_waiting(path: Path) -> None:
    """Tell the server the kernel of ``path`` waits for its user."""
    waiting_marker(path).touch()


def handed_over(path: Path) -> bool:
    """True once the server has written the user to ``path`` (and the kernel has not read it yet)."""
    return path.exists()


def write_handoff(path: Path, user: str) -> None:
    """Hand ``user`` to the kernel waiting on ``path``: written whole (temporary file, then rename), mode 600."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"user": user}, out)
    os.replace(tmp, path)


def read_handoff(path: Path) -> str | None:
    """The user a hand-off file names (None when it names nobody); FileNotFoundError before it is written."""
    data = json.loads(path.read_text(encoding="utf-8"))
    user = data.get("user") if isinstance(data, dict) else None
    return str(user or "").strip() or None


def wait_for_handoff(path: Path, timeout_s: float | None = None) -> str | None:
    """The kernel's side: say it waits (unless the user is already there), wait for the hand-off, read it once
    and delete it. TimeoutError after ``timeout_s`` (None: wait for as long as it takes)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if not handed_over(path):
        mark_waiting(path)
    while not handed_over(path):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no hand-off in {path} after {timeout_s} s")
        time.sleep(POLL_S)
    user = read_handoff(path)
    path.unlink(missing_ok=True)
    return user

"""The analyst's workspace: the one hand-over of "the current project, ranges and run" between the dashboards, the
REST API and any other front end of the same user, kept in the store (so it survives restarts and is shared by
every server process).
"""

from __future__ import annotations

from typing import Any

from .store import Store, Write

#: Store namespace of the per-user workspaces.
NS_WORKSPACE = "ui_workspace"
WORKSPACE_KEYS = ("project", "ranges", "preset", "ruleset", "sample", "last_run_id", "rank", "applied_hint", "compare")


class Workspace:
    """One user's hand-over: project, ranges, preset, ruleset, sample, last run, rank."""

    def __init__(self, store: Store, user: str | None):
        self.store = store
        self.key = user or "anonymous"

    def get(self) -> dict[str, Any]:
        """The current workspace (empty when nothing was saved yet)."""
        return dict(self.store.read(NS_WORKSPACE, self.key) or {})

    def update(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` (None removes a key) in one store transaction; returns the new workspace."""
        unknown = sorted(set(changes) - set(WORKSPACE_KEYS))
        if unknown:
            raise KeyError(f"unknown workspace keys: {', '.join(unknown)}")

        def fn(doc: dict[str, Any] | None) -> Write:
            new = dict(doc or {})
            for key, value in changes.items():
                if value is None:
                    new.pop(key, None)
                else:
                    new[key] = value
            return Write(doc=new, result=new)

        return dict(self.store.transact(NS_WORKSPACE, self.key, fn))

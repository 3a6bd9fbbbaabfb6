"""Admin and operator commands (admin, ops): added by the auth and ops work."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None

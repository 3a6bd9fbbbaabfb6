"""Engine commands (run, evaluate, top, runs, export): added by the engine and term-sheet work."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None

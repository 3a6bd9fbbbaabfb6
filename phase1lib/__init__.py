"""Phase-1 Workbench library: project inputs, permutation grids, the structuring engine, term sheets,
auth and ops. Finance is pure functions and small dataclasses; I/O sits at the edges."""

__version__ = "0.1.0"
ENGINE_VERSION = "1.0.0"

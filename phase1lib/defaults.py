"""Defaults of METHODOLOGY section 9, written once: the seed that drives every random draw and the Top-N size."""

DEFAULT_SEED = 424242
DEFAULT_TOPN = 20
#: The largest seed a request or portfolio may name (a signed 64-bit integer, as numpy's generators take).
MAX_SEED = 2**63 - 1

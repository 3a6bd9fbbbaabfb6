"""Defaults of METHODOLOGY section 9, written once: the seed that drives every random draw and the Top-N size."""

DEFAULT_SEED = 424242
DEFAULT_TOPN = 20

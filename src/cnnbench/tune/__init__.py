"""A study's tuning phase (``cnnbench compare --tune``): the same search for every model, on validation only."""

from .search import TuningSpec, check_tuning, default_seed, run_tuning
from .space import SearchSpace, parse_space

__all__ = ["SearchSpace", "TuningSpec", "check_tuning", "default_seed", "parse_space", "run_tuning"]

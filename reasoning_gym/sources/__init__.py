"""Problem sources: the synthetic generator, file loaders and the source registry.

Importing this package registers every built-in source with `make_source`.
"""

from reasoning_gym.sources.base import (
    SPLITS,
    ProblemSet,
    available_sources,
    make_source,
    register_source,
    split_of,
)
from reasoning_gym.sources import files, puzzles, synthetic  # noqa: F401  (register sources)

__all__ = ["SPLITS", "ProblemSet", "available_sources", "make_source", "register_source", "split_of"]

"""Graph -> graph passes, one job each."""
from .dce import eliminate_dead_code
from .fold import fold_constants

__all__ = ["eliminate_dead_code", "fold_constants"]

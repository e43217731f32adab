"""Graph -> graph passes, one job each. `compiler.pipeline` lists them in order."""
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import fold_constants
from .fuse import fuse
from .legalize import legalize_dtypes
from .simplify import simplify

__all__ = [
    "eliminate_common_subexpressions", "eliminate_dead_code", "fold_constants", "fuse",
    "legalize_dtypes", "simplify",
]

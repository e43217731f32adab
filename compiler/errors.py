"""The errors graphjit raises. Every message names the user's source line and says what to do."""
from __future__ import annotations

import numpy as np


class GraphjitError(Exception):
    """Base class of every error graphjit raises on purpose."""

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        if source:
            message = f"{source}: {message}"
        super().__init__(message)


class TracerBoolError(GraphjitError, TypeError):
    """A traced value was used where Python needs a concrete value (if, while, bool(), int())."""


class UnsupportedError(GraphjitError, NotImplementedError):
    """A NumPy function, ufunc method or argument form graphjit cannot trace."""


class ShapeError(GraphjitError, ValueError):
    """Shapes that do not broadcast, or a matmul whose inner dimensions differ."""


class ReadOnlyError(GraphjitError, ValueError):
    """A write into a read-only view (np.broadcast_to, np.diagonal), as NumPy refuses it."""


class DTypeError(GraphjitError, TypeError):
    """A dtype graphjit does not compile, or an operation NumPy would reject for this dtype."""


class ArgumentError(GraphjitError, TypeError):
    """An argument of a type graphjit cannot pass to compiled code."""


class CompileError(GraphjitError, RuntimeError):
    """A backend failed to compile a kernel (a graphjit bug: please report it)."""


class ConfigurationError(GraphjitError, ValueError):
    """A GRAPHJIT_* environment variable or setting has a value graphjit cannot use."""


class VerifyError(GraphjitError, AssertionError):
    """The IR verifier found a node whose shape or dtype disagrees with its op's rules."""


class AllocationError(GraphjitError, MemoryError):
    """A call's result or intermediate array could not be allocated (too big for memory)."""


class LinAlgError(GraphjitError, np.linalg.LinAlgError):
    """A linear-algebra step failed at run time as NumPy's would (a singular matrix, one that is
    not positive definite); still an np.linalg.LinAlgError, which is what NumPy users catch."""


def execution_error(message: str, cause: Exception, source: str | None) -> GraphjitError:
    """The error for an op that failed while running: a LinAlgError keeps its type."""
    kind = LinAlgError if isinstance(cause, np.linalg.LinAlgError) else GraphjitError
    return kind(message, source)

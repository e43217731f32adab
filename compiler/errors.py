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


# ---------------------------------------------------------------- NumPy's own refusals, traced
# A built-in exception raised while a function is traced (NumPy refusing an argument, an index
# out of range, a Python int that does not fit the array's dtype) is re-raised as a graphjit
# error that is also of the original type: `except ValueError` still catches it, and its message
# names the user's line like every other graphjit error.

class TracedTypeError(GraphjitError, TypeError):
    """NumPy (or Python) raised TypeError while graphjit traced the function."""


class TracedValueError(GraphjitError, ValueError):
    """NumPy (or Python) raised ValueError while graphjit traced the function."""


class TracedIndexError(GraphjitError, IndexError):
    """An index out of range (or of the wrong kind) while graphjit traced the function."""


class TracedKeyError(GraphjitError, KeyError):
    """A missing key while graphjit traced the function."""


class TracedOverflowError(GraphjitError, OverflowError):
    """A Python int that does not fit the dtype NumPy casts it to (NumPy raises too)."""


class TracedZeroDivisionError(GraphjitError, ZeroDivisionError):
    """A division by zero in Python arithmetic while graphjit traced the function."""


class TracedAttributeError(GraphjitError, AttributeError):
    """A missing attribute while graphjit traced the function."""


class TracedRuntimeError(GraphjitError, RuntimeError):
    """NumPy (or Python) raised RuntimeError while graphjit traced the function."""


TRACED_ERRORS: dict[type, type] = {
    TypeError: TracedTypeError, ValueError: TracedValueError, IndexError: TracedIndexError,
    KeyError: TracedKeyError, OverflowError: TracedOverflowError,
    ZeroDivisionError: TracedZeroDivisionError, AttributeError: TracedAttributeError,
    RuntimeError: TracedRuntimeError,
}


def as_graphjit_error(exc: BaseException, source: str | None) -> GraphjitError | None:
    """`exc` (of exactly a built-in type above) as its graphjit twin; None for any other."""
    twin = TRACED_ERRORS.get(type(exc))
    if twin is None:
        return None
    message = exc.args[0] if type(exc) is KeyError and exc.args else str(exc)
    return twin(str(message), source)

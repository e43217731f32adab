"""Frontend: trace plain NumPy functions into graphjit IR."""
from .trace import TracedFunction, trace

__all__ = ["TracedFunction", "trace"]

"""Find the user's source line for the node being traced."""
from __future__ import annotations

import functools
import os
import sys

import numpy as np

_OUR_DIRS = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (__file__, os.path.join(os.path.dirname(__file__), "..", "compiler", "x"),
              os.path.join(os.path.dirname(__file__), "..", "runtime", "x"),
              os.path.join(os.path.dirname(__file__), "..", "graphjit", "x"))
)
_SKIP_DIRS = tuple(os.path.normpath(d) + os.sep for d in _OUR_DIRS) + (
    os.path.dirname(np.__file__) + os.sep,
)


@functools.lru_cache(maxsize=4096)
def _is_ours(filename: str) -> bool:
    return os.path.normpath(os.path.abspath(filename)).startswith(_SKIP_DIRS) or \
        filename.startswith("<frozen")


def user_source() -> str:
    """`file.py:LINE` of the innermost frame outside graphjit and NumPy, or ''."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_ours(filename):
            return f"{os.path.basename(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""



def traceback_source(tb) -> str:
    """`file.py:LINE` of the innermost traceback frame outside graphjit and NumPy, or ''."""
    found = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not _is_ours(filename):
            found = f"{os.path.basename(filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found

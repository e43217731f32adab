"""Find the user's source line for the node being traced."""
from __future__ import annotations

import dis
import functools
import os
import sys

# Frames are recognised by the module that runs them, not by its file's path, so the same rule
# holds in an editable checkout, a site-packages install and a zipped wheel.
_OUR_PACKAGES = ("graphjit", "numpy")


@functools.lru_cache(maxsize=4096)
def _is_ours(module: str | None, filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    if not module:
        return False
    return any(module == package or module.startswith(package + ".")
               for package in _OUR_PACKAGES)


def user_source() -> str:
    """`file.py:LINE` of the innermost frame outside graphjit and NumPy, or ''."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_ours(frame.f_globals.get("__name__"), filename):
            return f"{os.path.basename(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""



@functools.lru_cache(maxsize=1024)
def _opcodes(code) -> dict[int, str]:
    return {instruction.offset: instruction.opname for instruction in dis.get_instructions(code)}


def caller_opcode() -> str | None:
    """The bytecode the innermost user frame is running (BINARY_SUBSCR for `table[ids]`,
    STORE_SUBSCR for `table[i] = v`), so a conversion NumPy asks for can say why it happened."""
    frame = sys._getframe(1)
    while frame is not None and _is_ours(frame.f_globals.get("__name__"),
                                         frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None
    return _opcodes(frame.f_code).get(frame.f_lasti)


def traceback_source(tb) -> str:
    """`file.py:LINE` of the innermost traceback frame outside graphjit and NumPy, or ''."""
    found = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not _is_ours(tb.tb_frame.f_globals.get("__name__"), filename):
            found = f"{os.path.basename(filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found

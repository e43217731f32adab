"""`fn.lower(*args).profile(*args)` / `gj.profile(fn, *args)`: where a compiled call's time
goes (runtime/profile.py does the timing; this is the glue to the jitted function)."""
from __future__ import annotations

import copy
from typing import Any

from graphjit.runtime.profile import ROUND_SECONDS, Profile, median_call_seconds, profile_executable


def profile(jitted: Any, *args: Any, min_time: float = ROUND_SECONDS, eager: bool = True,
            **kwargs: Any) -> Profile:
    """Time every kernel, BLAS call and host step of `jitted` on these arguments, the dispatch
    overhead of a whole call and (with `eager`) the undecorated function. The arguments are
    copied first, so functions that update their arguments in place leave the caller's alone."""
    from graphjit.jit import JitFunction, jit

    if not isinstance(jitted, JitFunction):
        jitted = jit(jitted)
    call_args, call_kwargs = copy.deepcopy((args, kwargs))
    lowered = jitted.lower(*call_args, **call_kwargs)
    _, leaves, _ = jitted._key_and_leaves(call_args, call_kwargs)
    result = profile_executable(lowered.executable, list(leaves), jitted.__name__,
                                call=lambda: jitted(*call_args, **call_kwargs),
                                min_time=min_time)
    if eager:
        eager_args, eager_kwargs = copy.deepcopy((args, kwargs))
        result.eager_seconds, _ = median_call_seconds(
            lambda: jitted.fn(*eager_args, **eager_kwargs), min_time / 2)
    return result

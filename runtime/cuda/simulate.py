"""Warp shuffles for Numba's CUDA simulator, which has none.

Simulated CUDA threads are Python threads and `syncthreads` is a barrier over the block's live
threads, so a shuffle is emulated as an exchange through a per-block table between two barriers.
That is only correct when every thread of the block calls the same shuffles in the same order,
which the rendered reductions guarantee (their shuffles sit outside any per-thread branch), as a
GPU's `0xffffffff` mask needs anyway. The simulated warp is `SIMULATED_WARP` threads wide
(runtime/cuda/launch.py), so the few threads of a simulated block still form several warps.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .launch import SIMULATED_WARP


def _exchange(value: Any, source: Callable[[int], int]) -> Any:
    thread = threading.current_thread()
    table = thread._manager.__dict__.setdefault("_graphjit_shuffle", {})
    me = thread.thread_id
    table[me] = value
    thread.syncthreads()
    result = table.get(source(me), value)
    thread.syncthreads()          # nobody overwrites the table before everyone has read it
    return result


def shfl_down_sync(mask: int, value: Any, delta: int) -> Any:
    """The value of lane + delta of the same warp (a lane past the warp's end keeps its own)."""
    def source(me: int) -> int:
        return me + delta if me % SIMULATED_WARP + delta < SIMULATED_WARP else me
    return _exchange(value, source)


def shfl_sync(mask: int, value: Any, lane: int) -> Any:
    """The value of `lane` of the same warp."""
    return _exchange(value, lambda me: me - me % SIMULATED_WARP + lane)

"""`gj.benchmark(fn, *args)`: the undecorated function against the compiled one, side by side.

    >>> result = gj.benchmark(block, x, w, b, g)
    >>> print(result)          # eager median, compiled median, speedup, compile time, agreement

The compile time is the first call of a fresh `JitFunction` (so a function that was already called
with these shapes still shows what compiling costs). Arguments are copied first, so functions that
update their arguments in place never change the caller's arrays.
"""
from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .jit import JitFunction, jit

DEFAULT_REPEAT = 7
DEFAULT_MIN_TIME_S = 0.02
DEFAULT_WARMUP = 3
# (rtol, atol) by result dtype: compiled code may reassociate sums and use polynomial exp/tanh
TOLERANCES = {
    np.dtype(np.float16): (1e-2, 1e-2),
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-9, 1e-12),
}


@dataclass
class BenchmarkResult:
    """Timings of one benchmark (seconds). `str()` gives a small table."""

    name: str
    eager_samples: list[float]
    compiled_samples: list[float]
    compile_time: float
    agree: bool
    max_abs_error: float
    arguments: str = ""
    calls_per_sample: dict[str, int] = field(default_factory=dict)
    min_time: float = DEFAULT_MIN_TIME_S

    @property
    def eager(self) -> float:
        return statistics.median(self.eager_samples)

    @property
    def compiled(self) -> float:
        return statistics.median(self.compiled_samples)

    @property
    def speedup(self) -> float:
        return self.eager / self.compiled if self.compiled > 0 else math.inf

    def __str__(self) -> str:
        agreement = "yes" if self.agree else "NO"
        rows = [
            ("eager (NumPy), median", format_seconds(self.eager)),
            ("compiled, median", format_seconds(self.compiled)),
            ("speedup", f"{self.speedup:.2f}x"),
            ("compile (first call)", format_seconds(self.compile_time)),
            ("results agree", f"{agreement} (max abs diff {self.max_abs_error:.2g})"),
        ]
        width = max(len(label) for label, _ in rows)
        header = f"gj.benchmark: {self.name}({self.arguments})"
        samples = (f"  (medians of {len(self.eager_samples)} samples of >= "
                   f"{format_seconds(self.min_time)} each, after warm-up)")
        lines = [header] + [f"  {label.ljust(width)}  {value:>12}" for label, value in rows]
        return "\n".join(lines + [samples])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:   # IPython shows the table
        printer.text(str(self))


def format_seconds(seconds: float) -> str:
    """1.234 s, 12.3 ms, 45.6 us: three significant digits in the unit that reads best."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


def describe_args(args: tuple) -> str:
    """`f32[8,16], f32[16], 3` (how the table names the inputs)."""
    from graphjit.compiler.dtypes import short_name

    parts = []
    for arg in args:
        if isinstance(arg, np.ndarray):
            parts.append(f"{short_name(arg.dtype)}[{','.join(str(d) for d in arg.shape)}]")
        else:
            parts.append(type(arg).__name__ if isinstance(arg, (list, tuple, dict)) else repr(arg))
    return ", ".join(parts)


def copy_args(value: Any) -> Any:
    """Copies of the arrays in (nested tuples, lists, dicts of) arguments; scalars as they are."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (tuple, list)):
        return type(value)(copy_args(v) for v in value)
    if isinstance(value, dict):
        return {k: copy_args(v) for k, v in value.items()}
    return value


def _leaves(value: Any) -> list:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for k in sorted(value, key=str) for leaf in _leaves(value[k])]
    return [value]


def compare_results(expected: Any, actual: Any) -> tuple[bool, float]:
    """(all leaves close with dtype-aware tolerances, the largest absolute difference)."""
    expected_leaves, actual_leaves = _leaves(expected), _leaves(actual)
    if len(expected_leaves) != len(actual_leaves):
        return False, math.inf
    agree, worst = True, 0.0
    for want, got in zip(expected_leaves, actual_leaves):
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape:
            return False, math.inf
        rtol, atol = TOLERANCES.get(np.result_type(want.dtype, got.dtype), (0.0, 0.0))
        if want.size:
            difference = np.abs(want.astype(np.float64) - got.astype(np.float64))
            finite = difference[np.isfinite(difference)]
            worst = max(worst, float(finite.max()) if finite.size else 0.0)
        agree = agree and bool(np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True))
    return agree, worst


def time_calls(call: Callable[[], Any], repeat: int = DEFAULT_REPEAT,
               min_time: float = DEFAULT_MIN_TIME_S,
               warmup: int = DEFAULT_WARMUP) -> tuple[list[float], int]:
    """Seconds per call for `repeat` samples of at least `min_time` each (after `warmup` calls),
    and the number of calls per sample."""
    for _ in range(warmup):
        call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-9)
    calls = max(1, math.ceil(min_time / once))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - start) / calls)
    return samples, calls


def _fresh_jit(fn: Callable) -> tuple[Callable, JitFunction]:
    """(the undecorated function, a new JitFunction with the same options and an empty cache)."""
    if isinstance(fn, JitFunction):
        return fn.fn, JitFunction(fn.fn, static_argnums=fn.static_argnums,
                                  static_argnames=fn.static_argnames, target=fn.target)
    return fn, jit(fn)


def benchmark(fn: Callable, *args: Any, repeat: int = DEFAULT_REPEAT,
              min_time: float = DEFAULT_MIN_TIME_S, warmup: int = DEFAULT_WARMUP,
              **kwargs: Any) -> BenchmarkResult:
    """Time `fn` eagerly (NumPy) and compiled with `gj.jit`; check that both give the same result.

    `fn` is a `gj.jit` function (its undecorated `.fn` is the eager side) or a plain function.
    Each side runs `warmup` calls, then `repeat` samples of at least `min_time` seconds; the
    medians are reported. A disagreement between the two results is reported and warned about.
    """
    eager_fn, compiled_fn = _fresh_jit(fn)
    eager_args, compiled_args = copy_args(args), copy_args(args)
    expected = eager_fn(*copy_args(args), **kwargs)
    start = time.perf_counter()
    actual = compiled_fn(*copy_args(args), **kwargs)
    compile_time = time.perf_counter() - start
    agree, max_abs_error = compare_results(expected, actual)
    name = getattr(eager_fn, "__name__", "fn")
    if not agree:
        warnings.warn(f"gj.benchmark: compiled {name} differs from NumPy "
                      f"(max abs diff {max_abs_error:.3g})", RuntimeWarning, stacklevel=2)
    eager_samples, eager_calls = time_calls(lambda: eager_fn(*eager_args, **kwargs), repeat,
                                            min_time, warmup)
    compiled_samples, compiled_calls = time_calls(
        lambda: compiled_fn(*compiled_args, **kwargs), repeat, min_time, warmup)
    return BenchmarkResult(name, eager_samples, compiled_samples, compile_time, agree,
                           max_abs_error, describe_args(args),
                           {"eager": eager_calls, "compiled": compiled_calls}, min_time)

"""The per-epoch progress line that `fit` prints, in plain text (no dependency).

On a terminal it redraws one line per step; elsewhere (logs, notebooks' captured output) it prints
only the finished line of each epoch, so captured output stays short.
"""
from __future__ import annotations

import sys
import time
from typing import IO

BAR_WIDTH = 30


def format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{name}: {value:.4f}" for name, value in logs.items())


def format_time_per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class ProgressBar:
    """`update(step, logs)` after each step, `finish(logs)` at the end of the epoch.

    verbose: 0 silent, 1 a bar (redrawn on a terminal), 2 one line per epoch.
    """

    def __init__(self, total_steps: int, verbose: int = 1, stream: IO[str] | None = None):
        self.total = max(total_steps, 1)
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interactive = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self.steps = 0

    def _bar(self, step: int) -> str:
        digits = len(str(self.total))
        filled = int(BAR_WIDTH * step / self.total)
        arrow = ">" if filled < BAR_WIDTH else ""
        bar = "=" * filled + arrow + "." * (BAR_WIDTH - filled - len(arrow))
        return f"{step:>{digits}}/{self.total} [{bar}]"

    def _line(self, step: int, logs: dict[str, float]) -> str:
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(step, 1)
        parts = [self._bar(step), f"{elapsed:.1f}s {format_time_per_step(per_step)}"]
        if logs:
            parts.append(format_logs(logs))
        return " - ".join(parts)

    def update(self, step: int, logs: dict[str, float]) -> None:
        self.steps = step
        if self.interactive:
            self.stream.write("\r" + self._line(step, logs))
            self.stream.flush()

    def finish(self, logs: dict[str, float]) -> None:
        if self.verbose == 0:
            return
        prefix = "\r" if self.interactive else ""
        self.stream.write(prefix + self._line(self.steps or self.total, logs) + "\n")
        self.stream.flush()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

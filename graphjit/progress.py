"""The progress line that `fit`, `evaluate` and `predict` print, in plain text (no dependency).

verbose=1 draws Keras' bar: redrawn in place (with an ETA) on a terminal or in a Jupyter cell, a
few times a second at most; elsewhere (logs, captured output) only each epoch's finished line, so
captured output stays short. verbose=2 prints one line per epoch without the bar; 0 is silent;
"auto" means 1, as in Keras.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO, Any

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1  # redraw at most this often: reading the logs syncs with the compiled step


def auto_verbose(verbose: Any) -> int:
    """Keras' verbose values: "auto" is 1; 0, 1 and 2 as given."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        from graphjit.compiler.errors import GraphjitError

        raise GraphjitError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def format_logs(logs: Mapping[str, float]) -> str:
    return " - ".join(f"{name}: {value:.4f}" for name, value in logs.items())


def format_time_per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def _redraws_in_place(stream: IO[str]) -> bool:
    if getattr(stream, "isatty", lambda: False)():
        return True
    # a Jupyter cell renders "\r" as a redraw although its stream is not a terminal
    return "ipykernel" in sys.modules and stream in (sys.stdout, sys.stderr)


class ProgressBar:
    """`update(step, logs)` after each step, `finish(logs)` at the end of the epoch.

    `total_steps` may be None (a generator of unknown length): the bar then shows the step count.
    `logs` may be a lazy mapping; it is read only when a line is drawn.
    """

    def __init__(self, total_steps: int | None, verbose: Any = 1,
                 stream: IO[str] | None = None):
        self.total = total_steps if total_steps is None else max(int(total_steps), 1)
        self.verbose = auto_verbose(verbose)
        self.stream = stream or sys.stdout
        self.interactive = self.verbose == 1 and _redraws_in_place(self.stream)
        self.start = time.perf_counter()
        self.steps = 0
        self._last_draw = -float("inf")

    def _bar(self, step: int) -> str:
        if self.total is None:
            return f"{step}/Unknown"
        digits = len(str(self.total))
        filled = int(BAR_WIDTH * step / self.total)
        arrow = ">" if filled < BAR_WIDTH else ""
        bar = "=" * filled + arrow + "." * (BAR_WIDTH - filled - len(arrow))
        return f"{step:>{digits}}/{self.total} [{bar}]"

    def _line(self, step: int, logs: Mapping[str, float] | None, final: bool) -> str:
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(step, 1)
        if final or self.total is None:
            timing = f"{format_duration(elapsed)} {format_time_per_step(per_step)}"
        else:
            timing = f"ETA: {format_duration(per_step * (self.total - step))}"
        if self.verbose == 2:
            parts = [f"{step}/{self.total or step}", format_duration(elapsed),
                     format_time_per_step(per_step)]
        else:
            parts = [self._bar(step), timing]
        if logs:
            parts.append(format_logs(logs))
        return " - ".join(parts)

    def update(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        self.steps = step
        if not self.interactive:
            return
        now = time.perf_counter()
        if now - self._last_draw < REDRAW_SECONDS and step != self.total:
            return
        self._last_draw = now
        self.stream.write("\r" + self._line(step, logs, final=False) + "\033[K")
        self.stream.flush()

    def finish(self, logs: Mapping[str, float] | None) -> None:
        if self.verbose == 0:
            return
        prefix = "\r" if self.interactive else ""
        suffix = "\033[K" if self.interactive else ""
        self.stream.write(prefix + self._line(self.steps or self.total or 0, logs, final=True)
                          + suffix + "\n")
        self.stream.flush()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

"""Progress of long steps (training epochs, reading data, re-estimating, drawing figures).

On a terminal a rich progress bar; without one (a log file, CI, a pipe) plain lines on stderr,
one per step, so a captured log shows how far a run got; nothing when disabled.

    with progress_bar("demo", total=30) as step:
        for epoch in ...:
            step(status="loss 0.31 dice 0.52")
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: Without a terminal, a task of at most this many steps gets a line per step; a longer one a line
#: per tenth (and at least every 5 seconds).
PLAIN_EVERY_STEP = 100


def interactive(stream: Any = None) -> bool:
    """True when ``stream`` (default stderr) is a terminal: progress bars, else plain lines."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, completed: int = 0, enabled: bool = True,
                 stream: Any = None) -> Iterator[Callable[..., None]]:
    """A context yielding ``step(advance=1, status="")``: a rich bar on a terminal, one plain line
    per step ("<description>: <done>/<total> <status> (<seconds> s)"; a long task: per tenth)
    otherwise, nothing when not ``enabled``."""
    if not enabled:
        yield lambda advance=1, status="": None
        return
    out = sys.stderr if stream is None else stream
    if interactive(out):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=Console(file=out)) as bar:
            task = bar.add_task(description, total=total, completed=completed, status="")
            yield lambda advance=1, status="": bar.update(task, advance=advance, status=status)
        return
    done = [int(completed)]
    t0 = time.perf_counter()
    last = [t0]
    tenth = max(int(total) // 10, 1)

    def step(advance: int = 1, status: str = "") -> None:
        before = done[0]
        done[0] += int(advance)
        now = time.perf_counter()
        # every step of a short task (epochs); of a long one (images), each tenth, the last, or every 5 s
        if total > PLAIN_EVERY_STEP and done[0] < total and done[0] // tenth == before // tenth \
                and now - last[0] < 5.0:
            return
        last[0] = now
        tail = f" {status}" if status else ""
        print(f"{description}: {done[0]}/{total}{tail} ({now - t0:.1f} s)", file=out, flush=True)

    yield step


def track(items: Iterable[T], description: str, *, total: int | None = None, enabled: bool = True,
          stream: Any = None) -> Iterator[T]:
    """``items`` with progress (:func:`progress_bar`), one step per item."""
    items = list(items) if total is None else items
    n = len(items) if total is None else total  # type: ignore[arg-type]
    with progress_bar(description, n, enabled=enabled, stream=stream) as step:
        for item in items:
            yield item
            step()


__all__ = ["interactive", "progress_bar", "track"]

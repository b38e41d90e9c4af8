"""Which epochs are logged: the original code's schedule, log-spaced, every epoch, or a list.

Epochs are 1-based: epoch ``e`` is the state after ``e`` epochs of training. The original Keras
code numbered epochs from 0 and logged after ``do_report(epoch)`` (methods.md section 3); it is
written once here, as :func:`do_report`, and everything else derives from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import numpy as np

from ..errors import ConfigError

Schedule = Union[str, Sequence[int]]


def do_report(keras_epoch: int) -> bool:
    """The original code's ``do_report(epoch)`` on Keras's 0-based epoch: every epoch below 20,
    every 5th below 100, every 10th below 200, then every 100th (methods.md section 3)."""
    k = int(keras_epoch)
    return k >= 0 and (k < 20 or (k < 100 and k % 5 == 0) or (k < 200 and k % 10 == 0) or k % 100 == 0)


def in_code_schedule(epoch: int) -> bool:
    """Whether the original code logs infoflow's 1-based ``epoch``: Keras's epoch ``k`` ends after
    ``k + 1`` epochs of training, so this is ``do_report(epoch - 1)``: epochs 1-20, 21, 26, ...,
    96, 101, 111, ..., 191, then 201, 301, ... The single definition of the code schedule
    (:func:`code_schedule` and :func:`schedule_predicate` use it)."""
    return int(epoch) >= 1 and do_report(int(epoch) - 1)


def code_schedule(epochs: int) -> list[int]:
    """The original code's logged epochs among 1..``epochs`` (1-based), exactly: 1-20, 21, 26,
    ..., 96, 101, 111, ..., 191, 201, 301, ..., 9901 (144 epochs for 10,000). The last epoch is
    *not* added (the original did not log it): with 10,000 epochs the last logged one is 9,901."""
    return [e for e in range(1, int(epochs) + 1) if in_code_schedule(e)]


def log_schedule(epochs: int, points: int = 30) -> list[int]:
    """About ``points`` log-spaced epochs in [1, epochs], always including 1 and ``epochs``."""
    if epochs < 1:
        return []
    grid = np.unique(np.round(np.geomspace(1, epochs, num=max(points, 2))).astype(int))
    return sorted(set(grid.tolist()) | {1, epochs})


def logged_epochs(schedule: str, epochs: int, *, log_points: int = 30) -> list[int]:
    if schedule == "code":
        return code_schedule(epochs)
    if schedule == "log":
        return log_schedule(epochs, log_points)
    if schedule == "all":
        return list(range(1, epochs + 1))
    raise ConfigError(f"train.schedule must be 'code', 'log' or 'all', got {schedule!r}")


def schedule_predicate(schedule: Schedule, epochs: int | None = None, *, log_points: int = 30) -> Callable[[int], bool]:
    """``epoch -> logged?`` for ``"code"``, ``"log"``, ``"all"`` or an explicit list of epochs
    (1-based). ``epochs``: the planned number of epochs ("log" needs it and always logs the
    last one; "code" is the original's schedule exactly, :func:`infoflow.train.in_code_schedule`,
    which does not add the last epoch)."""
    if isinstance(schedule, str):
        if schedule not in ("code", "log", "all"):
            raise ConfigError(f"schedule must be 'code', 'log', 'all' or a list of epochs, got {schedule!r}")
        if epochs is not None:
            if int(epochs) < 1:
                raise ConfigError(f"epochs must be at least 1, got {epochs!r}")
            if schedule == "code":  # the same epochs whatever the plan (training may run past it)
                return in_code_schedule
            fixed = set(logged_epochs(schedule, int(epochs), log_points=log_points))
            if schedule == "all":
                return lambda e: int(e) >= 1
            return lambda e: int(e) in fixed
        if schedule == "log":
            raise ConfigError("schedule 'log' needs the number of epochs (epochs=...)")
        return in_code_schedule if schedule == "code" else (lambda e: int(e) >= 1)
    try:
        wanted = {int(e) for e in schedule}
    except (TypeError, ValueError):
        raise ConfigError(f"schedule must be 'code', 'log', 'all' or a list of epochs, got {schedule!r}") from None
    if any(e < 1 for e in wanted):
        raise ConfigError(f"logged epochs are 1-based: got {sorted(wanted)}")
    return lambda e: int(e) in wanted

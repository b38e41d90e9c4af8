"""Tracking a network while it trains: which epochs are logged, the probe set, and the one body of
a logged epoch that ``infoflow train``, the Tracker API and the Lightning callback all call.

* :mod:`.schedule` -- logged-epoch schedules (the original's ``do_report``, log-spaced, all, a list).
* :mod:`.probe_set` -- :class:`ProbeSet`: the probe samples and their classes Y, built and checked once.
* :mod:`.grad_stats` -- :class:`GradStats`: kernel norms and gradient statistics per layer.
* :mod:`.mi` -- :class:`MITracker` (probe -> distances -> estimates -> run store) and
  :func:`reestimate` (the same estimates from the stored matrices).
* :mod:`.epochs` -- :class:`LoggedEpochs`: statistics, predictions, MI and callbacks of a logged epoch.
"""

from .epochs import EpochCallback, LoggedEpochs
from .grad_stats import KERNEL_MODULES, GradStats, layer_kernels
from .mi import MITracker, default_layers, estimate_matrices, estimates_path, floor_notes, reestimate
from .probe_set import PROBE_KEYS, ProbeSet, labelings_for, make_labelings, probe_arrays
from .schedule import (
    Schedule,
    code_schedule,
    do_report,
    in_code_schedule,
    log_schedule,
    logged_epochs,
    schedule_predicate,
)

__all__ = [
    "EpochCallback", "LoggedEpochs", "KERNEL_MODULES", "GradStats", "layer_kernels", "MITracker", "default_layers",
    "estimate_matrices", "estimates_path", "floor_notes", "reestimate", "PROBE_KEYS", "ProbeSet", "probe_arrays", "labelings_for", "make_labelings", "Schedule",
    "code_schedule", "do_report", "in_code_schedule", "log_schedule", "logged_epochs", "schedule_predicate",
]  # fmt: skip

"""Activation capture and the probe engine (distance matrices under a memory budget).

- :func:`capture`: forward hooks that collect layer outputs and are always removed.
- :func:`pairwise_sq_dists`: accurate squared Euclidean distance matrices (error model in
  :mod:`infoflow.probe.distances`), of one array or of :class:`RowBlocks` (per-batch outputs).
- :func:`probe_layers`: distances and binned symbols of every probe layer of a model for a probe
  set, holding at most a memory budget of activations (:mod:`infoflow.probe.engine`).
"""

from .capture import Captured, capture, forward_hooks, resolve_layers
from .distances import DEFAULT_GRAM_ERROR, DEFAULT_NEAR, NEAR_FACTOR, RowBlocks, near_for, pairwise_sq_dists
from .engine import ProbeResult, ProbeWarning, bin_symbol_ids, plan_groups, probe_layers

__all__ = [
    "Captured",
    "DEFAULT_GRAM_ERROR",
    "DEFAULT_NEAR",
    "NEAR_FACTOR",
    "ProbeResult",
    "ProbeWarning",
    "RowBlocks",
    "bin_symbol_ids",
    "capture",
    "forward_hooks",
    "near_for",
    "pairwise_sq_dists",
    "plan_groups",
    "probe_layers",
    "resolve_layers",
]

"""Online MI: at a logged epoch, probe -> distances -> estimates -> run store; and the same
estimates redone later from the stored matrices (``infoflow estimate``).

:class:`MITracker` is the one object that turns a network's state into stored distance matrices
and a tidy table of estimates; :func:`reestimate` re-runs only its second half
(:func:`estimate_matrices`) on the stored matrices, so online and re-estimated tables agree bit
for bit.

No raw activation is ever written: per layer and logged epoch the run keeps an N x N float32
distance matrix and N binned symbol ids per bin size.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ..progress import track
from torch import nn

from ..config import MIConfig
from ..errors import RunError
from ..estimators import estimate_layers
from ..estimators.widths import SCALE_AWARE_KERNEL, parse_kernels
from ..network import LayerSpec, find_probe_layers, model_device
from ..probe import DEFAULT_NEAR, near_for, probe_layers
from ..probe.heap import retained_heap
from ..runs import Matrices, RunDir
from ..speed import full_precision
from .probe_set import ProbeSet, labelings_for

log = logging.getLogger("infoflow")

#: ``MIConfig.memory_budget_gb = "auto"``: GiB on a device other than CUDA (the CPU's host memory).
AUTO_BUDGET_GB = 4.0
#: ``MIConfig.memory_budget_gb = "auto"`` on CUDA: this fraction of the device's free memory.
AUTO_DEVICE_FRACTION = 0.5


def probe_budget_bytes(budget_gb: float | str, device: torch.device | str) -> int:
    """Bytes of activations the probe may hold at once on ``device``: ``budget_gb`` GiB, or for
    "auto" :data:`AUTO_DEVICE_FRACTION` of a CUDA device's free memory now (the kept activations
    live there) and :data:`AUTO_BUDGET_GB` GiB elsewhere."""
    if budget_gb != "auto":
        return int(float(budget_gb) * 2**30)
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free * AUTO_DEVICE_FRACTION)
    return int(AUTO_BUDGET_GB * 2**30)


def estimate_matrices(m: Matrices, labelings: dict[str, np.ndarray], *, kernels: Sequence[str],
                      estimators: Sequence[str], renyi_alpha: float,
                      subset: np.ndarray | None = None,
                      permutations: int = MIConfig.permutations) -> pd.DataFrame:
    """The tidy table of estimates of one logged epoch from what the run stores for it.

    ``subset``: indices of probe samples to keep (re-estimation on a probe subset).
    ``kernels``: kernel specs of KDE and Renyi (``MIConfig.kernels``).
    ``permutations``: label permutations of the I(Y;M) ``baseline`` column (``MIConfig.permutations``;
    seeded by epoch, layer and labelling, so online and re-estimated tables agree bit for bit).
    """
    m = m.take(subset)
    labs = labelings if subset is None else {k: np.asarray(v)[np.asarray(subset)] for k, v in labelings.items()}
    return estimate_layers(
        m.dist, names=list(m.names), dims=[int(d) for d in m.dims], epoch=m.epoch, labelings=labs,
        kernels=tuple(kernels), bin_codes=m.codes if "bin" in estimators else None,
        dist_x=m.dist_input, renyi_alpha=renyi_alpha, estimators=tuple(estimators), permutations=permutations)


class MITracker:
    """Records MI of every probe layer at the epochs it is called for.

    Args:
        run: the run directory to write into.
        probe: the probe set and its output classes.
        mi: estimator settings.
        layers: function model -> [(name, module)] of probe layers; default: ``model.probe_modules()``
            for infoflow's U-Net, automatic detection for any other network.
        device: where the probe forward runs (default: the model's device).
    """

    def __init__(self, run: RunDir, probe: ProbeSet, mi: MIConfig, *,
                 layers: Callable[[nn.Module], LayerSpec] | None = None,
                 device: torch.device | None = None) -> None:
        self.run = run
        self.probe = probe
        self.mi = mi
        self.layers = layers or default_layers
        self.device = device
        self._images = torch.from_numpy(np.ascontiguousarray(probe.images))
        self._subset = probe.record.subset(mi.subset)  # samples the online estimates use (None: all)
        #: seconds of the last :meth:`log_epoch`: the probe's breakdown (dry_run, forward, hash,
        #: distances, input), then probe (all of it), store, estimate, total.
        self.last_timings: dict[str, float] = {}
        self._heap: ExitStack | None = None  # retained_heap() from the first log_epoch (mi.retain_memory)
        probe.save(run)

    def close(self) -> None:
        """Give back the memory kept since the first :meth:`log_epoch` (``mi.retain_memory``) and
        restore the C library's settings. Training calls it at its end; idempotent."""
        if self._heap is not None:
            self._heap.close()
            self._heap = None

    def __enter__(self) -> "MITracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_epoch(self, model: nn.Module, epoch: int) -> pd.DataFrame:
        """Probe ``model`` now, store the matrices and append the estimates of ``epoch``."""
        t_start = time.perf_counter()
        mi = self.mi
        if mi.retain_memory and self._heap is None:  # freed memory stays for the next logged epochs
            self._heap = ExitStack()
            self._heap.enter_context(retained_heap())
            weakref.finalize(self, self._heap.close)
        device = self.device if self.device is not None else model_device(model)
        with full_precision(torch.device(device).type):  # MI from float32 activations, whatever the training step used
            res = probe_layers(model, self._images, list(self.layers(model)), batch_size=mi.batch_size,
                               memory_budget_bytes=probe_budget_bytes(mi.memory_budget_gb, device), device=device,
                               bin_sizes=tuple(mi.bin_size) if "bin" in mi.estimators else (),
                               include_input="renyi" in mi.estimators,
                               near=max([DEFAULT_NEAR] + [near_for([k.param]) for k in parse_kernels(mi.kernels)
                                                              if k.kind == "fixed"]))
        m = Matrices(epoch=int(epoch), names=list(res.names), dims=np.asarray(res.dims, dtype=np.int64),
                     dist=res.dist.astype(np.float32), codes=dict(res.codes),
                     dist_input=None if res.dist_input is None else res.dist_input.astype(np.float32))
        t_probe = time.perf_counter()
        # Estimates come from exactly what is stored (float32 distances), so `infoflow estimate`
        # reproduces this table bit for bit.
        if mi.store_matrices:
            self.run.save_matrices(m)
        t_store = time.perf_counter()
        table = estimate_matrices(m, self.probe.labelings, kernels=mi.kernels, estimators=mi.estimators,
                                  renyi_alpha=mi.renyi_alpha, subset=self._subset, permutations=mi.permutations)
        self.run.append_mi(table)
        t_end = time.perf_counter()
        self.last_timings = {**res.timings, "probe": t_probe - t_start, "store": t_store - t_probe,
                             "estimate": t_end - t_store, "total": t_end - t_start}
        at_ceiling = table[table["at_ceiling"] & (table["quantity"] == "I_XM")]
        if len(at_ceiling):
            log.info("epoch %d: %d of %d I(X;M) estimates at their ceiling log2 N", epoch,
                     len(at_ceiling), int((table["quantity"] == "I_XM").sum()))
        for note in floor_notes(table):
            log.warning("epoch %d: %s", epoch, note)
        return table


def floor_notes(table: pd.DataFrame) -> list[str]:
    """One warning per estimator and setting of ``table`` whose I(X;M) estimates mostly (more than
    half) sit at their floor, about 0 bits (the ``at_floor`` column): the kernel is wide against
    the activations' scale, so the estimates measure that scale, not the network."""
    rows = table[table["quantity"] == "I_XM"]
    notes = []
    for (est, setting), g in rows.groupby(["estimator", "setting"], sort=False):
        n_floor = int(g["at_floor"].sum())
        if 2 * n_floor > len(g):
            notes.append(f"{n_floor} of {len(g)} I(X;M) estimates of {est} ({setting}) sit at their floor (about "
                         "0 bits): the kernel is wide against the activations' scale; a scale-aware kernel "
                         f"(e.g. {SCALE_AWARE_KERNEL}) measures the network")
    return notes


def default_layers(model: nn.Module) -> LayerSpec:
    if hasattr(model, "probe_modules"):
        return model.probe_modules()
    return find_probe_layers(model)


def reestimate(run: RunDir, mi: MIConfig, *, epochs: Sequence[int] | None = None,
               subset: np.ndarray | None = None, progress: bool = False) -> pd.DataFrame:
    """Recompute the table of estimates of ``run`` from its stored matrices with settings ``mi``.

    The network is not run: any kernel, labelling (K-means K and seed, coarsening grid
    and threshold, graded or binary masks) and probe subset can be estimated again; classes made
    as the run made them are read from ``probe.npz``, not recomputed. With the run's own
    settings the result equals the stored ``mi.csv`` bit for bit. ``subset``: indices of probe
    samples (None: ``mi.subset``).
    """
    record = run.load_probe()
    stored_mi = run.config().mi
    labelings = labelings_for(record, mi, stored_mi)
    if subset is None:
        subset = record.subset(mi.subset)
    stored = run.matrix_epochs()
    if not stored:
        raise RunError(f"{run.path} has no stored distance matrices (matrices/ is empty); "
                       "was it trained with mi.store_matrices = false?")
    todo = stored if epochs is None else [e for e in epochs if e in stored]
    missing = [] if epochs is None else sorted(set(epochs) - set(stored))
    if missing:
        raise RunError(f"{run.path}: no stored matrices for epoch(s) {missing}; stored: {stored}")
    frames = []
    iterator = todo
    if progress:
        iterator = track(todo, description="re-estimating")
    for epoch in iterator:
        frames.append(estimate_matrices(run.load_matrices(epoch), labelings, kernels=mi.kernels,
                                        estimators=mi.estimators, renyi_alpha=mi.renyi_alpha, subset=subset,
                                        permutations=mi.permutations))
    return pd.concat(frames, ignore_index=True)


def estimates_path(run: RunDir, mi: MIConfig, *, probe_subset: int | str | None = None) -> Path:
    """Default file of re-estimated MI (``infoflow estimate``): ``RUN/estimates/mi-<tag>.csv``, the
    tag naming the kernels (``fixed0.2-rel0.1``), labellings, K of K-means (and its seed when not
    0), the masks Y is made from when binary and the probe subset (``probe_subset``, else
    ``mi.subset``). Sibling tables (uncertainty, robustness) share its stem."""
    ktag = "-".join(f"{k.kind}{k.param:g}" for k in parse_kernels(mi.kernels))
    sub = mi.subset if probe_subset is None else probe_subset
    tag = "_".join([ktag, "-".join(mi.labels), f"k{mi.kmeans_k}"]
                   + ([f"kseed{mi.kmeans_seed}"] if mi.kmeans_seed else [])
                   + (["ybinary"] if mi.y_from == "binary" else [])
                   + ([f"sub{sub}"] if sub is not None else []))
    return run.estimates_path(tag)

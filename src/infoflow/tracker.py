"""Online MI tracking: at a logged epoch, probe -> distances -> estimates -> run store.

:class:`MITracker` is the one object that turns a network's state into stored distance matrices
and a tidy table of estimates. ``infoflow train`` calls it at logged epochs; a user's own loop
calls ``tracker.log_epoch(model, epoch)``; ``infoflow estimate`` re-runs only its second half
(:func:`estimate_matrices`) on the stored matrices, so online and re-estimated tables agree bit
for bit.

No raw activation is ever written: per layer and logged epoch the run keeps an N x N float32
distance matrix and N binned symbol ids per bin size.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .config import MIConfig, RunConfig
from .errors import ConfigError
from .runs import Matrices, RunDir

log = logging.getLogger("infoflow")

LayerSpec = Sequence[tuple[str, nn.Module]]


@dataclass
class ProbeSet:
    """The samples whose activations enter the estimates, with their output classes."""

    images: np.ndarray  # (N, C, S, S) float32
    masks: np.ndarray  # (N, 1, S, S) float32 0/1
    ids: list[str]
    labelings: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) int64 classes
    fit_masks: np.ndarray | None = None  # masks K-means is fitted on (the training split); None: `masks`

    def save(self, run: RunDir) -> None:
        from .estimators import entropy_bits

        fit = self.masks if self.fit_masks is None else self.fit_masks
        arrays: dict[str, np.ndarray] = {
            "ids": np.array(self.ids),
            "masks_packed": _pack(self.masks),
            "fit_masks_packed": _pack(fit),
            "mask_shape": np.array(self.masks.shape[1:], dtype=np.int64),
            "n_fit": np.int64(len(fit)),
            "labelings": np.array(sorted(self.labelings)),
        }
        for name, lab in self.labelings.items():
            arrays[f"labels_{name}"] = np.asarray(lab, dtype=np.int64)
            arrays[f"h_y_{name}"] = np.float64(entropy_bits(lab))
        run.save_probe(**arrays)


def _pack(masks: np.ndarray) -> np.ndarray:
    return np.packbits(masks.astype(bool).reshape(len(masks), -1), axis=1)


def _unpack(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n = len(packed)
    return np.unpackbits(packed, axis=1, count=int(np.prod(shape))).reshape((n, *shape)).astype(np.float32)


def load_probe_facts(run: RunDir) -> dict[str, object]:
    """Probe-set facts of a run: ids, labelings (name -> labels), masks (N, 1, S, S) float32 and
    fit_masks (the masks K-means was fitted on)."""
    z = run.load_probe()
    shape = tuple(int(s) for s in z["mask_shape"])
    return {
        "ids": [str(i) for i in z["ids"]],
        "labelings": {str(k): z[f"labels_{k}"] for k in z["labelings"]},
        "masks": _unpack(z["masks_packed"], shape),
        "fit_masks": _unpack(z["fit_masks_packed"], shape),
    }


def make_labelings(probe_masks: np.ndarray, fit_masks: np.ndarray, mi: MIConfig) -> dict[str, np.ndarray]:
    """Output classes Y of the probe set for each configured labelling (methods.md section 4)."""
    from .estimators import coarsen_labels, kmeans_labels

    out: dict[str, np.ndarray] = {}
    for name in mi.labels:
        if name == "kmeans":
            out[name] = kmeans_labels(fit_masks, probe_masks, k=mi.kmeans_k, seed=mi.kmeans_seed)
        elif name == "coarse":
            out[name] = coarsen_labels(probe_masks, grid=mi.coarse_grid, threshold=mi.coarse_threshold)
        else:
            raise ConfigError(f"mi.labels entries must be 'kmeans' or 'coarse', got {name!r}")
    return out


def estimate_matrices(m: Matrices, labelings: dict[str, np.ndarray], *, noise_vars: Sequence[float],
                      estimators: Sequence[str], renyi_alpha: float,
                      subset: np.ndarray | None = None, widths: Sequence[str] | None = None) -> pd.DataFrame:
    """The tidy table of estimates of one logged epoch from what the run stores for it.

    ``subset``: indices of probe samples to keep (re-estimation on a probe subset).
    ``widths``: kernel-width rules of KDE and Renyi (``MIConfig.widths``; None: fixed ``noise_vars``).
    """
    from .estimators import estimate_layers

    dist, codes, dist_x, labs = m.dist, m.codes, m.dist_input, labelings
    if subset is not None:
        idx = np.asarray(subset)
        dist = dist[:, idx][:, :, idx]
        codes = {b: c[:, idx] for b, c in codes.items()}
        dist_x = None if dist_x is None else dist_x[idx][:, idx]
        labs = {k: v[idx] for k, v in labelings.items()}
    return estimate_layers(
        dist, names=list(m.names), dims=[int(d) for d in m.dims], epoch=m.epoch, labelings=labs,
        noise_vars=list(noise_vars), bin_codes=codes if "bin" in estimators else None,
        dist_x=dist_x, renyi_alpha=renyi_alpha, estimators=tuple(estimators), widths=widths)


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

    @classmethod
    def for_run(cls, run: RunDir, cfg: RunConfig, splits, *, device: torch.device | None = None,
                layers: Callable[[nn.Module], LayerSpec] | None = None) -> "MITracker":
        """The tracker of an ``infoflow train`` run: probe set and classes from ``cfg.mi``."""
        mi = cfg.mi
        if mi.probe == "train":
            parts = [splits.train]
        elif mi.probe == "test":
            parts = [splits.test]
        elif mi.probe == "all":
            parts = [splits.train, splits.test]
        else:
            raise ConfigError(f"mi.probe must be 'train', 'test' or 'all', got {mi.probe!r}")
        images = np.concatenate([p.images for p in parts])
        masks = np.concatenate([p.masks for p in parts])
        ids = [i for p in parts for i in p.ids]
        if mi.probe_limit is not None:
            images, masks, ids = images[:mi.probe_limit], masks[:mi.probe_limit], ids[:mi.probe_limit]
        if len(ids) < 2:
            raise ConfigError(f"the probe set ({mi.probe}) has {len(ids)} samples; MI needs at least 2")
        labelings = make_labelings(masks, splits.train.masks, mi)
        return cls(run, ProbeSet(images, masks, ids, labelings, fit_masks=splits.train.masks), mi, layers=layers,
                   device=device)

    def log_epoch(self, model: nn.Module, epoch: int) -> pd.DataFrame:
        """Probe ``model`` now, store the matrices and append the estimates of ``epoch``."""
        import time

        from .probe import DEFAULT_NEAR, near_for, probe_layers

        t_start = time.perf_counter()
        mi = self.mi
        if mi.retain_memory and self._heap is None:  # freed memory stays for the next logged epochs
            from .probe.heap import retained_heap

            self._heap = ExitStack()
            self._heap.enter_context(retained_heap())
            weakref.finalize(self, self._heap.close)
        res = probe_layers(model, self._images, list(self.layers(model)), batch_size=mi.batch_size,
                           memory_budget_bytes=int(mi.memory_budget_gb * 2**30), device=self.device,
                           bin_sizes=tuple(mi.bin_size) if "bin" in mi.estimators else (),
                           include_input="renyi" in mi.estimators,
                           near=max(DEFAULT_NEAR, near_for(mi.noise_var)))
        m = Matrices(epoch=int(epoch), names=list(res.names), dims=np.asarray(res.dims, dtype=np.int64),
                     dist=res.dist.astype(np.float32), codes=dict(res.codes),
                     dist_input=None if res.dist_input is None else res.dist_input.astype(np.float32))
        t_probe = time.perf_counter()
        # Estimates come from exactly what is stored (float32 distances), so `infoflow estimate`
        # reproduces this table bit for bit.
        if mi.store_matrices:
            self.run.save_matrices(m)
        t_store = time.perf_counter()
        table = estimate_matrices(m, self.probe.labelings, noise_vars=mi.noise_var, estimators=mi.estimators,
                                  renyi_alpha=mi.renyi_alpha, widths=mi.widths)
        self.run.append_mi(table)
        t_end = time.perf_counter()
        self.last_timings = {**res.timings, "probe": t_probe - t_start, "store": t_store - t_probe,
                             "estimate": t_end - t_store, "total": t_end - t_start}
        at_ceiling = table[table["at_ceiling"] & (table["quantity"] == "I_XM")]
        if len(at_ceiling):
            log.info("epoch %d: %d of %d I(X;M) estimates at their ceiling log2 N", epoch,
                     len(at_ceiling), int((table["quantity"] == "I_XM").sum()))
        return table


def default_layers(model: nn.Module) -> LayerSpec:
    if hasattr(model, "probe_modules"):
        return model.probe_modules()
    from .layers import find_probe_layers  # any network: automatic detection

    return find_probe_layers(model)


def reestimate(run: RunDir, mi: MIConfig, *, epochs: Sequence[int] | None = None,
               subset: np.ndarray | None = None, progress: bool = False) -> pd.DataFrame:
    """Recompute the table of estimates of ``run`` from its stored matrices with settings ``mi``.

    The network is not run: any noise variance, labelling (K-means K and seed, coarsening grid
    and threshold) and probe subset can be estimated again. With the run's own settings the
    result equals the stored ``mi.csv`` bit for bit.
    """
    from .errors import RunError

    facts = load_probe_facts(run)
    labelings = make_labelings(facts["masks"], facts["fit_masks"], mi)
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
        from rich.progress import track

        iterator = track(todo, description="re-estimating")
    for epoch in iterator:
        frames.append(estimate_matrices(run.load_matrices(epoch), labelings, noise_vars=mi.noise_var,
                                        estimators=mi.estimators, renyi_alpha=mi.renyi_alpha, subset=subset,
                                        widths=mi.widths))
    return pd.concat(frames, ignore_index=True)


def estimates_path(run: RunDir, mi: MIConfig, *, probe_subset: int | None = None) -> Path:
    """Default file of re-estimated MI (``infoflow estimate``): ``RUN/estimates/mi-<tag>.csv``, the
    tag naming the noise variances, labellings, K of K-means, kernel widths (when not the plain
    ``fixed``) and probe subset. Sibling tables (uncertainty, robustness) share its stem."""
    wtag = [] if tuple(mi.widths) == ("fixed",) else \
        ["w-" + "-".join(w.replace(":", "").replace("fixed", "f") for w in mi.widths)]
    tag = "_".join([f"s2-{'-'.join(f'{v:g}' for v in mi.noise_var)}", "-".join(mi.labels), f"k{mi.kmeans_k}"]
                   + wtag + ([f"sub{probe_subset}"] if probe_subset is not None else []))
    return run.path / "estimates" / f"mi-{tag}.csv"

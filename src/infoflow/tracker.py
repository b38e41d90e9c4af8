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

import dataclasses
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
from .runs import Matrices, ProbeRecord, RunDir

log = logging.getLogger("infoflow")

LayerSpec = Sequence[tuple[str, nn.Module]]


@dataclass
class ProbeSet:
    """The samples whose activations enter the estimates, and what the run stores about them."""

    images: np.ndarray  # (N, C, S, S) float32
    record: ProbeRecord  # ids, masks, the masks Y is made from, classes, splits (probe.npz)

    @property
    def ids(self) -> list[str]:
        return self.record.ids

    @property
    def labelings(self) -> dict[str, np.ndarray]:
        return self.record.labelings

    def save(self, run: RunDir) -> None:
        run.save_probe(self.record)

    @classmethod
    def build(cls, images: np.ndarray, masks: np.ndarray, ids: Sequence[str], mi: MIConfig, *,
              y_masks: np.ndarray | None = None, fit_y_masks: np.ndarray | None = None,
              fit_masks: np.ndarray | None = None, split: Sequence[str] | None = None,
              y_den: int | None = None, y_from: str | None = None,
              labelings: dict[str, np.ndarray] | None = None) -> "ProbeSet":
        """Validate a probe set and make its output classes (the one place both are done).

        ``masks``: the (binary) training masks of the probe samples; ``y_masks``: the masks Y is
        made from (default ``masks``); ``fit_y_masks`` / ``fit_masks``: those of the samples
        K-means is fitted on (default: the probe set's own). ``y_den``: the y masks are integers
        / ``y_den`` (stored exactly); None: 1 when they are 0/1, else 0 (stored as float32).
        ``labelings``: classes of your own (``{name: (N,) labels}``) instead of those of ``mi.labels``.
        """
        n = len(images)
        if len(masks) != n or len(ids) != n:
            raise ConfigError(f"the probe set has {n} images, {len(masks)} masks and {len(ids)} ids")
        if n < 2:
            raise ConfigError(f"the probe set has {n} samples; MI needs at least 2")
        y = np.asarray(masks if y_masks is None else y_masks, dtype=np.float64)
        fit_y = y if fit_y_masks is None else np.asarray(fit_y_masks, dtype=np.float64)
        fit_b = np.asarray(masks if fit_masks is None else fit_masks, dtype=np.float32)
        if len(y) != n or len(fit_b) != len(fit_y):
            raise ConfigError(f"the probe set has {n} samples but {len(y)} Y masks; {len(fit_y)} K-means fit masks "
                              f"but {len(fit_b)} binary ones")
        if y_den is None:
            y_den = 1 if all(np.isin(a, (0.0, 1.0)).all() for a in (y, fit_y)) else 0
        if labelings is None and "kmeans" in mi.labels and not 1 <= int(mi.kmeans_k) <= len(fit_y):
            raise ConfigError(f"mi.kmeans_k = {mi.kmeans_k} must be between 1 and the number of masks K-means is "
                              f"fitted on ({len(fit_y)})")
        record = ProbeRecord(
            ids=[str(i) for i in ids], masks=np.asarray(masks, dtype=np.float32), y_masks=y, fit_y_masks=fit_y,
            fit_masks=fit_b, labelings={}, split=None if split is None else np.asarray(split).astype(str),
            y_from=y_from or ("code" if y_masks is not None else "binary"), y_den=int(y_den))
        if labelings is None:
            record.labelings = make_labelings(record, mi)
        else:
            record.labelings = {str(k): np.asarray(v).reshape(-1) for k, v in labelings.items()}
            bad = {k: len(v) for k, v in record.labelings.items() if len(v) != n}
            if bad:
                raise ConfigError(f"labelings must give one class per probe sample ({n}); got {bad}")
        return cls(np.ascontiguousarray(images), record)

    @classmethod
    def for_splits(cls, splits, mi: MIConfig) -> "ProbeSet":
        """The probe set of an ``infoflow train`` run: ``mi.probe`` of ``splits``, Y from ``mi.y_from``."""
        if mi.probe == "train":
            parts = [splits.train]
        elif mi.probe == "test":
            parts = [splits.test]
        elif mi.probe == "all":
            parts = [splits.train, splits.test]
        else:
            raise ConfigError(f"mi.probe must be 'train', 'test' or 'all', got {mi.probe!r}")
        lim = mi.probe_limit

        def cat(get: Callable[[object], np.ndarray]) -> np.ndarray:
            a = np.concatenate([get(p) for p in parts])
            return a if lim is None else a[:lim]

        ids = [i for p in parts for i in p.ids][:lim]
        split = [p.meta.get("split") or name for p, name in zip(parts, [mi.probe] if len(parts) == 1 else
                                                                     ["train", "test"]) for _ in p.ids][:lim]
        graded = mi.y_from == "code" and all(p.graded is not None for p in (*parts, splits.train))
        den = int(splits.train.meta.get("graded_den", 0)) if graded else 1
        return cls.build(cat(lambda p: p.images), cat(lambda p: p.masks), ids, mi,
                         y_masks=cat(lambda p: p.label_masks(mi.y_from)),
                         fit_y_masks=splits.train.label_masks(mi.y_from), fit_masks=splits.train.masks,
                         split=split, y_den=den, y_from="code" if graded else "binary")


def make_labelings(record: ProbeRecord, mi: MIConfig) -> dict[str, np.ndarray]:
    """Output classes Y of the probe set for each of ``mi.labels`` (methods.md section 4), made
    from the masks ``mi.y_from`` names: the graded masks (``"code"``; the binary masks where the
    data has none, as ``record.y_from`` records) or the binary training masks."""
    from .estimators import coarsen_labels, kmeans_labels

    if mi.y_from not in ("code", "binary"):
        raise ConfigError(f"mi.y_from must be 'code' (graded masks) or 'binary' (training masks), got {mi.y_from!r}")
    if mi.y_from == "binary" and record.y_from != "binary":
        y, fit = record.masks, record.fit_masks
    else:  # "code" on a probe set without graded masks: its binary masks (record.y_from says so)
        y, fit = record.y_masks, record.fit_y_masks
    out: dict[str, np.ndarray] = {}
    for name in mi.labels:
        if name == "kmeans":
            out[name] = kmeans_labels(fit, y, k=mi.kmeans_k, seed=mi.kmeans_seed)
        elif name == "coarse":
            out[name] = coarsen_labels(y, grid=mi.coarse_grid, threshold=mi.coarse_threshold)
        else:
            raise ConfigError(f"mi.labels entries must be 'kmeans' or 'coarse', got {name!r}")
    return out


_LABEL_SETTINGS = {"kmeans": ("kmeans_k", "kmeans_seed"), "coarse": ("coarse_grid", "coarse_threshold")}


def labelings_for(record: ProbeRecord, mi: MIConfig, stored: MIConfig) -> dict[str, np.ndarray]:
    """The classes of ``mi.labels`` for a stored probe set: the stored classes where ``mi`` makes
    them as the run did (``stored``: the run's settings), the others made anew."""
    same = mi.y_from == stored.y_from
    keep = {name: record.labelings[name] for name in mi.labels
            if same and name in record.labelings and name in stored.labels
            and all(getattr(mi, f) == getattr(stored, f) for f in _LABEL_SETTINGS.get(name, ("_",)))}
    todo = [name for name in mi.labels if name not in keep]
    made = make_labelings(record, dataclasses.replace(mi, labels=tuple(todo))) if todo else {}
    return {name: keep[name] if name in keep else made[name] for name in mi.labels}


def estimate_matrices(m: Matrices, labelings: dict[str, np.ndarray], *, noise_vars: Sequence[float],
                      estimators: Sequence[str], renyi_alpha: float,
                      subset: np.ndarray | None = None, widths: Sequence[str] | None = None) -> pd.DataFrame:
    """The tidy table of estimates of one logged epoch from what the run stores for it.

    ``subset``: indices of probe samples to keep (re-estimation on a probe subset).
    ``widths``: kernel-width rules of KDE and Renyi (``MIConfig.widths``; None: fixed ``noise_vars``).
    """
    from .estimators import estimate_layers

    m = m.take(subset)
    labs = labelings if subset is None else {k: np.asarray(v)[np.asarray(subset)] for k, v in labelings.items()}
    return estimate_layers(
        m.dist, names=list(m.names), dims=[int(d) for d in m.dims], epoch=m.epoch, labelings=labs,
        noise_vars=list(noise_vars), bin_codes=m.codes if "bin" in estimators else None,
        dist_x=m.dist_input, renyi_alpha=renyi_alpha, estimators=tuple(estimators), widths=widths)


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

    @classmethod
    def for_run(cls, run: RunDir, cfg: RunConfig, splits, *, device: torch.device | None = None,
                layers: Callable[[nn.Module], LayerSpec] | None = None) -> "MITracker":
        """The tracker of an ``infoflow train`` run: probe set and classes from ``cfg.mi``."""
        return cls(run, ProbeSet.for_splits(splits, cfg.mi), cfg.mi, layers=layers, device=device)

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
                                  renyi_alpha=mi.renyi_alpha, widths=mi.widths, subset=self._subset)
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
    and threshold, graded or binary masks) and probe subset can be estimated again; classes made
    as the run made them are read from ``probe.npz``, not recomputed. With the run's own
    settings the result equals the stored ``mi.csv`` bit for bit. ``subset``: indices of probe
    samples (None: ``mi.subset``).
    """
    from .errors import RunError

    record = run.load_probe()
    stored_mi = RunConfig.from_dict(run.read_config()).mi
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
        from rich.progress import track

        iterator = track(todo, description="re-estimating")
    for epoch in iterator:
        frames.append(estimate_matrices(run.load_matrices(epoch), labelings, noise_vars=mi.noise_var,
                                        estimators=mi.estimators, renyi_alpha=mi.renyi_alpha, subset=subset,
                                        widths=mi.widths))
    return pd.concat(frames, ignore_index=True)


def estimates_path(run: RunDir, mi: MIConfig, *, probe_subset: int | str | None = None) -> Path:
    """Default file of re-estimated MI (``infoflow estimate``): ``RUN/estimates/mi-<tag>.csv``, the
    tag naming the noise variances, labellings, K of K-means (and its seed when not 0), the masks
    Y is made from when binary, kernel widths (when not the plain ``fixed``) and the probe subset
    (``probe_subset``, else ``mi.subset``). Sibling tables (uncertainty, robustness) share its stem."""
    wtag = [] if tuple(mi.widths) == ("fixed",) else \
        ["w-" + "-".join(w.replace(":", "").replace("fixed", "f") for w in mi.widths)]
    sub = mi.subset if probe_subset is None else probe_subset
    tag = "_".join([f"s2-{'-'.join(f'{v:g}' for v in mi.noise_var)}", "-".join(mi.labels), f"k{mi.kmeans_k}"]
                   + ([f"kseed{mi.kmeans_seed}"] if mi.kmeans_seed else [])
                   + (["ybinary"] if mi.y_from == "binary" else [])
                   + wtag + ([f"sub{sub}"] if sub is not None else []))
    return run.path / "estimates" / f"mi-{tag}.csv"

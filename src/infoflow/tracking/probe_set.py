"""The probe set: the samples whose activations enter the estimates, and their classes Y.

Built and validated in one place (:meth:`ProbeSet.build`) for ``infoflow train``, the Tracker
API and the Lightning callback; what a run stores of it is a :class:`~infoflow.runs.ProbeRecord`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import MIConfig
from ..errors import ConfigError
from ..estimators import coarsen_labels, kmeans_labels
from ..estimators.labels import ClassesWarning
from ..runs import ProbeRecord, RunDir


#: Keys of the image and the mask in dict samples and batches (MONAI's dictionary transforms).
PROBE_KEYS: tuple[str, str] = ("image", "label")


def probe_arrays(data: Any, masks: Any = None, *, keys: Sequence[str] = PROBE_KEYS,
                 what: str = "probe") -> tuple[np.ndarray, np.ndarray]:
    """A probe set's ``(images, masks)`` as float32 arrays ``(N, C, ...)`` and ``(N, 1, ...)``,
    read once, in order, from any of:

    * arrays (numpy or torch) of images, with ``masks`` the arrays of their masks;
    * a dict batch ``{"image": (N, C, ...), "label": (N, 1, ...)}`` (MONAI's dictionary form;
      ``keys`` names other keys), or a list of such batches;
    * a ``torch.utils.data.DataLoader`` (that does not shuffle) of ``(image, mask)`` batches or
      dict batches;
    * a ``torch.utils.data.Dataset`` of ``(image, mask)`` samples or dict samples.

    Masks of shape ``(N, S, S)`` get their channel axis. ``masks`` is only for arrays."""
    import torch
    from torch.utils.data import DataLoader, Dataset, RandomSampler

    ik, mk = keys

    def pair(item: Any, where: str) -> tuple[Any, Any]:
        if isinstance(item, Mapping):
            missing = [k for k in (ik, mk) if k not in item]
            if missing:
                raise ConfigError(f"{what} {where} is a dict without the key(s) {', '.join(map(repr, missing))} "
                                  f"(it has {', '.join(map(repr, list(item)[:8]))}); name the keys with probe_keys=")
            return item[ik], item[mk]
        if isinstance(item, (tuple, list)) and len(item) >= 2:
            return item[0], item[1]
        raise ConfigError(f"{what} {where} must be an (image, mask) pair or a dict with keys {ik!r} and {mk!r}, "
                          f"got {type(item).__name__}")

    def arr(x: Any, name: str) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().as_subclass(torch.Tensor).numpy()  # MONAI's MetaTensor: its plain values
        return np.ascontiguousarray(np.asarray(x, dtype=np.float32))

    given = masks is not None
    if isinstance(data, (np.ndarray, torch.Tensor)) or (isinstance(data, (list, tuple)) and data
                                                         and not isinstance(data[0], Mapping)):
        if not given:
            raise ConfigError(f"{what}_masks must be given with {what}_images arrays (or pass a Dataset, DataLoader "
                              f"or dict batch holding both)")
        images, out_masks = arr(data, f"{what}_images"), arr(masks, f"{what}_masks")
    else:
        if given:
            raise ConfigError(f"{what}_masks must be None when {what}_images is a {type(data).__name__} (the masks "
                              "come from it)")
        if isinstance(data, Mapping):
            batches = [pair(data, "batch")]
        elif isinstance(data, (list, tuple)):
            batches = [pair(b, f"batch {i}") for i, b in enumerate(data)]
        elif isinstance(data, DataLoader):
            if isinstance(data.sampler, RandomSampler):
                raise ConfigError(f"the {what} DataLoader shuffles: pass one with shuffle=False (the probe set must "
                                  "be the same samples in the same order at every logged epoch)")
            batches = [pair(b, f"batch {i}") for i, b in enumerate(data)]
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            samples = [pair(data[i], f"sample {i}") for i in range(len(data))]
            batches = [(np.stack([arr(x, "image") for x, _ in samples]), np.stack([arr(y, "mask") for _, y in samples]))] \
                if samples else []
        else:
            raise ConfigError(f"{what}_images must be arrays, a dict batch, a torch Dataset or a DataLoader; got "
                              f"{type(data).__name__}")
        if not batches:
            raise ConfigError(f"the {what} set is empty")
        images = np.concatenate([arr(x, "image") for x, _ in batches])
        out_masks = np.concatenate([arr(y, "mask") for _, y in batches])
        if out_masks.ndim == images.ndim - 1:  # (N, S, S) masks: add the channel axis
            out_masks = out_masks[:, None]
    if images.ndim < 3:
        raise ConfigError(f"{what}_images must have shape (N, C, ...), got {images.shape}")
    if out_masks.ndim < 3:
        raise ConfigError(f"{what}_masks must have shape (N, 1, ...), got {out_masks.shape}")
    if len(images) != len(out_masks):
        raise ConfigError(f"{what}_images has {len(images)} samples but {what}_masks has {len(out_masks)}")
    return images, out_masks


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


#: K-means classes hold on average fewer than this many probe samples: a warning (see check_kmeans_k).
MIN_SAMPLES_PER_CLASS = 4


def check_kmeans_k(k: int, *, n_probe: int, n_fit: int) -> None:
    """Refuse K of K-means above the probe set size or the masks it is fitted on (ConfigError);
    warn (:class:`~infoflow.estimators.labels.ClassesWarning`, one line) when the probe set has
    fewer than :data:`MIN_SAMPLES_PER_CLASS` samples per class: classes of one or two samples make
    H(Y) about log2 N and I(Y;M) about I(X;M), whatever the network does."""
    if not 1 <= k <= min(n_probe, n_fit):
        raise ConfigError(f"mi.kmeans_k = {k} must be between 1 and the number of masks K-means is fitted on "
                          f"({n_fit}) and at most the probe set size ({n_probe}): lower it (--k, --set mi.kmeans_k=K) "
                          "or use more probe samples")
    if n_probe < MIN_SAMPLES_PER_CLASS * k:
        warnings.warn(ClassesWarning(
            f"mi.kmeans_k = {k} classes for {n_probe} probe samples ({n_probe / k:.1f} per class, fewer than "
            f"{MIN_SAMPLES_PER_CLASS}): H(Y) nears log2 N and I(Y;M) nears I(X;M); a K of at most "
            f"{max(1, n_probe // MIN_SAMPLES_PER_CLASS)} keeps classes of several samples"), stacklevel=2)


def make_labelings(record: ProbeRecord, mi: MIConfig) -> dict[str, np.ndarray]:
    """Output classes Y of the probe set for each of ``mi.labels`` (methods.md section 4), made
    from the masks ``mi.y_from`` names: the graded masks (``"code"``; the binary masks where the
    data has none, as ``record.y_from`` records) or the binary training masks."""
    if mi.y_from not in ("code", "binary"):
        raise ConfigError(f"mi.y_from must be 'code' (graded masks) or 'binary' (training masks), got {mi.y_from!r}")
    if mi.y_from == "binary" and record.y_from != "binary":
        y, fit = record.masks, record.fit_masks
    else:  # "code" on a probe set without graded masks: its binary masks (record.y_from says so)
        y, fit = record.y_masks, record.fit_y_masks
    out: dict[str, np.ndarray] = {}
    for name in mi.labels:
        if name == "kmeans":
            check_kmeans_k(int(mi.kmeans_k), n_probe=len(y), n_fit=len(fit))
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

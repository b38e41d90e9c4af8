"""Output classes Y: a segmentation mask reduced to one discrete class per sample.

Lee & Bajic (ISBI 2021), section 3.2; ``methods.md`` section 4. Two reductions:

* :func:`coarsen_labels` -- spatial coarsening: the ``S x S`` mask is split into ``grid x grid``
  blocks; a block is 1 when the sum of its mask values is MORE than ``threshold`` (default: block
  area / 16, i.e. T = 64 for 32 x 32 blocks at S = 128): the foreground pixel count of a binary
  mask, the summed grey values of a graded one (as the paper's coarsening notebook, which sums
  its graded masks with ``block_reduce(..., np.sum)``); the class is the ``grid*grid``-bit code.
  Bit order: block ``(r, c)`` (row r from the top, column c from the left, 0-based) is bit
  ``k = r * grid + c`` with weight ``2**k``; the top-left block is the least significant bit,
  the bottom-right block (bit 15 at grid 4) the most significant. No label shift (the paper's
  code shifted labels by one sample; that is not reproduced).
* :func:`kmeans_labels` -- K-means (K = 64) on the flattened masks, fitted on the training masks.

Plus :func:`entropy_bits` (plug-in H(Y)) and :func:`class_counts`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import InfoflowError
from ._util import plugin_entropy_bits, to_numpy

__all__ = ["ClassesWarning", "coarsen_labels", "kmeans_labels", "entropy_bits", "class_counts"]


class ClassesWarning(UserWarning):
    """The output classes make a poor Y (e.g. K-means classes of one or two samples each)."""


def _masks_nss(masks: Any) -> np.ndarray:
    m = to_numpy(masks)
    if m.ndim == 4:
        if m.shape[1] != 1:
            raise InfoflowError(f"masks must be (N, 1, S, S) or (N, S, S), got shape {m.shape}")
        m = m[:, 0]
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
        raise InfoflowError(f"masks must be (N, 1, S, S) or (N, S, S) with square masks, got shape {m.shape}")
    return m


def coarsen_labels(masks: Any, *, grid: int = 4, threshold: float | None = None) -> np.ndarray:
    """Spatial-coarsening class of each mask (Lee & Bajic 2021, section 3.2).

    Parameters
    ----------
    masks:
        ``(N, 1, S, S)`` or ``(N, S, S)`` masks with values in [0, 1] (numpy or torch): binary
        masks, or the graded masks of the paper's MI notebooks.
    grid:
        Blocks per side; ``S`` must be divisible by ``grid`` and ``grid*grid <= 62``.
    threshold:
        A block is 1 when its foreground pixel count is strictly greater than this; ``None``:
        block area / 16 (64 for 32 x 32 blocks), the paper's T.

    Returns
    -------
    np.ndarray
        int64 ``(N,)`` codes in ``[0, 2**(grid*grid))``; block ``(r, c)`` is bit ``r*grid + c``.
    """
    m = _masks_nss(masks)
    n, s, _ = m.shape
    g = int(grid)
    if g < 1 or g != grid or g * g > 62:
        raise InfoflowError(f"grid must be an integer from 1 to 7, got {grid!r}")
    if s % g:
        raise InfoflowError(f"mask size {s} is not divisible by grid {g}")
    b = s // g
    t = (b * b) / 16.0 if threshold is None else float(threshold)
    sums = np.asarray(m, dtype=np.float64).reshape(n, g, b, g, b).sum(axis=(2, 4)).reshape(n, g * g)
    bits = (sums > t).astype(np.int64)  # block (r, c) -> column r*g + c
    weights = np.left_shift(np.int64(1), np.arange(g * g, dtype=np.int64))
    return bits @ weights


def kmeans_labels(fit_masks: Any, masks: Any, *, k: int = 64, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """K-means class of each mask (Lee & Bajic 2021: K = 64 on the vectorised masks).

    ``sklearn.cluster.KMeans(n_clusters=k, n_init=n_init, random_state=seed)`` is fitted on the
    flattened ``fit_masks`` (the training masks, values in [0, 1], as float64) and predicts the
    cluster of each flattened mask in ``masks`` (the probe set). Deterministic for a seed.

    Returns
    -------
    np.ndarray
        int64 ``(N,)`` cluster ids in ``[0, k)`` for ``masks``.
    """
    from sklearn.cluster import KMeans  # slow to import; here, so `infoflow --help` (which reaches this package) does not wait
    from sklearn.exceptions import ConvergenceWarning

    fit = to_numpy(fit_masks)
    pred = to_numpy(masks)
    fit = fit.reshape(fit.shape[0], -1).astype(np.float64)
    pred = pred.reshape(pred.shape[0], -1).astype(np.float64)
    if fit.shape[1] != pred.shape[1]:
        raise InfoflowError(f"fit_masks have {fit.shape[1]} pixels per mask, masks have {pred.shape[1]}")
    kk = int(k)
    if kk < 1 or kk > fit.shape[0]:
        raise InfoflowError(f"kmeans k must be between 1 and the number of fit masks ({fit.shape[0]}), got {k!r}")
    km = KMeans(n_clusters=kk, n_init=int(n_init), random_state=int(seed))
    with warnings.catch_warnings():  # identical masks give fewer distinct clusters than k: the classes say so
        warnings.simplefilter("ignore", ConvergenceWarning)
        km.fit(fit)
    return km.predict(pred).astype(np.int64)


def class_counts(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Distinct classes (sorted) and how many samples each holds: ``(classes, counts)``."""
    y = to_numpy(labels).reshape(-1)
    classes, counts = np.unique(y, return_counts=True)
    return classes, counts.astype(np.int64)


def entropy_bits(labels: Any) -> float:
    """Plug-in entropy H(Y) in bits of the empirical class distribution of ``labels``."""
    _, counts = class_counts(labels)
    return plugin_entropy_bits(counts)

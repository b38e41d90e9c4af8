"""Shared input handling of the estimators: arrays (numpy or torch) to float64 / int64 numpy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InfoflowError

LN2 = math.log(2.0)


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_dist(dist: Any, *, what: str = "dist") -> np.ndarray:
    """Validate a square matrix of squared distances and return it as float64 (copy).

    Negative entries (rounding of ``|a|^2 + |b|^2 - 2 a.b``) are clipped to 0.
    """
    d = np.array(to_numpy(dist), dtype=np.float64, copy=True)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise InfoflowError(f"{what} must be a square (N, N) matrix of squared distances, got shape {d.shape}")
    if d.shape[0] == 0:
        raise InfoflowError(f"{what} is empty (N = 0)")
    if not np.all(np.isfinite(d)):
        raise InfoflowError(f"{what} holds NaN or infinite entries")
    np.maximum(d, 0.0, out=d)
    return d


def as_labels(labels: Any, n: int, *, what: str = "labels") -> np.ndarray:
    """Validate class labels of ``n`` samples; return dense int64 ids 0..C-1 (sorted by value)."""
    y = to_numpy(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise InfoflowError(f"{what} must have shape ({n},), got {y.shape}")
    _, inv = np.unique(y, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def plugin_entropy_bits(counts: np.ndarray) -> float:
    """Plug-in (maximum-likelihood) entropy in bits of a vector of counts."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    h = -float(np.sum(p * np.log2(p)))
    return max(h, 0.0)


def positive(value: float, name: str) -> float:
    v = float(value)
    if not (v > 0.0) or not math.isfinite(v):
        raise InfoflowError(f"{name} must be a positive finite number, got {value!r}")
    return v

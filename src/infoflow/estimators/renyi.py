"""Matrix-based Renyi alpha-entropy and mutual information.

Sanchez Giraldo, Rao & Principe, "Measures of entropy from data using infinitely divisible
kernels", IEEE Trans. Inf. Theory 61 (2015); Wickstrom, Lokse, Kampffmeyer, Yu & Jenssen,
"Information plane analysis of deep neural networks via matrix-based Renyi's entropy and tensor
kernels" (2019); Yu, Wickstrom, Jenssen & Principe, "Understanding convolutional neural networks
with information theory: an initial exploration", IEEE TNNLS (2020).

For a PSD Gram matrix ``K`` of N samples, ``A = K / trace(K)`` has eigenvalues ``l_i >= 0`` summing
to 1, and (bits)::

    S_alpha(A)     = 1 / (1 - alpha) * log2( sum_i l_i^alpha )        (alpha > 0, alpha != 1)
    S_1(A)         = -sum_i l_i log2 l_i                              (von Neumann limit)
    S_alpha(A, B)  = S_alpha( (A o B) / trace(A o B) )                (o: Hadamard product)
    I_alpha(A; B)  = S_alpha(A) + S_alpha(B) - S_alpha(A, B)

Layer and input use the Gaussian kernel ``K_ij = exp(-d_ij / (2 kernel_var))`` of the squared
distances ``d_ij``; the labels use the delta kernel ``L_ij = 1[y_i == y_j]``, whose normalised
Gram has the class frequencies as eigenvalues, so ``S_alpha(L)`` is the Renyi entropy of the class
distribution (Shannon's plug-in H(Y) at alpha = 1). ``A o L`` is block diagonal by class and is
diagonalised block by block.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..errors import InfoflowError
from ._util import as_dist, as_labels, positive, to_numpy

__all__ = [
    "RenyiResult",
    "gaussian_gram",
    "renyi_entropy",
    "renyi_joint_entropy",
    "renyi_label_entropy",
    "renyi_mi",
]


class RenyiResult(NamedTuple):
    """Matrix-based Renyi estimates of one layer (bits); NaN where the input was not given."""

    i_xm: float  # I_alpha(X;M), NaN without dist_x
    i_ym: float  # I_alpha(Y;M), NaN without labels
    h_m: float  # S_alpha(M)


def _alpha(alpha: float) -> float:
    a = positive(alpha, "alpha")
    return a


def _entropy_from_eigs(lam: np.ndarray, alpha: float) -> float:
    lam = np.asarray(lam, dtype=np.float64)
    # eigenvalues below the rounding floor of eigvalsh (n * eps * max) are zeros of the exact matrix
    floor = lam.size * np.finfo(np.float64).eps * float(np.max(np.abs(lam))) if lam.size else 0.0
    lam = np.where(lam > floor, lam, 0.0)
    if alpha == 1.0:
        nz = lam[lam > 0]
        h = -float(np.sum(nz * np.log2(nz)))
    else:
        s = float(np.sum(lam**alpha))
        h = math.log2(s) / (1.0 - alpha)
    return h


def _normalise(gram: np.ndarray, what: str) -> np.ndarray:
    tr = float(np.trace(gram))
    if not (tr > 0.0) or not math.isfinite(tr):
        raise InfoflowError(f"{what} has a non-positive or non-finite trace ({tr}); not a usable Gram matrix")
    return gram / tr


def _as_gram(gram: Any, what: str = "gram") -> np.ndarray:
    g = np.array(to_numpy(gram), dtype=np.float64, copy=True)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise InfoflowError(f"{what} must be a non-empty square matrix, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise InfoflowError(f"{what} holds NaN or infinite entries")
    return g


def renyi_entropy(gram: Any, *, alpha: float) -> float:
    """Matrix-based Renyi alpha-entropy (bits) of a PSD Gram matrix ``(N, N)``.

    The matrix is divided by its trace first (a no-op for a trace-normalised one); eigenvalues
    come from ``numpy.linalg.eigvalsh``, and those below its rounding floor
    (``N * eps * max |eigenvalue|``, including tiny negative ones) are set to 0.
    ``alpha = 1`` gives the von Neumann entropy. ``I/N`` gives ``log2 N``, ``ones/N`` gives 0.
    """
    a = _alpha(alpha)
    g = _normalise(_as_gram(gram), "gram")
    return _entropy_from_eigs(np.linalg.eigvalsh(g), a)


def renyi_joint_entropy(*grams: Any, alpha: float) -> float:
    """Joint matrix-based Renyi entropy (bits): the entropy of the trace-normalised Hadamard product."""
    if not grams:
        raise InfoflowError("renyi_joint_entropy needs at least one Gram matrix")
    prod = _as_gram(grams[0], "gram 0")
    for i, g in enumerate(grams[1:], start=1):
        gi = _as_gram(g, f"gram {i}")
        if gi.shape != prod.shape:
            raise InfoflowError(f"gram {i} has shape {gi.shape}, expected {prod.shape}")
        prod = prod * gi
    return renyi_entropy(prod, alpha=alpha)


def gaussian_gram(dist: Any, *, kernel_var: float) -> np.ndarray:
    """Trace-normalised Gaussian Gram matrix ``exp(-d / (2 kernel_var)) / trace`` of squared distances."""
    d = as_dist(dist)
    kv = positive(kernel_var, "kernel_var")
    k = np.exp(d * (-1.0 / (2.0 * kv)))
    return _normalise(k, "Gaussian Gram matrix")


def _label_entropy_from_ids(y: np.ndarray, alpha: float) -> float:
    counts = np.bincount(y).astype(np.float64)
    return _entropy_from_eigs(counts / counts.sum(), alpha)


def renyi_label_entropy(labels: Any, *, alpha: float) -> float:
    """``S_alpha`` (bits) of the delta-kernel Gram matrix of ``labels``: the Renyi entropy of the classes."""
    y = to_numpy(labels)
    if y.ndim != 1 or y.shape[0] == 0:
        raise InfoflowError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    return _label_entropy_from_ids(as_labels(y, y.shape[0]), _alpha(alpha))


def _joint_with_labels(a: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """``S_alpha(A o L)`` for the delta kernel L of ids ``y``, diagonalising block by block."""
    order = np.argsort(y, kind="stable")
    ys = y[order]
    bounds = np.flatnonzero(np.diff(ys)) + 1
    groups = np.split(order, bounds)
    eigs = []
    for idx in groups:
        if idx.size == 1:
            eigs.append(a[idx, idx])
        else:
            eigs.append(np.linalg.eigvalsh(a[np.ix_(idx, idx)]))
    lam = np.concatenate(eigs)
    tr = float(np.trace(a))  # trace(A o L) = trace(A): L has a unit diagonal
    return _entropy_from_eigs(lam / tr, alpha)


def _renyi_from_grams(
    a_m: np.ndarray,
    *,
    alpha: float,
    a_x: np.ndarray | None = None,
    h_x: float | None = None,
    y: np.ndarray | None = None,
    h_m: float | None = None,
) -> RenyiResult:
    """Core of :func:`renyi_mi` on trace-normalised Gram matrices (shared with the table code)."""
    if h_m is None:
        h_m = _entropy_from_eigs(np.linalg.eigvalsh(a_m), alpha)
    if a_x is None:
        i_xm = math.nan
    else:
        if h_x is None:
            h_x = _entropy_from_eigs(np.linalg.eigvalsh(a_x), alpha)
        h_xm = _entropy_from_eigs(np.linalg.eigvalsh(_normalise(a_m * a_x, "A_M o A_X")), alpha)
        i_xm = h_m + h_x - h_xm
    if y is None:
        i_ym = math.nan
    else:
        h_y = _label_entropy_from_ids(y, alpha)
        i_ym = h_m + h_y - _joint_with_labels(a_m, y, alpha)
    return RenyiResult(i_xm=float(i_xm), i_ym=float(i_ym), h_m=float(h_m))


def renyi_mi(
    dist_m: Any,
    *,
    dist_x: Any = None,
    labels: Any = None,
    kernel_var: float,
    alpha: float = 1.01,
    kernel_var_x: float | None = None,
) -> RenyiResult:
    """Matrix-based Renyi estimates of I(X;M), I(Y;M) and S(M) for one layer, in bits.

    Parameters
    ----------
    dist_m:
        ``(N, N)`` squared distances between the layer's flattened activations (numpy/torch).
    dist_x:
        ``(N, N)`` squared distances between the flattened input images, or ``None`` (then
        ``i_xm`` is NaN).
    labels:
        ``(N,)`` classes for the delta kernel, or ``None`` (then ``i_ym`` is NaN).
    kernel_var:
        Variance ``sigma^2`` of the Gaussian kernel ``exp(-d / (2 sigma^2))`` on ``dist_m``.
    alpha:
        Renyi order (> 0); 1 is the von Neumann (Shannon) limit. Default 1.01 (Yu et al. 2020).
    kernel_var_x:
        Kernel variance for ``dist_x``; ``None``: ``kernel_var``.

    Returns
    -------
    RenyiResult
        ``(i_xm, i_ym, h_m)`` in bits.
    """
    a = _alpha(alpha)
    a_m = gaussian_gram(dist_m, kernel_var=kernel_var)
    n = a_m.shape[0]
    a_x = None
    if dist_x is not None:
        a_x = gaussian_gram(dist_x, kernel_var=kernel_var if kernel_var_x is None else kernel_var_x)
        if a_x.shape != a_m.shape:
            raise InfoflowError(f"dist_x has shape {a_x.shape}, dist_m has {a_m.shape}")
    y = None if labels is None else as_labels(labels, n)
    return _renyi_from_grams(a_m, alpha=a, a_x=a_x, y=y)

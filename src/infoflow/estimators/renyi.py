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
from .base import LabelGroup, Labels, Prepared, Row, near_ceiling

__all__ = [
    "RenyiResult",
    "RenyiInput",
    "RenyiPrepared",
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
    return _gram(as_dist(dist), positive(kernel_var, "kernel_var"))


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


class RenyiInput:
    """The input side of the Renyi I(X;M), prepared once per kernel width and shared by every
    layer: ``A_X`` (trace-normalised Gaussian Gram matrix of the input distances, float64
    ``(N, N)``) and ``S_alpha(A_X)`` (bits)."""

    def __init__(self, dist_x: np.ndarray, *, kernel_var: float, alpha: float) -> None:
        self.kernel_var = positive(kernel_var, "kernel_var")
        self.alpha = _alpha(alpha)
        self.a_x = _gram(dist_x, self.kernel_var)
        self.h_x = _entropy_from_eigs(np.linalg.eigvalsh(self.a_x), self.alpha)


def _gram(d: np.ndarray, kernel_var: float) -> np.ndarray:
    """``exp(-d / (2 kernel_var)) / trace`` of checked float64 distances."""
    return _normalise(np.exp(d * (-1.0 / (2.0 * kernel_var))), "Gaussian Gram matrix")


class RenyiPrepared(Prepared):
    """The matrix-based Renyi estimator of one layer, prepared from its squared distances.

    ``dist``: checked float64 ``(N, N)`` distances (:func:`~._util.as_dist`); ``kernel_var``:
    the Gaussian kernel's variance; ``x``: the prepared input side (:class:`RenyiInput`) for
    I(X;M), or None (then ``i_xm`` is NaN and the table has no I_XM row). The constructor
    computes ``A_M`` and its eigenvalues once; I(Y;M) of a labelling diagonalises ``A_M`` block by
    class. Rows: ``H_M``, ``I_XM`` (with ``x``); per labelling ``I_YM``.
    """

    estimator = "renyi"
    label_quantities = ("I_YM",)

    def __init__(self, dist: np.ndarray, *, kernel_var: float, alpha: float = 1.01,
                 x: RenyiInput | None = None) -> None:
        self.alpha = _alpha(alpha)
        self.kernel_var = positive(kernel_var, "kernel_var")
        self.n = int(dist.shape[0])
        self.a_m = _gram(dist, self.kernel_var)
        self.h_m = _entropy_from_eigs(np.linalg.eigvalsh(self.a_m), self.alpha)
        if x is None:
            self.i_xm = math.nan
        else:
            if x.a_x.shape != self.a_m.shape:
                raise InfoflowError(f"dist_x has shape {x.a_x.shape}, dist_m has {self.a_m.shape}")
            h_xm = _entropy_from_eigs(np.linalg.eigvalsh(_normalise(self.a_m * x.a_x, "A_M o A_X")), self.alpha)
            self.i_xm = float(self.h_m + x.h_x - h_xm)
        self.has_x = x is not None

    def label_free(self) -> tuple[Row, ...]:
        rows = [Row("H_M", self.h_m, math.nan, False)]
        if self.has_x:
            log2n = math.log2(self.n)
            rows.append(Row("I_XM", self.i_xm, log2n, near_ceiling(self.i_xm, log2n)))
        return tuple(rows)

    def label_values(self, group: LabelGroup) -> dict[str, np.ndarray]:
        a = self.alpha
        return {"I_YM": np.array([float(self.h_m + _label_entropy_from_ids(lab.y, a)
                                        - _joint_with_labels(self.a_m, lab.y, a)) for lab in group.sets])}

    def ceiling_y(self, lab: Labels) -> float:
        return _label_entropy_from_ids(lab.y, self.alpha)


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
    kv = positive(kernel_var, "kernel_var")
    d = as_dist(dist_m)
    n = d.shape[0]
    x = None
    if dist_x is not None:
        x = RenyiInput(as_dist(dist_x, what="dist_x"), kernel_var=kv if kernel_var_x is None else kernel_var_x, alpha=a)
    y = None if labels is None else Labels.of(labels, n)
    p = RenyiPrepared(d, kernel_var=kv, alpha=a, x=x)
    return RenyiResult(i_xm=float(p.i_xm), i_ym=math.nan if y is None else p.i_ym(y), h_m=float(p.h_m))

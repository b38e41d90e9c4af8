"""KDE (mixture-of-Gaussians) bounds on layer entropy and mutual information.

Kolchinsky & Tracey, "Estimating mixture entropy with pairwise distances", Entropy 19 (2017);
as used by Saxe et al., "On the information bottleneck theory of deep learning", ICLR 2018, and
by Lee & Bajic (ISBI 2021). See ``methods.md`` section 5.

The layer output is modelled as ``M = h(X) + Z`` with Gaussian noise ``Z ~ N(0, kernel_var I_D)``
(``kernel_var``: the variance a kernel spec of :mod:`.widths` resolves to); the
distribution of ``M`` over the N probe samples is a mixture of N Gaussians centred on the
activations ``m_i``. With squared distances ``d_ij = |m_i - m_j|^2`` (nats)::

    H_up(M)  = D/2 + (D/2) log(2 pi kernel_var)
               - (1/N) sum_i [ logsumexp_j(-d_ij / (2 kernel_var)) - log N ]
    H(M|X)   = (D/2) (log(2 pi kernel_var) + 1)
    I(X;M)   = H(M) - H(M|X) = -(1/N) sum_i [ logsumexp_j(-d_ij / (2 kernel_var)) - log N ]
    H(M|Y)   = sum_c (N_c/N) H(M restricted to the N_c samples of class c)
    I(Y;M)   = H(M) - H(M|Y)

The lower bound (Bhattacharyya distance) is ``H_lo(M) = H_up(M; 4 kernel_var) + (D/2) log(1/4)``:
the same expression with ``2 kernel_var`` replaced by ``8 kernel_var`` inside the exponent;
``H(M|X)`` keeps ``kernel_var``, and
``H(M|Y)`` uses the lower bound on each class as well (as in Saxe et al.'s code). Everything is
reported in bits. The D-dependent constants cancel in both MI values, which are computed
directly (not as differences of large entropies) so no digits are lost at D = 262,144.

Numerical form (one ``exp`` of the matrix for I(X;M) and every labelling): with
``a_ij = -d_ij / (2 var)``, each row's ``logsumexp_j a_ij = m_i + log1p(sum_{j != k_i}
exp(a_ij - m_i))``, ``m_i`` the row's maximum and ``k_i`` where it lies (what scipy's logsumexp
computes). For a distance matrix (zero diagonal, entries >= 0) ``m_i = 0`` at ``k_i = i``, the
sample's own term, which every same-class sum contains too; so ``E = exp(a)`` with a zeroed
diagonal gives the all-sample sums (row sums) and the same-class sums (sums over the same-class
pairs only) of any labelling. Rows whose maximum is not their own diagonal term (a matrix with
a nonzero diagonal) take their same-class logsumexp from the row itself.

Bounds: ``0 <= I(X;M) <= log2 N`` and ``0 <= I(Y;M) <= H(Y)`` (plug-in H(Y) of the labels);
``I_lo(X;M) <= I_up(X;M)`` and ``H_lo(M) <= H_up(M)``. (``I(Y;M)`` of the two bounds is a
difference of two bounds and is not ordered in general.)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy.special import logsumexp
from threadpoolctl import ThreadpoolController

from ..errors import InfoflowError
from ._util import LN2, as_dist, positive
from .base import LabelGroup, Labels, Prepared, Row, near_ceiling

__all__ = ["KDEResult", "KDEPrepared", "kde_mi", "BOUNDS"]

BOUNDS = ("upper", "lower")


class KDEResult(NamedTuple):
    """KDE estimates of one layer, all in bits.

    ``i_ym`` and ``h_m_given_y`` are NaN when no labels were given. ``h_m`` and the conditional
    entropies are differential entropies (they depend on D and ``kernel_var`` and may be negative).
    """

    i_xm: float  # I(X;M)
    i_ym: float  # I(Y;M)
    h_m: float  # H(M)
    h_m_given_x: float  # H(M|X): entropy of the added Gaussian noise
    h_m_given_y: float  # H(M|Y)


_BLAS: list[Any] = []


def _one_blas_thread() -> Any:
    """BLAS limited to one thread: the large classes' matrix product is then the same to the bit
    whatever the thread settings (the online table and ``infoflow estimate`` agree), and it does
    not stall when the cores are busy."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _check_dim(dim: Any) -> int:
    dim_i = int(dim)
    if dim_i <= 0 or dim_i != dim:
        raise InfoflowError(f"dim must be a positive integer (activation values per sample), got {dim!r}")
    return dim_i


class KDEPrepared(Prepared):
    """A KDE bound of one layer prepared from its squared distances (see the module docstring).

    Parameters
    ----------
    dist:
        ``(N, N)`` float64 squared distances, already checked (:func:`~._util.as_dist`); not
        modified.
    kernel_var:
        Variance of the Gaussian kernel (a kernel spec resolved by
        :meth:`~.widths.Kernel.kernel_var`).
    dim:
        ``D``, activation values per sample (only the entropies use it).
    bound:
        ``"upper"`` or ``"lower"``.

    The constructor computes ``E`` (one ``exp``) and keeps it: ``N^2`` float64. I(Y;M) of a
    labelling then sums ``E`` over its same-class pairs only.
    """

    label_quantities = ("I_YM", "H_M_given_Y")

    def __init__(self, dist: np.ndarray, *, kernel_var: float, dim: int, bound: str = "upper") -> None:
        if bound not in BOUNDS:
            raise InfoflowError(f"bound must be one of {BOUNDS}, got {bound!r}")
        kernel_var = positive(kernel_var, "kernel_var")
        dim_i = _check_dim(dim)
        self.estimator = "kde_" + bound
        self.bound = bound
        self.kernel_var = kernel_var
        self.dim = dim_i
        n = self.n = int(dist.shape[0])
        var = kernel_var if bound == "upper" else 4.0 * kernel_var
        e = np.multiply(dist, -1.0 / (2.0 * var))  # a_ij = -d_ij / (2 var)
        diag = np.diagonal(e)
        self._special = np.zeros(0, dtype=np.intp)
        self._special_rows: np.ndarray | None = None
        if not diag.any():  # a distance matrix: each row's maximum is its own 0
            self._shift: np.ndarray | None = None
            np.exp(e, out=e)
            np.fill_diagonal(e, 0.0)
            t = np.log1p(e.sum(axis=1))
        else:
            m = e.max(axis=1)
            own = diag == m
            k = np.where(own, np.arange(n), e.argmax(axis=1))
            self._special = np.flatnonzero(~own)
            self._special_rows = e[self._special].copy()  # a_ij of the rows whose maximum is elsewhere
            self._shift = m
            e -= m[:, None]
            np.exp(e, out=e)
            e[np.arange(n), k] = 0.0
            t = np.log1p(e.sum(axis=1)) + m
        self._e = e
        self._t = t - math.log(n)  # t_i = logsumexp_j a_ij - log N (nats)
        i_xm = -float(np.mean(self._t))
        # H(M) = D/2 + (D/2) log(2 pi kernel_var) + I(X;M)
        # (the 4 kernel_var of the lower bound cancels with (D/2) log(1/4))
        self._const = 0.5 * dim_i * math.log(2.0 * math.pi * kernel_var)
        self.i_xm = i_xm / LN2
        self.h_m = (0.5 * dim_i + self._const + i_xm) / LN2
        self.h_m_given_x = 0.5 * dim_i * (math.log(2.0 * math.pi * kernel_var) + 1.0) / LN2

    def label_free(self) -> tuple[Row, ...]:
        nan = math.nan
        log2n = math.log2(self.n)
        return (Row("H_M", self.h_m, nan, False), Row("H_M_given_X", self.h_m_given_x, nan, False),
                Row("I_XM", self.i_xm, log2n, near_ceiling(self.i_xm, log2n)))

    def _class_terms(self, group: LabelGroup) -> np.ndarray:
        """``tc[s, r] = logsumexp_{j in class of r} a_rj - log N_c`` (nats) of sample ``r`` under
        labelling ``s``: small classes from the listed pairs (one gather), large ones from one
        matrix product."""
        n = self.n
        tc = np.empty(len(group) * n)
        if group.flat.size:
            own = np.add.reduceat(self._e.ravel().take(group.flat), group.start)
            np.log1p(own, out=own)
            own -= group.sparse_log_count
            tc[group.sparse_dst] = own
        if group.dense_src.size:
            with _one_blas_thread():
                prod = self._e @ group.dense
            own = prod.ravel().take(group.dense_src)
            np.log1p(own, out=own)
            own -= group.dense_log_count
            tc[group.dense_dst] = own
        tc = tc.reshape(len(group), n)
        if self._shift is not None:
            tc += self._shift
        if self._special.size:  # rows whose maximum is not their own term: their row's logsumexp
            assert self._special_rows is not None
            for s, lab in enumerate(group.sets):
                for k, r in enumerate(self._special):
                    same = lab.y == lab.y[r]
                    tc[s, r] = logsumexp(self._special_rows[k][same]) - math.log(int(same.sum()))
        return tc

    def label_values(self, group: LabelGroup) -> dict[str, np.ndarray]:
        tc = self._class_terms(group)
        # sum_c p_c mean_{i in c} (.) = (1/N) sum_i (.)  (row means: numpy's pairwise sum of each row,
        # the same bits as the mean of that row alone)
        i_ym = np.mean(tc - self._t, axis=1) / LN2
        h_m_given_y = (0.5 * self.dim + self._const - np.mean(tc, axis=1)) / LN2
        return {"I_YM": i_ym, "H_M_given_Y": h_m_given_y}

    def ceiling_y(self, lab: Labels) -> float:
        return lab.h_y


def kde_mi(
    dist: Any,
    labels: Any = None,
    *,
    kernel_var: float,
    dim: int,
    bound: str = "upper",
) -> KDEResult:
    """KDE estimates of I(X;M), I(Y;M) and the entropies of one layer, in bits.

    Parameters
    ----------
    dist:
        ``(N, N)`` squared Euclidean distances ``|m_i - m_j|^2`` between the flattened activations
        of the N probe samples (numpy or torch; float32 is converted to float64). Negative
        entries from rounding are clipped to 0; the diagonal should be 0.
    labels:
        ``(N,)`` class of each sample (any sortable dtype), or ``None`` to skip I(Y;M).
    kernel_var:
        Variance of the Gaussian kernel, the noise variance of the model above (paper code: 0.2;
        paper text: 1.0).
    dim:
        ``D``, the number of activation values per sample (only the absolute entropies use it).
    bound:
        ``"upper"`` (KL-divergence based, Kolchinsky & Tracey's upper bound, the one Saxe et al.
        and Lee & Bajic plot) or ``"lower"`` (Bhattacharyya-distance based).

    Returns
    -------
    KDEResult
        ``(i_xm, i_ym, h_m, h_m_given_x, h_m_given_y)`` in bits.
    """
    d = as_dist(dist)
    positive(kernel_var, "kernel_var")
    if bound not in BOUNDS:
        raise InfoflowError(f"bound must be one of {BOUNDS}, got {bound!r}")
    _check_dim(dim)
    lab = None if labels is None else Labels.of(labels, d.shape[0])
    p = KDEPrepared(d, kernel_var=kernel_var, dim=dim, bound=bound)
    i_ym = h_m_given_y = math.nan
    if lab is not None:
        v = p.label_values(LabelGroup([lab]))
        i_ym, h_m_given_y = float(v["I_YM"][0]), float(v["H_M_given_Y"][0])
    return KDEResult(i_xm=p.i_xm, i_ym=i_ym, h_m=p.h_m, h_m_given_x=p.h_m_given_x, h_m_given_y=h_m_given_y)

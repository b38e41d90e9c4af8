"""KDE (mixture-of-Gaussians) bounds on layer entropy and mutual information.

Kolchinsky & Tracey, "Estimating mixture entropy with pairwise distances", Entropy 19 (2017);
as used by Saxe et al., "On the information bottleneck theory of deep learning", ICLR 2018, and
by Lee & Bajic (ISBI 2021). See ``methods.md`` section 5.

The layer output is modelled as ``M = h(X) + Z`` with Gaussian noise ``Z ~ N(0, s2 I_D)``; the
distribution of ``M`` over the N probe samples is a mixture of N Gaussians centred on the
activations ``m_i``. With squared distances ``d_ij = |m_i - m_j|^2`` (nats)::

    H_up(M)  = D/2 + (D/2) log(2 pi s2) - (1/N) sum_i [ logsumexp_j(-d_ij / (2 s2)) - log N ]
    H(M|X)   = (D/2) (log(2 pi s2) + 1)
    I(X;M)   = H(M) - H(M|X) = -(1/N) sum_i [ logsumexp_j(-d_ij / (2 s2)) - log N ]
    H(M|Y)   = sum_c (N_c/N) H(M restricted to the N_c samples of class c)
    I(Y;M)   = H(M) - H(M|Y)

The lower bound (Bhattacharyya distance) is ``H_lo(M) = H_up(M; 4 s2) + (D/2) log(1/4)``: the same
expression with ``2 s2`` replaced by ``8 s2`` inside the exponent; ``H(M|X)`` keeps ``s2``, and
``H(M|Y)`` uses the lower bound on each class as well (as in Saxe et al.'s code). Everything is
reported in bits. The D-dependent constants cancel in both MI values, which are computed
directly (not as differences of large entropies) so no digits are lost at D = 262,144.

Bounds: ``0 <= I(X;M) <= log2 N`` and ``0 <= I(Y;M) <= H(Y)`` (plug-in H(Y) of the labels);
``I_lo(X;M) <= I_up(X;M)`` and ``H_lo(M) <= H_up(M)``. (``I(Y;M)`` of the two bounds is a
difference of two bounds and is not ordered in general.)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy.special import logsumexp

from ..errors import InfoflowError
from ._util import LN2, as_dist, as_labels, positive

__all__ = ["KDEResult", "kde_mi", "BOUNDS"]

BOUNDS = ("upper", "lower")


class KDEResult(NamedTuple):
    """KDE estimates of one layer, all in bits.

    ``i_ym`` and ``h_m_given_y`` are NaN when no labels were given. ``h_m`` and the conditional
    entropies are differential entropies (they depend on D and ``noise_var`` and may be negative).
    """

    i_xm: float  # I(X;M)
    i_ym: float  # I(Y;M)
    h_m: float  # H(M)
    h_m_given_x: float  # H(M|X): entropy of the added Gaussian noise
    h_m_given_y: float  # H(M|Y)


def _row_terms(neg_scaled: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """logsumexp over each row of ``neg_scaled`` (entries outside ``mask`` excluded)."""
    if mask is None:
        return logsumexp(neg_scaled, axis=1)
    return logsumexp(np.where(mask, neg_scaled, -np.inf), axis=1)


def _mixture_terms(neg: np.ndarray, same: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Row logsumexps of ``neg`` (all j, and j of the row's class where ``same`` is given).

    With a zero diagonal (distances of a sample to itself; ``neg <= 0``) each row's largest term
    is its own, ``exp(0) = 1``, so ``logsumexp_j = log1p(sum_{j != i} exp(neg_ij))`` (what scipy's
    logsumexp computes after its max shift) from one ``exp`` shared by both sums; otherwise
    scipy's logsumexp.
    """
    if not np.all(np.diagonal(neg) == 0.0):
        return _row_terms(neg), None if same is None else _row_terms(neg, same)
    e = np.exp(neg)
    np.fill_diagonal(e, 0.0)
    t = np.log1p(e.sum(axis=1))
    if same is None:
        return t, None
    np.multiply(e, same, out=e)
    return t, np.log1p(e.sum(axis=1))


def kde_mi(
    dist: Any,
    labels: Any = None,
    *,
    noise_var: float,
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
    noise_var:
        Noise variance ``s2`` of the Gaussian kernel (paper code: 0.2; paper text: 1.0).
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
    n = d.shape[0]
    s2 = positive(noise_var, "noise_var")
    if bound not in BOUNDS:
        raise InfoflowError(f"bound must be one of {BOUNDS}, got {bound!r}")
    dim_i = int(dim)
    if dim_i <= 0 or dim_i != dim:
        raise InfoflowError(f"dim must be a positive integer (activation values per sample), got {dim!r}")

    var = s2 if bound == "upper" else 4.0 * s2
    neg = d * (-1.0 / (2.0 * var))  # -d_ij / (2 var)

    # Mean log mixture density of the samples, up to the Gaussian normalisation (nats):
    #   t_i = logsumexp_j(-d_ij / (2 var)) - log N,   I(X;M) = -mean(t_i)
    y = None if labels is None else as_labels(labels, n)
    same = None if y is None else y[:, None] == y[None, :]
    t, tc = _mixture_terms(neg, same)
    t = t - math.log(n)
    i_xm = -float(np.mean(t))

    # H(M) = D/2 + (D/2) log(2 pi s2) + I(X;M)  (the 4 s2 of the lower bound cancels with (D/2) log(1/4))
    const = 0.5 * dim_i * math.log(2.0 * math.pi * s2)
    h_m = 0.5 * dim_i + const + i_xm
    h_m_given_x = 0.5 * dim_i * (math.log(2.0 * math.pi * s2) + 1.0)

    if y is None or tc is None:
        i_ym = math.nan
        h_m_given_y = math.nan
    else:
        counts = np.bincount(y)
        # Same-class mixture for each sample: t^c_i = logsumexp_{j in c(i)} - log N_c(i)
        tc = tc - np.log(counts[y].astype(np.float64))
        # sum_c p_c mean_{i in c} (.) = (1/N) sum_i (.)
        i_ym = float(np.mean(tc - t))
        h_m_given_y = 0.5 * dim_i + const - float(np.mean(tc))

    return KDEResult(
        i_xm=i_xm / LN2,
        i_ym=i_ym / LN2,
        h_m=h_m / LN2,
        h_m_given_x=h_m_given_x / LN2,
        h_m_given_y=h_m_given_y / LN2,
    )

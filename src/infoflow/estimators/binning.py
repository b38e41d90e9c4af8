"""Binning (histogram) estimator of layer entropy and mutual information.

Shwartz-Ziv & Tishby (2017); Saxe et al., ICLR 2018 (``simplebinmi.py``); Lee & Bajic, ISBI 2021.
See ``methods.md`` section 6.

Every activation value ``m`` becomes its bin index ``floor(m / b)`` (bin size ``b``; paper code
0.1, paper text 0.2), and a sample's whole vector of bin indices is one discrete symbol. Entropies
are the plug-in entropies of the symbol frequencies over the N probe samples, in bits::

    H(M)    = -sum_s p_s log2 p_s
    I(X;M)  = H(M)                       (a deterministic network: H(M|X) = 0)
    I(Y;M)  = H(M) - sum_c p_c H(M | Y = c)

The estimate saturates at ``log2 N`` as soon as all N symbols differ (``saturated``).

The binned symbol has one definition, used by the probe (:func:`infoflow.probe.bin_symbol_ids`,
which the run stores) and by :func:`bin_codes` alike:

* :func:`bin_index`: ``floor(float32(m) / float32(b))``, the division done in float32 (IEEE,
  correctly rounded, so numpy and torch agree), ``-0.0`` made ``+0.0``; the bin indices are kept
  as integral float32 values (exact at any magnitude, no int32/int64 range). A value on a bin
  edge falls in the bin its float32 quotient says; float64 activations are rounded to float32
  first.
* :func:`symbol_digests`: SHA-256 of the bytes of each row of bin indices; two rows have the
  same digest exactly when their symbols are equal (up to a 2^-256-scale collision chance).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

import numpy as np

from ..errors import InfoflowError
from ._util import as_labels, plugin_entropy_bits, positive, to_numpy
from .base import LabelGroup, Labels, Prepared, Row

__all__ = ["BinResult", "BinPrepared", "bin_index", "symbol_digests", "bin_codes", "binning_mi"]


class BinResult(NamedTuple):
    """Binning estimates of one layer (bits); ``i_ym`` is NaN when no labels were given."""

    h_m: float  # H(M), plug-in entropy of the symbols
    i_xm: float  # I(X;M) = H(M)
    i_ym: float  # I(Y;M) = H(M) - H(M|Y)
    n_symbols: int  # distinct symbols among the N samples
    saturated: bool  # all N symbols distinct: H(M) = log2 N


# -- the binned symbol ------------------------------------------------------------------------------
def bin_index(values: Any, *, bin_size: float, out: np.ndarray | None = None) -> np.ndarray:
    """Bin indices ``floor(float32(values) / float32(bin_size))`` as integral float32 values.

    Parameters
    ----------
    values:
        Activations, any shape (numpy or torch, any device; float64 is rounded to float32).
    bin_size:
        Bin width ``b`` in activation units (rounded to float32).
    out:
        float32 array of ``values``' shape to write into (may be ``values`` itself); ``None``: a
        new array (``values`` is never changed then).

    Returns
    -------
    np.ndarray
        float32, ``values``' shape: integral values (``-0.0`` turned into ``+0.0``, so equal
        indices have equal bytes); NaN or infinite where ``values`` is, or where the quotient
        overflows.
    """
    a = to_numpy(values)
    b32 = np.float32(bin_size)
    if a.dtype != np.float32:
        a = np.asarray(a, dtype=np.float32)  # a fresh array: safe to divide in place
        q = np.divide(a, b32, out=a if out is None else out)
    else:
        q = np.divide(a, b32, out=out)
    np.floor(q, out=q)
    q += np.float32(0.0)  # -0.0 -> +0.0
    return q


def symbol_digests(indices: np.ndarray) -> list[bytes]:
    """SHA-256 digest of each row of a 2-D float32 array of bin indices (:func:`bin_index`)."""
    rows = np.ascontiguousarray(indices, dtype=np.float32)
    if rows.ndim != 2:
        raise InfoflowError(f"bin indices must be a 2-D (rows, values) array, got shape {rows.shape}")
    return [hashlib.sha256(memoryview(rows[r])).digest() for r in range(rows.shape[0])]


def bin_codes(acts: Any, *, bin_size: float, batch_size: int = 64) -> np.ndarray:
    """Discrete symbol of each sample: rows of :func:`bin_index` as dense ids.

    Parameters
    ----------
    acts:
        ``(N, ...)`` activations of N samples (numpy or torch); each sample is flattened.
    bin_size:
        Bin width ``b`` in activation units (paper code 0.1, paper text 0.2).
    batch_size:
        Rows binned at a time (memory only; the result does not depend on it).

    Returns
    -------
    np.ndarray
        int64 ``(N,)``: ids ``0..k-1``, numbered in order of first appearance; equal ids mean
        identical binned vectors. The same grouping as the probe's
        :func:`~infoflow.probe.bin_symbol_ids` of the same float32 activations.
    """
    positive(bin_size, "bin_size")
    a = to_numpy(acts)
    if a.ndim < 1:
        raise InfoflowError(f"activations must have a leading sample axis, got shape {a.shape}")
    a = a.reshape(a.shape[0], -1)
    ids: dict[bytes, int] = {}
    codes = np.empty(a.shape[0], dtype=np.int64)
    step = max(int(batch_size), 1)
    for start in range(0, a.shape[0], step):
        q = bin_index(a[start : start + step], bin_size=bin_size)
        if not np.all(np.isfinite(q)):
            raise InfoflowError("activations hold NaN or infinite values; cannot bin them")
        for r, key in enumerate(symbol_digests(q)):
            codes[start + r] = ids.setdefault(key, len(ids))
    return codes


# -- the estimator ------------------------------------------------------------------------------------
class BinPrepared(Prepared):
    """The binning estimator of one layer, prepared from its symbol ids ``(N,)``.

    ``h_m = i_xm`` (bits), ``n_symbols``, ``saturated``; :meth:`i_ym` of any labelling costs one
    sort of N joint symbols. Rows: ``H_M``, ``I_XM`` (both flagged at the ceiling when saturated);
    per labelling ``I_YM``, ``H_M_given_Y``.
    """

    estimator = "bin"
    label_quantities = ("I_YM", "H_M_given_Y")

    def __init__(self, codes: Any) -> None:
        c = to_numpy(codes)
        if c.ndim != 1 or c.shape[0] == 0:
            raise InfoflowError(f"codes must be a non-empty 1-D array of symbol ids, got shape {c.shape}")
        self.n = int(c.shape[0])
        self.sym = as_labels(c, self.n, what="codes")
        counts = np.bincount(self.sym)
        self.h_m = plugin_entropy_bits(counts)
        self.i_xm = self.h_m
        self.n_symbols = int(counts.size)
        self.saturated = self.n_symbols == self.n
        self.kernel_var = math.nan

    def label_free(self) -> tuple[Row, ...]:
        log2n = math.log2(self.n)
        return (Row("H_M", self.h_m, log2n, self.saturated), Row("I_XM", self.i_xm, log2n, self.saturated))

    def _i_ym(self, lab: Labels) -> float:
        # H(M|Y) = H(M, Y) - H(Y)
        _, joint = np.unique(lab.y * np.int64(self.n_symbols) + self.sym, return_counts=True)
        h_my = plugin_entropy_bits(joint)
        return float(max(self.h_m + lab.h_y - h_my, 0.0))  # plug-in MI is >= 0; clears rounding below 0

    def label_values(self, group: LabelGroup) -> dict[str, np.ndarray]:
        i_ym = np.array([self._i_ym(lab) for lab in group.sets])
        return {"I_YM": i_ym, "H_M_given_Y": self.h_m - i_ym}

    def ceiling_y(self, lab: Labels) -> float:
        return lab.h_y


def binning_mi(codes: Any, labels: Any = None) -> BinResult:
    """Binning estimates from symbol ids (see :func:`bin_codes`), in bits.

    Parameters
    ----------
    codes:
        ``(N,)`` integer symbol of each sample (only equality matters).
    labels:
        ``(N,)`` class of each sample, or ``None`` (then ``i_ym`` is NaN).

    Returns
    -------
    BinResult
        ``(h_m, i_xm, i_ym, n_symbols, saturated)``; ``I(X;M) = H(M)`` (deterministic network),
        ``I(Y;M) = H(M) - sum_c p_c H(M | c)``.
    """
    p = BinPrepared(codes)
    i_ym = math.nan if labels is None else p.i_ym(labels)
    return BinResult(h_m=p.h_m, i_xm=p.i_xm, i_ym=float(i_ym), n_symbols=p.n_symbols, saturated=bool(p.saturated))


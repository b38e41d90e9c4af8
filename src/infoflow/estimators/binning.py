"""Binning (histogram) estimator of layer entropy and mutual information.

Shwartz-Ziv & Tishby (2017); Saxe et al., ICLR 2018 (``simplebinmi.py``); Lee & Bajic, ISBI 2021.
See ``methods.md`` section 6.

Every activation value ``m`` becomes the integer ``floor(m / b)`` (bin size ``b``; paper code 0.1,
paper text 0.2), and a sample's whole vector of integers is one discrete symbol. Entropies are the
plug-in entropies of the symbol frequencies over the N probe samples, in bits::

    H(M)    = -sum_s p_s log2 p_s
    I(X;M)  = H(M)                       (a deterministic network: H(M|X) = 0)
    I(Y;M)  = H(M) - sum_c p_c H(M | Y = c)

The estimate saturates at ``log2 N`` as soon as all N symbols differ (``saturated``).

Symbols are compared through a 128-bit BLAKE2b digest of the bytes of each row of
``floor(m / b)`` (integer-valued float64, exact below 2**53, with -0.0 turned into +0.0), so rows
of D = 262,144 values can be processed in batches (:class:`BinCoder`) and only N digests are kept.
``floor(m / b)`` is evaluated in float64 (``m`` cast to float64 first, then divided by ``b``),
exactly like ``np.floor(activity / binsize)`` of the reference code; values lying exactly on a bin
edge follow the floating-point result of that division.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

import numpy as np

from ..errors import InfoflowError
from ._util import as_labels, plugin_entropy_bits, positive, to_numpy

__all__ = ["BinCoder", "BinResult", "bin_codes", "binning_mi"]


class BinResult(NamedTuple):
    """Binning estimates of one layer (bits); ``i_ym`` is NaN when no labels were given."""

    h_m: float  # H(M), plug-in entropy of the symbols
    i_xm: float  # I(X;M) = H(M)
    i_ym: float  # I(Y;M) = H(M) - H(M|Y)
    n_symbols: int  # distinct symbols among the N samples
    saturated: bool  # all N symbols distinct: H(M) = log2 N


class BinCoder:
    """Streaming symbol coder: feed activations in batches, get dense symbol ids.

    ``BinCoder(bin_size=b)``, then ``.add(batch)`` for consecutive batches of samples (any shape
    ``(B, ...)``, numpy or torch), then ``.codes()``: an int64 array ``(N,)`` of symbol ids
    ``0..k-1`` numbered in order of first appearance. Gives exactly ``bin_codes(all_acts,
    bin_size=b)`` however the samples are split into batches.
    """

    def __init__(self, *, bin_size: float) -> None:
        self.bin_size = positive(bin_size, "bin_size")
        self._ids: dict[bytes, int] = {}
        self._codes: list[int] = []
        self._dim: int | None = None

    def __len__(self) -> int:
        return len(self._codes)

    @property
    def n_symbols(self) -> int:
        return len(self._ids)

    def add(self, batch_acts: Any) -> "BinCoder":
        """Add a batch ``(B, ...)`` of samples (rows are flattened); returns ``self``."""
        a = to_numpy(batch_acts)
        if a.ndim < 1:
            raise InfoflowError(f"activations must have a leading sample axis, got shape {a.shape}")
        a = a.reshape(a.shape[0], -1)
        if self._dim is None:
            self._dim = a.shape[1]
        elif a.shape[1] != self._dim:
            raise InfoflowError(f"batch has {a.shape[1]} values per sample, earlier batches had {self._dim}")
        q = np.array(a, dtype=np.float64, order="C", copy=True)  # fresh buffer: the ops below are in place
        q /= self.bin_size
        np.floor(q, out=q)
        q += 0.0  # -0.0 -> +0.0, so equal integers have equal bytes
        if not np.all(np.isfinite(q)):
            raise InfoflowError("activations hold NaN or infinite values; cannot bin them")
        ids = self._ids
        for row in q:
            key = hashlib.blake2b(memoryview(row), digest_size=16).digest()
            code = ids.get(key)
            if code is None:
                code = len(ids)
                ids[key] = code
            self._codes.append(code)
        return self

    def codes(self) -> np.ndarray:
        """Symbol ids ``(N,)`` int64 of all samples added so far, in order of addition."""
        return np.asarray(self._codes, dtype=np.int64)


def bin_codes(acts: Any, *, bin_size: float, batch_size: int = 64) -> np.ndarray:
    """Discrete symbol of each sample: rows of ``floor(acts / bin_size)`` as dense ids.

    Parameters
    ----------
    acts:
        ``(N, ...)`` activations of N samples (numpy or torch); each sample is flattened.
    bin_size:
        Bin width ``b`` in activation units (paper code 0.1, paper text 0.2).
    batch_size:
        Rows converted to float64 at a time (memory only; the result does not depend on it).

    Returns
    -------
    np.ndarray
        int64 ``(N,)``: ids ``0..k-1``, numbered in order of first appearance; equal ids mean
        identical binned vectors.
    """
    a = to_numpy(acts)
    if a.ndim < 1:
        raise InfoflowError(f"activations must have a leading sample axis, got shape {a.shape}")
    coder = BinCoder(bin_size=bin_size)
    step = max(int(batch_size), 1)
    for start in range(0, a.shape[0], step):
        coder.add(a[start : start + step])
    return coder.codes()


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
    c = to_numpy(codes)
    if c.ndim != 1 or c.shape[0] == 0:
        raise InfoflowError(f"codes must be a non-empty 1-D array of symbol ids, got shape {c.shape}")
    n = c.shape[0]
    sym = as_labels(c, n, what="codes")
    sym_counts = np.bincount(sym)
    h_m = plugin_entropy_bits(sym_counts)
    n_symbols = int(sym_counts.size)
    saturated = n_symbols == n
    if labels is None:
        i_ym = math.nan
    else:
        y = as_labels(labels, n)
        # H(M|Y) = H(M, Y) - H(Y)
        _, joint = np.unique(y * np.int64(n_symbols) + sym, return_counts=True)
        h_my = plugin_entropy_bits(joint)
        h_y = plugin_entropy_bits(np.bincount(y))
        i_ym = max(h_m + h_y - h_my, 0.0)  # plug-in MI is >= 0; clears rounding below 0
    return BinResult(h_m=h_m, i_xm=h_m, i_ym=float(i_ym), n_symbols=n_symbols, saturated=bool(saturated))

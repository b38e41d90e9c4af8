r"""Squared Euclidean distance matrices of activations, accurate where the kernels can see them.

:func:`pairwise_sq_dists` returns ``d[i, j] = |a_i - a_j|^2`` (float64, exactly symmetric, zero
diagonal, never negative) for N rows of dimension D (D reaches 262,144 for the U-Net's top
layers). The rows may come as one (N, D) array or as consecutive row blocks (:class:`RowBlocks`:
the probe keeps each batch's layer output as the network produced it and never concatenates
them); every pass reads one block of columns at a time. Columns whose value is the same in every
row (ReLU units dead on the whole probe set: 28-34% of the paper U-Net's columns on DSB images)
add exactly 0 to every distance and are skipped after one min/max pass. Then three tiers; each
pair is taken from the first tier that can vouch for it.

Tier 1, float32 Gram (BLAS)
    The rows are shifted by a common vector, the float64 mean of 64 fixed random rows (of all
    rows when N < 160): distances do not change under a common shift, and the shift removes the
    large common offsets that make ``|a|^2 + |b|^2 - 2 a.b`` cancel. The shifted rows ``c_i`` are
    formed one block of ``K`` columns at a time (``K`` = 8192 or less, so no shifted copy of the
    whole matrix is ever held); each block's Gram ``C C^T`` is a float32 BLAS product: on CPU
    numpy's ``a @ a.T``, which OpenBLAS runs as ``syrk`` (half the flops of a general product),
    one thread each on ``torch.get_num_threads()`` threads that share the column blocks, so it
    follows the run's thread setting; on CUDA ``torch.mm`` (cuBLAS); ``backend="torch"`` forces
    ``torch.mm`` (MKL) on CPU too, about 2x slower there), and block results are summed in float64
    by pairwise (tree) summation, one sum per thread, the threads' sums added at the end. The
    squared norms ``n_i = |c_i|^2`` are float64 sums of the exact float64 products of the
    float32 ``c``, and ``d~ = n_i + n_j - 2 G_ij``.
    A pilot runs tier 1 on 64 rows first (when N >= 160), on about 16,384 evenly spaced
    columns (its distances scaled up to all columns: a prediction, not a result); if every row
    can be expected to have two or more pairs tier 1 cannot vouch for, tier 2 would need nearly
    every row anyway and tier 1 is skipped. (Activations of an untrained net, whose distances are
    all below ``near``, and strongly correlated real images take that path.)
Tier 2, float64 Gram
    The pairs left are recomputed the same way in float64 (products and sums, blocks of
    ``K`` = 2048 columns; the squared norms are the Gram's diagonal, with the same bound) over
    only the rows they involve, shifted by tier 1's common vector. The pairs it cannot vouch
    for (distances tiny against the norms) get further rounds (up to 3 in all): they split into
    connected groups of rows, and each group with at most half the rows of the group it came from
    gets a Gram of its own rows, centred on one of its rows; a tight cluster of near duplicates so
    gets small norms and tight bounds, at the cost of its own size only.
Tier 3, direct
    What tier 2 cannot vouch for is computed directly: ``sum_k (a_ik - a_jk)^2`` with the
    differences and the sum in float64 (for float32 input each difference is exact; the relative
    error is below ``(D + 3) * 2^-53``, i.e. < 3e-11 at D = 2^18).

Error model
-----------
``u`` is the unit roundoff of the tier's arithmetic (``2^-24`` for float32, ``2^-53`` for
float64), ``gamma_n = n u / (1 - n u)``, ``nu_i = sqrt(n_i)``.

* Centring rounds each ``c_ik`` once (relative error ``u``), so the difference vector is
  perturbed by at most ``rho = u' (nu_i + nu_j)``, ``u' ~ u``, and
  ``|d_c - d| <= rho^2 + 2 rho sqrt(d)`` with ``d`` the true and ``d_c`` the centred distance.
* Gram entry, worst case, for *any* summation order the library may use inside a block of
  ``K`` columns, plus the float64 tree sums of the ``D/K`` block results (one per thread, then
  added), depth ``t <= 2 ceil(log2(D/K)) + 1 + (threads - 1)`` (Higham, *Accuracy and
  Stability of Numerical Algorithms*, Thm 3.1 and section 4.2, and Cauchy-Schwarz):
  ``|G~_ij - c_i.c_j| <= (gamma_K + gamma^64_t) nu_i nu_j``. In float32 at K = 8192 this is about
  ``5e-4 nu_i nu_j``: rigorous but far from what BLAS achieves. In float64 at K = 2048 it is
  about ``2.3e-13 nu_i nu_j``. Norms: ``gamma^64_{K + 1 + t} n_i`` (tier 1), the Gram bound
  ``(gamma_K + gamma^64_t) n_i`` (tier 2, the diagonal).
* Gram entry, working model (tier 1 only): ``|G~_ij - c_i.c_j| <= kappa u nu_i nu_j`` with
  ``kappa = gram_error`` (default 16). Measured on this project's CPU (MKL via torch and OpenBLAS
  via numpy, 1 and 2 threads, K = 8192, D = 262,144, 19,900 pairs per case), the largest
  ``|G~ - G| / (u nu_i nu_j)`` was 0.8 (Gaussian), 1.1 (rows 99% correlated before centring),
  1.7 (sparse ReLU-like), 2.3 (offset 1000 + noise), 1.2 (rank 3 + noise) and 9.0 (Cauchy,
  i.e. a few coordinates dominating the norms, the adversarial case).
* With the absolute error of ``d~`` written as ``alpha' + beta sqrt(d)`` (``alpha'`` = twice the
  Gram bound + ``rho^2`` + float64 roundings of the norms and of the formula, ``beta = 2 rho``),
  ``d~ >= (1 + tau) max(2 alpha' / tau, (2 beta / tau)^2)`` implies ``|d~ - d| <= tau d``
  (if ``d`` were below that maximum, ``d~`` would be below the threshold).

A tier-1 value is accepted when (i) it is provably far: ``d~ >= near + alpha'_wc + beta sqrt(near)``
with the *worst-case* ``alpha'_wc``, so every pair whose true distance is below ``near`` reaches
tier 2 or 3 whatever the BLAS did; and (ii) under the working model its relative error is at
most ``rtol`` (this flags pairs with ``d < ~0.4 nu_i nu_j`` at the defaults). A tier-2 value is
accepted only on the worst-case bound: with relative error at most ``near_rtol`` if it may be
below ``near``, else ``rtol`` (at the defaults tier 2 keeps pairs with ``d >= ~1e-2 nu_i nu_j``
resp. ``~1e-7 nu_i nu_j``). So every pair the kernels can see (``d < near``) is accurate to
``near_rtol`` (default 1e-10) rigorously, and every other pair to ``rtol`` (default 1e-5): under
the working model when it came from tier 1 (rigorously to ~``1e-3 nu_i nu_j / d`` there),
rigorously when it came from tier 2 or 3.

``near`` should be a few hundred times the largest KDE noise variance in use (the KDE kernel is
``exp(-d / (2 s2))``, its lower bound uses ``4 s2``; at ``d = 400 s2`` the weight is ``e^-50``);
:func:`near_for` computes it. The default, :data:`DEFAULT_NEAR` = 400, covers both the code's
``s2 = 0.2`` and the paper text's ``s2 = 1``.

Cost, measured at N = 605, D = 262,144 on this project's 2-core CPU (AVX-512): the float64 path
(tier 2 over every row, the common case for a U-Net's layers) about 1.2 s for a layer without
constant columns, at ~80 GFLOP/s of ``dsyrk``, with the reads hidden: on CPU the passes over the
columns (min/max, means, Gram blocks) run on :func:`_workers` threads, each reading its own column
blocks into its own buffer and running single-threaded BLAS on them (:func:`_cpu_map`); the
float32 path about half of that. Memory: column blocks of at most ~64 MiB per thread, a few
N x N float64 matrices per thread and O(N^2) pair arrays.
On CUDA the Gram runs with full float32 precision (TF32 switched off while it runs).
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import ProbeError

U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53  # unit roundoff of float64

#: Factor of :func:`near_for`: ``near = NEAR_FACTOR * max(noise variances)``.
NEAR_FACTOR = 400.0
#: Default ``near``: NEAR_FACTOR x the largest noise variance of the presets (paper text: s2 = 1.0).
DEFAULT_NEAR = NEAR_FACTOR * 1.0
#: Default working-model constant kappa of the float32 Gram error (see the module docstring).
DEFAULT_GRAM_ERROR = 16.0

_BLOCK_BYTES = 64 * 2**20  # temporaries of one column block (float64 copy of N x K) stay below this
_MAX_K32 = 8192  # columns per float32 Gram block (the worst-case bound grows with it)
_MINMAX_COLS = 131072  # most columns per chunk of the min/max pass (at least one chunk per thread)
_FORCE_TORCH = False  # tests: take the torch (CUDA) code path on CPU tensors
_PILOT_MIN_N = 160  # below this many rows tier 1 always runs
_PILOT_ROWS = 64  # rows of the pilot that decides whether tier 1 is worth running
_PILOT_COLS = 16384  # and about this many of the columns (evenly spaced)
_MAX_K64 = 2048  # columns per float64 Gram block (worst-case bound ~(2048 + 20) * 2^-53)
_TIER2_ROUNDS = 3  # float64 Gram rounds; after the first, one per connected group of rows left


class NonFiniteError(ProbeError):
    """The activations contain NaN or infinite values."""


def near_for(noise_vars: Iterable[float], factor: float = NEAR_FACTOR) -> float:
    """``near`` for KDE noise variances ``noise_vars``: ``factor * max(noise_vars)``."""
    vals = [float(v) for v in noise_vars]
    if not vals or min(vals) <= 0 or not all(math.isfinite(v) for v in vals):
        raise ProbeError(f"noise variances must be positive numbers, got {vals!r}")
    return factor * max(vals)


def _gamma(n: float, u: float) -> float:
    nu = n * u
    if nu >= 0.5:
        return math.inf
    return nu / (1.0 - nu)


def _as_rows(acts: Any) -> torch.Tensor:
    """``acts`` as a 2-D torch tensor (N, D), float32 or float64, without copying when possible."""
    if isinstance(acts, np.ndarray):
        if not acts.flags.writeable:
            with warnings.catch_warnings():  # never written to
                warnings.simplefilter("ignore", UserWarning)
                t = torch.from_numpy(acts)
        else:
            t = torch.from_numpy(acts)
    elif isinstance(acts, torch.Tensor):
        t = acts.detach()
    else:
        raise ProbeError(f"activations must be a numpy array or a torch tensor, got {type(acts).__name__}")
    if t.dim() < 2:
        raise ProbeError(f"activations must have shape (N, D) or (N, ...), got shape {tuple(t.shape)}")
    if not (t.is_floating_point()):
        raise ProbeError(f"activations must be floating point, got {t.dtype}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


@contextmanager
def _full_precision_matmul() -> Iterator[None]:
    prev = torch.get_float32_matmul_precision()
    try:
        if prev != "highest":
            torch.set_float32_matmul_precision("highest")
        yield
    finally:
        if prev != "highest":
            torch.set_float32_matmul_precision(prev)


_POOL: ThreadPoolExecutor | None = None  # the CPU passes' threads, made on first use
_POOL_SIZE = 0


def _workers() -> int:
    """Threads of the CPU passes: torch's thread count (so they follow the run's setting)."""
    return max(1, torch.get_num_threads())


def _cpu_map(fn: Callable[[Any], Any], parts: Sequence[Any]) -> list[Any]:
    """``[fn(p) for p in parts]``, the parts on parallel threads (at most :func:`_workers`).

    The CPU passes over the activations (min/max, means, the Gram blocks) split their columns
    between threads, each running numpy single-threaded: numpy releases the GIL in its loops and
    OpenBLAS is limited to one thread per call meanwhile, so the threads never wait on each
    other's thread pools (interleaving OpenBLAS's and torch's pools on few cores makes their
    idle threads spin against the busy ones: the copies ran ~5x slower that way). With the reads
    and products of a thread's column blocks in its own caches, the float64 Gram of a layer
    runs at the BLAS's speed with the reads hidden.
    """
    global _POOL, _POOL_SIZE
    if len(parts) <= 1:
        return [fn(p) for p in parts]
    from threadpoolctl import threadpool_limits

    w = _workers()
    if _POOL is None or _POOL_SIZE != w:
        if _POOL is not None:
            _POOL.shutdown()
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=w, thread_name_prefix="infoflow-dist"), w
    with threadpool_limits(limits=1, user_api="blas"):
        return list(_POOL.map(fn, parts))


def _split(items: Sequence[Any]) -> list[Sequence[Any]]:
    """``items`` dealt round-robin into one part per worker (fewer when there are fewer items)."""
    w = min(_workers(), len(items))
    return [items[t::w] for t in range(w)]


def _block_cols(n_rows: int, cap: int) -> int:
    k = max(1, _BLOCK_BYTES // (8 * max(n_rows, 1)))
    k = 1 << (k.bit_length() - 1)  # power of two
    return max(64, min(cap, k))


class _TreeSum:
    """Pairwise (binary-counter) float64 sum of a stream of arrays: each term passes through at
    most ``depth`` additions, ``depth <= 2 ceil(log2 n) + 1``, so the summation error is at most
    ``gamma_depth`` times the sum of the terms' magnitudes."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, Any]] = []
        self.count = 0

    def add(self, term: Any) -> None:
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, acc = self.stack.pop()
            acc += term
            term = acc
            level += 1
        self.stack.append((level, term))
        self.count += 1

    def total(self) -> Any:
        acc = None
        for _, term in reversed(self.stack):
            if acc is None:
                acc = term
            else:
                acc += term
        return acc

    @property
    def depth(self) -> int:
        return 2 * max(1, math.ceil(math.log2(max(self.count, 1)))) + 1

    @staticmethod
    def combine(sums: Sequence["_TreeSum"]) -> tuple[Any, int]:
        """Total of several sums (one per thread) and the depth bound of that total."""
        totals = [t for t in (s.total() for s in sums) if t is not None]
        acc = totals[0]
        for t in totals[1:]:
            acc += t
        return acc, max(s.depth for s in sums) + len(totals) - 1


class RowBlocks:
    """N rows of dimension D held as consecutive row blocks ``(n_b, D)`` and read one column block
    at a time, never concatenated whole: what the probe keeps of a layer (each batch's output as
    the network produced it, without a copy).

    ``blocks``: 2-D (or ``(n_b, ...)``, flattened) float32 or float64 tensors or arrays with the
    same D, dtype and device. On CPU they are read as numpy arrays (views, no copies).
    """

    def __init__(self, blocks: Sequence[Any]) -> None:
        ts = [_as_rows(b) for b in blocks]
        if not ts:
            raise ProbeError("activations: no row blocks given")
        d, dtype, device = ts[0].shape[1], ts[0].dtype, ts[0].device
        for t in ts[1:]:
            if t.shape[1] != d or t.dtype != dtype or t.device != device:
                raise ProbeError(
                    f"row blocks must share D, dtype and device; got {tuple(t.shape)} {t.dtype} {t.device} "
                    f"after {tuple(ts[0].shape)} {dtype} {device}"
                )
        self.cpu = device.type == "cpu" and not _FORCE_TORCH
        self.blocks = [t.numpy() if self.cpu else t for t in ts]
        self.offsets = np.cumsum([0] + [t.shape[0] for t in ts])
        self.n, self.d = int(self.offsets[-1]), int(d)
        self.dtype, self.device = dtype, device
        self.cols: Any = None  # the columns kept (varying(), columns()); None: all
        self.varied = False  # varying() has run
        self.lo: np.ndarray | None = None  # after varying(): each kept column's min and max over the rows
        self.hi: np.ndarray | None = None

    def _cols(self) -> np.ndarray | None:
        return None if self.cols is None else np.asarray(self.cols.cpu() if isinstance(self.cols, torch.Tensor)
                                                         else self.cols)

    def columns(self, idx: np.ndarray) -> "RowBlocks":
        """The same rows restricted to the columns ``idx`` (sorted, of this object's columns)."""
        idx = np.asarray(idx, dtype=np.int64)
        out = copy.copy(self)
        mine = self._cols()
        cols = idx if mine is None else mine[idx]
        out.cols = cols if self.cpu else torch.as_tensor(cols, device=self.device)
        out.d = len(idx)
        if self.lo is not None and self.hi is not None:
            out.lo, out.hi = self.lo[idx], self.hi[idx]
        return out

    def varying(self) -> "RowBlocks":
        """The same rows without the columns whose value is the same in every row (a ReLU unit dead
        on the whole probe set, say: about a third of a U-Net's columns). Such a column adds exactly
        0 to every distance and never tells two binned symbols apart. Costs one min/max pass; the
        kept columns' min and max are kept in ``lo`` and ``hi``."""
        if self.varied or self.n == 0:
            return self
        if self.cpu:  # column chunks on parallel threads, each a running min and max over the rows
            d_all = self.blocks[0].shape[1]
            lo, hi = np.empty(d_all, self.blocks[0].dtype), np.empty(d_all, self.blocks[0].dtype)
            chunk = max(1024, min(_MINMAX_COLS, -(-d_all // _workers())))

            def minmax(starts: Sequence[int]) -> None:
                for s in starts:
                    e = min(d_all, s + chunk)
                    lo_c, hi_c = lo[s:e], hi[s:e]
                    lo_c[:] = hi_c[:] = self.blocks[0][0, s:e]
                    for blk in self.blocks:
                        for row in blk[:, s:e]:
                            np.minimum(lo_c, row, out=lo_c)
                            np.maximum(hi_c, row, out=hi_c)

            _cpu_map(minmax, _split(range(0, d_all, chunk)))
        else:
            lo = torch.stack([blk.amin(dim=0) for blk in self.blocks]).amin(dim=0).cpu().numpy()
            hi = torch.stack([blk.amax(dim=0) for blk in self.blocks]).amax(dim=0).cpu().numpy()
        cols = self._cols()
        if cols is not None:  # lo and hi are per column of the blocks
            lo, hi = lo[cols], hi[cols]
        keep = np.flatnonzero(~(lo == hi))  # NaN is kept (and caught later)
        self.varied = True
        self.lo, self.hi = lo, hi
        return self if len(keep) == self.d else self.columns(keep)  # a copy: varied too

    @classmethod
    def of(cls, acts: Any) -> "RowBlocks":
        """``acts`` as row blocks: a RowBlocks, a list or tuple of blocks, or one (N, ...) array."""
        if isinstance(acts, RowBlocks):
            return acts
        return cls(list(acts) if isinstance(acts, (list, tuple)) else [acts])

    def plan(self, rows: np.ndarray | None = None) -> list[tuple[int, Any, slice]]:
        """Where the rows ``rows`` (sorted, distinct; None: all) lie: ``(block, local rows or None,
        output slice)`` per block that holds some of them."""
        if rows is None:
            return [(b, None, slice(int(self.offsets[b]), int(self.offsets[b + 1]))) for b in range(len(self.blocks))]
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        cuts = np.flatnonzero(np.r_[True, which[1:] != which[:-1], True])
        out = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            blk = int(which[a])
            local = rows[a:b] - self.offsets[blk]
            if not self.cpu:
                local = torch.as_tensor(local, device=self.device)
            out.append((blk, local, slice(int(a), int(b))))
        return out

    def read(self, plan: list[tuple[int, Any, slice]], s: int, e: int, out: Any, shift: Any = None,
             step: int = 1) -> Any:
        """``out[p] = x[rows[p], s:e:step] - shift`` for the planned rows, computed in the wider of
        the two dtypes and stored in ``out``'s (numpy arrays on CPU, tensors otherwise)."""
        cols: Any = slice(s, e, step)
        if self.cols is not None:
            c = self.cols[s:e:step]
            if step == 1 and len(c) and int(c[-1]) - int(c[0]) == len(c) - 1:
                cols = slice(int(c[0]), int(c[-1]) + 1)  # a contiguous run: a view
            else:
                cols = c
                c0 = int(c[0]) if len(c) else 0
                span, rel = slice(c0, int(c[-1]) + 1 if len(c) else 0), c - c0  # the columns' span
        for b, local, sl in plan:
            blk = self.blocks[b]
            if isinstance(cols, slice):
                src = blk[:, cols] if local is None else blk[local, cols]
            elif self.cpu:  # np.take gathers columns twice as fast as fancy indexing
                # the rows first (a copy of their span at memory speed, ~8x a gather's), or the columns
                width = span.stop - span.start
                if local is not None and len(local) * (width / 8 + len(cols)) < blk.shape[0] * len(cols):
                    src = np.take(blk[local, span], rel, axis=1)
                else:
                    src = np.take(blk, cols, axis=1)  # of all the block's rows
                    src = src if local is None else src[local]
            else:
                src = blk[:, cols] if local is None else blk[:, cols][local]
            if shift is None:
                out[sl] = src
            elif self.cpu:
                np.subtract(src, shift, out=out[sl])
            else:
                torch.sub(src, shift, out=out[sl])
        return out

    def empty(self, n: int, k: int, dtype: torch.dtype) -> Any:
        if self.cpu:
            return np.empty((n, k), dtype=np.float32 if dtype == torch.float32 else np.float64)
        return torch.empty((n, k), dtype=dtype, device=self.device)

    def mean(self, rows: np.ndarray | None, k: int) -> Any:
        """float64 column mean of the rows ``rows`` (None: all), one column block at a time."""
        plan = self.plan(rows)
        n = self.n if rows is None else len(rows)
        mu = np.zeros(self.d) if self.cpu else torch.zeros(self.d, dtype=torch.float64, device=self.device)

        def sums(starts: Sequence[int]) -> None:
            for s in starts:
                e = min(self.d, s + k)
                blk = self.read(plan, s, e, self.empty(n, e - s, self.dtype))
                mu[s:e] = blk.sum(axis=0, dtype=np.float64) if self.cpu else blk.sum(dim=0, dtype=torch.float64)

        starts = range(0, self.d, k)
        if self.cpu:
            _cpu_map(sums, _split(starts))
        else:
            sums(starts)
        mu /= n
        if not (bool(np.isfinite(mu).all()) if self.cpu else bool(torch.isfinite(mu).all())):
            raise NonFiniteError("activations contain NaN or infinite values")
        return mu


class _Centered:
    """Rows of x (or x[rows]) shifted by ``mu``, produced one column block of ``k`` at a time.

    Any common shift leaves distances unchanged; a mean of the rows keeps the norms, hence the
    error bounds, small. float32 tier: for float32 input the shift is rounded to float32 and
    subtracted in float32 (one rounding); float64 input is shifted in float64, then rounded to
    float32. float64 tier: exact conversion, one rounding. Blocks are numpy arrays on CPU (read
    straight from the row blocks into one reused buffer), torch tensors otherwise.
    """

    def __init__(self, x: RowBlocks, dtype: torch.dtype, k: int, rows: np.ndarray | None, mu: Any) -> None:
        self.x, self.dtype, self.k = x, dtype, k
        self.plan = x.plan(rows)
        self.n = x.n if rows is None else len(rows)
        self.d = x.d
        if dtype == torch.float32:  # the input's precision: float32 - float32, or float64 then rounded
            self.shift = mu.astype(x.blocks[0].dtype) if x.cpu else mu.to(x.dtype)
        else:
            self.shift = mu

    def blocks(self, starts: Iterable[int]) -> Iterator[Any]:
        """The shifted column blocks beginning at ``starts`` (one reused buffer)."""
        buf = self.x.empty(self.n, min(self.k, self.d), self.dtype)
        for s in starts:
            e = min(self.d, s + self.k)
            out = buf if e - s == buf.shape[1] else self.x.empty(self.n, e - s, self.dtype)
            yield self.x.read(self.plan, s, e, out, self.shift[s:e])

    def stats(self, backend: str) -> tuple[np.ndarray, float, np.ndarray, float]:
        """Squared norms (float64) of the shifted rows with their relative error bound, and their
        Gram matrix (float64) with its worst-case error factor g, ``|G~_ij - c_i.c_j| <= g nu_i nu_j``
        whatever the summation order inside BLAS. One pass over the columns; on CPU with numpy the
        column blocks are dealt to parallel threads (:func:`_cpu_map`), each with its own sums.
        float32 tier: the norms are float64 sums of exact products; float64 tier: the Gram's
        diagonal (same bound)."""
        exact_norms = self.dtype == torch.float32
        use_torch_mm = backend != "numpy" or not self.x.cpu

        def work(starts: Iterable[int]) -> tuple[_TreeSum, _TreeSum]:
            norms, grams = _TreeSum(), _TreeSum()
            for c in self.blocks(starts):
                if exact_norms:
                    if self.x.cpu:
                        norms.add(np.einsum("ij,ij->i", c, c, dtype=np.float64))  # float64 products and sums
                    else:
                        c64 = c.to(torch.float64)
                        norms.add((c64 * c64).sum(dim=1))
                if not use_torch_mm:
                    grams.add((c @ c.T).astype(np.float64, copy=False))  # numpy runs a @ a.T as syrk
                else:
                    ct = torch.from_numpy(c) if self.x.cpu else c
                    g_blk = torch.mm(ct, ct.T).to(torch.float64)
                    grams.add(g_blk.numpy() if self.x.cpu else g_blk)
            return norms, grams

        starts = range(0, self.d, self.k)
        parts = [work(starts)] if use_torch_mm else _cpu_map(work, _split(starts))
        g, g_depth = _TreeSum.combine([p[1] for p in parts])
        g = g if self.x.cpu else g.cpu().numpy()
        g_block = _gamma(self.k, U32 if exact_norms else U64)
        g_gram = g_block + _gamma(g_depth, U64) * (1.0 + g_block)
        if exact_norms:
            nrm, n_depth = _TreeSum.combine([p[0] for p in parts])
            nrm = nrm if self.x.cpu else nrm.cpu().numpy()
            g_norm = _gamma(self.k + n_depth, U64)  # exact products; a block sum of k terms; the trees
        else:
            nrm, g_norm = np.diagonal(g).copy(), g_gram
        if not np.isfinite(nrm).all():
            raise NonFiniteError("activations contain NaN or infinite values")
        return nrm, g_norm, g, g_gram


def _bounds(
    ni: np.ndarray, nj: np.ndarray, *, g_gram: float, g_norm: float, u_center: float, kappa_u: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error terms of d~ = n_i + n_j - 2 G_ij: |d~ - d| <= alpha + beta sqrt(d).

    Returns (alpha_worst, alpha_model, beta); alpha_model uses kappa_u (kappa * u) in place of the
    worst-case Gram factor where that is smaller.
    """
    prod = np.sqrt(ni * nj)
    nsum = ni + nj
    rho = (u_center / (1.0 - u_center)) * (np.sqrt(ni) + np.sqrt(nj))
    # norms (g_norm each), and the float64 evaluation of the formula (3 roundings, |terms| <= 2 nsum)
    extra = g_norm * nsum + 6.0 * U64 * nsum + rho * rho
    alpha_w = 2.0 * g_gram * prod + extra
    alpha_m = alpha_w if kappa_u is None else 2.0 * min(kappa_u, g_gram) * prod + extra
    return alpha_w, alpha_m, 2.0 * rho


def _rel_threshold(alpha: np.ndarray, beta: np.ndarray, tau: Any) -> np.ndarray:
    """d~ at or above this value is within relative error tau of d (see the module docstring)."""
    return (1.0 + tau) * np.maximum(2.0 * alpha / tau, (2.0 * beta / tau) ** 2)


def _near_threshold(alpha: np.ndarray, beta: np.ndarray, near: float) -> np.ndarray:
    """d~ at or above this value proves d >= near."""
    return near + alpha + beta * math.sqrt(near)


def _direct(x: RowBlocks, pi: np.ndarray, pj: np.ndarray) -> np.ndarray:
    """sum_k (x_ik - x_jk)^2 in float64 for the pairs (pi[p], pj[p])."""
    out = np.empty(len(pi))
    if len(pi) == 0:
        return out
    d = x.d
    order = np.lexsort((pj, pi))
    pi_s, pj_s = pi[order], pj[order]
    starts = np.flatnonzero(np.r_[True, pi_s[1:] != pi_s[:-1]])
    ends = np.r_[starts[1:], len(pi_s)]
    vals = np.empty(len(pi_s))
    for a, b in zip(starts, ends):
        js = pj_s[a:b]  # sorted, distinct
        plan_j, plan_i = x.plan(js), x.plan(pi_s[a : a + 1])
        kb = max(64, min(d, _BLOCK_BYTES // (8 * (b - a))))
        acc = np.zeros(b - a) if x.cpu else torch.zeros(b - a, dtype=torch.float64, device=x.device)
        for s in range(0, d, kb):
            e = min(d, s + kb)
            xi = x.read(plan_i, s, e, x.empty(1, e - s, torch.float64))[0]
            diff = x.read(plan_j, s, e, x.empty(b - a, e - s, torch.float64), xi)  # exact for float32 input
            if x.cpu:
                acc += np.einsum("ij,ij->i", diff, diff)
            else:
                acc += (diff * diff).sum(dim=1)
        vals[a:b] = acc if x.cpu else acc.cpu().numpy()
    out[order] = vals
    return out


@functools.lru_cache(maxsize=4)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the N (N - 1) / 2 pairs i < j (read-only, cached per N)."""
    iu, ju = np.triu_indices(n, 1)
    iu.flags.writeable = ju.flags.writeable = False
    return iu, ju


def _rows_of(n: int, pi: np.ndarray, pj: np.ndarray) -> np.ndarray:
    """The sorted distinct rows of the pairs (pi, pj)."""
    seen = np.zeros(n, dtype=bool)
    seen[pi] = True
    seen[pj] = True
    return np.flatnonzero(seen)


def _components(n: int, pi: np.ndarray, pj: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the graph on n rows with edges (pi, pj): (count, label per row)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pi), dtype=np.int8), (pi, pj)), shape=(n, n))
    return connected_components(graph, directed=False)


def pairwise_sq_dists(
    acts: Any,
    *,
    near: float = DEFAULT_NEAR,
    rtol: float = 1e-5,
    near_rtol: float = 1e-10,
    gram_error: float = DEFAULT_GRAM_ERROR,
    backend: str = "auto",
    stats: dict | None = None,
) -> np.ndarray:
    """Squared Euclidean distances between the N rows of ``acts`` (N, D) (or (N, ...), flattened).

    ``acts``: numpy array or torch tensor (CPU or CUDA), float32 (float64 and half precision are
    accepted), or the same as consecutive row blocks (a list, or :class:`RowBlocks`). It is never
    modified or copied whole.
    ``near``: absolute distance below which pairs must be exact (:func:`near_for`);
    ``rtol``: relative accuracy of the other pairs (under the working error model);
    ``near_rtol``: relative accuracy, rigorous, of pairs that may be below ``near``;
    ``gram_error``: the working-model constant kappa of the float32 Gram;
    ``backend``: Gram products by ``"numpy"`` (OpenBLAS ``syrk``, CPU only, on
    ``torch.get_num_threads()`` threads of one BLAS thread each) or ``"torch"`` (``torch.mm``);
    ``"auto"``: numpy on CPU, torch on CUDA.
    ``stats``: if a dict is given, it is filled with the number of pairs taken from each tier
    (``gram32``, ``gram64``, ``direct``), whether tier 1 was skipped (``skipped_gram32``) and the
    number of columns that differ between rows (``columns``; the others add 0 and are skipped).

    Returns a float64 numpy array (N, N): exactly symmetric, zero diagonal, never negative.
    See the module docstring for the error model.
    """
    if not (near >= 0 and math.isfinite(near)):
        raise ProbeError(f"near must be a finite number >= 0, got {near!r}")
    for label, v in (("rtol", rtol), ("near_rtol", near_rtol)):
        if not (0 < v < 1):
            raise ProbeError(f"{label} must be in (0, 1), got {v!r}")
    if not gram_error > 0:
        raise ProbeError(f"gram_error must be > 0, got {gram_error!r}")
    if backend not in ("auto", "numpy", "torch"):
        raise ProbeError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    x = RowBlocks.of(acts).varying()
    if backend in ("auto", "numpy") and x.device.type != "cpu":
        backend = "torch"
    elif backend == "auto":
        backend = "numpy"
    n, d = x.n, x.d
    out = np.zeros((n, n))
    counts: dict[str, Any] = {"pairs": n * (n - 1) // 2, "gram32": 0, "gram64": 0, "direct": 0,
                              "skipped_gram32": False, "columns": d}
    if n < 2 or d == 0:
        if stats is not None:
            stats.update(counts)
        return out

    iu, ju = _pairs(n)
    vals = np.empty(len(iu))
    todo = np.arange(len(iu))
    u_center = U32 + (2.0 * U64 if x.dtype == torch.float64 else 0.0)
    k1 = _block_cols(n, _MAX_K32)

    # The common shift: the float64 mean of the pilot rows (of all rows below _PILOT_MIN_N). Any
    # shift is exact for the distances; a mean of a few dozen rows keeps the norms near their
    # minimum and costs a tenth of a pass over the data.
    pick = np.sort(np.random.default_rng(0).choice(n, _PILOT_ROWS, replace=False)) if n >= _PILOT_MIN_N else None
    mu_all = x.mean(pick, k1)

    def tier1_ok(d1: np.ndarray, ni: np.ndarray, nj: np.ndarray, g_gram: float, g_norm: float) -> np.ndarray:
        aw, am, beta = _bounds(ni, nj, g_gram=g_gram, g_norm=g_norm, u_center=u_center, kappa_u=gram_error * U32)
        ok = d1 >= _rel_threshold(am, beta, rtol)
        if near > 0:
            ok &= d1 >= _near_threshold(aw, beta, near)
        return ok

    # ---- tier 1: float32 Gram of shifted rows --------------------------------------------------
    # Pilot: tier 1 on a fixed random subset of rows. If each row can be expected to have a couple
    # of pairs tier 1 cannot vouch for, tier 2 will need (nearly) every row anyway: skip tier 1.
    if pick is not None:
        # on every step-th column only (a prediction: the tiers below vouch for every pair anyway),
        # its distances and norms scaled up by step
        step = max(1, d // _PILOT_COLS)
        cols = np.arange(0, d, step)
        xp, mu_p = (x, mu_all) if step == 1 else (x.columns(cols), mu_all[cols])
        with _full_precision_matmul():
            nrm_p, g_norm_p, gp, g_gram_p = _Centered(xp, torch.float32, k1, pick, mu_p).stats(backend)
        pi, pj = _pairs(len(pick))
        scale = d / len(cols)
        ni, nj = scale * nrm_p[pi], scale * nrm_p[pj]
        q = 1.0 - tier1_ok(ni + nj - 2.0 * scale * gp[pi, pj], ni, nj, g_gram_p, g_norm_p).mean()
        counts["skipped_gram32"] = bool(q * (n - 1) >= 2.0)
    if not counts["skipped_gram32"]:
        with _full_precision_matmul():
            nrm, g_norm, g, g_gram = _Centered(x, torch.float32, k1, None, mu_all).stats(backend)
        ni, nj = nrm[iu], nrm[ju]
        d1 = ni + nj - 2.0 * g[iu, ju]
        del g
        ok = tier1_ok(d1, ni, nj, g_gram, g_norm)
        vals[ok] = d1[ok]
        counts["gram32"] = int(ok.sum())
        todo = np.flatnonzero(~ok)
        del d1, ni, nj

    # ---- tier 2: float64 Grams, worst-case bounds only -----------------------------------------
    # Round 1: one Gram over every row of a pair left. Later rounds (at most _TIER2_ROUNDS in all):
    # the pairs still left split into connected groups of rows, each recentred on one of its rows
    # (a tight group of near duplicates gets small norms and tight bounds), if it has at most half
    # the rows of the group it came from.
    last_size = np.full(n, 2 * n)
    for rnd in range(_TIER2_ROUNDS):
        if not len(todo):
            break
        label = np.zeros(n, dtype=np.int64) if rnd == 0 else _components(n, iu[todo], ju[todo])[1]
        pair_group = label[iu[todo]]
        groups = ([_rows_of(n, iu[todo], ju[todo])] if rnd == 0
                  else [np.flatnonzero(label == c) for c in np.unique(pair_group)])
        keep = np.ones(len(todo), dtype=bool)
        for rows in groups:
            gid = label[rows[0]]
            if len(rows) > last_size[rows[0]] // 2:
                continue  # no smaller than the group it came from: its pairs go on as they are
            last_size[rows] = len(rows)
            sel = rows if len(rows) < n else None
            k2 = _block_cols(len(rows), _MAX_K64)
            # round 1: the common shift; a later (tight) group: one of its rows, a read of one row
            mu = mu_all if rnd == 0 else x.mean(sel[:1], x.d)
            nrm2, g_norm2, g2, g_gram2 = _Centered(x, torch.float64, k2, sel, mu).stats(backend)
            mine = np.arange(len(todo)) if rnd == 0 else np.flatnonzero(pair_group == gid)
            li, lj = iu[todo[mine]], ju[todo[mine]]
            if sel is not None:  # indices into the group's rows
                local = np.full(n, -1, dtype=np.int64)
                local[rows] = np.arange(len(rows))
                li, lj = local[li], local[lj]
            ni, nj = nrm2[li], nrm2[lj]
            d2 = ni + nj - 2.0 * g2[li, lj]
            del g2
            aw, _, beta = _bounds(ni, nj, g_gram=g_gram2, g_norm=g_norm2, u_center=U64, kappa_u=None)
            tau = np.full(len(mine), rtol)
            if near > 0:
                tau[d2 < _near_threshold(aw, beta, near)] = near_rtol
            ok2 = d2 >= _rel_threshold(aw, beta, tau)
            vals[todo[mine[ok2]]] = d2[ok2]
            counts["gram64"] += int(ok2.sum())
            keep[mine[ok2]] = False
        todo = todo[keep]

    # ---- tier 3: direct float64 sums ----------------------------------------------------------
    if len(todo):
        vals[todo] = _direct(x, iu[todo], ju[todo])
        counts["direct"] = len(todo)

    np.maximum(vals, 0.0, out=vals)
    out[iu, ju] = vals
    out[ju, iu] = vals
    if stats is not None:
        stats.update(counts)
    return out

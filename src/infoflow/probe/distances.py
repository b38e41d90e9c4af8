r"""Squared Euclidean distance matrices of activations, as accurate as the estimates can see.

:func:`pairwise_sq_dists` returns ``d[i, j] = |a_i - a_j|^2`` (float64, exactly symmetric, zero
diagonal, never negative) for N rows of dimension D (D reaches 262,144 for the U-Net's top
layers). The rows may come as one (N, D) array or as consecutive row blocks (:class:`RowBlocks`:
the probe keeps each batch's layer output as the network produced it and never concatenates
them); every pass reads one block of columns at a time. Columns whose value is the same in every
row (ReLU units dead on the whole probe set) add exactly 0 to every distance and are skipped
after one min/max pass.

Tolerance
---------
Every pair is within relative error ``rtol`` (default 1e-4) of its true value: under the working
error model below when it comes from a float32 Gram, rigorously otherwise. A relative bound is
what the consumers can see, at any kernel width:

* KDE. An entropy is a mean over rows of ``-log sum_j exp(-d_ij / (2 kernel_var))`` (plus terms without
  distances). Relative errors ``e_ij`` move row i's term by ``sum_j w_ij x_ij e_ij``, with
  ``x = d / (2 kernel_var)`` and ``w`` the kernel's normalised weights, the row's own (``x = 0``) among
  them; since ``H(w) = E_w[x] + log Z <= ln N`` and ``Z >= 1``, ``E_w[x] <= ln N``, so the shift is
  at most ``rtol ln N`` nats whatever ``kernel_var`` is: fixed, or taken from the distances themselves
  (``rel``, ``silverman``; a relative error of the width moves the MI by the same order). The
  float32 errors are random in sign and mostly far below the model's bound, so the estimates
  move much less (``tests/probe/test_fast_estimates.py`` checks 1e-4 bits against float64).
  An absolute scale (which pairs a fixed-width kernel can reach) adds nothing to this, so the
  distances need none: ``near`` is accepted and unused.
* Storage. The run keeps the matrices as float32 (relative rounding 2^-24).
* Binned symbols. :func:`infoflow.probe.engine.bin_symbol_ids` allows the distances 1e-3.

Three tiers; each pair is taken from the first that can vouch for it.

Tier 1, float32 Gram
    The rows are shifted by a common vector: distances do not change under a common shift, and
    a shift inside the data removes the large common offsets that make ``n_i + n_j - 2 G_ij``
    cancel. The shift is one of the rows, the one of 64 fixed random rows (all rows when N <= 64)
    whose median distance to the others is least (on 4,096 columns spread over the row): a row
    in the densest part of the data, so the many rows near it get small norms and their mutual
    distances are not swamped by the norms. The shifted rows ``c_i`` are formed one block of
    ``K = 1024`` columns at a time in float32 (one rounding each), and each block's Gram ``C C^T``
    is a float32 BLAS product: on CPU numpy's ``c @ c.T`` (OpenBLAS ``syrk``, half the flops of a
    general product) on :func:`_workers` threads that share the column blocks, each running
    single-threaded BLAS on its own blocks (:func:`_cpu_map`); on CUDA ``torch.mm`` with TF32
    off; ``backend="torch"`` forces ``torch.mm`` on CPU too. The block products are added in
    float64, so no float32 sum is longer than K terms. The squared norms are the Gram's diagonal,
    and ``d~ = n_i + n_j - 2 G_ij``.
Tier 2, Grams of groups
    The pairs left split into connected groups of rows; each group gets a Gram of its own rows,
    shifted by one of them, first in float32 as in tier 1 (groups of at least 64 rows and at most
    half the rows: a smaller group's float64 Gram costs little), then, for the pairs still left,
    in float64 (products and sums, blocks of ``K = 2048`` columns). The pairs left are near
    duplicates of each other (their distance is small against the norms of tier 1), so a group
    is a tight cluster: shifted by one of its members its rows have small norms and tight
    bounds, at the cost of its own size only.
Tier 3, direct
    What tier 2 cannot vouch for (exact and almost exact duplicates) is computed directly:
    ``sum_k (a_ik - a_jk)^2`` with the differences and the sum in float64 (for float32 input each
    difference is exact; the relative error is below ``(D + 3) * 2^-53``).

Error model
-----------
``u`` is the unit roundoff of a Gram's arithmetic (``2^-24`` for float32, ``2^-53`` for
float64), ``gamma_n = n u / (1 - n u)``, ``nu_i = sqrt(n_i)``.

* Shifting rounds each ``c_ik`` once (relative error ``u_c``), so the difference vector is
  perturbed by at most ``rho = u_c' (nu_i + nu_j)`` and ``|d_c - d| <= rho^2 + 2 rho sqrt(d)``.
* Gram entries (the diagonal too), worst case for any summation order inside a block of ``K``
  columns, plus the float64 sum of the ``t`` block results (Higham, *Accuracy and Stability of
  Numerical Algorithms*, Thm 3.1 and section 4.2, with Cauchy-Schwarz):
  ``|G~_ij - c_i.c_j| <= (gamma_K + gamma^64_t (1 + gamma_K)) nu_i nu_j``. The float64 Grams
  (K = 2048) use this bound, about ``2.3e-13 nu_i nu_j``.
* Working model, float32 Grams: ``|G~_ij - c_i.c_j| <= kappa u nu_i nu_j`` with ``kappa = gram_error``
  (default 16; the worst case at K = 1024 would be ``1024 u``). Short blocks keep the float32 sums
  short, and the errors measured on real and adversarial activations stay within it
  (docs/ARCHITECTURE.md, "Cost of a logged epoch").
* With the absolute error of ``d~`` written as ``alpha + beta sqrt(d)`` (``alpha`` = the Gram
  factor times ``(nu_i + nu_j)^2`` (two norms and twice the entry) + ``rho^2`` + float64 roundings
  of the formula, ``beta = 2 rho``), ``d~ >= (1 + tau) max(2 alpha / tau, (2 beta / tau)^2)``
  implies ``|d~ - d| <= tau d`` (if ``d`` were below that maximum, ``d~`` would be below the
  threshold). A pair is accepted from a Gram when this holds with ``tau = rtol``: at the
  defaults, a float32 Gram keeps the pairs with ``d >= ~0.08 nu_i nu_j`` and a float64 one those
  with ``d >= ~2e-8 nu_i nu_j`` (norms of that Gram's shifted rows).

Memory: one column block per thread (at most ~64 MiB), one N x N float64 sum and one N x N
product per thread, O(N^2) pair arrays.
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
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from threadpoolctl import ThreadpoolController

from ..errors import ProbeError

U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53  # unit roundoff of float64

#: Default relative tolerance of every distance (see the module docstring).
DEFAULT_RTOL = 1e-4
#: Default working-model constant kappa of the float32 Gram error (see the module docstring).
DEFAULT_GRAM_ERROR = 16.0
#: Factor of :func:`near_for`: ``near = NEAR_FACTOR * max(kernel variances)``.
NEAR_FACTOR = 400.0
#: Default ``near``: NEAR_FACTOR x the largest fixed kernel variance of the presets (paper text: fixed:1.0).
DEFAULT_NEAR = NEAR_FACTOR * 1.0

_BLOCK_BYTES = 64 * 2**20  # temporaries of one column block (float64 copy of N x K) stay below this
_K32 = 1024  # columns per float32 Gram block: no float32 sum is longer (the block results add in float64)
_MAX_K64 = 2048  # columns per float64 Gram block (worst-case bound ~(2048 + blocks) * 2^-53)
_MINMAX_COLS = 131072  # most columns per chunk of the min/max pass (at least one chunk per thread)
_FORCE_TORCH = False  # tests: take the torch (CUDA) code path on CPU tensors
_PILOT_ROWS = 64  # rows among which the shift of tier 1 is chosen
_PILOT_COLS = 4096  # on this many of the columns (16 runs spread evenly)
_GROUP32_ROWS = 64  # groups of tier 2 with fewer rows go straight to float64 (their Gram costs little)


class NonFiniteError(ProbeError):
    """The activations contain NaN or infinite values."""


def near_for(kernel_vars: Iterable[float], factor: float = NEAR_FACTOR) -> float:
    """``factor * max(kernel_vars)``: the squared distance beyond which a KDE kernel of the largest
    kernel variance gives a pair weight below ``exp(-factor / 8)`` (lower bound, variance
    ``4 kernel_var``).
    :func:`pairwise_sq_dists` and the probe accept it and need no such scale (module docstring)."""
    vals = [float(v) for v in kernel_vars]
    if not vals or min(vals) <= 0 or not all(math.isfinite(v) for v in vals):
        raise ProbeError(f"kernel variances must be positive numbers, got {vals!r}")
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


_BLAS: Any = None  # threadpoolctl controller of the loaded BLAS libraries, made on first use


def _one_blas_thread() -> Any:
    """A context in which the BLAS libraries run single-threaded (OpenBLAS's threads on small
    products, or beside our own threads, spin against the busy cores)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _cpu_map(fn: Callable[[Any], Any], parts: Sequence[Any]) -> list[Any]:
    """``[fn(p) for p in parts]``, the parts on parallel threads (at most :func:`_workers`), each
    running BLAS single-threaded.

    The CPU passes over the activations (min/max, the Gram blocks) split their columns between
    threads, each running numpy single-threaded: numpy releases the GIL in its loops and OpenBLAS
    is limited to one thread per call meanwhile, so the threads never wait on each other's thread
    pools (interleaving OpenBLAS's and torch's pools on few cores makes their idle threads spin
    against the busy ones). Each thread reads its column blocks into its own buffer and multiplies
    them while they are in its caches, so the reads hide behind the products.
    """
    global _POOL, _POOL_SIZE
    with _one_blas_thread():
        if len(parts) <= 1:
            return [fn(p) for p in parts]
        w = _workers()
        if _POOL is None or _POOL_SIZE != w:
            if _POOL is not None:
                _POOL.shutdown()
            _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=w, thread_name_prefix="infoflow-dist"), w
        return list(_POOL.map(fn, parts))


def _split(items: Sequence[Any]) -> list[Sequence[Any]]:
    """``items`` dealt round-robin into one part per worker (fewer when there are fewer items)."""
    w = min(_workers(), len(items))
    return [items[t::w] for t in range(w)]


def _block_cols(n_rows: int, cap: int) -> int:
    k = max(1, _BLOCK_BYTES // (8 * max(n_rows, 1)))
    k = 1 << (k.bit_length() - 1)  # power of two
    return max(64, min(cap, k))


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
                elif local is None and out.dtype == blk.dtype:  # straight into the buffer, then shifted there
                    dst = out[sl]
                    np.take(blk, cols, axis=1, out=dst)
                    if shift is not None:
                        np.subtract(dst, shift, out=dst)
                    continue
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

    def row(self, i: int, dtype: torch.dtype) -> Any:
        """Row ``i`` (of the kept columns) as a 1-D array of ``dtype`` (numpy on CPU, else a tensor)."""
        out = self.read(self.plan(np.array([i])), 0, self.d, self.empty(1, self.d, dtype))[0]
        if not (bool(np.isfinite(out).all()) if self.cpu else bool(torch.isfinite(out).all())):
            raise NonFiniteError("activations contain NaN or infinite values")
        return out


def _gram(x: RowBlocks, dtype: torch.dtype, k: int, rows: np.ndarray | None, shift: Any,
          backend: str) -> tuple[np.ndarray, int]:
    """Gram matrix (float64, m x m) of the rows ``rows`` (None: all) of ``x`` shifted by ``shift``,
    formed one block of ``k`` columns at a time in ``dtype`` and multiplied in ``dtype``; the
    block products are added in float64. Returns it with the length ``t`` of the longest float64
    sum of block products (for the error bound). On CPU with numpy the column blocks are dealt to
    parallel threads (:func:`_cpu_map`), each with its own buffers and sum."""
    plan = x.plan(rows)
    m = x.n if rows is None else len(rows)
    if dtype == torch.float32:  # the input's precision: float32 - float32, or float64 then rounded
        shift = shift.astype(x.blocks[0].dtype) if x.cpu else shift.to(x.dtype)
    use_torch_mm = backend != "numpy" or not x.cpu

    def work(starts: Sequence[int]) -> tuple[Any, int]:
        acc: Any = None
        buf = x.empty(m, min(k, x.d), dtype)
        prod = None if use_torch_mm else np.empty((m, m), dtype=buf.dtype)
        for s in starts:
            e = min(x.d, s + k)
            c = x.read(plan, s, e, buf if e - s == buf.shape[1] else x.empty(m, e - s, dtype), shift[s:e])
            if use_torch_mm:
                ct = torch.from_numpy(c) if x.cpu else c
                g = torch.mm(ct, ct.T).to(torch.float64)
                acc = g if acc is None else acc.add_(g)
            else:
                with np.errstate(all="ignore"):  # non-finite input is reported below
                    np.matmul(c, c.T, out=prod)  # numpy runs c @ c.T as syrk
                if acc is None:
                    acc = prod.astype(np.float64)
                else:
                    acc += prod
        return acc, len(starts)

    starts = range(0, x.d, k)
    with _full_precision_matmul():
        parts = [work(starts)] if use_torch_mm else _cpu_map(work, _split(starts))
    g = parts[0][0]
    for p in parts[1:]:
        g += p[0]
    g = g.cpu().numpy() if isinstance(g, torch.Tensor) else g
    if not np.isfinite(np.diagonal(g)).all():
        raise NonFiniteError("activations contain NaN or infinite values")
    return g, max(p[1] for p in parts) + len(parts) - 1


def _gram_factor(k: int, t: int, u: float) -> float:
    """Worst-case factor g of a Gram entry, ``|G~_ij - c_i.c_j| <= g nu_i nu_j``: products and sums
    of ``k`` terms in the unit roundoff ``u``, then a float64 sum of ``t`` block results."""
    g_block = _gamma(k, u)
    return g_block + _gamma(t, U64) * (1.0 + g_block)


def _accepted(d: np.ndarray, ni: np.ndarray, nj: np.ndarray, *, g: float, u_center: float, rtol: float) -> np.ndarray:
    """Pairs whose ``d~ = n_i + n_j - 2 G_ij`` is provably within relative error ``rtol`` when every
    Gram entry (the norms too) is within ``g nu_i nu_j`` and the shifted rows within relative
    ``u_center`` of the exact ones (the module docstring's criterion)."""
    si, sj = np.sqrt(ni), np.sqrt(nj)
    rho = (u_center / (1.0 - u_center)) * (si + sj)
    # two norms and twice the entry (g (nu_i + nu_j)^2), the rounding of the shifted rows, and the
    # float64 evaluation of the formula (3 roundings, |terms| <= 2 (n_i + n_j))
    alpha = g * (si + sj) ** 2 + rho * rho + 6.0 * U64 * (ni + nj)
    beta = 2.0 * rho
    return d >= (1.0 + rtol) * np.maximum(2.0 * alpha / rtol, (2.0 * beta / rtol) ** 2)


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


def _components(n: int, pi: np.ndarray, pj: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the graph on n rows with edges (pi, pj): (count, label per row)."""
    graph = coo_matrix((np.ones(len(pi), dtype=np.int8), (pi, pj)), shape=(n, n))
    return connected_components(graph, directed=False)


def _anchor(x: RowBlocks) -> int:
    """The row tier 1 is shifted by: of 64 fixed random rows (all when N <= 64), the one whose
    median squared distance to the others is least, on 4,096 of the columns (16 runs of 256
    spread evenly: whole cache lines)."""
    n = x.n
    pick = np.arange(n) if n <= _PILOT_ROWS else np.sort(np.random.default_rng(0).choice(n, _PILOT_ROWS, replace=False))
    run = min(x.d, _PILOT_COLS // 16)
    starts = np.unique(np.linspace(0, x.d - run, 16).astype(np.int64)) if x.d > _PILOT_COLS else np.array([0])
    run = x.d if x.d <= _PILOT_COLS else run
    plan = x.plan(pick)
    p = np.concatenate([np.asarray(x.read(plan, int(s), int(s) + run, x.empty(len(pick), run, torch.float64))
                                   if x.cpu else x.read(plan, int(s), int(s) + run,
                                                        x.empty(len(pick), run, torch.float64)).cpu().numpy())
                        for s in starts], axis=1)
    p = p - p.mean(axis=0)
    with _one_blas_thread():
        g = p @ p.T
    nrm = np.diagonal(g)
    dist = nrm[:, None] + nrm[None, :] - 2.0 * g
    if not np.isfinite(dist).all():
        raise NonFiniteError("activations contain NaN or infinite values")
    return int(pick[int(np.argmin(np.median(dist, axis=1)))])


def pairwise_sq_dists(
    acts: Any,
    *,
    rtol: float = DEFAULT_RTOL,
    gram_error: float = DEFAULT_GRAM_ERROR,
    backend: str = "auto",
    stats: dict | None = None,
    near: float | None = None,
) -> np.ndarray:
    """Squared Euclidean distances between the N rows of ``acts`` (N, D) (or (N, ...), flattened).

    ``acts``: numpy array or torch tensor (CPU or CUDA), float32 (float64 and half precision are
    accepted), or the same as consecutive row blocks (a list, or :class:`RowBlocks`). It is never
    modified or copied whole.
    ``rtol``: relative accuracy of every pair (under the working model for float32 Grams);
    ``gram_error``: the working-model constant kappa of the float32 Gram;
    ``backend``: Gram products by ``"numpy"`` (OpenBLAS ``syrk``, CPU only, on
    ``torch.get_num_threads()`` threads of one BLAS thread each) or ``"torch"`` (``torch.mm``);
    ``"auto"``: numpy on CPU, torch on CUDA.
    ``stats``: if a dict is given, it is filled with the number of pairs taken from each tier
    (``gram32``: tier 1; ``group32`` and ``gram64``: tier 2's float32 and float64 Grams;
    ``direct``: tier 3) and the number of columns that differ between rows
    (``columns``; the others add 0 and are skipped).
    ``near``: accepted and unused (the tolerance is relative and needs no absolute scale).

    Returns a float64 numpy array (N, N): exactly symmetric, zero diagonal, never negative.
    See the module docstring for the error model.
    """
    if near is not None and not (near >= 0 and math.isfinite(near)):
        raise ProbeError(f"near must be a finite number >= 0, got {near!r}")
    if not (0 < rtol < 1):
        raise ProbeError(f"rtol must be in (0, 1), got {rtol!r}")
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
    counts: dict[str, Any] = {"pairs": n * (n - 1) // 2, "gram32": 0, "group32": 0, "gram64": 0, "direct": 0,
                              "columns": d}
    if n < 2 or d == 0:
        if stats is not None:
            stats.update(counts)
        return out

    iu, ju = _pairs(n)
    vals = np.empty(len(iu))

    u_in = 2.0 * U64 if x.dtype == torch.float64 else 0.0  # float64 input: shifted in float64, then rounded

    def factor(dtype: torch.dtype, k: int, t: int) -> tuple[float, float]:
        """(Gram factor, rounding of the shifted rows): the working model for float32, else the bound."""
        if dtype == torch.float32:
            return gram_error * U32 + _gamma(t, U64), U32 + u_in
        return _gram_factor(k, t, U64), U64

    # ---- tier 1: float32 Gram of all rows, shifted by a row of the densest part -----------------
    g, t = _gram(x, torch.float32, _K32, None, x.row(_anchor(x), torch.float64), backend)
    nrm = np.diagonal(g)
    ni, nj = nrm[iu], nrm[ju]
    d1 = ni + nj - 2.0 * g[iu, ju]
    del g
    f, uc = factor(torch.float32, _K32, t)
    ok = _accepted(d1, ni, nj, g=f, u_center=uc, rtol=rtol)
    vals[ok] = d1[ok]
    counts["gram32"] = int(ok.sum())
    todo = np.flatnonzero(~ok)
    del d1, ni, nj, ok

    # ---- tier 2: per connected group of the rows left, a Gram of the group's own rows shifted by
    # one of them: in float32 (groups of 64 rows up to half the rows), then in float64
    local = np.full(n, -1, dtype=np.int64)
    for dtype in (torch.float32, torch.float64):
        if not len(todo):
            break
        label = _components(n, iu[todo], ju[todo])[1]
        pair_group = label[iu[todo]]
        keep = np.ones(len(todo), dtype=bool)
        order = np.argsort(pair_group, kind="stable")
        bounds = np.flatnonzero(np.r_[True, pair_group[order][1:] != pair_group[order][:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            mine = order[a:b]  # indices into todo of this group's pairs
            rows = np.flatnonzero(label == pair_group[mine[0]])
            if dtype == torch.float32 and not _GROUP32_ROWS <= len(rows) <= n // 2:
                continue  # cheap in float64, or hardly smaller than all rows: straight to float64
            local[rows] = np.arange(len(rows))
            k = _K32 if dtype == torch.float32 else _block_cols(len(rows), _MAX_K64)
            g, t = _gram(x, dtype, k, rows, x.row(int(rows[0]), torch.float64), backend)
            li, lj = local[iu[todo[mine]]], local[ju[todo[mine]]]
            nrm = np.diagonal(g)
            ni, nj = nrm[li], nrm[lj]
            d2 = ni + nj - 2.0 * g[li, lj]
            del g
            f, uc = factor(dtype, k, t)
            ok = _accepted(d2, ni, nj, g=f, u_center=uc, rtol=rtol)
            vals[todo[mine[ok]]] = d2[ok]
            counts["group32" if dtype == torch.float32 else "gram64"] += int(ok.sum())
            keep[mine[ok]] = False
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

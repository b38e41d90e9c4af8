"""The probe engine: distance matrices and binned symbols of every probe layer, under a memory budget.

:func:`probe_layers` runs a probe set through a model and returns, per layer, the N x N matrix of
squared Euclidean distances between the samples' flattened activations (what the KDE and Renyi
estimators need) and, per bin size, the samples' binned-symbol ids (what the binning estimator
needs). Raw activations are never returned or written anywhere.

How it bounds memory
--------------------
1. A dry run on one sample learns each layer's size D; the order in which hooks fire is the
   layers' forward order. Only when the activations do not fit the budget in one pass, a second
   dry run counts the cumulative forward FLOPs at which each layer's output appears
   (:class:`torch.utils.flop_counter.FlopCounterMode`, read inside the layer's hook; cached per
   model, input shape and layers, so a training run counts once).
2. The layers, in forward order, are split into contiguous groups whose activations
   (N x D x 4 bytes each, float32) fit ``memory_budget_bytes``. A pass for a group stops as soon
   as the group's last layer has produced its output (its hook raises a private exception), so a
   group costs the forward FLOPs up to its last layer; :func:`plan_groups` picks the partition of
   least total cost (ties: fewest groups). When everything fits there is exactly one pass. A
   single layer larger than the budget is still processed, alone, with a :class:`ProbeWarning`.
3. For each group the probe set runs through in batches under ``torch.no_grad()`` and eval mode.
   The hooks keep each batch's output as the network produced it, flattened per sample in its
   memory order (contiguous or channels_last: a view, no copy); an output that is not float32,
   or is a view into a larger tensor, is copied, and so is a layer whose output the network
   changes in place after the hook (seen by the tensor's version counter; the batch is run
   again). Then each layer's distance matrix is computed from its row blocks
   (:func:`infoflow.probe.distances.pairwise_sq_dists`, which also checks finiteness), its
   binned-symbol ids are found (:func:`bin_symbol_ids`) and its blocks are freed.

Binned symbols: for bin size b, a sample's symbol at a layer is the vector of bin indices
``floor(m / b)`` of its float32 activations (the division in float32, b rounded to float32), as
:func:`infoflow.estimators.binning.bin_index` defines it for the whole package; digests are its
:func:`~infoflow.estimators.binning.symbol_digests` (SHA-256). Columns that cannot tell two
samples apart (equal in every sample, or with min and max in one bin) are left out; samples too
far apart in the distance matrix to share a symbol get ids of their own without any reading;
the others are split into groups of equal symbols by SHA-256 digests of growing column chunks
(the integral float32 values), so only samples with equal symbols are read whole. Ids are dense,
0, 1, ... in order of first appearance over the samples. Equal ids mean equal symbols (up to a
2^-256-scale collision chance).

Memory: while it runs, freed memory stays in the process for reuse (:mod:`.heap`: no page
faults for every batch's outputs and between passes), and the pass that holds the most bytes
runs first, so the others reuse its memory; at the end the free memory is given back (unless a
caller holds it longer: ``MITracker`` keeps it between logged epochs).

Cost: the forward passes (the second and later ones stop at their last layer) and the distance
products are the bulk; docs/ARCHITECTURE.md, "Cost of a logged epoch", has the measured figures.
``ProbeResult.timings`` has the breakdown of each call.
"""

from __future__ import annotations

import sys
import time
import warnings
import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ProbeError
from ..estimators.binning import bin_index, symbol_digests
from ..network import model_device
from .capture import LayerSpec, forward_hooks, output_tensor, resolve_layers
from .distances import NonFiniteError, RowBlocks, pairwise_sq_dists
from .heap import retained_heap


class ProbeWarning(UserWarning):
    """The probe could not keep to its memory budget (a single layer is larger than it)."""


class _StopForward(Exception):
    """Raised from the hook of a group's last layer to end the forward pass early."""


@dataclass
class ProbeResult:
    """What :func:`probe_layers` measured. Layer order is the order of the ``layers`` argument."""

    names: list[str]  # layer names
    dims: list[int]  # D per layer (activation size of one sample)
    dist: np.ndarray  # (L, N, N) float64 squared Euclidean distances per layer
    dist_input: np.ndarray | None  # (N, N) float64 distances of the flattened inputs, or None
    codes: dict[float, np.ndarray]  # bin size -> (L, N) int64 dense symbol ids per layer
    seconds: float  # wall time of the whole probe
    peak_bytes_held: int  # most activation bytes held at once (the kept float32 outputs of one group)
    groups: list[list[str]] = field(default_factory=list)  # layer names per forward pass, in order
    flops: list[int] = field(default_factory=list)  # cumulative forward FLOPs of one sample at each layer (0s: one pass, not counted)
    dist_stats: list[dict] = field(default_factory=list)  # per layer: pairs taken from each distance tier, columns kept
    timings: dict[str, float] = field(default_factory=dict)  # seconds: dry_run (incl. any FLOP count), forward (passes, keeping the outputs), hash (bin ids), distances, input


def plan_groups(sizes: Sequence[int], costs: Sequence[float], budget: int) -> list[tuple[int, int]]:
    """Split positions ``0..L-1`` (forward order) into contiguous groups ``[start, end)``.

    Each group's summed ``sizes`` must fit ``budget`` unless it is a single position. A group costs
    ``costs[end - 1]`` (the forward cost up to its last layer, nondecreasing in position). Returns
    the partition of least total cost; among equal costs, the one with fewest groups.
    """
    n = len(sizes)
    if len(costs) != n:
        raise ValueError("sizes and costs must have the same length")
    inf = (float("inf"), 0)
    best: list[tuple[float, int]] = [(0.0, 0)] + [inf] * n
    back = [0] * (n + 1)
    for end in range(1, n + 1):
        total = 0
        for start in range(end - 1, -1, -1):
            total += sizes[start]
            if total > budget and start != end - 1:
                break
            cand = (best[start][0] + float(costs[end - 1]), best[start][1] + 1)
            if cand < best[end]:
                best[end] = cand
                back[end] = start
    groups: list[tuple[int, int]] = []
    end = n
    while end > 0:
        groups.append((back[end], end))
        end = back[end]
    return groups[::-1]


def _as_images(images: Any) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        t = images.detach()
    else:
        raise ProbeError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")
    if t.dim() < 2 or t.shape[0] == 0:
        raise ProbeError(f"images must have shape (N, ...) with N >= 1, got {tuple(t.shape)}")
    return t


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{int(n)} bytes"


def _symbol_digests(vals: Any, bin_size: float) -> list[bytes]:
    """Digests of the rows' binned symbols (vals finite, (B, K); numpy or torch): the one binned
    symbol of :mod:`infoflow.estimators.binning` (:func:`bin_index`: float32 division, integral
    float32 values; :func:`symbol_digests`: SHA-256, ~1.9 GB/s here with CPU SHA extensions).
    ``vals`` is a scratch buffer of the caller's and is binned in place when it is float32 numpy."""
    own = isinstance(vals, np.ndarray) and vals.dtype == np.float32 and vals.flags.writeable
    return symbol_digests(bin_index(vals, bin_size=bin_size, out=vals if own else None))


_FIRST_STRIDE = 64  # first look at the candidate rows: every 64th column, spread over the whole layer
_FIRST_CHUNK = 4096  # then contiguous chunks of columns, doubling from this width
_READ_VALUES = 2**22  # values per read (rows x columns), 16 MiB of float32


def _column_passes(d: int) -> Iterator[tuple[int, int, int]]:
    """(start, stop, step) of the column sets that refine the symbol groups, in order."""
    if d >= 8 * _FIRST_STRIDE:
        yield 0, d, _FIRST_STRIDE
    s, k = 0, _FIRST_CHUNK
    while s < d:
        yield s, min(d, s + k), 1
        s, k = s + k, 2 * k


def _dense_ids(keys: Sequence[Any]) -> np.ndarray:
    ids: dict[Any, int] = {}
    return np.fromiter((ids.setdefault(h, len(ids)) for h in keys), dtype=np.int64, count=len(keys))


def bin_symbol_ids(acts: Any, dist: np.ndarray, bin_size: float) -> np.ndarray:
    """Dense ids of the binned symbols ``floor(a_i / b)`` of the N rows of ``acts`` (N, D) float32.

    ``acts``: an array or tensor (N, ...), or the same as row blocks (a list, or
    :class:`~infoflow.probe.distances.RowBlocks`). Ids are 0, 1, ... in order of first appearance;
    equal ids mean equal symbols. ``dist`` is the rows' squared-distance matrix
    (:func:`~infoflow.probe.distances.pairwise_sq_dists`), used to skip work: two rows can share a
    symbol only if every coordinate differs by less than about b, i.e. ``dist <= D b'^2`` with
    ``b' = b (1 + 2^-22 (max|a| / b + 2))`` (the float32 division's rounding; the threshold gets a
    further 0.1% for the distances' relative error, at most 1e-4). Columns equal in every row are
    left out (D counts the others), and so are columns whose min and max fall in one bin (``floor`` and the
    rounded division are monotone, so every row has the same symbol there). Rows with no partner
    get ids of their own. The others start as one group, which column sets split by the SHA-256
    digests of the rows' symbols there (every 64th column first, then contiguous chunks that
    double in width); a row alone in its group is done, so rows that differ early are never read
    again, and only rows with equal symbols are read whole.
    """
    x = RowBlocks.of(acts).varying()
    n, d = x.n, x.d
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    b32 = float(np.float32(bin_size))
    # the bin index is monotone in m (so are the rounding to float32 and the rounded division): a
    # column whose min and max fall in one bin gives every row the same symbol there and cannot
    # split a group
    assert x.lo is not None and x.hi is not None
    lo_q = bin_index(x.lo, bin_size=bin_size)
    hi_q = bin_index(x.hi, bin_size=bin_size)
    splitting = np.flatnonzero(~(lo_q == hi_q))
    absmax = float(max(np.abs(x.lo).max(), np.abs(x.hi).max())) if d else 0.0
    slack = b32 * (1.0 + 2.0**-22 * (absmax / b32 + 2.0))
    thr = d * slack * slack * (1.0 + 1e-3)
    near = np.asarray(dist) <= thr
    np.fill_diagonal(near, False)
    rows = np.flatnonzero(near.any(axis=1))
    keys: list[Any] = list(range(n))  # distinct ints: a row of its own
    if len(rows):
        group = np.zeros(len(rows), dtype=np.int64)  # candidates with equal symbols so far share a group
        active = np.arange(len(rows))
        xs = x.columns(splitting)
        for s, e, step in _column_passes(xs.d):
            if not len(active):
                break
            width = len(range(s, e, step))
            per = max(1, _READ_VALUES // max(width, 1))
            digests: list[bytes] = []
            for a in range(0, len(active), per):
                sub = rows[active[a : a + per]]
                vals = xs.read(xs.plan(sub), s, e, xs.empty(len(sub), width, xs.dtype), step=step)
                digests += _symbol_digests(vals, bin_size)
            split: dict[tuple[int, bytes], int] = {}
            top = int(group.max()) + 1
            group[active] = [top + split.setdefault((int(g), h), len(split)) for g, h in zip(group[active], digests)]
            active = active[np.bincount(group)[group[active]] > 1]
        for p, r in enumerate(rows):
            keys[int(r)] = ("group", int(group[p]))
    return _dense_ids(keys)


_FLOPS_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, list[int]]]" = weakref.WeakKeyDictionary()


def _layer_flops(model: nn.Module, pairs: Sequence[tuple[str, nn.Module]], x1: torch.Tensor) -> list[int]:
    """Cumulative forward FLOPs of one sample at each probe layer's output (FlopCounterMode, read
    inside the layer's hook), cached per model, input shape and layers (the first count in a
    process costs ~1.5 s of set-up)."""
    key = (tuple(x1.shape), str(x1.dtype), str(x1.device), tuple((nm, id(m)) for nm, m in pairs))
    cache = _FLOPS_CACHE.setdefault(model, {})
    if key not in cache:
        flops = [0] * len(pairs)
        counter = FlopCounterMode(display=False)

        def hook(idx: int, name: str, output: Any) -> None:
            flops[idx] = int(counter.get_total_flops())

        with torch.no_grad(), counter, forward_hooks(pairs, hook):
            model(x1)
        cache[key] = flops
    return list(cache[key])


def _storage_order(t: torch.Tensor) -> tuple[int, ...]:
    """Dims 1.. of ``t`` ordered by decreasing stride: permuted so, a dense output (contiguous or
    channels_last) flattens per sample without a copy. Distances and symbols do not depend on the
    order of a sample's coordinates, only on its being the same for every sample."""
    return tuple(sorted(range(1, t.dim()), key=lambda k: -t.stride(k)))


def _sample_rows(t: torch.Tensor, b: int, order: tuple[int, ...]) -> torch.Tensor:
    """The output ``t`` of a batch of ``b`` samples as float32 rows (b, D), a view when possible."""
    rows = t.permute(0, *order).reshape(b, -1)
    if rows.dtype != torch.float32:
        rows = rows.float()
    return rows


def _owned(rows: torch.Tensor) -> bool:
    """Whether keeping ``rows`` keeps only its own bytes (not a view into a larger tensor)."""
    return rows.untyped_storage().nbytes() <= rows.numel() * rows.element_size()


def _version(t: torch.Tensor) -> int | None:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors have no version counter
        return None


def _run_pass(model: nn.Module, x_all: torch.Tensor, dev: torch.device, pairs: Sequence[tuple[str, nn.Module]],
              group: Sequence[int], dims: Sequence[int], batch_size: int) -> dict[int, list[torch.Tensor]]:
    """One forward pass of the probe set, in batches, stopped after the group's last layer.

    Returns per layer of ``group`` its outputs, one (n_b, D) float32 block per batch, kept as the
    network produced them (no copy) when they are dense, float32 and own their memory; otherwise
    copied. A layer whose output the network changes in place after the hook (an in-place ReLU
    after it, say; seen by the tensor's version counter) is copied from then on and the batch is
    run again.
    """
    n = int(x_all.shape[0])
    members, last = set(group), group[-1]
    kept: dict[int, list[torch.Tensor]] = {i: [] for i in group}
    versions: dict[int, list[int | None]] = {i: [] for i in group}
    order: dict[int, tuple[int, ...]] = {}
    copy: set[int] = set()
    state: dict[str, Any] = {"b": 0, "seen": set()}

    def grab(idx: int, name: str, output: Any) -> None:
        t = output_tensor(name, output).detach()
        b = state["b"]
        if t.dim() == 0 or t.shape[0] != b or t.numel() != b * dims[idx]:
            raise ProbeError(
                f"probe layer {name!r} output has shape {tuple(t.shape)} for a batch of {b}; "
                f"expected {b} x {dims[idx]} values"
            )
        rows = _sample_rows(t, b, order.setdefault(idx, _storage_order(t)))
        ver = _version(rows)
        if idx in copy or ver is None or not _owned(rows):
            rows, ver = rows.clone(), None
        kept[idx].append(rows)
        versions[idx].append(ver)
        state["seen"].add(idx)
        if idx == last:
            raise _StopForward

    with torch.no_grad(), forward_hooks([pairs[i] for i in group], lambda j, nm, o: grab(group[j], nm, o)):
        s = 0
        while s < n:
            e = min(n, s + batch_size)
            state["b"], state["seen"] = e - s, set()
            try:
                model(x_all[s:e].to(dev))
            except _StopForward:
                pass
            if state["seen"] != members:
                lost = [pairs[i][0] for i in group if i not in state["seen"]]
                raise ProbeError(f"probe layer(s) produced nothing for samples {s}..{e - 1}: {', '.join(lost)}")
            changed = [i for i in group if versions[i][-1] is not None and _version(kept[i][-1]) != versions[i][-1]]
            if changed:  # changed in place after the hook: copy these layers, run the batch again
                copy.update(changed)
                for i in group:
                    kept[i].pop()
                    versions[i].pop()
                continue
            s = e
    changed = [pairs[i][0] for i in group if any(v is not None and _version(r) != v for r, v in zip(kept[i], versions[i]))]
    if changed:
        raise ProbeError(f"probe layer(s) {', '.join(changed)}: outputs of earlier batches were changed in place "
                         f"by later ones (the module reuses its output buffer); their activations cannot be kept")
    return kept


def probe_layers(
    model: nn.Module,
    images: Any,
    layers: LayerSpec,
    *,
    batch_size: int = 32,
    memory_budget_bytes: int,
    device: Any = None,
    bin_sizes: Sequence[float] = (),
    include_input: bool = True,
    progress: bool = False,
    near: float | None = None,
) -> ProbeResult:
    """Distance matrices (and binned symbol ids) of every probe layer for the probe set ``images``.

    ``model``: any module taking one tensor batch; it is run under ``torch.no_grad()`` in eval mode
    (each submodule's previous train/eval mode is restored afterwards) and is not moved.
    ``images``: (N, ...) tensor or array, batches of which are moved to ``device``.
    ``layers``: ``[(name, module), ...]`` or submodule names; a layer's activation is its output.
    ``memory_budget_bytes``: most activation bytes (float32) to hold at once (see the module doc).
    ``device``: where the forward passes run and the kept outputs live; None: the model's device.
    ``bin_sizes``: bin sizes b of the binning estimator; ``codes[b]`` holds the symbol ids.
    ``include_input``: also compute ``dist_input``, the distances of the flattened images.
    ``near``: accepted and unused (the distances' tolerance is relative, see
    :mod:`infoflow.probe.distances`).
    """
    t_start = time.perf_counter()
    pairs = resolve_layers(model, layers)
    x_all = _as_images(images)
    n = int(x_all.shape[0])
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ProbeError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not memory_budget_bytes > 0:
        raise ProbeError(f"memory_budget_bytes must be positive, got {memory_budget_bytes!r}")
    bins = [float(b) for b in bin_sizes]
    if any(not (b > 0 and np.isfinite(b)) for b in bins) or len(set(bins)) != len(bins):
        raise ProbeError(f"bin sizes must be distinct positive numbers, got {list(bin_sizes)!r}")
    dev = model_device(model) if device is None else torch.device(device)
    n_layers = len(pairs)

    def say(msg: str) -> None:
        if progress:
            print(f"[probe] {msg}", file=sys.stderr, flush=True)

    timings = {"dry_run": 0.0, "forward": 0.0, "hash": 0.0, "distances": 0.0, "input": 0.0}
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    heap = ExitStack()
    heap.enter_context(retained_heap())  # freed memory reused by later batches, passes, layers (.heap)
    try:
        # ---- dry run: D per layer and forward order (FLOPs counted only if a split is needed) ---
        calls = [0] * n_layers
        dims = [0] * n_layers
        order: list[int] = []

        def dry(idx: int, name: str, output: Any) -> None:
            t = output_tensor(name, output)
            calls[idx] += 1
            if calls[idx] == 1:
                if t.dim() == 0 or t.shape[0] != 1:
                    raise ProbeError(
                        f"probe layer {name!r} output has shape {tuple(t.shape)}; expected batch dimension 1"
                    )
                order.append(idx)
                dims[idx] = int(t.numel())

        t0 = time.perf_counter()
        x1 = x_all[:1].to(dev)
        with torch.no_grad(), forward_hooks(pairs, dry):
            model(x1)
        missing = [pairs[i][0] for i in range(n_layers) if calls[i] == 0]
        if missing:
            raise ProbeError(
                f"{len(missing)} probe layer(s) produced nothing during the forward pass: {', '.join(missing)}"
            )
        repeated = [f"{pairs[i][0]} ({calls[i]} calls)" for i in range(n_layers) if calls[i] > 1]
        if repeated:
            raise ProbeError(
                "probe layers must run once per forward pass; these ran more often: " + ", ".join(repeated)
            )
        flops = [0] * n_layers
        if n * sum(dims) * 4 > memory_budget_bytes:  # several passes: their costs decide the split
            flops = _layer_flops(model, pairs, x1)
        timings["dry_run"] = time.perf_counter() - t0

        # ---- plan the passes ------------------------------------------------------------------
        sizes = [n * dims[i] * 4 for i in order]
        plan = plan_groups(sizes, [flops[i] for i in order], int(memory_budget_bytes))
        groups = [[order[p] for p in range(a, b)] for a, b in plan]
        group_bytes = [sum(sizes[a:b]) for a, b in plan]
        for g, held in zip(groups, group_bytes):
            if held > memory_budget_bytes:
                warnings.warn(
                    ProbeWarning(
                        f"probe layer {pairs[g[0]][0]!r} alone needs {_fmt_bytes(held)} of activations, "
                        f"more than the budget of {_fmt_bytes(memory_budget_bytes)}; processing it anyway"
                    ),
                    stacklevel=2,
                )
        say(f"{n} samples, {n_layers} layers, {len(groups)} pass(es)")

        dist = np.zeros((n_layers, n, n))
        dist_stats: list[dict] = [{} for _ in range(n_layers)]
        codes = {b: np.zeros((n_layers, n), dtype=np.int64) for b in bins}
        peak = 0

        # ---- one pass per group, the largest first: later passes reuse its memory (.heap) --------
        runs = sorted(zip(groups, group_bytes), key=lambda gb: -gb[1])
        for gi, (group, held) in enumerate(runs):
            names = [pairs[i][0] for i in group]
            say(f"pass {gi + 1}/{len(groups)}: {names[0]} .. {names[-1]} ({len(group)} layers, {_fmt_bytes(held)})")
            t0 = time.perf_counter()
            kept = _run_pass(model, x_all, dev, pairs, group, dims, batch_size)
            peak = max(peak, held)
            timings["forward"] += time.perf_counter() - t0
            for i in group:
                t1 = time.perf_counter()
                rows = RowBlocks(kept.pop(i)).varying()  # constant columns dropped once, for both
                st: dict = {}
                try:
                    dist[i] = pairwise_sq_dists(rows, stats=st)
                except NonFiniteError:
                    raise ProbeError(f"probe layer {pairs[i][0]!r} produced NaN or infinite activations") from None
                dist_stats[i] = st
                t2 = time.perf_counter()
                timings["distances"] += t2 - t1
                for b in bins:
                    codes[b][i] = bin_symbol_ids(rows, dist[i], b)
                timings["hash"] += time.perf_counter() - t2
                del rows

        dist_input = None
        if include_input:
            t0 = time.perf_counter()
            dist_input = pairwise_sq_dists(x_all.reshape(n, -1))
            timings["input"] = time.perf_counter() - t0
    finally:
        heap.close()
        for m, mode in modes:
            m.training = mode

    seconds = time.perf_counter() - t_start
    say(f"done in {seconds:.1f} s")
    return ProbeResult(
        names=[name for name, _ in pairs],
        dims=dims,
        dist=dist,
        dist_input=dist_input,
        codes=codes,
        seconds=seconds,
        peak_bytes_held=peak,
        groups=[[pairs[i][0] for i in g] for g in groups],
        flops=flops,
        dist_stats=dist_stats,
        timings=timings,
    )

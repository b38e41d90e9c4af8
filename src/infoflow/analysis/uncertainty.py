"""How much an estimate can be trusted: subsampling intervals, the trend with N, and a
permutation baseline for I(Y;M). Everything is computed from the stored distance matrices.

For one logged epoch, layer, estimator and kernel width (``estimate_layers``' settings):

* **Subsampling** (without replacement). For each probe-set size ``m`` in ``fractions * N``,
  ``repeats`` seeded random subsets of ``m`` of the N probe samples are drawn and the estimator is
  applied to each subset as if it were the probe set (a relative or Silverman width is resolved on
  the subset, labels are the subset's). At ``m = N`` there is only one subset, the probe set
  itself, so that value *is* the full estimate. The table of means and percentiles per ``m``
  shows the estimate's trend with N: an estimate that still grows by ~1 bit per doubling of N
  is pinned to its ceiling ``log2 N`` and measures the probe-set size, not the layer.
* **Interval** of the full estimate (delete-d jackknife / half-sampling, Shao & Wu 1989): with
  ``m_ci`` the subset size closest to N/2, the centred subset values
  ``theta_m,r - mean_r(theta_m,r)`` times ``sqrt(m / (N - m))`` estimate the sampling
  deviations of the full estimate; their ``(1 -/+ level) / 2`` percentiles are added to the full
  value and the interval is clipped to the estimator's range ``[0, ceiling]``. Centring on the
  subset mean removes the shift of the estimate with N (reported as ``trend``); the interval is
  about *sampling* variability of the probe set, not about the estimator's bias.
* **Permutation baseline** of ``I(Y;M)``: the labels are shuffled among the N probe samples
  ``permutations`` times and the estimate is recomputed. What a layer shows above this baseline
  is information about Y; at a narrow kernel (every sample isolated) the baseline itself is
  ``H(Y)``, the estimate's ceiling, and the estimate says nothing. ``p_value`` is
  ``(1 + #{baseline >= value}) / (1 + permutations)``. The shuffles are seeded by
  ``(seed, epoch, labelling)``, the same for every layer (paired comparisons); the tidy table's
  own ``baseline`` column (:mod:`infoflow.estimators.table`) draws its own, per layer.

Every estimate comes from the estimator registry (:func:`infoflow.estimators.registry.prepare`):
one prepared object per subset, whose I(Y;M) of the labels and of each shuffle is cheap.

Main entry points: :func:`uncertainty_table` (a run), :func:`estimate_uncertainty` (one
epoch's :class:`~infoflow.runs.Matrices`), :func:`layer_uncertainty` (one distance matrix).

Columns of the uncertainty table (:data:`UNCERTAINTY_COLUMNS`), one row per
(epoch, layer, estimator, setting, labels, quantity), quantities ``I_XM`` (labels ``"none"``) and
``I_YM``::

    value          the full-N estimate (equals mi.csv's value for the same setting)
    ci_lo, ci_hi   the interval at `level` (clipped to [0, ceiling])
    level          e.g. 0.9
    trend          (value - mean at m_ci) / log2(N / m_ci): bits gained per doubling of N
    baseline_mean  mean of the label-permutation estimates (I_YM; NaN for I_XM)
    baseline_sd    their standard deviation
    baseline_hi    their (1 + level) / 2 percentile
    p_value        permutation p-value of value against the baseline (I_YM; NaN for I_XM)
    n, d, log2n    N, D, log2 N
    h_y            plug-in H(Y) of the labelling (NaN for I_XM)
    ceiling        the estimator's ceiling: log2 N for I_XM; H(Y) (renyi: its alpha-entropy of
                   the classes) for I_YM
    kernel_var     the variance the kernel resolved to (NaN for bin)
    m_ci, repeats, permutations

Columns of the subsample (trend) table (:data:`SUBSAMPLE_COLUMNS`): the same keys plus
``m, repeats, mean, sd, lo, hi, ceiling`` (``lo``/``hi``: raw percentiles of the subset values at
``level``; ``ceiling``: mean over subsets of log2 m or H(Y) of the subset's labels).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..progress import track

from ..errors import InfoflowError, RunError
from ..estimators._util import as_dist, to_numpy
from ..estimators.base import LabelGroup, Labels, Prepared, seeded_rng
from ..estimators.registry import expand_estimators, prepare, renyi_input, setting_of
from ..estimators.table import NO_LABELS
from ..estimators.widths import Kernel, parse_kernel, parse_kernels
from ..runs import RunDir, sibling_path
from ..tracking import labelings_for

__all__ = [
    "UNCERTAINTY_COLUMNS",
    "SUBSAMPLE_COLUMNS",
    "DEFAULT_FRACTIONS",
    "layer_uncertainty",
    "estimate_uncertainty",
    "uncertainty_table",
    "uncertainty_tables",
    "write_uncertainty",
]

KEYS = ("epoch", "layer", "name", "estimator", "setting", "labels", "quantity")
UNCERTAINTY_COLUMNS = KEYS + (
    "value", "ci_lo", "ci_hi", "level", "trend", "baseline_mean", "baseline_sd", "baseline_hi", "p_value",
    "n", "d", "log2n", "h_y", "ceiling", "kernel_var", "m_ci", "repeats", "permutations",
)  # fmt: skip
SUBSAMPLE_COLUMNS = KEYS + ("m", "repeats", "mean", "sd", "lo", "hi", "ceiling", "n", "kernel_var")
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
UNC_ESTIMATORS = ("kde_upper", "kde_lower", "bin", "renyi")


# -- seeded subsets and permutations ----------------------------------------------------------------
def subset_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Subset sizes ``round(f * n)`` clipped to [2, n], ascending and distinct."""
    sizes = set()
    for f in fractions:
        f = float(f)
        if not (0.0 < f <= 1.0):
            raise InfoflowError(f"subsample fractions must lie in (0, 1], got {f}")
        sizes.add(int(min(max(round(f * n), 2), n)))
    return sorted(sizes)


def _subsets(n: int, sizes: Sequence[int], repeats: int, seed: int, epoch: int) -> dict[int, list[np.ndarray]]:
    out: dict[int, list[np.ndarray]] = {}
    for m in sizes:
        if m >= n:
            out[m] = [np.arange(n)]
            continue
        rng = seeded_rng(seed, "subsample", epoch, m)
        out[m] = [np.sort(rng.choice(n, size=m, replace=False)) for _ in range(repeats)]
    return out


def _permutations(labs: Sequence[tuple[str, Labels]], permutations: int, seed: int,
                  epoch: int) -> dict[str, LabelGroup]:
    """Per labelling, ``permutations`` shufflings among the samples (``rng.permutation`` of the
    labels, seeded by ``(seed, "permute", epoch, name)``), as one group (empty: None)."""
    out: dict[str, LabelGroup] = {}
    for name, y in labs:
        rng = seeded_rng(seed, "permute", epoch, name)
        perms = [y.permuted(rng.permutation(y.n)) for _ in range(permutations)]
        if perms:
            out[name] = LabelGroup(perms)
    return out


# -- one layer -----------------------------------------------------------------------------------
def layer_uncertainty(
    dist: Any,
    labelings: Mapping[str, Any],
    *,
    dim: int,
    estimator: str = "kde_upper",
    kernel: Any = "fixed:0.2",
    codes: Any = None,
    dist_x: Any = None,
    renyi_alpha: float = 1.01,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    repeats: int = 20,
    permutations: int = 20,
    level: float = 0.9,
    seed: int = 0,
    epoch: int = 0,
    layer: int = 0,
    name: str = "",
    setting: str | None = None,
    _subsets_cache: dict[int, list[np.ndarray]] | None = None,
    _perms_cache: dict[str, LabelGroup] | None = None,
    _cache: dict[Any, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Uncertainty of one layer's estimates for one estimator and kernel (``codes`` for bin).

    Returns ``(summary, subsamples)`` with :data:`UNCERTAINTY_COLUMNS` / :data:`SUBSAMPLE_COLUMNS`.
    """
    est = str(estimator)
    if est not in UNC_ESTIMATORS:
        raise InfoflowError(f"unknown estimator {est!r} for uncertainty; choose from {', '.join(UNC_ESTIMATORS)}")
    if not (0.0 < float(level) < 1.0):
        raise InfoflowError(f"level must lie in (0, 1), got {level}")
    repeats, permutations = int(repeats), int(permutations)
    if repeats < 2 or permutations < 0:
        raise InfoflowError(f"repeats must be >= 2 and permutations >= 0, got {repeats}, {permutations}")
    alpha = float(renyi_alpha)
    c = None
    w: Kernel | None = None
    if est == "bin":
        if codes is None:
            raise InfoflowError("the binning estimator needs symbol codes (it cannot use distances)")
        c = np.asarray(to_numpy(codes)).reshape(-1)
        n = c.shape[0]
        d = None
    else:
        d = as_dist(dist)
        n = d.shape[0]
        w = parse_kernel(kernel)
    dx = None if (dist_x is None or est != "renyi") else as_dist(dist_x, what="dist_x")
    labs = [(k, Labels.of(v, n, what=f"labelling {k!r}")) for k, v in sorted(labelings.items())]
    if setting is None:
        setting = setting_of(est, kernel=w, alpha=alpha) if est != "bin" else "bin"
    sizes = subset_sizes(n, fractions)
    if n not in sizes:
        sizes.append(n)
    subs = _subsets_cache if _subsets_cache is not None else _subsets(n, sizes, repeats, seed, epoch)
    perms = _perms_cache if _perms_cache is not None else _permutations(labs, permutations, seed, epoch)
    cache = {} if _cache is None else _cache  # per subset: labels and Renyi's input side, shared by layers

    def sub_labels(lab: str, y: Labels, m: int, r: int, idx: np.ndarray) -> Labels:
        key = ("labels", lab, m, r)
        if key not in cache:
            cache[key] = Labels.of(y.y[idx], m)
        return cache[key]

    def prep(idx: np.ndarray | None, m: int, r: int) -> tuple[Prepared, float]:
        ds = d if (idx is None or d is None) else d[np.ix_(idx, idx)]
        kv = math.nan if (ds is None or w is None) else w.kernel_var(ds)
        x = None
        if dx is not None:
            assert w is not None
            key = ("x", w.spec(), alpha, m, r)
            if key not in cache:
                cache[key] = renyi_input(dx if idx is None else dx[np.ix_(idx, idx)], kernel=w, alpha=alpha,
                                         checked=True)
            x = cache[key]
        p = prepare(est, dist=ds, kernel_var=None if ds is None else kv, dim=int(dim), alpha=alpha, x=x,
                    codes=None if c is None else (c if idx is None else c[idx]), checked=True)
        return p, kv

    full, full_kv = prep(None, n, 0)
    has_x = math.isfinite(full.i_xm) or est != "renyi"
    quantities: list[tuple[str, str, Labels | None]] = []
    if has_x:
        quantities.append((NO_LABELS, "I_XM", None))
    quantities += [(k, "I_YM", y) for k, y in labs]
    full_vals = {(lab, q): (full.i_xm if q == "I_XM" else full.i_ym(y)) for lab, q, y in quantities}

    # subsamples: values[(lab, q)][m] = list of values
    sub_vals: dict[tuple[str, str], dict[int, list[float]]] = {key: {} for key in full_vals}
    sub_ceil: dict[tuple[str, str], dict[int, list[float]]] = {key: {} for key in full_vals}
    sub_kv: dict[int, list[float]] = {}
    for m in sorted(subs):
        for r, idx in enumerate(subs[m]):
            p, kv_m = (full, full_kv) if m >= n else prep(idx, m, r)
            sub_kv.setdefault(m, []).append(kv_m)
            for lab, q, y in quantities:
                if q == "I_XM":
                    v, ce = p.i_xm, math.log2(m)
                else:
                    assert y is not None
                    ys = y if m >= n else sub_labels(lab, y, m, r, idx)
                    v = full_vals[(lab, q)] if m >= n else p.i_ym(ys)
                    ce = p.ceiling_y(ys)
                sub_vals[(lab, q)].setdefault(m, []).append(float(v))
                sub_ceil[(lab, q)].setdefault(m, []).append(float(ce))

    lo_q, hi_q = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    below = [m for m in sub_vals[quantities[0][:2]] if m < n] if quantities else []
    m_ci = min(below, key=lambda m: (abs(m - n / 2.0), -m)) if below else None
    log2n = math.log2(n)

    srows: list[dict[str, Any]] = []
    urows: list[dict[str, Any]] = []
    base = {"epoch": int(epoch), "layer": int(layer), "name": str(name), "estimator": est, "setting": str(setting)}
    for lab, q, y in quantities:
        key = (lab, q)
        value = full_vals[key]
        h_y = math.nan if y is None else y.h_y
        ceiling = log2n if y is None else full.ceiling_y(y)
        for m, vals in sorted(sub_vals[key].items()):
            arr = np.asarray(vals)
            srows.append({**base, "labels": lab, "quantity": q, "m": m, "repeats": arr.size,
                          "mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
                          "lo": float(np.quantile(arr, lo_q)), "hi": float(np.quantile(arr, hi_q)),
                          "ceiling": float(np.mean(sub_ceil[key][m])), "n": n,
                          "kernel_var": float(np.mean(sub_kv[m]))})
        if m_ci is not None:
            arr = np.asarray(sub_vals[key][m_ci])
            dev = (arr - arr.mean()) * math.sqrt(m_ci / (n - m_ci))
            ci_lo = value + float(np.quantile(dev, lo_q))
            ci_hi = value + float(np.quantile(dev, hi_q))
            ci_lo, ci_hi = min(max(ci_lo, 0.0), ceiling), min(max(ci_hi, 0.0), ceiling)
            ci_lo, ci_hi = min(ci_lo, value), max(ci_hi, value)
            trend = (value - float(arr.mean())) / math.log2(n / m_ci)
        else:
            ci_lo = ci_hi = trend = math.nan
        b_mean = b_sd = b_hi = p_val = math.nan
        if q == "I_YM" and permutations > 0:
            group = perms[lab]
            if len(group) > permutations:
                group = LabelGroup(group.sets[:permutations])
            bvals = full.i_ym_many(group)
            b_mean = float(bvals.mean())
            b_sd = float(bvals.std(ddof=1)) if bvals.size > 1 else 0.0
            b_hi = float(np.quantile(bvals, hi_q))
            p_val = (1.0 + float(np.sum(bvals >= value - 1e-12))) / (1.0 + bvals.size)
        urows.append({**base, "labels": lab, "quantity": q, "value": float(value), "ci_lo": ci_lo, "ci_hi": ci_hi,
                      "level": float(level), "trend": trend, "baseline_mean": b_mean, "baseline_sd": b_sd,
                      "baseline_hi": b_hi, "p_value": p_val, "n": n, "d": int(dim), "log2n": log2n, "h_y": h_y,
                      "ceiling": float(ceiling), "kernel_var": full_kv, "m_ci": m_ci if m_ci is not None else n,
                      "repeats": repeats, "permutations": permutations if q == "I_YM" else 0})
    return (pd.DataFrame(urows, columns=list(UNCERTAINTY_COLUMNS)),
            pd.DataFrame(srows, columns=list(SUBSAMPLE_COLUMNS)))


# -- one epoch / a run ---------------------------------------------------------------------------
def estimate_uncertainty(
    m: Any,
    labelings: Mapping[str, Any],
    *,
    kernels: Sequence[Any] | str = ("fixed:0.2",),
    estimators: Sequence[str] | str = ("kde_upper",),
    renyi_alpha: float = 1.01,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    repeats: int = 20,
    permutations: int = 20,
    level: float = 0.9,
    seed: int = 0,
    layers: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Uncertainty tables of one logged epoch's :class:`~infoflow.runs.Matrices` ``m``.

    ``kernels`` as in :func:`~infoflow.estimators.estimate_layers`; ``layers``: probe indices (default all). The same seeded
    subsets and label permutations are used for every layer, estimator and setting of the epoch
    (paired comparisons). Returns ``(summary, subsamples)``.
    """
    ests = expand_estimators(estimators)
    ks = parse_kernels(kernels)
    n_layers, n = m.dist.shape[0], m.dist.shape[1]
    labs = [(k, Labels.of(v, n, what=f"labelling {k!r}")) for k, v in sorted(labelings.items())]
    sizes = subset_sizes(n, fractions)
    if n not in sizes:
        sizes.append(n)
    subs = _subsets(n, sizes, int(repeats), int(seed), int(m.epoch))
    perms = _permutations(labs, int(permutations), int(seed), int(m.epoch))
    cache: dict[Any, Any] = {}  # subset labels and Renyi input sides, the same for every layer
    dist_x = None if m.dist_input is None else as_dist(m.dist_input, what="dist_input")
    alpha = float(renyi_alpha)
    todo = range(n_layers) if layers is None else [int(i) for i in layers]
    parts_u, parts_s = [], []
    for li in todo:
        if not 0 <= li < n_layers:
            raise InfoflowError(f"layer {li} is out of range: the run has {n_layers} probe layers")
        d = as_dist(m.dist[li], what=f"dist[{li}]")
        for est in ests:
            if est == "bin" and not m.codes:
                continue
            settings: list[tuple[Kernel | None, Any]] = \
                [(None, b) for b in sorted(m.codes, key=float)] if est == "bin" else [(k, None) for k in ks]
            for k, b in settings:
                setting = setting_of(est, kernel=k, bin_size=None if b is None else float(b), alpha=alpha)
                u, s = layer_uncertainty(
                    d, dict(labs), dim=int(m.dims[li]), estimator=est, kernel=k if k is not None else "fixed:1.0",
                    codes=None if b is None else m.codes[b][li], dist_x=dist_x, renyi_alpha=renyi_alpha,
                    fractions=fractions, repeats=repeats, permutations=permutations, level=level, seed=seed,
                    epoch=int(m.epoch), layer=li, name=str(m.names[li]), setting=setting,
                    _subsets_cache=subs, _perms_cache=perms, _cache=cache)
                parts_u.append(u)
                parts_s.append(s)
    if not parts_u:
        return (pd.DataFrame(columns=list(UNCERTAINTY_COLUMNS)), pd.DataFrame(columns=list(SUBSAMPLE_COLUMNS)))
    return pd.concat(parts_u, ignore_index=True), pd.concat(parts_s, ignore_index=True)


def uncertainty_tables(
    run: Any,
    mi: Any = None,
    *,
    kernels: Sequence[Any] | str | None = None,
    estimators: Sequence[str] | str = ("kde_upper",),
    epochs: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    repeats: int = 20,
    permutations: int = 20,
    level: float = 0.9,
    seed: int = 0,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, subsamples)`` of a run (a :class:`~infoflow.runs.RunDir` or its path).

    ``mi``: the :class:`~infoflow.config.MIConfig` whose labellings, kernels and Renyi alpha are
    used (default: the run's own); ``kernels`` overrides ``mi.kernels``.
    """

    rd = run if isinstance(run, RunDir) else RunDir.open(run)
    stored_mi = rd.config().mi
    if mi is None:
        mi = stored_mi
    record = rd.load_probe()
    idx = record.subset(mi.subset)
    labelings = {k: v if idx is None else v[idx] for k, v in labelings_for(record, mi, stored_mi).items()}
    stored = rd.matrix_epochs()
    if not stored:
        raise RunError(f"{rd.path} has no stored distance matrices: uncertainty needs them")
    todo = stored if epochs is None else [int(e) for e in epochs]
    missing = sorted(set(todo) - set(stored))
    if missing:
        raise RunError(f"{rd.path}: no stored matrices for epoch(s) {missing}; stored: {stored}")
    iterator: Any = todo
    if progress:
        iterator = track(todo, description="uncertainty")
    parts_u, parts_s = [], []
    for e in iterator:
        u, s = estimate_uncertainty(
            rd.load_matrices(e).take(idx), labelings, kernels=mi.kernels if kernels is None else kernels,
            estimators=estimators, renyi_alpha=mi.renyi_alpha, fractions=fractions, repeats=repeats,
            permutations=permutations, level=level, seed=seed, layers=layers)
        parts_u.append(u)
        parts_s.append(s)
    return pd.concat(parts_u, ignore_index=True), pd.concat(parts_s, ignore_index=True)


def uncertainty_table(run: Any, mi: Any = None, **kwargs: Any) -> pd.DataFrame:
    """Per (epoch, layer, estimator, setting, labels, quantity): value, ci_lo, ci_hi,
    baseline_mean, baseline_hi, ... (:data:`UNCERTAINTY_COLUMNS`) of a run. Keywords as
    :func:`uncertainty_tables`; for plots: draw ``[ci_lo, ci_hi]`` as the band of ``value`` and
    ``baseline_mean``/``baseline_hi`` as the chance level of I(Y;M)."""
    return uncertainty_tables(run, mi, **kwargs)[0]


def write_uncertainty(run: Any, out: str | os.PathLike, mi: Any = None, **kwargs: Any
                      ) -> tuple[pd.DataFrame, pd.DataFrame, Path, Path]:
    """Compute :func:`uncertainty_tables` of ``run`` and write them beside the estimates file
    ``out``: ``<out>.uncertainty.csv`` and ``<out>.subsamples.csv`` (atomically, by
    :meth:`~infoflow.runs.RunDir.write_table`).

    ``mi`` and ``kwargs`` as in :func:`uncertainty_tables`. Returns ``(summary, subsamples,
    uncertainty path, subsamples path)``. This is what ``infoflow estimate --uncertainty`` and
    ``infoflow report --quality`` both call.
    """
    rd = run if isinstance(run, RunDir) else RunDir.open(run)
    summary, subs = uncertainty_tables(rd, mi, **kwargs)
    paths = [rd.write_table(sibling_path(out, suffix), frame)
             for frame, suffix in ((summary, "uncertainty"), (subs, "subsamples"))]
    return summary, subs, paths[0], paths[1]

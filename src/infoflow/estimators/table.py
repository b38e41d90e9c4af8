"""The tidy MI table: every estimate of every layer of one logged epoch, one row per number.

:func:`estimate_layers` is the single function that turns stored per-epoch matrices into rows;
the online tracker and the offline re-estimation (``infoflow estimate``) both call it on the same
float32 matrices, so both give identical numbers. :class:`MITable` accumulates epochs;
:func:`normalize_table` brings a table written by an older version to these columns and settings.
Every estimator comes from the registry (:func:`~.registry.prepare`): one prepared object per
layer, estimator and setting, whatever the number of labellings and permutations.

Columns (:data:`COLUMNS`)::

    epoch       int64    logged epoch (1-based)
    layer       int64    0-based probe-layer index
    name        str      stable layer name
    estimator   str      "kde_upper", "kde_lower", "bin" or "renyi"
    setting     str      the row's parameters (:func:`~.registry.setting_of`): the kernel spec
                         of KDE rows ("fixed:0.2", "rel:0.1", "silverman:1.0", see
                         :mod:`.widths`), the spec and order of Renyi rows
                         ("fixed:0.2,alpha:1.01"), the bin size of binning rows ("bin:0.1")
    labels      str      labelling of Y ("kmeans", "coarse", ...); "none" for label-free rows
    quantity    str      "I_XM", "I_YM", "H_M", "H_M_given_X", "H_M_given_Y"
    value       float64  bits
    n           int64    N, probe samples
    d           int64    D, activation values per sample of the layer
    log2n       float64  log2 N, the ceiling of I(X;M)
    h_y         float64  plug-in H(Y) of the labelling (bits); NaN on label-free rows
    at_ceiling  bool     I_XM within 1% of log2 N (bin: all symbols distinct, also on H_M);
                         I_YM within 1% of its ceiling (H(Y); renyi: the Renyi alpha-entropy of
                         the classes). False on every other row.
    at_floor    bool     the estimate sits at its floor, about 0 bits: value <= 1% of its
                         ceiling (log2 N for I_XM and binning's H_M, H(Y) for I_YM). False on
                         rows without a ceiling (the other entropies).
    baseline    float64  I_YM rows of kde_upper, kde_lower and bin: the 95% quantile (numpy's
                         linear interpolation) of I(Y;M) over `permutations` random
                         permutations of the labels among the N samples (same class counts),
                         seeded by (epoch, layer, labelling) alone, so the same shufflings serve
                         every estimator and setting. NaN elsewhere (renyi, other quantities,
                         permutations = 0, tables written before the column).

Rows per layer, in this order: estimators in :data:`ESTIMATORS` order, settings in the given
order (bin sizes ascending), label-free quantities first, then per labelling (names sorted)
``I_YM`` and ``H_M_given_Y``:

* ``kde_upper`` / ``kde_lower``: H_M, H_M_given_X, I_XM; per labelling I_YM, H_M_given_Y.
* ``bin``: H_M, I_XM; per labelling I_YM, H_M_given_Y (only when ``bin_codes`` are given).
* ``renyi``: H_M, I_XM (only when ``dist_x`` is given); per labelling I_YM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfoflowError
from ._util import as_dist, to_numpy
from .base import CEILING_TOL, FLOOR_TOL, LabelGroup, Labels, Prepared, baseline_of, label_permutations, \
    near_ceiling, near_floor
from .registry import (
    ESTIMATORS,
    REGISTRY,
    bin_setting,
    expand_estimators,
    kde_setting,
    prepare,
    renyi_input,
    renyi_setting,
    setting_of,
    upgrade_setting,
)
from .widths import DEFAULT_KERNELS, parse_kernels

__all__ = [
    "COLUMNS",
    "ESTIMATORS",
    "QUANTITIES",
    "NO_LABELS",
    "CEILING_TOL",
    "FLOOR_TOL",
    "MITable",
    "bin_setting",
    "empty_frame",
    "estimate_layers",
    "kde_setting",
    "near_ceiling",
    "near_floor",
    "normalize_table",
    "renyi_setting",
]

COLUMNS = (
    "epoch", "layer", "name", "estimator", "setting", "labels", "quantity",
    "value", "n", "d", "log2n", "h_y", "at_ceiling", "at_floor", "baseline",
)  # fmt: skip
QUANTITIES = ("I_XM", "I_YM", "H_M", "H_M_given_X", "H_M_given_Y")
NO_LABELS = "none"

_DTYPES = {
    "epoch": "int64", "layer": "int64", "name": str, "estimator": str, "setting": str,
    "labels": str, "quantity": str, "value": "float64", "n": "int64", "d": "int64",
    "log2n": "float64", "h_y": "float64", "at_ceiling": "bool", "at_floor": "bool", "baseline": "float64",
}  # fmt: skip


def empty_frame() -> pd.DataFrame:
    """A table with the columns and dtypes of :func:`estimate_layers` and no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in _DTYPES.items()})


def _floor_ceiling(quantity: Any, estimator: Any, log2n: Any, h_y: Any) -> float:
    """The ceiling ``at_floor`` compares with (NaN: the row has none)."""
    if quantity == "I_XM" or (quantity == "H_M" and estimator == "bin"):
        return float(log2n)
    if quantity == "I_YM":
        return float(h_y)
    return math.nan


def normalize_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A tidy table read back (``mi.csv``), with the columns added since it was written.

    Settings written before the kernel spec are rewritten (:func:`~.registry.upgrade_setting`:
    ``noise_var=0.2`` -> ``fixed:0.2``, ``alpha=1.01,kernel_var=0.2`` -> ``fixed:0.2,alpha:1.01``,
    ``bin=0.1`` -> ``bin:0.1``).

    ``at_floor`` is filled from the values where it is missing (the rule of :data:`COLUMNS`;
    a table appended to by a newer version has it on its newer rows only), ``baseline`` is NaN
    where missing (permutations cannot be run from a table); ``at_ceiling`` and ``at_floor`` are
    bool. Columns the table never had stay absent; an empty frame is returned as it is.
    """
    if frame is None or not len(frame.columns):
        return frame
    out = frame.copy()
    if "setting" in out:
        old = out["setting"].astype(str)
        if old.str.contains("=", regex=False).any():
            out["setting"] = old.map({s: upgrade_setting(s) for s in old.unique()})
    if "at_ceiling" in out:
        out["at_ceiling"] = out["at_ceiling"].astype(bool)
    need = {"quantity", "estimator", "value", "log2n", "h_y"}
    if need <= set(out.columns):
        have = out["at_floor"] if "at_floor" in out else pd.Series(np.nan, index=out.index, dtype=object)
        missing = have.isna().to_numpy()
        if missing.any():
            sub = out.loc[missing]
            fill = [near_floor(float(v), _floor_ceiling(q, e, ln, hy)) for q, e, v, ln, hy in
                    zip(sub["quantity"], sub["estimator"], sub["value"], sub["log2n"], sub["h_y"])]
            have = have.astype(object)
            have.loc[missing] = fill
        out["at_floor"] = have.astype(bool)
    if "baseline" not in out:
        out["baseline"] = np.nan
    out["baseline"] = pd.to_numeric(out["baseline"], errors="coerce").astype("float64")
    order = [c for c in COLUMNS if c in out.columns] + [c for c in out.columns if c not in COLUMNS]
    return out.loc[:, order]


def estimate_layers(
    dists: Any,
    *,
    names: Sequence[str],
    dims: Sequence[int],
    epoch: int,
    labelings: Mapping[str, Any],
    kernels: Sequence[Any] | str = DEFAULT_KERNELS,
    bin_codes: Mapping[float, Any] | None = None,
    dist_x: Any = None,
    renyi_alpha: float = 1.01,
    estimators: Sequence[str] = ("kde", "bin", "renyi"),
    layers: Sequence[int] | None = None,
    permutations: int = 0,
) -> pd.DataFrame:
    """All MI estimates of the probe layers at one epoch, as a tidy table (see module docstring).

    Parameters
    ----------
    dists:
        ``(L, N, N)`` squared distances per layer (float32 as stored; each layer is converted to
        float64 before use).
    names, dims:
        Layer names and D (values per sample) of the L layers.
    epoch:
        The logged epoch.
    labelings:
        ``{name: (N,) labels}``, e.g. ``{"kmeans": ..., "coarse": ...}``; may be empty.
    kernels:
        Kernels of the KDE and Renyi estimators (:mod:`.widths`), e.g.
        ``("fixed:0.2", "rel:0.1", "silverman")``; settings are emitted in this order.
    bin_codes:
        ``{bin_size: (L, N) int64}`` symbol ids from the probe (:func:`bin_codes`); ``None`` skips
        the binning estimator (it cannot be computed from distances).
    dist_x:
        ``(N, N)`` squared distances of the input images (Renyi I(X;M)); ``None`` omits that row.
    renyi_alpha:
        Order of the matrix-based Renyi entropy.
    estimators:
        Any of ``"kde"`` (both bounds), ``"kde_upper"``, ``"kde_lower"``, ``"bin"``, ``"renyi"``.
    layers:
        The 0-based probe index of each of the L matrices; ``None``: ``0..L-1``.
    permutations:
        Label permutations of the ``baseline`` column (0: NaN baselines); seeded by
        ``(epoch, layers[i], labelling name)``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` with fixed dtypes, deterministic row order.
    """
    dist_all = to_numpy(dists)
    if dist_all.ndim != 3 or dist_all.shape[1] != dist_all.shape[2]:
        raise InfoflowError(f"dists must be (L, N, N), got shape {dist_all.shape}")
    n_layers, n = dist_all.shape[0], dist_all.shape[1]
    names = [str(x) for x in names]
    dims = [int(x) for x in dims]
    if len(names) != n_layers or len(dims) != n_layers:
        raise InfoflowError(f"dists has {n_layers} layers but {len(names)} names and {len(dims)} dims were given")
    layer_ids = list(range(n_layers)) if layers is None else [int(i) for i in layers]
    if len(layer_ids) != n_layers:
        raise InfoflowError(f"dists has {n_layers} layers but {len(layer_ids)} layer indices were given")
    wanted = expand_estimators(estimators)
    perms = int(permutations)
    if perms < 0:
        raise InfoflowError(f"permutations must be >= 0, got {permutations}")

    labs: list[tuple[str, Labels]] = []
    for lname in sorted(labelings):
        if lname == NO_LABELS:
            raise InfoflowError(f"{NO_LABELS!r} is reserved for label-free rows; rename that labelling")
        labs.append((lname, Labels.of(labelings[lname], n, what=f"labelling {lname!r}")))

    codes: list[tuple[float, np.ndarray]] = []
    if "bin" in wanted and bin_codes is not None:
        for b in sorted(bin_codes, key=float):
            c = np.asarray(to_numpy(bin_codes[b]))
            if c.shape != (n_layers, n):
                raise InfoflowError(f"bin_codes[{b}] must have shape ({n_layers}, {n}), got {c.shape}")
            codes.append((float(b), c))

    alpha = float(renyi_alpha)
    uses_dist = [e for e in wanted if REGISTRY[e].data == "dist"]
    dist_kernels = parse_kernels(kernels) if uses_dist else ()
    renyi_x: list[Any] = [None] * len(dist_kernels)
    if "renyi" in wanted and dist_x is not None:
        dx = as_dist(dist_x, what="dist_x")
        if dx.shape != (n, n):
            raise InfoflowError(f"dist_x must have shape ({n}, {n}), got {dx.shape}")
        renyi_x = [renyi_input(dx, kernel=k, alpha=alpha, checked=True) for k in dist_kernels]

    log2n = math.log2(n)
    rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    nan = math.nan

    def emit(li: int, est: str, setting: str, lab: str, qty: str, value: float, h_y: float, ceiling: float,
             ceil: bool, base: float = nan) -> None:
        r = rows
        r["epoch"].append(int(epoch))
        r["layer"].append(layer_ids[li])
        r["name"].append(names[li])
        r["estimator"].append(est)
        r["setting"].append(setting)
        r["labels"].append(lab)
        r["quantity"].append(qty)
        r["value"].append(float(value))
        r["n"].append(n)
        r["d"].append(dims[li])
        r["log2n"].append(log2n)
        r["h_y"].append(h_y)
        r["at_ceiling"].append(bool(ceil))
        r["at_floor"].append(near_floor(float(value), ceiling))
        r["baseline"].append(float(base))

    def rows_of(li: int, p: Prepared, setting: str, groups: list[tuple[str, LabelGroup, LabelGroup | None]]) -> None:
        est = p.estimator
        for row in p.label_free():
            emit(li, est, setting, NO_LABELS, row.quantity, row.value, nan, row.ceiling, row.at_ceiling)
        with_baseline = REGISTRY[est].baseline
        for lname, own, shuffled in groups:
            lab = own.sets[0]
            vals = p.label_values(own)  # alone: the value does not depend on the permutations
            base = baseline_of(p.i_ym_many(shuffled)) if (with_baseline and shuffled is not None) else nan
            for q in p.label_quantities:
                v = float(vals[q][0])
                if q == "I_YM":
                    emit(li, est, setting, lname, q, v, lab.h_y, lab.h_y, near_ceiling(v, p.ceiling_y(lab)), base)
                else:
                    emit(li, est, setting, lname, q, v, lab.h_y, nan, False)

    need_groups = perms > 0 and any(REGISTRY[e].baseline for e in wanted)
    own = [(lname, LabelGroup([lab])) for lname, lab in labs]
    for li in range(n_layers):
        groups = [(lname, g, label_permutations(g.sets[0], perms, epoch=epoch, layer=layer_ids[li], name=lname)
                   if need_groups else None) for lname, g in own]
        d = as_dist(dist_all[li], what=f"dists[{li}]") if uses_dist else None
        kvs = [k.kernel_var(d) for k in dist_kernels] if d is not None else []
        for est in wanted:
            if REGISTRY[est].data == "codes":
                for b, c in codes:
                    rows_of(li, prepare(est, codes=c[li]), setting_of(est, bin_size=b), groups)
                continue
            for ki, k in enumerate(dist_kernels):
                p = prepare(est, dist=d, kernel_var=kvs[ki], dim=dims[li], alpha=alpha, x=renyi_x[ki], checked=True)
                rows_of(li, p, setting_of(est, kernel=k, alpha=alpha), groups)
                del p  # its N x N kernel matrix

    frame = pd.DataFrame(rows)
    return frame.astype(_DTYPES) if len(frame) else empty_frame()


class MITable:
    """Accumulates :func:`estimate_layers` tables epoch by epoch.

    ``MITable(frame=None)`` starts empty or from a stored table (e.g. ``mi.csv`` on resume; a
    table of an older version is brought to :data:`COLUMNS` by :func:`normalize_table`);
    ``.add(dists, **kwargs)`` estimates one epoch (same keywords as :func:`estimate_layers`),
    appends and returns its rows; ``.truncate(epoch)`` drops rows after ``epoch``; ``.frame()``
    is the whole table, sorted stably by epoch.
    """

    def __init__(self, frame: pd.DataFrame | None = None) -> None:
        self._parts: list[pd.DataFrame] = []
        if frame is not None and len(frame):
            frame = normalize_table(frame)
            missing = [c for c in COLUMNS if c not in frame.columns]
            if missing:
                raise InfoflowError(f"MI table lacks column(s) {', '.join(missing)}")
            self._parts.append(frame.loc[:, list(COLUMNS)].astype(_DTYPES))

    def add(self, dists: Any, **kwargs: Any) -> pd.DataFrame:
        part = estimate_layers(dists, **kwargs)
        self._parts.append(part)
        return part

    def truncate(self, epoch: int) -> None:
        self._parts = [p[p["epoch"] <= epoch] for p in self._parts]

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def frame(self) -> pd.DataFrame:
        parts = [p for p in self._parts if len(p)]
        if not parts:
            return empty_frame()
        out = pd.concat(parts, ignore_index=True)
        return out.sort_values("epoch", kind="stable").reset_index(drop=True)

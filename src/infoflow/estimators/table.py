"""The tidy MI table: every estimate of every layer of one logged epoch, one row per number.

:func:`estimate_layers` is the single function that turns stored per-epoch matrices into rows;
the online tracker and the offline re-estimation (``infoflow estimate``) both call it on the same
float32 matrices, so both give identical numbers. :class:`MITable` accumulates epochs.

Columns (:data:`COLUMNS`)::

    epoch       int64    logged epoch (1-based)
    layer       int64    0-based probe-layer index
    name        str      stable layer name
    estimator   str      "kde_upper", "kde_lower", "bin" or "renyi"
    setting     str      "noise_var=0.2" | "bin=0.1" | "alpha=1.01,kernel_var=0.2" (see *_setting);
                         scale-aware kernel widths: "rel=0.1", "silverman=1.0",
                         "alpha=1.01,rel=0.1" (see :mod:`.widths`)
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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfoflowError
from ._util import as_dist, as_labels, to_numpy
from .binning import binning_mi
from .kde import kde_mi
from .labels import entropy_bits
from .renyi import _entropy_from_eigs, _label_entropy_from_ids, _renyi_from_grams, gaussian_gram
from .widths import Width, expand_widths, kernel_var, parse_width

__all__ = [
    "COLUMNS",
    "ESTIMATORS",
    "QUANTITIES",
    "NO_LABELS",
    "CEILING_TOL",
    "MITable",
    "bin_setting",
    "empty_frame",
    "estimate_layers",
    "kde_setting",
    "parse_setting",
    "renyi_setting",
]

COLUMNS = (
    "epoch", "layer", "name", "estimator", "setting", "labels", "quantity",
    "value", "n", "d", "log2n", "h_y", "at_ceiling",
)  # fmt: skip
ESTIMATORS = ("kde_upper", "kde_lower", "bin", "renyi")
QUANTITIES = ("I_XM", "I_YM", "H_M", "H_M_given_X", "H_M_given_Y")
NO_LABELS = "none"
CEILING_TOL = 0.01  # at_ceiling: within 1% of the ceiling

_DTYPES = {
    "epoch": "int64", "layer": "int64", "name": str, "estimator": str, "setting": str,
    "labels": str, "quantity": str, "value": "float64", "n": "int64", "d": "int64",
    "log2n": "float64", "h_y": "float64", "at_ceiling": "bool",
}  # fmt: skip


def _num(x: float) -> str:
    return repr(float(x))


def _width_or_number(x: Any) -> Width | None:
    """A scale-aware width spec (``"rel:0.1"``, :class:`Width`), or None for a plain number."""
    if isinstance(x, Width):
        return x
    if isinstance(x, str):
        try:
            float(x)
        except ValueError:
            return parse_width(x)
    return None


def kde_setting(noise_var: Any) -> str:
    """Setting string of a KDE row: ``kde_setting(0.2) == "noise_var=0.2"`` (``repr`` of the float).

    A kernel-width spec gives its own setting: ``kde_setting("rel:0.1") == "rel=0.1"``,
    ``kde_setting("silverman") == "silverman=1.0"``, ``kde_setting("fixed:0.2") == "noise_var=0.2"``.
    """
    w = _width_or_number(noise_var)
    if w is not None:
        return w.key()
    return f"noise_var={_num(noise_var)}"


def bin_setting(bin_size: float) -> str:
    """Setting string of a binning row: ``bin_setting(0.1) == "bin=0.1"``."""
    return f"bin={_num(bin_size)}"


def renyi_setting(alpha: float, kernel_var: Any) -> str:
    """Setting string of a Renyi row: ``renyi_setting(1.01, 0.2) == "alpha=1.01,kernel_var=0.2"``;
    with a kernel-width spec: ``renyi_setting(1.01, "rel:0.1") == "alpha=1.01,rel=0.1"``."""
    w = _width_or_number(kernel_var)
    if w is not None:
        return f"alpha={_num(alpha)},{w.renyi_key()}"
    return f"alpha={_num(alpha)},kernel_var={_num(kernel_var)}"


def parse_setting(setting: str) -> dict[str, float]:
    """Inverse of the ``*_setting`` functions: ``"alpha=1.01,kernel_var=0.2"`` -> ``{"alpha": 1.01, ...}``."""
    out: dict[str, float] = {}
    for part in str(setting).split(","):
        key, sep, val = part.partition("=")
        if not sep:
            raise InfoflowError(f"malformed setting {setting!r}: expected key=value[,key=value]")
        out[key.strip()] = float(val)
    return out


def empty_frame() -> pd.DataFrame:
    """A table with the columns and dtypes of :func:`estimate_layers` and no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in _DTYPES.items()})


def _expand_estimators(estimators: Sequence[str]) -> list[str]:
    if isinstance(estimators, str):
        estimators = (estimators,)
    wanted: set[str] = set()
    for e in estimators:
        if e == "kde":
            wanted.update(("kde_upper", "kde_lower"))
        elif e in ESTIMATORS:
            wanted.add(e)
        else:
            raise InfoflowError(f"unknown estimator {e!r}; choose from 'kde', {', '.join(map(repr, ESTIMATORS))}")
    return [e for e in ESTIMATORS if e in wanted]


def near_ceiling(value: float, ceiling: float) -> bool:
    """``at_ceiling``: ``value`` within :data:`CEILING_TOL` (1%) of a finite ``ceiling``."""
    return bool(math.isfinite(value) and math.isfinite(ceiling) and value >= (1.0 - CEILING_TOL) * ceiling - 1e-12)


def estimate_layers(
    dists: Any,
    *,
    names: Sequence[str],
    dims: Sequence[int],
    epoch: int,
    labelings: Mapping[str, Any],
    noise_vars: Sequence[float],
    bin_codes: Mapping[float, Any] | None = None,
    dist_x: Any = None,
    renyi_alpha: float = 1.01,
    estimators: Sequence[str] = ("kde", "bin", "renyi"),
    renyi_kernel_vars: Sequence[float] | None = None,
    layers: Sequence[int] | None = None,
    widths: Sequence[Any] | str | None = None,
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
    noise_vars:
        KDE noise variances ``s2``; also the Renyi kernel variances unless ``renyi_kernel_vars``.
    bin_codes:
        ``{bin_size: (L, N) int64}`` symbol ids from the probe (:func:`bin_codes`); ``None`` skips
        the binning estimator (it cannot be computed from distances).
    dist_x:
        ``(N, N)`` squared distances of the input images (Renyi I(X;M)); ``None`` omits that row.
    renyi_alpha:
        Order of the matrix-based Renyi entropy.
    estimators:
        Any of ``"kde"`` (both bounds), ``"kde_upper"``, ``"kde_lower"``, ``"bin"``, ``"renyi"``.
    renyi_kernel_vars:
        Gaussian kernel variances of the Renyi estimator; ``None``: ``noise_vars``.
    layers:
        The 0-based probe index of each of the L matrices; ``None``: ``0..L-1``.
    widths:
        Kernel-width rules of the KDE and Renyi estimators (:mod:`.widths`), e.g.
        ``("rel:0.1", "silverman", "fixed:0.2")``; an open ``"fixed"`` stands for each of
        ``noise_vars`` (KDE) / ``renyi_kernel_vars`` (Renyi). ``None``: ``("fixed",)``, the rows
        of a fixed noise variance only. Settings are emitted in this order.

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
    wanted = _expand_estimators(estimators)

    labs: list[tuple[str, np.ndarray, float]] = []
    for lname in sorted(labelings):
        if lname == NO_LABELS:
            raise InfoflowError(f"{NO_LABELS!r} is reserved for label-free rows; rename that labelling")
        y = as_labels(labelings[lname], n, what=f"labelling {lname!r}")
        labs.append((lname, y, entropy_bits(y)))

    codes: list[tuple[float, np.ndarray]] = []
    if "bin" in wanted and bin_codes is not None:
        for b in sorted(bin_codes, key=float):
            c = np.asarray(to_numpy(bin_codes[b]))
            if c.shape != (n_layers, n):
                raise InfoflowError(f"bin_codes[{b}] must have shape ({n_layers}, {n}), got {c.shape}")
            codes.append((float(b), c))

    alpha = float(renyi_alpha)
    kvars = [float(v) for v in (noise_vars if renyi_kernel_vars is None else renyi_kernel_vars)]
    kde_widths = expand_widths(widths, [float(v) for v in noise_vars]) if "kde_upper" in wanted or \
        "kde_lower" in wanted else []
    renyi_widths = expand_widths(widths, kvars) if "renyi" in wanted else []
    renyi_x: list[tuple[np.ndarray | None, float | None]] = []
    renyi_hy: dict[str, float] = {}
    if "renyi" in wanted:
        dx = None if dist_x is None else as_dist(dist_x, what="dist_x")
        if dx is not None and dx.shape != (n, n):
            raise InfoflowError(f"dist_x must have shape ({n}, {n}), got {dx.shape}")
        for rw in renyi_widths:
            if dx is None:
                renyi_x.append((None, None))
            else:
                a_x = gaussian_gram(dx, kernel_var=kernel_var(rw, dx))
                renyi_x.append((a_x, _entropy_from_eigs(np.linalg.eigvalsh(a_x), alpha)))
        renyi_hy = {lname: _label_entropy_from_ids(y, alpha) for lname, y, _ in labs}

    log2n = math.log2(n)
    rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def emit(li: int, est: str, setting: str, lab: str, qty: str, value: float, h_y: float, ceil: bool) -> None:
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

    nan = math.nan
    for li in range(n_layers):
        d = as_dist(dist_all[li], what=f"dists[{li}]")
        dim = dims[li]
        for est in wanted:
            if est in ("kde_upper", "kde_lower"):
                bound = "upper" if est == "kde_upper" else "lower"
                for kw in kde_widths:
                    st = kw.key()
                    s2 = kernel_var(kw, d)
                    base = kde_mi(d, None, noise_var=s2, dim=dim, bound=bound)
                    emit(li, est, st, NO_LABELS, "H_M", base.h_m, nan, False)
                    emit(li, est, st, NO_LABELS, "H_M_given_X", base.h_m_given_x, nan, False)
                    emit(li, est, st, NO_LABELS, "I_XM", base.i_xm, nan, near_ceiling(base.i_xm, log2n))
                    for lname, y, h_y in labs:
                        r = kde_mi(d, y, noise_var=s2, dim=dim, bound=bound)
                        emit(li, est, st, lname, "I_YM", r.i_ym, h_y, near_ceiling(r.i_ym, h_y))
                        emit(li, est, st, lname, "H_M_given_Y", r.h_m_given_y, h_y, False)
            elif est == "bin":
                for b, c in codes:
                    st = bin_setting(b)
                    base = binning_mi(c[li])
                    emit(li, est, st, NO_LABELS, "H_M", base.h_m, nan, base.saturated)
                    emit(li, est, st, NO_LABELS, "I_XM", base.i_xm, nan, base.saturated)
                    for lname, y, h_y in labs:
                        r = binning_mi(c[li], y)
                        emit(li, est, st, lname, "I_YM", r.i_ym, h_y, near_ceiling(r.i_ym, h_y))
                        emit(li, est, st, lname, "H_M_given_Y", r.h_m - r.i_ym, h_y, False)
            elif est == "renyi":
                for rw, (a_x, h_x) in zip(renyi_widths, renyi_x):
                    st = renyi_setting(alpha, rw)
                    a_m = gaussian_gram(d, kernel_var=kernel_var(rw, d))
                    base = _renyi_from_grams(a_m, alpha=alpha, a_x=a_x, h_x=h_x)
                    emit(li, est, st, NO_LABELS, "H_M", base.h_m, nan, False)
                    if a_x is not None:
                        emit(li, est, st, NO_LABELS, "I_XM", base.i_xm, nan, near_ceiling(base.i_xm, log2n))
                    for lname, y, h_y in labs:
                        r = _renyi_from_grams(a_m, alpha=alpha, y=y, h_m=base.h_m)
                        emit(li, est, st, lname, "I_YM", r.i_ym, h_y, near_ceiling(r.i_ym, renyi_hy[lname]))

    frame = pd.DataFrame(rows)
    return frame.astype(_DTYPES) if len(frame) else empty_frame()


class MITable:
    """Accumulates :func:`estimate_layers` tables epoch by epoch.

    ``MITable(frame=None)`` starts empty or from a stored table (e.g. ``mi.csv`` on resume);
    ``.add(dists, **kwargs)`` estimates one epoch (same keywords as :func:`estimate_layers`),
    appends and returns its rows; ``.truncate(epoch)`` drops rows after ``epoch``; ``.frame()``
    is the whole table, sorted stably by epoch.
    """

    def __init__(self, frame: pd.DataFrame | None = None) -> None:
        self._parts: list[pd.DataFrame] = []
        if frame is not None and len(frame):
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


# ---------------------------------------------------------------------------------------------
# Selecting one estimate per (epoch, layer) from a tidy table
# ---------------------------------------------------------------------------------------------

DEFAULT_ESTIMATOR = "kde_upper"
DEFAULT_LABELS = "kmeans"


@dataclass(frozen=True)
class Selection:
    """Which rows of a tidy table to read: an estimator, one of its settings, a labelling."""

    estimator: str
    setting: str
    labels: str

    def describe(self) -> str:
        return f"{self.estimator} ({self.setting}), Y: {self.labels}"


def select(mi: pd.DataFrame, estimator: str | None = None, setting: str | None = None,
           labels: str | None = None, *, require_labels: bool = False) -> Selection:
    """Resolve defaults: estimator ``kde_upper``, its first setting, labels ``kmeans`` (else the first).

    With ``require_labels`` the table must hold I(Y;M) estimates of the selection; otherwise a
    table without any gives labels ``"none"`` (I(X;M) alone can still be drawn).
    """
    if mi is None or mi.empty:
        raise InfoflowError("the MI table is empty")
    ests = list(dict.fromkeys(mi["estimator"].astype(str)))
    est = estimator or (DEFAULT_ESTIMATOR if DEFAULT_ESTIMATOR in ests else ests[0])
    rows = mi[mi["estimator"].astype(str) == est]
    if rows.empty:
        raise InfoflowError(f"no estimates of estimator {est!r}; the table has {ests}")
    settings = list(dict.fromkeys(rows["setting"].astype(str)))
    st = settings[0] if setting is None else str(setting)
    if st not in settings:
        raise InfoflowError(f"estimator {est!r} has no setting {st!r}; it has {settings}")
    labs = list(dict.fromkeys(rows.loc[rows["quantity"] == "I_YM", "labels"].astype(str)))
    if require_labels and not labs:
        raise InfoflowError(f"estimator {est!r} has no I(Y;M) estimates")
    if labels is None:
        lab = DEFAULT_LABELS if DEFAULT_LABELS in labs else (labs[0] if labs else "none")
    else:
        lab = str(labels)
        if (labs or require_labels) and lab not in labs:
            raise InfoflowError(f"estimator {est!r} has no I(Y;M) with labels {lab!r}; it has {labs}")
    return Selection(est, st, lab)

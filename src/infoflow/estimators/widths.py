"""Kernel widths of the KDE and the matrix-based Renyi estimators, per layer and logged epoch.

With the paper's fixed noise variance (``s2 = 0.2``) an estimate compares the activations' scale
with a constant: a layer whose typical squared distance grows from ~0 to 1e5 goes from "every
sample overlaps every other" (I = 0) to "every sample is isolated" (I(X;M) = log2 N,
I(Y;M) = H(Y)) whatever it represents. A *width setting* says how the kernel variance is chosen
for each layer and epoch, from that layer's own N x N squared-distance matrix ``d``:

``fixed:S2``  (setting ``noise_var=S2``; KDE) / ``kernel_var=S2`` (Renyi)
    The paper's rule: ``s2 = S2`` for every layer and epoch. ``fixed`` without a value stands
    for each configured ``noise_var`` (the default, today's rows).
``rel:F``  (setting ``rel=F``)
    Relative to the layer's own scale: ``s2 = F * median_{i<j} d_ij``. Multiplying all
    activations by ``c`` multiplies ``d`` and ``s2`` by ``c**2``, so every estimate is unchanged
    (scale invariant). When the median is 0 (more than half of the pairs coincide) the mean of
    the off-diagonal ``d_ij`` is used; when all of them are 0 (a constant layer) ``s2 = 1``
    (every width gives I = 0 then).
``silverman[:F]``  (setting ``silverman=F``, F = 1 by default)
    Silverman's rule of thumb for a Gaussian kernel in ``k`` dimensions,
    ``h^2 = sigma^2 (4 / ((k + 2) N))^(2 / (k + 4))``, times ``F``, adapted to activations that
    only reach us through distances:

    * ``k`` is the *effective* dimension of the N samples, the participation ratio of the
      spectrum of their centred Gram matrix ``B = -1/2 J d J`` (``J = I - 11'/N``):
      ``k = tr(B)^2 / ||B||_F^2`` (between 1 and N - 1; = the number of equal principal
      variances when the spread is isotropic in k directions). The nominal D (up to 262,144)
      would make the rule useless: with ``k = D`` the factor is ~1 and ``d_ij / (2 s2)`` ~ D,
      so every sample is isolated at every layer.
    * ``sigma^2`` is the per-coordinate variance within those k effective directions:
      ``tr(B) / ((N - 1) k)``, where ``tr(B) / (N - 1) = sum_{i<j} d_ij / (N (N - 1))`` is the
      unbiased total variance (the trace of the sample covariance).

    Both ``k`` (a ratio) and the rule are scale-equivariant: ``s2`` scales with ``c**2``
    exactly like ``rel``. A constant layer gets ``s2 = 1``.

The Renyi estimator's input kernel (for ``I(X;M)``) uses the same rule on the input images'
distances (``fixed``: the same ``S2``; ``rel``/``silverman``: resolved on ``dist_x``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InfoflowError
from ._util import positive

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Width",
    "WIDTH_KINDS",
    "DEFAULT_WIDTHS",
    "parse_width",
    "parse_widths",
    "expand_widths",
    "kernel_var",
    "effective_dim",
    "median_sqdist",
    "width_of_setting",
    "width_stats",
    "resolved_widths",
]

WIDTH_KINDS = ("fixed", "rel", "silverman")
DEFAULT_WIDTHS: tuple[str, ...] = ("fixed",)  # fixed = each configured noise_var: today's rows
_FALLBACK_VAR = 1.0  # kernel variance of a constant layer (any value gives I = 0)


def _num(x: float) -> str:
    return repr(float(x))


@dataclass(frozen=True)
class Width:
    """One kernel-width rule. ``value``: the variance (fixed; None = each configured noise_var)
    or the factor (rel, silverman)."""

    kind: str
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in WIDTH_KINDS:
            raise InfoflowError(f"unknown kernel width {self.kind!r}; choose from {', '.join(WIDTH_KINDS)}")
        if self.value is None:
            if self.kind == "rel":
                raise InfoflowError("a relative width needs a factor, e.g. rel:0.1")
            if self.kind == "silverman":
                object.__setattr__(self, "value", 1.0)
        else:
            object.__setattr__(self, "value", positive(self.value, f"{self.kind} width"))

    @property
    def concrete(self) -> bool:
        return self.value is not None

    @property
    def factor(self) -> float:
        return 1.0 if self.value is None else float(self.value)

    def spec(self) -> str:
        """The command-line form: ``fixed:0.2``, ``rel:0.1``, ``silverman:1.0`` (``fixed`` if open)."""
        return self.kind if self.value is None else f"{self.kind}:{_num(self.value)}"

    def key(self) -> str:
        """``key=value`` part of a setting string: ``noise_var=0.2``, ``rel=0.1``, ``silverman=1.0``
        (the KDE's; the Renyi estimator writes ``kernel_var=`` for fixed widths)."""
        if self.value is None:
            raise InfoflowError("an open 'fixed' width has no setting: expand it with the noise variances first")
        name = {"fixed": "noise_var", "rel": "rel", "silverman": "silverman"}[self.kind]
        return f"{name}={_num(self.value)}"

    def renyi_key(self) -> str:
        return ("kernel_var=" + _num(self.value)) if self.kind == "fixed" and self.value is not None else self.key()

    def __str__(self) -> str:
        return self.spec()


_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:[:=]\s*([^\s]+))?\s*$", re.IGNORECASE)
_ALIASES = {"fixed": "fixed", "noise_var": "fixed", "kernel_var": "fixed", "s2": "fixed", "rel": "rel",
            "relative": "rel", "median": "rel", "silverman": "silverman"}


def parse_width(spec: Any) -> Width:
    """``"rel:0.1"``, ``"rel=0.1"``, ``"silverman"``, ``"silverman:0.5"``, ``"fixed"``,
    ``"fixed:0.2"``, ``"noise_var=0.2"``, a bare number (a fixed variance) or a :class:`Width`."""
    if isinstance(spec, Width):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Width("fixed", float(spec))
    text = str(spec)
    try:
        return Width("fixed", float(text))
    except ValueError:
        pass
    m = _SPEC.match(text)
    if not m or m.group(1).lower() not in _ALIASES:
        raise InfoflowError(f"malformed kernel width {text!r}: use fixed[:S2], rel:F or silverman[:F]")
    kind = _ALIASES[m.group(1).lower()]
    if m.group(2) is None:
        return Width(kind, None if kind != "silverman" else 1.0)
    try:
        value = float(m.group(2))
    except ValueError:
        raise InfoflowError(f"malformed kernel width {text!r}: {m.group(2)!r} is not a number") from None
    return Width(kind, value)


def parse_widths(text: Any) -> tuple[Width, ...]:
    """A comma-separated list (``"rel:0.1,rel:1,silverman,fixed:0.2"``) or a sequence of specs."""
    if isinstance(text, str):
        items: Iterable[Any] = [p for p in text.split(",") if p.strip()]
    elif isinstance(text, Width):
        items = [text]
    else:
        items = list(text)
    out = tuple(parse_width(p) for p in items)
    if not out:
        raise InfoflowError("no kernel widths given")
    return out


def expand_widths(widths: Any, noise_vars: Sequence[float] = ()) -> list[Width]:
    """Concrete widths in order: an open ``fixed`` becomes one fixed width per ``noise_vars``
    entry; duplicates are dropped (first kept)."""
    out: list[Width] = []
    for w in parse_widths(widths if widths is not None else DEFAULT_WIDTHS):
        expanded = [Width("fixed", float(v)) for v in noise_vars] if not w.concrete else [w]
        if not w.concrete and not expanded:
            raise InfoflowError("width 'fixed' without a value needs at least one noise variance")
        for e in expanded:
            if e not in out:
                out.append(e)
    return out


def width_of_setting(setting: str) -> Width | None:
    """The width of a KDE or Renyi setting string (``"noise_var=0.2"``, ``"alpha=1.01,rel=0.1"``);
    None for a setting without a kernel width (binning)."""
    for part in str(setting).split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep:
            continue
        if key in ("noise_var", "kernel_var"):
            return Width("fixed", float(val))
        if key in ("rel", "silverman"):
            return Width(key, float(val))
    return None


# -- statistics of a distance matrix --------------------------------------------------------------
def _offdiag(d: np.ndarray) -> np.ndarray:
    """All off-diagonal entries (each pair twice: same median as the upper triangle, same mean)."""
    n = d.shape[0]
    return np.ascontiguousarray(d).reshape(-1)[1:].reshape(n - 1, n + 1)[:, :-1].reshape(-1)


def median_sqdist(d: np.ndarray) -> float:
    """Median of the off-diagonal squared distances (the mean when that is 0; 0 for a constant layer)."""
    if d.shape[0] < 2:
        return 0.0
    off = _offdiag(d)
    med = float(np.median(off))
    if med > 0.0:
        return med
    return float(np.mean(off))


def _centred_gram_moments(d: np.ndarray) -> tuple[float, float]:
    """``tr(B)`` and ``||B||_F^2`` of ``B = -1/2 J d J`` without forming J."""
    row = d.mean(axis=1)
    tot = row.mean()
    b = -0.5 * (d - row[:, None] - row[None, :] + tot)
    return float(np.trace(b)), float(np.sum(b * b))


def effective_dim(d: np.ndarray) -> float:
    """Participation ratio ``tr(B)^2 / ||B||_F^2`` of the centred Gram matrix of the samples
    (1 <= k <= N - 1; NaN for a constant layer)."""
    tr, fro = _centred_gram_moments(d)
    if not (tr > 0.0) or not (fro > 0.0):
        return math.nan
    n = d.shape[0]
    return float(min(max(tr * tr / fro, 1.0), max(n - 1, 1)))


def _silverman_var(d: np.ndarray) -> float:
    n = d.shape[0]
    if n < 2:
        return _FALLBACK_VAR
    tr, fro = _centred_gram_moments(d)
    if not (tr > 0.0) or not (fro > 0.0):
        return _FALLBACK_VAR
    k = float(min(max(tr * tr / fro, 1.0), n - 1))
    sigma2 = tr / ((n - 1) * k)
    return sigma2 * (4.0 / ((k + 2.0) * n)) ** (2.0 / (k + 4.0))


def kernel_var(width: Any, d: np.ndarray) -> float:
    """The kernel variance ``s2`` of ``width`` for the float64 squared distances ``d`` (N, N)."""
    w = parse_width(width)
    if w.kind == "fixed":
        if w.value is None:
            raise InfoflowError("width 'fixed' without a value: expand it with the noise variances first")
        return float(w.value)
    if w.kind == "rel":
        med = median_sqdist(d)
        return w.factor * med if med > 0.0 else _FALLBACK_VAR
    return w.factor * _silverman_var(d)


def width_stats(d: np.ndarray) -> dict[str, float]:
    """Scale facts of one layer: median and mean off-diagonal squared distance, effective dimension."""
    off = _offdiag(d) if d.shape[0] > 1 else np.zeros(1)
    return {"median_d": float(np.median(off)), "mean_d": float(np.mean(off)), "d_eff": effective_dim(d)}


def resolved_widths(dists: Any, *, names: Sequence[str], widths: Any, noise_vars: Sequence[float] = (),
                    epoch: int = 0, layers: Sequence[int] | None = None) -> "pd.DataFrame":
    """The kernel variance each width resolves to, per layer of one epoch, with the scale facts.

    Columns: ``epoch, layer, name, width, setting, kernel_var, median_d, mean_d, d_eff``
    (``setting``: the KDE's setting string).
    """
    import pandas as pd

    from ._util import as_dist, to_numpy

    dist_all = to_numpy(dists)
    ws = expand_widths(widths, [float(v) for v in noise_vars])
    ids = list(range(dist_all.shape[0])) if layers is None else [int(i) for i in layers]
    rows = []
    for li in range(dist_all.shape[0]):
        d = as_dist(dist_all[li], what=f"dists[{li}]")
        stats = width_stats(d)
        for w in ws:
            rows.append({"epoch": int(epoch), "layer": ids[li], "name": str(names[li]), "width": w.spec(),
                         "setting": w.key(), "kernel_var": kernel_var(w, d), **stats})
    return pd.DataFrame(rows, columns=["epoch", "layer", "name", "width", "setting", "kernel_var", "median_d",
                                       "mean_d", "d_eff"])

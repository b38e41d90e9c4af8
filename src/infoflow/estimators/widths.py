"""The kernel of the KDE and the matrix-based Renyi estimators: one spec, one parser, one variance.

A *kernel* (:class:`Kernel`) says how the variance ``kernel_var`` of the Gaussian kernel is chosen
for each layer and logged epoch, from that layer's own N x N squared-distance matrix ``d``. It is
written everywhere in one form, the *kernel spec*, which is also the ``setting`` of the tidy
table's KDE rows (``mi.kernels`` in ``config.json``, ``--kernel`` of ``infoflow train`` and
``infoflow estimate``, :meth:`Kernel.spec`):

``fixed:S2``
    The paper's rule: ``kernel_var = S2`` for every layer and epoch (its code: ``fixed:0.2``,
    its text: ``fixed:1.0``).
``rel:F``
    Relative to the layer's own scale: ``kernel_var = F * median_{i<j} d_ij``. Multiplying all
    activations by ``c`` multiplies ``d`` and ``kernel_var`` by ``c**2``, so every estimate is
    unchanged (scale invariant). When the median is 0 (more than half of the pairs coincide) the
    mean of the off-diagonal ``d_ij`` is used; when all of them are 0 (a constant layer)
    ``kernel_var = 1`` (every kernel gives I = 0 then).
``silverman[:F]``  (F = 1 when not given; the spec is written ``silverman:1.0``)
    Silverman's rule of thumb for a Gaussian kernel in ``k`` dimensions,
    ``h^2 = sigma^2 (4 / ((k + 2) N))^(2 / (k + 4))``, times ``F``, adapted to activations that
    only reach us through distances:

    * ``k`` is the *effective* dimension of the N samples, the participation ratio of the
      spectrum of their centred Gram matrix ``B = -1/2 J d J`` (``J = I - 11'/N``):
      ``k = tr(B)^2 / ||B||_F^2`` (between 1 and N - 1; = the number of equal principal
      variances when the spread is isotropic in k directions). The nominal D (up to 262,144)
      would make the rule useless: with ``k = D`` the factor is ~1 and ``d_ij / (2 kernel_var)``
      ~ D, so every sample is isolated at every layer.
    * ``sigma^2`` is the per-coordinate variance within those k effective directions:
      ``tr(B) / ((N - 1) k)``, where ``tr(B) / (N - 1) = sum_{i<j} d_ij / (N (N - 1))`` is the
      unbiased total variance (the trace of the sample covariance).

    Both ``k`` (a ratio) and the rule are scale-equivariant: ``kernel_var`` scales with ``c**2``
    exactly like ``rel``. A constant layer gets ``kernel_var = 1``.

The Renyi estimator's input kernel (for ``I(X;M)``) uses the same rule on the input images'
distances (``fixed``: the same ``S2``; ``rel``/``silverman``: resolved on ``dist_x``).

Parsing is strict (:func:`parse_kernel`): exactly these forms, lower case, a positive finite
number; anything else raises :class:`~infoflow.errors.InfoflowError` naming the value. Files
written before the spec (``config.json`` with ``mi.noise_var``/``mi.widths``) are converted once
when read, by :func:`kernels_from_legacy`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfoflowError
from ._util import as_dist, to_numpy

__all__ = [
    "Kernel",
    "KERNEL_KINDS",
    "DEFAULT_KERNELS",
    "SCALE_AWARE_KERNEL",
    "parse_kernel",
    "parse_kernels",
    "kernels_from_legacy",
    "effective_dim",
    "median_sqdist",
    "width_stats",
    "resolved_kernels",
]

KERNEL_KINDS = ("fixed", "rel", "silverman")
DEFAULT_KERNELS: tuple[str, ...] = ("fixed:0.2",)  # the paper's code
SCALE_AWARE_KERNEL = "rel:0.1"  # estimated beside the fixed kernel on networks other than the paper's U-Net
_FALLBACK_VAR = 1.0  # kernel variance of a constant layer (any value gives I = 0)
_FORMS = "fixed:S2, rel:F or silverman[:F] (S2, F positive numbers)"


def _num(x: float) -> str:
    return repr(float(x))


@dataclass(frozen=True)
class Kernel:
    """One kernel rule: ``kind`` (``fixed``, ``rel``, ``silverman``) and its ``param``: the
    variance itself (``fixed``) or the factor (``rel``, ``silverman``). Build it with
    :func:`parse_kernel`; :meth:`kernel_var` resolves it on one layer's distances."""

    kind: str
    param: float

    def __post_init__(self) -> None:
        if self.kind not in KERNEL_KINDS:
            raise InfoflowError(f"unknown kernel {self.kind!r}: use {_FORMS}")
        p = self.param
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
            raise InfoflowError(f"kernel '{self.kind}:{p!r}': the number must be positive and finite")
        object.__setattr__(self, "param", float(p))

    def spec(self) -> str:
        """The one string form, also the KDE rows' ``setting``: ``fixed:0.2``, ``rel:0.1``, ``silverman:1.0``."""
        return f"{self.kind}:{_num(self.param)}"

    def __str__(self) -> str:
        return self.spec()

    def kernel_var(self, d: np.ndarray) -> float:
        """The kernel variance for the float64 squared distances ``d`` (N, N) of one layer."""
        if self.kind == "fixed":
            return self.param
        if self.kind == "rel":
            med = median_sqdist(d)
            return self.param * med if med > 0.0 else _FALLBACK_VAR
        return self.param * _silverman_var(d)


_SPEC = re.compile(r"^(fixed|rel|silverman)(?::([^:,\s]+))?$")


def parse_kernel(spec: Any) -> Kernel:
    """A :class:`Kernel` from its spec ``"fixed:S2"``, ``"rel:F"``, ``"silverman"`` or
    ``"silverman:F"`` (or a :class:`Kernel`, returned as it is)."""
    if isinstance(spec, Kernel):
        return spec
    text = str(spec).strip() if isinstance(spec, str) else None
    m = _SPEC.match(text) if text is not None else None
    if m is None:
        raise InfoflowError(f"malformed kernel {spec!r}: use {_FORMS}")
    kind, raw = m.group(1), m.group(2)
    if raw is None:
        if kind != "silverman":
            raise InfoflowError(f"kernel {spec!r} needs a number: {kind}:" + ("S2" if kind == "fixed" else "F"))
        return Kernel(kind, 1.0)
    try:
        value = float(raw)
    except ValueError:
        raise InfoflowError(f"malformed kernel {spec!r}: {raw!r} is not a number") from None
    try:
        return Kernel(kind, value)
    except InfoflowError:  # the rule is Kernel's; the message names what was written
        raise InfoflowError(f"kernel {spec!r}: the number must be positive and finite") from None


def parse_kernels(specs: Any) -> tuple[Kernel, ...]:
    """Kernels in order, duplicates dropped (first kept), from a comma-separated string
    (``"fixed:0.2,rel:0.1"``) or a sequence of specs; at least one."""
    if isinstance(specs, (str, Kernel)):
        items: Iterable[Any] = [p for p in specs.split(",") if p.strip()] if isinstance(specs, str) else [specs]
    else:
        items = list(specs)
    out: list[Kernel] = []
    for item in items:
        k = parse_kernel(item)
        if k not in out:
            out.append(k)
    if not out:
        raise InfoflowError(f"no kernel given ({specs!r}): use {_FORMS}")
    return tuple(out)


# -- files written before the kernel spec ---------------------------------------------------------
_LEGACY_KIND = {"fixed": "fixed", "noise_var": "fixed", "kernel_var": "fixed", "s2": "fixed", "rel": "rel",
                "relative": "rel", "median": "rel", "silverman": "silverman"}


def kernels_from_legacy(noise_var: Sequence[float] = (0.2,), widths: Sequence[str] = ("fixed",)) -> tuple[str, ...]:
    """``mi.kernels`` of a ``config.json`` written with ``mi.noise_var`` and ``mi.widths``: a
    width ``fixed`` without a value stood for one fixed kernel per noise variance; ``rel=F``,
    ``noise_var=S2``, a bare number and the old aliases map to their spec."""
    out: list[str] = []
    for w in ([widths] if isinstance(widths, str) else list(widths)):
        text = str(w).strip()
        key, _, val = text.replace("=", ":").partition(":")
        try:
            found = [Kernel("fixed", float(text))]
        except ValueError:
            kind = _LEGACY_KIND.get(key.strip().lower())
            if kind is None:
                raise InfoflowError(f"unknown kernel width {text!r} in an old config (mi.widths)") from None
            if val.strip():
                found = [Kernel(kind, float(val))]
            elif kind == "fixed":
                found = [Kernel("fixed", float(v)) for v in noise_var]
            else:
                found = [parse_kernel(kind)]
        for k in found:
            if k.spec() not in out:
                out.append(k.spec())
    return tuple(out)


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


def width_stats(d: np.ndarray) -> dict[str, float]:
    """Scale facts of one layer: median and mean off-diagonal squared distance, effective dimension."""
    off = _offdiag(d) if d.shape[0] > 1 else np.zeros(1)
    return {"median_d": float(np.median(off)), "mean_d": float(np.mean(off)), "d_eff": effective_dim(d)}


def resolved_kernels(dists: Any, *, names: Sequence[str], kernels: Any, epoch: int = 0,
                     layers: Sequence[int] | None = None) -> pd.DataFrame:
    """The kernel variance each kernel resolves to, per layer of one epoch, with the scale facts.

    Columns: ``epoch, layer, name, kernel, kernel_var, median_d, mean_d, d_eff`` (``kernel``: the
    spec, the KDE rows' setting).
    """
    dist_all = to_numpy(dists)
    ks = parse_kernels(kernels)
    ids = list(range(dist_all.shape[0])) if layers is None else [int(i) for i in layers]
    rows = []
    for li in range(dist_all.shape[0]):
        d = as_dist(dist_all[li], what=f"dists[{li}]")
        stats = width_stats(d)
        for k in ks:
            rows.append({"epoch": int(epoch), "layer": ids[li], "name": str(names[li]), "kernel": k.spec(),
                         "kernel_var": k.kernel_var(d), **stats})
    return pd.DataFrame(rows, columns=["epoch", "layer", "name", "kernel", "kernel_var", "median_d", "mean_d",
                                       "d_eff"])

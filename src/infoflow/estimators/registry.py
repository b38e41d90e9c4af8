"""The estimators by name, and the setting strings that name their parameters.

:data:`REGISTRY` maps each estimator name of the tidy table (``"kde_upper"``, ``"kde_lower"``,
``"bin"``, ``"renyi"``) to an :class:`Estimator`; :func:`prepare` builds the prepared object
(:class:`~.base.Prepared`) of one layer from what a run stores for it: the distance matrix and a
kernel width (KDE, Renyi; Renyi's I(X;M) also the input images' distances), or the binned-symbol
ids (binning). The tidy table (:func:`~.table.estimate_layers`), the intervals and permutation
baselines (:mod:`infoflow.uncertainty`) and the known-answer benchmark
(:mod:`infoflow.known_answer`) all go through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InfoflowError
from ._util import as_dist, to_numpy
from .base import Prepared
from .binning import BinPrepared
from .kde import KDEPrepared
from .renyi import RenyiInput, RenyiPrepared
from .widths import Width, kernel_var as resolve_kernel_var, parse_width

__all__ = [
    "Estimator",
    "REGISTRY",
    "ESTIMATORS",
    "expand_estimators",
    "prepare",
    "renyi_input",
    "kde_setting",
    "bin_setting",
    "renyi_setting",
    "parse_setting",
    "setting_of",
]


@dataclass(frozen=True)
class Estimator:
    """One estimator of the registry.

    ``data``: what it is prepared from (``"dist"``: a distance matrix and a kernel width;
    ``"codes"``: binned-symbol ids). ``baseline``: the tidy table gives its I(Y;M) rows the
    label-permutation ``baseline`` column. ``build``: the prepared class's constructor.
    """

    name: str
    data: str
    baseline: bool
    build: Callable[..., Prepared]


REGISTRY: dict[str, Estimator] = {
    "kde_upper": Estimator("kde_upper", "dist", True, lambda d, **kw: KDEPrepared(d, bound="upper", **kw)),
    "kde_lower": Estimator("kde_lower", "dist", True, lambda d, **kw: KDEPrepared(d, bound="lower", **kw)),
    "bin": Estimator("bin", "codes", True, BinPrepared),
    "renyi": Estimator("renyi", "dist", False, RenyiPrepared),
}
ESTIMATORS = tuple(REGISTRY)  # table order


def expand_estimators(estimators: Sequence[str] | str) -> list[str]:
    """Registry names in table order; ``"kde"`` stands for both bounds, a string may list names
    separated by commas. Unknown names raise :class:`InfoflowError`."""
    if isinstance(estimators, str):
        estimators = [e for e in estimators.split(",") if e.strip()]
    wanted: set[str] = set()
    for e in estimators:
        e = str(e).strip()
        if e == "kde":
            wanted.update(("kde_upper", "kde_lower"))
        elif e in REGISTRY:
            wanted.add(e)
        else:
            raise InfoflowError(f"unknown estimator {e!r}; choose from 'kde', {', '.join(map(repr, ESTIMATORS))}")
    return [e for e in ESTIMATORS if e in wanted]


def renyi_input(dist_x: Any, *, width: Any = None, kernel_var: float | None = None, alpha: float = 1.01,
                checked: bool = False) -> RenyiInput:
    """The input side of the Renyi I(X;M) (:class:`~.renyi.RenyiInput`): ``width`` resolved on
    ``dist_x`` itself (or ``kernel_var`` given)."""
    dx = dist_x if checked else as_dist(dist_x, what="dist_x")
    kv = resolve_kernel_var(width, dx) if kernel_var is None else float(kernel_var)
    return RenyiInput(dx, kernel_var=kv, alpha=alpha)


def prepare(estimator: str, *, dist: Any = None, width: Any = None, kernel_var: float | None = None,
            dim: int = 1, codes: Any = None, alpha: float = 1.01, x: RenyiInput | None = None,
            dist_x: Any = None, checked: bool = False) -> Prepared:
    """The prepared estimator ``estimator`` of one layer.

    Parameters
    ----------
    estimator:
        A name of :data:`REGISTRY`.
    dist:
        ``(N, N)`` squared distances (KDE, Renyi); ``checked``: already the float64 output of
        :func:`~._util.as_dist` (no copy is made, and it is not modified).
    width, kernel_var:
        The kernel width rule (:mod:`.widths`: ``"rel:0.1"``, a :class:`~.widths.Width`, ...),
        resolved on ``dist``; or the kernel variance itself.
    dim:
        ``D`` (KDE entropies).
    codes:
        ``(N,)`` binned-symbol ids (binning).
    alpha:
        Renyi order.
    x, dist_x:
        Renyi's input side: prepared (:func:`renyi_input`, shared by layers) or the input
        distances (``width`` resolved on them); neither: no I(X;M).
    """
    est = REGISTRY.get(estimator)
    if est is None:
        raise InfoflowError(f"unknown estimator {estimator!r}; choose from {', '.join(map(repr, ESTIMATORS))}")
    if est.data == "codes":
        if codes is None:
            raise InfoflowError("the binning estimator needs symbol codes (it cannot use distances)")
        return est.build(np.asarray(to_numpy(codes)).reshape(-1))
    if dist is None:
        raise InfoflowError(f"the {estimator} estimator needs a distance matrix")
    d = dist if checked else as_dist(dist)
    if kernel_var is None:
        if width is None:
            raise InfoflowError(f"the {estimator} estimator needs a kernel width or variance")
        kernel_var = resolve_kernel_var(width, d)
    if estimator == "renyi":
        if x is None and dist_x is not None:
            x = renyi_input(dist_x, width=width, kernel_var=None if width is not None else kernel_var, alpha=alpha)
        return est.build(d, kernel_var=kernel_var, alpha=alpha, x=x)
    return est.build(d, noise_var=kernel_var, dim=dim)


# -- setting strings ------------------------------------------------------------------------------
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


def setting_of(estimator: str, *, width: Any = None, bin_size: float | None = None, alpha: float = 1.01) -> str:
    """The setting string of ``estimator`` with a kernel width (KDE, Renyi) or a bin size (binning)."""
    if estimator == "bin":
        if bin_size is None or not math.isfinite(float(bin_size)):
            raise InfoflowError("a binning setting needs a bin size")
        return bin_setting(bin_size)
    if estimator == "renyi":
        return renyi_setting(alpha, width)
    return kde_setting(width)


def parse_setting(setting: str) -> dict[str, float]:
    """Inverse of the ``*_setting`` functions: ``"alpha=1.01,kernel_var=0.2"`` -> ``{"alpha": 1.01, ...}``."""
    out: dict[str, float] = {}
    for part in str(setting).split(","):
        key, sep, val = part.partition("=")
        if not sep:
            raise InfoflowError(f"malformed setting {setting!r}: expected key=value[,key=value]")
        out[key.strip()] = float(val)
    return out

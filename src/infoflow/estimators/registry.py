"""The estimators by name, and the setting strings that name their parameters.

:data:`REGISTRY` maps each estimator name of the tidy table (``"kde_upper"``, ``"kde_lower"``,
``"bin"``, ``"renyi"``) to an :class:`Estimator`; :func:`prepare` builds the prepared object
(:class:`~.base.Prepared`) of one layer from what a run stores for it: the distance matrix and a
kernel width (KDE, Renyi; Renyi's I(X;M) also the input images' distances), or the binned-symbol
ids (binning). A row's parameters are written in one *setting* string (:func:`setting_of`): the
kernel spec (:mod:`.widths`) for KDE, the spec and the order for Renyi, the bin size for binning.
The tidy table (:func:`~.table.estimate_layers`), the intervals and permutation
baselines (:mod:`infoflow.analysis.uncertainty`) and the known-answer benchmark
(:mod:`infoflow.analysis.known_answer`) all go through it.
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
from .widths import Kernel, parse_kernel

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
    "setting_of",
    "kernel_of_setting",
    "upgrade_setting",
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


def renyi_input(dist_x: Any, *, kernel: Any = None, kernel_var: float | None = None, alpha: float = 1.01,
                checked: bool = False) -> RenyiInput:
    """The input side of the Renyi I(X;M) (:class:`~.renyi.RenyiInput`): ``kernel`` resolved on
    ``dist_x`` itself (or ``kernel_var`` given)."""
    dx = dist_x if checked else as_dist(dist_x, what="dist_x")
    kv = parse_kernel(kernel).kernel_var(dx) if kernel_var is None else float(kernel_var)
    return RenyiInput(dx, kernel_var=kv, alpha=alpha)


def prepare(estimator: str, *, dist: Any = None, kernel: Any = None, kernel_var: float | None = None,
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
    kernel, kernel_var:
        The kernel (:mod:`.widths`: a spec such as ``"rel:0.1"``, or a :class:`~.widths.Kernel`),
        resolved on ``dist``; or the kernel variance itself.
    dim:
        ``D`` (KDE entropies).
    codes:
        ``(N,)`` binned-symbol ids (binning).
    alpha:
        Renyi order.
    x, dist_x:
        Renyi's input side: prepared (:func:`renyi_input`, shared by layers) or the input
        distances (``kernel`` resolved on them); neither: no I(X;M).
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
        if kernel is None:
            raise InfoflowError(f"the {estimator} estimator needs a kernel or a kernel variance")
        kernel_var = parse_kernel(kernel).kernel_var(d)
    if estimator == "renyi":
        if x is None and dist_x is not None:
            x = renyi_input(dist_x, kernel=kernel, kernel_var=None if kernel is not None else kernel_var, alpha=alpha)
        return est.build(d, kernel_var=kernel_var, alpha=alpha, x=x)
    return est.build(d, kernel_var=kernel_var, dim=dim)


# -- setting strings ------------------------------------------------------------------------------
def _num(x: float) -> str:
    return repr(float(x))


def kde_setting(kernel: Any) -> str:
    """Setting of a KDE row: the kernel spec, ``kde_setting("fixed:0.2") == "fixed:0.2"``,
    ``kde_setting("silverman") == "silverman:1.0"``."""
    return parse_kernel(kernel).spec()


def bin_setting(bin_size: float) -> str:
    """Setting of a binning row: ``bin_setting(0.1) == "bin:0.1"``."""
    b = float(bin_size)
    if not math.isfinite(b) or b <= 0:
        raise InfoflowError(f"a bin size must be a positive number, got {bin_size!r}")
    return f"bin:{_num(b)}"


def renyi_setting(kernel: Any, alpha: float) -> str:
    """Setting of a Renyi row: the kernel spec and the order,
    ``renyi_setting("fixed:0.2", 1.01) == "fixed:0.2,alpha:1.01"``."""
    return f"{parse_kernel(kernel).spec()},alpha:{_num(alpha)}"


def setting_of(estimator: str, *, kernel: Any = None, bin_size: float | None = None, alpha: float = 1.01) -> str:
    """The setting string of ``estimator`` with a kernel (KDE, Renyi) or a bin size (binning)."""
    if estimator == "bin":
        if bin_size is None:
            raise InfoflowError("a binning setting needs a bin size")
        return bin_setting(bin_size)
    if estimator == "renyi":
        return renyi_setting(kernel, alpha)
    return kde_setting(kernel)


def kernel_of_setting(setting: str) -> Kernel | None:
    """The kernel of a KDE or Renyi setting (``"rel:0.1"``, ``"fixed:0.2,alpha:1.01"``); None for a
    setting without one (binning)."""
    head = str(setting).split(",")[0]
    return None if head.partition(":")[0] not in ("fixed", "rel", "silverman") else parse_kernel(head)


_LEGACY_KEYS = {"noise_var": "fixed", "kernel_var": "fixed", "rel": "rel", "silverman": "silverman", "bin": "bin"}


def upgrade_setting(setting: str) -> str:
    """A setting string of a table written before the kernel spec, in today's form (others are
    returned as they are): ``"noise_var=0.2"`` -> ``"fixed:0.2"``, ``"rel=0.1"`` -> ``"rel:0.1"``,
    ``"bin=0.1"`` -> ``"bin:0.1"``, ``"alpha=1.01,kernel_var=0.2"`` -> ``"fixed:0.2,alpha:1.01"``."""
    text = str(setting)
    if "=" not in text:
        return text
    parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
    alpha = parts.pop("alpha", None)
    if len(parts) != 1 or next(iter(parts)) not in _LEGACY_KEYS:
        return text
    key, val = next(iter(parts.items()))
    head = f"{_LEGACY_KEYS[key]}:{_num(float(val))}"
    return head if alpha is None else f"{head},alpha:{_num(float(alpha))}"

"""MI estimators: pure functions on distance matrices, symbol codes and labels (bits, float64).

* :mod:`.base` -- the one interface: a *prepared* estimator of one layer (:class:`Prepared`),
  labellings (:class:`Labels`, :class:`LabelGroup`), the seeded label permutations.
* :mod:`.registry` -- the estimators by name: :func:`prepare`, :data:`REGISTRY`, setting strings
  (:func:`setting_of`).
* :mod:`.widths` -- the kernel of KDE and Renyi: :class:`Kernel`, its spec (``fixed:0.2``,
  ``rel:0.1``, ``silverman:1.0``) and :func:`parse_kernel`.
* :mod:`.kde` -- Kolchinsky & Tracey KDE bounds (Saxe et al. 2018): :func:`kde_mi`.
* :mod:`.binning` -- binning estimator: :func:`bin_index` (the one binned symbol),
  :func:`bin_codes`, :func:`binning_mi`.
* :mod:`.renyi` -- matrix-based Renyi alpha-entropy (Giraldo et al. 2015): :func:`renyi_mi`.
* :mod:`.labels` -- output classes Y: :func:`coarsen_labels`, :func:`kmeans_labels`.
* :mod:`.table` -- the tidy table shared by the tracker and re-estimation: :func:`estimate_layers`.
"""

from .base import LabelGroup, Labels, Prepared, label_permutations
from .binning import BinPrepared, BinResult, bin_codes, bin_index, binning_mi, symbol_digests
from .kde import KDEPrepared, KDEResult, kde_mi
from .labels import class_counts, coarsen_labels, entropy_bits, kmeans_labels
from .registry import REGISTRY, expand_estimators, prepare, setting_of
from .renyi import (
    RenyiInput,
    RenyiPrepared,
    RenyiResult,
    gaussian_gram,
    renyi_entropy,
    renyi_joint_entropy,
    renyi_label_entropy,
    renyi_mi,
)
from .table import (
    COLUMNS,
    ESTIMATORS,
    NO_LABELS,
    QUANTITIES,
    MITable,
    bin_setting,
    empty_frame,
    estimate_layers,
    kde_setting,
    normalize_table,
    renyi_setting,
)
from .widths import Kernel, parse_kernel, parse_kernels

__all__ = [
    "LabelGroup", "Labels", "Prepared", "label_permutations",
    "REGISTRY", "expand_estimators", "prepare", "setting_of", "Kernel", "parse_kernel", "parse_kernels",
    "BinPrepared", "BinResult", "bin_codes", "bin_index", "binning_mi", "symbol_digests",
    "KDEPrepared", "KDEResult", "kde_mi",
    "class_counts", "coarsen_labels", "entropy_bits", "kmeans_labels",
    "RenyiInput", "RenyiPrepared", "RenyiResult", "gaussian_gram", "renyi_entropy", "renyi_joint_entropy",
    "renyi_label_entropy", "renyi_mi",
    "COLUMNS", "ESTIMATORS", "NO_LABELS", "QUANTITIES", "MITable", "bin_setting", "empty_frame",
    "estimate_layers", "kde_setting", "normalize_table", "renyi_setting",
]  # fmt: skip

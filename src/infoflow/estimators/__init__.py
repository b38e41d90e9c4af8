"""MI estimators: pure functions on distance matrices, symbol codes and labels (bits, float64).

* :mod:`.kde` -- Kolchinsky & Tracey KDE bounds (Saxe et al. 2018): :func:`kde_mi`.
* :mod:`.binning` -- binning estimator: :func:`bin_codes`, :class:`BinCoder`, :func:`binning_mi`.
* :mod:`.renyi` -- matrix-based Renyi alpha-entropy (Giraldo et al. 2015): :func:`renyi_mi`.
* :mod:`.labels` -- output classes Y: :func:`coarsen_labels`, :func:`kmeans_labels`.
* :mod:`.table` -- the tidy table shared by the tracker and re-estimation: :func:`estimate_layers`.
"""

from .binning import BinCoder, BinResult, bin_codes, binning_mi
from .kde import KDEResult, kde_mi
from .labels import class_counts, coarsen_labels, entropy_bits, kmeans_labels
from .renyi import (
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
    parse_setting,
    renyi_setting,
)

__all__ = [
    "BinCoder", "BinResult", "bin_codes", "binning_mi",
    "KDEResult", "kde_mi",
    "class_counts", "coarsen_labels", "entropy_bits", "kmeans_labels",
    "RenyiResult", "gaussian_gram", "renyi_entropy", "renyi_joint_entropy", "renyi_label_entropy", "renyi_mi",
    "COLUMNS", "ESTIMATORS", "NO_LABELS", "QUANTITIES", "MITable", "bin_setting", "empty_frame",
    "estimate_layers", "kde_setting", "parse_setting", "renyi_setting",
]  # fmt: skip

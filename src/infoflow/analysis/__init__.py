"""What is read from the estimates after a run: intervals, baselines, claims and their robustness.

* :mod:`.selections` -- which estimate of a tidy table to read (:class:`Selection`, :func:`select`).
* :mod:`.uncertainty` -- subsampling intervals and permutation baselines of the estimates.
* :mod:`.robustness` -- the paper's claims checked once per kernel (:func:`robustness_table`).
* :mod:`.known_answer` -- the estimators against mixtures whose information is known.
* :mod:`.claims` -- the claims of the paper's section 4 as pure functions on tables
  (:func:`evaluate_claims`) and on run directories (:func:`claims_from_runs`).
"""

from .claims import (
    CLAIM_COLUMNS,
    ClaimResult,
    ClaimThresholds,
    claims_from_runs,
    claims_markdown,
    dice_outcomes,
    evaluate_claims,
    group_by_model,
    print_claims,
    redundancy_predictions,
)
from .known_answer import (
    BENCHMARK_KERNELS,
    MixtureSample,
    MixtureSpec,
    benchmark,
    default_specs,
    population_iym,
    population_ixm,
    sample_mixture,
    sample_truth,
    summarize,
)
from .robustness import (
    DEFAULT_ROBUSTNESS_KERNELS,
    ROBUSTNESS_COLUMNS,
    claims_by_setting,
    claims_evaluator,
    default_evaluator,
    robustness_table,
    summarize_robustness,
)
from .selections import DEFAULT_ESTIMATOR, DEFAULT_LABELS, Selection, select
from .uncertainty import (
    DEFAULT_FRACTIONS,
    SUBSAMPLE_COLUMNS,
    UNCERTAINTY_COLUMNS,
    estimate_uncertainty,
    layer_uncertainty,
    uncertainty_table,
    uncertainty_tables,
    write_uncertainty,
)

__all__ = [
    "CLAIM_COLUMNS", "ClaimResult", "ClaimThresholds", "claims_from_runs", "claims_markdown", "dice_outcomes",
    "evaluate_claims", "group_by_model", "print_claims", "redundancy_predictions",
    "BENCHMARK_KERNELS", "MixtureSample", "MixtureSpec", "benchmark", "default_specs", "population_iym",
    "population_ixm", "sample_mixture", "sample_truth", "summarize",
    "DEFAULT_ROBUSTNESS_KERNELS", "ROBUSTNESS_COLUMNS", "claims_by_setting", "claims_evaluator", "default_evaluator",
    "robustness_table", "summarize_robustness",
    "DEFAULT_ESTIMATOR", "DEFAULT_LABELS", "Selection", "select",
    "DEFAULT_FRACTIONS", "SUBSAMPLE_COLUMNS", "UNCERTAINTY_COLUMNS", "estimate_uncertainty",
    "layer_uncertainty", "uncertainty_table", "uncertainty_tables", "write_uncertainty",
]  # fmt: skip

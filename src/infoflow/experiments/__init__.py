"""Reproduction of Lee & Bajic (2021): Models 1-4, the paper's claims checked, sweeps on Ray.

* :mod:`.profiles` -- named, documented :class:`~infoflow.config.RunConfig` overrides
  (``paper``, ``cpu``, ``smoke``): :func:`get_profile`, :func:`profile_config`.
* :mod:`infoflow.analysis.claims` -- the claims of the paper's section 4 (methods.md section 8)
  as pure functions on tables (:func:`evaluate_claims`) and on run directories
  (:func:`claims_from_runs`); re-exported here.
* :mod:`.sweep` -- every (model, seed) run as a Ray task, resumable: :func:`plan_runs`,
  :func:`run_sweep`.
* :mod:`.reproduce` -- the whole reproduction (``infoflow reproduce``): :func:`reproduce`.

Ray is imported only by :mod:`.sweep` (and only when a sweep runs).
"""

from ..analysis.claims import (
    ClaimThresholds,
    claims_from_runs,
    claims_markdown,
    dice_outcomes,
    evaluate_claims,
    redundancy_predictions,
)
from .profiles import PROFILES, Profile, get_profile, profile_config
from .reproduce import ReproduceResult, reproduce
from .sweep import RunResult, RunSpec, SweepResult, plan_runs, run_sweep

__all__ = [
    "PROFILES",
    "ClaimThresholds",
    "Profile",
    "ReproduceResult",
    "RunResult",
    "RunSpec",
    "SweepResult",
    "claims_from_runs",
    "claims_markdown",
    "dice_outcomes",
    "evaluate_claims",
    "get_profile",
    "plan_runs",
    "profile_config",
    "redundancy_predictions",
    "reproduce",
    "run_sweep",
]

"""Run directories for the figure and report tests (shared by tests/plots and tests/report).

``real_run``: a small real ``infoflow.train.train`` run (cached per test session).
``derived_run``: a copy of a run with another model number / jittered MI values (fake seeds),
so multi-run figures need no second training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from infoflow.config import RunConfig
from infoflow.runs import RunDir

TINY = {"data.source": "synthetic", "data.size": 32, "data.n_synthetic": 40, "model.width": 4,
        "train.epochs": 4, "train.schedule": "all", "mi.kmeans_k": 4, "train.num_threads": 1}

_CACHE: dict[str, RunDir] = {}


def real_run(tmp_path_factory) -> RunDir:
    if "real" not in _CACHE:
        from infoflow.train import train

        out = tmp_path_factory.mktemp("realrun") / "run"
        cfg = RunConfig().override(**TINY, name="tiny")
        run = train(cfg, out, progress=False)
        _CACHE["real"] = run
    return _CACHE["real"]


def derived_run(base: RunDir, out: Path, *, model: int | None = None, name: str | None = None,
                seed: int = 0, jitter: float = 0.0, dice_shift: float = 0.0) -> RunDir:
    """A copy of ``base`` with another model number / name / seed, MI values scaled by
    ``1 + jitter * u`` (u uniform in [-1, 1]) and Dice shifted by ``dice_shift``."""
    shutil.copytree(base.path, out)
    run = RunDir(out)
    cfg = json.loads(run.config_path.read_text())
    if model is not None:
        cfg["model"]["model"], cfg["model"]["skips"] = model, None
    cfg["train"]["seed"] = seed
    if name is not None:
        cfg["name"] = name
    run.config_path.write_text(json.dumps(cfg, indent=2))
    rng = np.random.default_rng(seed)
    if jitter:
        mi = run.read_mi()
        mi["value"] = mi["value"] * (1 + jitter * rng.uniform(-1, 1, len(mi)))
        run.write_mi(mi)
    if dice_shift:
        m = run.read_metrics()
        m[["dice_train", "dice_val"]] = (m[["dice_train", "dice_val"]] + dice_shift).clip(0, 1)
        run._write_table("metrics.csv", m)
    return run


def epochs_of(run: RunDir) -> list[int]:
    return sorted(pd.unique(run.read_mi()["epoch"]).tolist())


#: The kernel widths of the estimate-quality tests (those of `infoflow report --quality`).
QUALITY_KERNELS = "fixed:0.2,rel:0.1,rel:1,silverman"


def real_uncertainty(run: RunDir) -> pd.DataFrame:
    """A real uncertainty table of the last logged epoch of ``run`` (few repeats: fast; cached)."""
    if "unc" not in _CACHE:
        from infoflow.analysis.uncertainty import uncertainty_tables

        last = run.matrix_epochs()[-1]
        _CACHE["unc"] = uncertainty_tables(run, kernels=QUALITY_KERNELS, epochs=[last], repeats=4, permutations=10,
                                           seed=1)[0]
    return _CACHE["unc"].copy()


def _toy_claims(mi: pd.DataFrame) -> dict:
    """Three checks on one setting's rows with verdicts that differ between widths: "A" I(X;M)
    of the first layer above the last's; "B" some I(Y;M) (kmeans) at its ceiling at the last epoch;
    "C" never decided."""
    last = mi[mi["epoch"] == mi["epoch"].max()]
    x = last[last["quantity"] == "I_XM"].sort_values("layer")
    y = last[(last["quantity"] == "I_YM") & (last["labels"] == "kmeans")]
    return {"A": {"holds": bool(x["value"].iloc[0] > x["value"].iloc[-1]), "detail": "first vs last layer"},
            "B": {"holds": bool(y["at_ceiling"].any()), "detail": f"{int(y['at_ceiling'].sum())} layers <at> H(Y)"},
            "C": None}


def real_robustness(run: RunDir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(verdicts, summary)`` of toy claims re-checked under the quality widths (cached)."""
    if "rob" not in _CACHE:
        from infoflow.analysis.robustness import robustness_table

        verdicts, summary, _ = robustness_table(run, _toy_claims, kernels=("fixed:0.2", "rel:0.1", "rel:1",
                                                                          "silverman"))
        _CACHE["rob"] = (verdicts, summary)
    v, s = _CACHE["rob"]
    return v.copy(), s.copy()


def with_estimates(run: RunDir, out: Path, *, uncertainty: pd.DataFrame | None = None,
                   robustness: tuple[pd.DataFrame, pd.DataFrame] | None = None, tag: str = "mi-q") -> RunDir:
    """A copy of ``run`` whose RUN/estimates holds the given tables, named as `infoflow estimate` names them."""
    shutil.copytree(run.path, out)
    copy = RunDir(out)
    est = copy.path / "estimates"
    est.mkdir(exist_ok=True)
    if uncertainty is not None:
        uncertainty.to_csv(est / f"{tag}.uncertainty.csv", index=False)
    if robustness is not None:
        robustness[0].to_csv(est / f"{tag}.robustness.csv", index=False)
        robustness[1].to_csv(est / f"{tag}.robustness-summary.csv", index=False)
    return copy

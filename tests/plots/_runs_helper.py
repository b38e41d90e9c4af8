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

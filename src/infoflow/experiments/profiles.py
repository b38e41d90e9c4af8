"""Named reproduction profiles: documented overrides of :class:`~infoflow.config.RunConfig`.

A profile is a set of dotted overrides applied to the default ``RunConfig`` (whose defaults are
the paper code's), plus what the reproduction needs around the runs: which models, how many
seeds by default, how many GPUs a run asks for, and the claim thresholds that depend on the
time scale of the training. Every field stays overridable: ``profile_config(..., sets=...)``
(``--set key=value`` on the command line) is applied after the profile.

Profiles (see docs/reproduce.md for the measurements behind ``cpu``):

``paper``
    The paper as its code ran it: S = 128, w = 16, SGD lr 0.001 (no momentum), batch 16,
    10,000 epochs, the code's logged-epoch schedule (144 epochs), KDE kernel ``fixed:0.2`` and
    bin size 0.1 (the code's values; the text says ``fixed:1.0`` and 0.2), K-means K = 64 on the 605
    training masks, the code's mask rule. A GPU job: each run asks Ray for one GPU.
``cpu``
    A reduced reproduction that runs Models 1-4 on the real DSB 2018 zips (605 / 65) in at most
    an hour on a 2-core machine (predicted: 35 minutes): S = 64, w = 8, Adam lr 0.001, 150
    epochs, a log-spaced schedule of 25 logged epochs, MI of the 605 training images with KDE
    (the code's kernel ``fixed:0.2`` and the scale-aware ``rel:0.1`` and ``silverman:1.0``) and binning.
``smoke``
    Minutes-long: 48 training / 48 test images at S = 32, w = 4, 6 epochs, every epoch
    logged, K = 8. For tests and for trying the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """A named reproduction setting.

    Attributes:
        name: the profile's name (``--profile``).
        summary: one line for ``--help`` and the report.
        overrides: dotted ``RunConfig`` overrides, e.g. ``{"train.epochs": 100}``.
        models: the paper's models to train (1-4).
        seeds: default number of seeds (``--seeds`` overrides).
        gpus_per_run: GPUs each run asks Ray for (0: CPU only).
        claims: overrides of :class:`~infoflow.analysis.claims.ClaimThresholds` fields.
        changes: what differs from the paper, and why (rendered in docs and claims.md).
        expected: expected wall time of the whole reproduction.
    """

    name: str
    summary: str
    overrides: Mapping[str, Any]
    models: tuple[int, ...] = (1, 2, 3, 4)
    seeds: int = 1
    gpus_per_run: float = 0.0
    claims: Mapping[str, Any] = field(default_factory=dict)
    changes: tuple[str, ...] = ()
    expected: str = ""


_DSB_MI = {
    "mi.probe": "all",  # the original saved the activations of all 670 images ...
    "mi.subset": "train",  # ... and estimated with K-means classes on the 605 training images (methods.md 4)
    "mi.y_from": "code",  # Y from the graded masks of the MI notebooks
    "mi.labels": ("kmeans", "coarse"),
    "mi.kmeans_k": 64,
}

PAPER = Profile(
    name="paper",
    summary="the paper as its code ran it: S=128, w=16, SGD lr 0.001, batch 16, 10,000 epochs; a GPU job",
    overrides={
        "data.size": 128,
        "data.mask_rule": "code",
        "model.width": 16,
        "train.optimizer": "sgd",
        "train.lr": 1e-3,
        "train.momentum": 0.0,
        "train.batch_size": 16,
        "train.epochs": 10_000,
        "train.schedule": "code",
        "train.device": "auto",
        "model.init": "keras",  # Glorot-uniform kernels, zero biases: the original's Keras defaults
        "mi.kernels": ("fixed:0.2",),  # the code's (paper text: fixed:1.0; --set mi.kernels=fixed:0.2,fixed:1.0 for both)
        "mi.bin_size": (0.1,),  # the code's (paper text: 0.2)
        **_DSB_MI,
    },
    gpus_per_run=1.0,
    claims={"early_epochs": 10},
    changes=(),
    expected="a GPU job: about 10,000 epochs x 4 models; hours per model on one modern GPU",
)

CPU = Profile(
    name="cpu",
    summary="Models 1-4 on the real DSB 2018 zips in under an hour on 2 CPU cores: S=64, w=8, Adam 1e-3, 150 epochs",
    overrides={
        "data.size": 64,
        "data.mask_rule": "code",
        "data.mask_size": 128,
        "model.width": 8,
        "model.init": "keras",
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.batch_size": 16,
        "train.epochs": 150,
        "train.schedule": "log",
        "train.log_points": 30,
        "train.device": "cpu",
        "train.num_threads": 1,
        "mi.kernels": ("fixed:0.2", "rel:0.1", "silverman:1.0"),
        "mi.bin_size": (0.1,),
        "mi.estimators": ("kde", "bin"),
        **_DSB_MI,
    },
    claims={"early_epochs": 5},
    changes=(
        "S = 64 instead of 128 and w = 8 instead of 16: a training epoch costs 1/16 of the paper's "
        "(about 3 s of one core for 605 images) and a logged epoch's 23 distance matrices 1/8; the "
        "masks are made at 128 (the code's rule) and downsampled, so their foreground fraction "
        "(0.269) stays near the paper's (0.249).",
        "Adam (lr 0.001) instead of SGD (lr 0.001, no momentum): plain SGD at this rate needs "
        "thousands of epochs, which is what the paper ran; with Adam and the Keras initialisation "
        "Model 1 reaches validation Dice about 0.88 by epoch 40 and 0.91 by 150, Models 2 and 3 "
        "follow, and Model 4 levels off near 0.77, so the ordering can show.",
        "150 epochs instead of 10,000 and a log-spaced schedule (30 points, 25 distinct epochs) "
        "instead of the code's 144 logged epochs: the time budget (docs/reproduce.md).",
        "KDE and binning only (no matrix Renyi estimator): the paper used these two; Renyi would add "
        "about 20% to each logged epoch.",
        "A second KDE kernel, rel:0.1 (0.1 x the layer's median squared distance), beside the "
        "code's fixed:0.2: at fixed:0.2 most layers' estimates reach their ceilings "
        "(log2 N, H(Y)) after a few epochs, which leaves the claims undecided; the scale-aware "
        "kernel does not saturate. Claims are evaluated for both.",
        "One torch thread per run, two runs at a time (Ray), so the four models share the two cores.",
    ),
    expected="about 35 minutes on 2 quiet cores (see docs/reproduce.md)",
)

SMOKE = Profile(
    name="smoke",
    summary="a few minutes: 48 train / 48 test images, S=32, w=4, 6 epochs, every epoch logged, K=8",
    overrides={
        "data.size": 32,
        "data.mask_size": 128,
        "data.limit": 48,
        "model.width": 4,
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.batch_size": 16,
        "train.epochs": 6,
        "train.schedule": "all",
        "train.device": "cpu",
        "train.num_threads": 1,
        "train.n_predictions": 2,
        "mi.probe": "all",
        "mi.subset": "train",
        "mi.labels": ("kmeans", "coarse"),
        "mi.kmeans_k": 8,
        "mi.kernels": ("fixed:0.2",),
        "mi.bin_size": (0.1,),
        "mi.estimators": ("kde", "bin"),
    },
    claims={"early_epochs": 2, "min_logged": 3},
    changes=("A pipeline check, not a reproduction: 48 images, S = 32, w = 4, 6 epochs; K = 8 "
             "because K-means needs K <= the number of probe images.",),
    expected="one to a few minutes on 2 cores",
)

PROFILES: dict[str, Profile] = {p.name: p for p in (PAPER, CPU, SMOKE)}


def get_profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (a :class:`Profile` is returned as is)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def run_key(model: int, seed_index: int) -> str:
    """Folder name of a run of the reproduction: ``model{m}_seed{s}``."""
    return f"model{int(model)}_seed{int(seed_index)}"


def profile_config(profile: str | Profile, *, data: str | None = None, model: int = 1, seed_index: int = 0,
                   sets: Mapping[str, Any] | None = None) -> RunConfig:
    """The resolved ``RunConfig`` of one run of a reproduction.

    Order: defaults, then the profile's overrides, then ``data`` (``data.source``), then
    ``sets`` (any dotted field, e.g. ``{"train.epochs": 50}``), then the run's model and seed:
    ``model.model = model`` (``model.skips = None``), ``train.seed = <train.seed> + seed_index`` and
    ``mi.kmeans_seed = <mi.kmeans_seed> + seed_index`` (the classes Y depend on the K-means seed:
    a verdict over seeds varies it too).
    """
    p = get_profile(profile)
    cfg = RunConfig().override(**dict(p.overrides))
    if data is not None:
        cfg = cfg.override(**{"data.source": str(data)})
    if sets:
        cfg = cfg.override(**dict(sets))
    seed = int(cfg.train.seed) + int(seed_index)
    return cfg.override(**{"model.model": int(model), "model.skips": None, "train.seed": seed,
                           "mi.kmeans_seed": int(cfg.mi.kmeans_seed) + int(seed_index),
                           "name": f"Model {int(model)} seed {seed}"})

"""Kernels by network (the Tracker, hence the Lightning callback): a scale-aware kernel beside the
paper's fixed one on any network but infoflow's U-Net; and the warning when most estimates of a
kernel sit at their floor (about 0 bits), beside the ceiling's."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from infoflow.api import Tracker
from infoflow.config import MIConfig
from infoflow.data import make_synthetic
from infoflow.models import build_model
from infoflow.tracking import floor_notes

MI = MIConfig(kmeans_k=2, labels=("coarse",), coarse_grid=2, estimators=("kde",), permutations=0)


@pytest.fixture(scope="module")
def probe():
    s = make_synthetic(8, size=32, seed=0)
    return s.images, s.masks


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1), nn.Sigmoid())


@pytest.mark.parametrize("paper, extra, kernels", [
    (False, None, ("fixed:0.2", "rel:0.1")),  # any other network: the scale-aware kernel beside
    (True, None, ("fixed:0.2",)),  # infoflow's U-Net: the paper's kernel alone
    (False, (), ("fixed:0.2",)),  # asked for none
    (True, ("silverman",), ("fixed:0.2", "silverman:1.0")),
])
def test_tracker_kernels_by_network(probe, tmp_path, paper, extra, kernels):
    images, masks = probe
    model = build_model(model=1, width=2) if paper else _small_net()
    tracker = Tracker(model, images, masks, tmp_path / "run", mi=MI, extra_kernels=extra, schedule="all")
    try:
        assert tracker.mi.kernels == kernels
        assert tracker.run.config().mi.kernels == kernels
        table = tracker.log_epoch(model, 1)
    finally:
        tracker.close()
    assert list(dict.fromkeys(table.loc[table["estimator"] == "kde_upper", "setting"])) == list(kernels)


def test_floor_warning(probe, tmp_path, caplog):
    images, masks = probe
    model = _small_net()
    wide = MIConfig(kmeans_k=2, labels=("coarse",), coarse_grid=2, estimators=("kde",), permutations=0,
                    kernels=("fixed:1e9",))  # every sample overlaps every other: I(X;M) ~ 0
    tracker = Tracker(model, images, masks, tmp_path / "run", mi=wide, schedule="all")
    try:
        with caplog.at_level(logging.WARNING, logger="infoflow"):
            table = tracker.log_epoch(model, 1)
    finally:
        tracker.close()
    ixm = table[table["quantity"] == "I_XM"]
    fixed = ixm[ixm["setting"] == "fixed:1000000000.0"]
    assert fixed["at_floor"].all() and not ixm[ixm["setting"] == "rel:0.1"]["at_floor"].all()
    said = [r.getMessage() for r in caplog.records if "sit at their floor" in r.getMessage()]
    n = len(fixed) // 2  # per bound
    assert said == [f"epoch 1: {n} of {n} I(X;M) estimates of kde_upper (fixed:1000000000.0) sit at their floor "
                    "(about 0 bits): the kernel is wide against the activations' scale; a scale-aware kernel "
                    "(e.g. rel:0.1) measures the network",
                    f"epoch 1: {n} of {n} I(X;M) estimates of kde_lower (fixed:1000000000.0) sit at their floor "
                    "(about 0 bits): the kernel is wide against the activations' scale; a scale-aware kernel "
                    "(e.g. rel:0.1) measures the network"]


@pytest.mark.parametrize("floors, warned", [(0, False), (2, False), (3, True), (4, True)])
def test_floor_notes_count_a_majority(floors, warned):
    rows = pd.DataFrame({"estimator": "kde_upper", "setting": "fixed:0.2", "quantity": ["I_XM"] * 5 + ["I_YM"] * 5,
                         "at_floor": [True] * floors + [False] * (5 - floors) + [True] * 5})
    notes = floor_notes(rows)
    assert bool(notes) == warned
    if warned:
        assert notes[0].startswith(f"{floors} of 5 I(X;M) estimates of kde_upper (fixed:0.2) sit at their floor")
    assert np.all(rows["at_floor"].iloc[5:])  # I(Y;M) rows are not counted

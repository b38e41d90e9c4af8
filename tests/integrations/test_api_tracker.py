"""infoflow.api.Tracker in a user's own loop: MONAI networks trained on real DSB data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from infoflow.api import Tracker, in_code_schedule, schedule_predicate
from infoflow.config import MIConfig
from infoflow.errors import ConfigError, RunError
from infoflow.network import describe_network
from infoflow.runs import RunDir
from infoflow.tracking import MITracker, ProbeSet, code_schedule, reestimate
from infoflow.tracking import in_code_schedule as tracking_in_code_schedule
from infoflow.train import dice_per_image

monai_nets = pytest.importorskip("monai.networks.nets")

MI = MIConfig(kmeans_k=4, batch_size=16)


def _basic_unet():
    torch.manual_seed(0)
    return monai_nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(4, 4, 8, 8, 16, 4))


def _epoch(model, opt, x, y, tracker=None):
    model.train()
    loss_sum, dice_sum = 0.0, 0.0
    for i in range(0, len(x), 8):
        opt.zero_grad()
        logits = model(x[i:i + 8])
        loss = F.binary_cross_entropy_with_logits(logits, y[i:i + 8])
        loss.backward()
        if tracker is not None:
            tracker.record_gradients(model)
        opt.step()
        loss_sum += loss.item() * len(logits)
        dice_sum += dice_per_image(torch.sigmoid(logits.detach()), y[i:i + 8]).sum().item()
    return loss_sum / len(x), dice_sum / len(x)


@torch.no_grad()
def _val(model, x, y):
    model.eval()
    logits = model(x)
    return F.binary_cross_entropy_with_logits(logits, y).item(), dice_per_image(torch.sigmoid(logits), y).mean().item()


def test_basicunet_user_loop_writes_a_full_run(dsb_small, tmp_path):
    tr, te = dsb_small.train, dsb_small.test
    model = _basic_unet()
    out = tmp_path / "basicunet"
    tracker = Tracker(model, tr.images[:16], tr.masks[:16], out, fit_masks=tr.masks, mi=MI, ids=tr.ids[:16],
                      schedule="all", epochs=3, pred_images=te.images[:2], pred_masks=te.masks[:2],
                      data={"source": "dsb2018 subset", "limit": 24})
    assert tracker.skip_pairs == ((1, 20), (3, 17), (5, 14), (7, 11))
    assert len(tracker.layers) == 23 and tracker.layers[-1] == "final_conv"

    x, y = torch.from_numpy(tr.images), torch.from_numpy(tr.masks)
    xv, yv = torch.from_numpy(te.images), torch.from_numpy(te.masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(1, 4):
        loss, dice = _epoch(model, opt, x, y, tracker)
        loss_val, dice_val = _val(model, xv, yv)
        table = tracker.end_epoch(model, epoch, {"loss_train": loss, "dice_train": dice, "loss_val": loss_val,
                                                 "dice_val": torch.tensor(dice_val)})
        assert table is not None and set(table["layer"]) == set(range(23))

    run = RunDir.open(out)
    for f in ("config.json", "metrics.csv", "probe.npz", "mi.csv", "layer_stats.csv", "run.log"):
        assert (out / f).is_file(), f
    assert run.matrix_epochs() == [1, 2, 3] and run.prediction_epochs() == [1, 2, 3]

    mi = run.read_mi()
    assert sorted(mi["epoch"].unique()) == [1, 2, 3]
    assert mi.groupby("epoch")["layer"].nunique().tolist() == [23, 23, 23]
    assert list(mi.drop_duplicates("layer").sort_values("layer")["name"]) == tracker.layers
    assert set(mi["estimator"]) == {"kde_upper", "kde_lower", "bin", "renyi"}
    assert np.isfinite(mi["value"]).all()

    metrics = run.read_metrics()
    assert metrics["epoch"].tolist() == [1, 2, 3]
    assert {"loss_train", "dice_train", "loss_val", "dice_val"} <= set(metrics.columns)
    assert metrics["loss_train"].iloc[-1] < metrics["loss_train"].iloc[0]  # it trains
    stats = run.read_layer_stats()
    assert len(stats) == 3 * 23 and np.isfinite(stats["grad_mean_norm"]).all()

    cfg = json.loads((out / "config.json").read_text())
    net = cfg["network"]
    assert net["name"] == "BasicUNet" and net["probe_layers"] == tracker.layers
    assert net["skip_pairs"] == [[1, 20], [3, 17], [5, 14], [7, 11]] and net["merge_layers"] == [11, 14, 17, 20]
    assert net["merge_detection"] == "hooks" and cfg["mi"]["kmeans_k"] == 4 and cfg["data"]["limit"] == 24

    # `infoflow estimate` recomputes the table from the stored matrices, bit for bit
    assert run.config().mi.kernels == ("fixed:0.2", "rel:0.1")  # a scale-aware kernel beside the paper's
    again = reestimate(run, run.config().mi)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), mi[again.columns].reset_index(drop=True),
                                  check_dtype=False)

    # plots read the merge layers of this network from config.json
    from infoflow.models.unet import layout_from_config as network_from_config

    assert network_from_config(run.read_config()).present_pairs == tracker.skip_pairs
    from infoflow.plots import make_figures

    figs, skipped = make_figures(run, only=["uplots", "dice", "layer_stats", "predictions"])
    assert set(figs) == {"uplots", "dice", "layer_stats", "predictions"}, skipped


def test_monai_unet_through_mitracker(dsb_small, tmp_path):
    """The lower-level route: RunDir + ProbeSet + MITracker with the layers found automatically."""
    tr = dsb_small.train
    torch.manual_seed(0)
    model = monai_nets.UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=(4, 8, 16), strides=(2, 2))
    net = describe_network(model, torch.from_numpy(tr.images[:1]))
    assert net.skip_pairs == ((0, 4), (1, 3)) and net.method == "fx"
    run = RunDir.create(tmp_path / "unet", {"name": "monai-unet", "mi": {"kmeans_k": 4}, "network": net.to_config()})
    probe = ProbeSet.build(tr.images[:12], tr.masks[:12], tr.ids[:12], MI, fit_y_masks=tr.masks, fit_masks=tr.masks)
    tracker = MITracker(run, probe, MI, layers=net.layers_fn())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.from_numpy(tr.images), torch.from_numpy(tr.masks)
    for epoch in (1, 2):
        _epoch(model, opt, x, y)
        tracker.log_epoch(model, epoch)
    mi = run.read_mi()
    assert mi.groupby("epoch")["name"].unique().map(list).tolist() == [net.names, net.names]
    assert net.names == ["model.0", "model.1.submodule.0", "model.1.submodule.1.submodule", "model.1.submodule.2",
                         "model.2"]


def test_schedules():
    assert [e for e in range(1, 251) if schedule_predicate("code", 250)(e)] == code_schedule(250)
    # the original's epochs, whatever the planned end (Keras's 0-based do_report, shifted by one)
    assert [e for e in range(1, 30) if schedule_predicate("code", 7)(e)] == list(range(1, 22)) + [26]
    assert [e for e in range(1, 30) if schedule_predicate("code")(e)] == list(range(1, 22)) + [26]
    assert in_code_schedule(301) and not in_code_schedule(300) and not in_code_schedule(0)
    assert in_code_schedule is tracking_in_code_schedule  # one definition
    assert [e for e in range(1, 11) if schedule_predicate([2, 5])(e)] == [2, 5]
    log = [e for e in range(1, 101) if schedule_predicate("log", 100, log_points=5)(e)]
    assert log[0] == 1 and log[-1] == 100 and len(log) <= 6
    for bad in ("weekly", [0, 1], ["x"]):
        with pytest.raises(ConfigError):
            schedule_predicate(bad)
    with pytest.raises(ConfigError, match="epochs"):
        schedule_predicate("log")


def test_tracker_rules_and_resume(dsb_small, tmp_path):
    tr = dsb_small.train
    model = _basic_unet()
    out = tmp_path / "rules"
    kw = dict(fit_masks=tr.masks, mi=MIConfig(kmeans_k=4, estimators=("kde",), labels=("kmeans",)),
              schedule=[2, 3])
    tracker = Tracker(model, tr.images[:8], tr.masks[:8], out, **kw)
    assert tracker.end_epoch(model, 1, {"loss_train": 0.5}) is None  # not a logged epoch
    assert tracker.end_epoch(model, 2, {"loss_train": 0.4}) is not None
    with pytest.raises(RunError, match="increase"):
        tracker.log_epoch(model, 2)
    with pytest.raises(ConfigError, match="1-based"):
        tracker.log_epoch(model, 0)
    tracker.end_epoch(model, 3, {"loss_train": 0.3})
    run = RunDir.open(out)
    assert run.read_metrics()["epoch"].tolist() == [1, 2, 3] and run.matrix_epochs() == [2, 3]
    assert not (out / "layer_stats.csv").exists()  # no gradients recorded

    with pytest.raises(RunError, match="exists"):
        Tracker(model, tr.images[:8], tr.masks[:8], out, **kw)
    again = Tracker(model, tr.images[:8], tr.masks[:8], out, resume_from=2, **kw)  # drops epoch 3
    assert run.matrix_epochs() == [2] and sorted(run.read_mi()["epoch"].unique()) == [2]
    assert run.read_metrics()["epoch"].tolist() == [1, 2]
    again.end_epoch(model, 3, {"loss_train": 0.2})
    assert run.matrix_epochs() == [2, 3]

    with pytest.raises(ConfigError, match="samples"):
        Tracker(model, tr.images[:8], tr.masks[:7], tmp_path / "bad", **kw)
    with pytest.raises(ConfigError, match="DataConfig"):
        Tracker(model, tr.images[:8], tr.masks[:8], tmp_path / "bad2", data={"colour": "red"}, **kw)
